using System.Globalization;
using System.Text.RegularExpressions;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// `dmactors serve` with the Prometheus endpoint on: qemu-io does known IO over NBD, curl scrapes the endpoint, and
/// `dmactors dmstats report` prints the same device's report.
/// </summary>
public sealed partial class MetricsProcessTests
{
    [GeneratedRegex(@"^dmactors: metrics at (http://\S+)$", RegexOptions.Multiline)]
    private static partial Regex MetricsAt();

    private static async Task<string> Scrape(string url) => await Nbd.ExternalTool.RunAsync("curl", "curl", "-sf", url);

    /// <summary>The value of one series (a metric with its labels, as the exposition writes them); null if absent.</summary>
    private static double? Value(string scrape, string series)
    {
        var m = Regex.Match(scrape, $"^{Regex.Escape(series)} (\\S+)$", RegexOptions.Multiline);
        return m.Success ? double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : null;
    }

    private static void Is(double expected, string scrape, string series) =>
        Assert.True(Value(scrape, series) == expected, $"{series}: expected {expected}, scraped {Value(scrape, series)?.ToString() ?? "nothing"}\n{scrape}");

    [Fact]
    public async Task Known_io_over_nbd_shows_in_the_scraped_metrics_and_the_dmstats_report()
    {
        using var host = await HostProcess.StartAsync("""
            metrics.listen = "127.0.0.1:0"
            stats.bounds = "1ms,10s"
            """);
        var url = MetricsAt().Match(host.Stdout) is { Success: true } m ? m.Groups[1].Value : throw new Xunit.Sdk.XunitException($"no metrics address:\n{host.Stdout}");
        var r = await host.Dmsetup(["create", "io", "--table", "0 16384 linear disk0 65536"]);
        Assert.True(r.Code == 0, r.ToString());

        // 2 writes and 3 reads of 64 KiB (128 sectors), the flush asked for and the one qemu sends as it closes.
        await Nbd.ExternalTool.RunAsync("qemu-io", Nbd.ExternalTool.QemuUtils, "-f", "raw",
            "-c", "write -P 0x5a 0 64k", "-c", "write 1M 64k", "-c", "read 0 64k", "-c", "read 0 64k", "-c", "read -P 0x5a 0 64k",
            "-c", "flush", $"nbd://127.0.0.1:{host.NbdPort}/io");

        // The connection is counted until its thread has ended, just after qemu-io has gone.
        var scrape = "";
        await Poll.UntilAsync(async () => Value(scrape = await Scrape(url), "dmactors_nbd_connections") == 0,
            "the NBD connection to end", HostProcess.StartTimeout);
        const string io = "{device=\"io\"}";
        Is(3, scrape, $"dmactors_device_reads_completed_total{io}");
        Is(384, scrape, $"dmactors_device_read_sectors_total{io}");
        Is(2, scrape, $"dmactors_device_writes_completed_total{io}");
        Is(256, scrape, $"dmactors_device_written_sectors_total{io}");
        Is(2, scrape, $"dmactors_device_flush_requests_total{io}");
        Is(0, scrape, $"dmactors_device_discards_completed_total{io}");
        Is(0, scrape, $"dmactors_device_errors_total{io}");
        Is(0, scrape, $"dmactors_device_io_now{io}");
        Is(7, scrape, "dmactors_device_io_latency_le_total{device=\"io\",le=\"+Inf\"}");
        Is(7, scrape, "dmactors_device_io_latency_le_total{device=\"io\",le=\"10\"}"); // none took 10 s
        Assert.NotNull(Value(scrape, "dmactors_device_io_latency_le_total{device=\"io\",le=\"0.001\"}"));
        Is(0, scrape, "dmactors_device_reads_completed_total{device=\"demo\"}"); // the other device saw nothing
        // Payloads in and out, plus the protocol's own bytes.
        Assert.InRange(Value(scrape, "dmactors_nbd_received_bytes_total") ?? 0, 2 * 65536 + 7 * 28, 1 << 20);
        Assert.InRange(Value(scrape, "dmactors_nbd_sent_bytes_total") ?? 0, 3 * 65536 + 7 * 16, 1 << 20);
        // The create was recorded in the journal.
        Assert.True(Value(scrape, "dmactors_journal_write_seconds_count") >= 1, scrape);

        var report = await HostProcess.Run(["dmstats", "report", "--config", host.ConfigFile, "io"]);
        Assert.True(report.Code == 0 && report.Err == "", report.ToString());
        var lines = report.Out.TrimEnd('\n').Split('\n');
        // Columns widen to their widest value, and rates depend on the elapsed time: the headings, not their spacing.
        Assert.Equal(["Name", "RgID", "ArID", "AStart", "ASize", "RRqM/s", "WRqM/s", "R/s", "W/s", "RSz/s", "WSz/s", "AvRqSz", "QSize", "Util%", "AWait", "RdAWait", "WrAWait"],
            lines[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        var fields = lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["io", "0", "0", "0", "8.00m", "0.00", "0.00"], fields[..7]);
        Assert.Equal("64.00k", fields[11]); // (384 + 256) sectors over 5 requests
        var histogram = await HostProcess.Run(["dmstats", "report", "--histogram", "--config", host.ConfigFile, "io"]);
        Assert.Matches(@"^io +0 +0 +0 +8\.00m +3 0:\d+,1ms:\d+,10s:0$", histogram.Out.Split('\n')[1]);

        // dmsetup status is what it was.
        r = await host.Dmsetup("status io");
        Assert.True(r.Code == 0 && r.Out == "0 16384 linear \n", r.ToString());
    }
}
