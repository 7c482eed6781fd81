using Akka.Actor;
using DmActors.Host.Cli;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>`dmactors dmstats report`: dmstats' default report from known counters, and over an interval of known IO.</summary>
public sealed class DmstatsReportTests : IDisposable
{
    private readonly Engine _engine = Engine.Start("dmstats-report-tests");
    private readonly IControlChannel _channel;

    public DmstatsReportTests()
    {
        _engine.Disks.AddMemory("m0", 8192);
        _channel = new ActorControlChannel(_engine.Manager, TimeSpan.FromSeconds(30));
    }

    public void Dispose() => _engine.Dispose();

    private static IoCounters Counters(long reads = 0, long readSectors = 0, long readMs = 0, long writes = 0, long writeSectors = 0,
        long writeMs = 0, long ioMs = 0, long[]? histogram = null, TimeSpan[]? bounds = null) =>
        new(reads, 0, readSectors, readMs, writes, 0, writeSectors, writeMs, 0, ioMs, readMs + writeMs,
            0, 0, 0, 0, 0, 0, 0, 0, bounds ?? [], histogram ?? [reads + writes], TimeSpan.FromSeconds(10));

    [Fact]
    public void The_default_report_shows_iostats_derived_metrics_over_the_interval()
    {
        var c = Counters(reads: 100, readSectors: 800, readMs: 80, writes: 50, writeSectors: 400, writeMs: 120, ioMs: 2000);
        var lines = DmstatsFormat.Report([new DmstatsFormat.Interval("vol", 2097152, c, TimeSpan.FromSeconds(10))]).ToList();
        Assert.Equal([
            "Name             RgID ArID AStart ASize RRqM/s WRqM/s R/s   W/s   RSz/s  WSz/s  AvRqSz QSize Util%      AWait RdAWait WrAWait",
            "vol                 0    0      0 1.00g   0.00   0.00 10.00  5.00 40.00k 20.00k  4.00k  0.02      20.00  1.33    0.80    2.40",
        ], lines);
    }

    [Fact]
    public void The_histogram_report_shows_each_bins_lower_bound_and_count()
    {
        var bounds = new[] { TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(5) };
        var c = Counters(reads: 6, histogram: [1, 2, 3], bounds: bounds);
        var lines = DmstatsFormat.Report([new DmstatsFormat.Interval("vol", 8, c, TimeSpan.FromSeconds(10))], histogram: true).ToList();
        Assert.Equal([
            "Name             RgID ArID AStart ASize #Bins Histogram Counts",
            "vol                 0    0      0 4.00k     3 0:1,1ms:2,5ms:3",
        ], lines);
    }

    [Fact]
    public async Task A_report_over_an_interval_counts_the_io_done_in_it()
    {
        _engine.Ok(new Dm.Create("iv", "0 8192 linear m0 0"));
        var dev = _engine.Open("iv");
        var probe = new Akka.TestKit.TestProbe(_engine.System, new Akka.TestKit.Xunit2.XunitAssertions());
        void Io(Bio bio) { bio.ReplyTo = probe.Ref; dev.Tell(bio); Assert.Equal(BioStatus.Ok, probe.ExpectMsg<BioDone>(TimeSpan.FromSeconds(10)).Status); }
        Io(Bio.Read(0, new byte[4096], ActorRefs.Nobody)); // before the interval: not in the report
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        var cli = new Dmsetup(_channel, new StringReader(""), stdout, stderr)
        {
            // The interval's IO: 20 reads of 8 sectors and 10 writes of 16 in "2 seconds".
            Delay = _ =>
            {
                for (var i = 0; i < 20; i++) Io(Bio.Read(i * 8, new byte[4096], ActorRefs.Nobody));
                for (var i = 0; i < 10; i++) Io(Bio.Write(i * 16, new byte[8192], ActorRefs.Nobody));
                return Task.CompletedTask;
            },
        };
        Assert.Equal(0, await cli.RunAsync(DmsetupCommand.ParseDmstats(["report", "--interval", "2", "iv"])));
        Assert.Equal("", stderr.ToString());
        var lines = stdout.ToString().TrimEnd('\n').Split('\n');
        Assert.Equal(2, lines.Length);
        var f = lines[1].Split(' ', StringSplitOptions.RemoveEmptyEntries);
        // Name RgID ArID AStart ASize RRqM/s WRqM/s R/s W/s RSz/s WSz/s AvRqSz
        Assert.Equal(["iv", "0", "0", "0", "4.00m", "0.00", "0.00", "10.00", "5.00", "40.00k", "40.00k", "5.33k"], f[..12]);
    }

    [Fact]
    public async Task A_report_on_a_missing_device_fails_as_dmsetup_does()
    {
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        var code = await new Dmsetup(_channel, new StringReader(""), stdout, stderr).RunAsync(DmsetupCommand.ParseDmstats(["report", "nope"]));
        Assert.Equal(1, code);
        Assert.StartsWith("device-mapper: stats ioctl on nope", stderr.ToString());
    }
}
