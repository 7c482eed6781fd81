using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// The control channel between `dmactors dmsetup` and the host, with real processes: large tables both ways,
/// messages too large for a frame, hosts that cannot be reached or do not answer, and what the host logs.
/// </summary>
public sealed partial class ControlChannelProcessTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private const string FrameSize = "akka.remote.dot-netty.tcp.maximum-frame-size";

    private static void Ok(HostProcess.CliResult r) => Assert.True(r.Code == 0 && r.Err == "", r.ToString());

    private static void FailsWith(HostProcess.CliResult r, string expectedErr)
    {
        Assert.True(r.Code == 1, r.ToString());
        Assert.Equal(expectedErr, r.Err);
        Assert.Equal("", r.Out);
    }

    /// <summary>Lines of 32 stripes over disk0, each about 400 bytes; as `table` prints them (disk0 is 7:0).</summary>
    private static (string Input, string Printed) StripedTable(int lines)
    {
        var input = new StringBuilder();
        var printed = new StringBuilder();
        for (var i = 0; i < lines; i++)
        {
            var offsets = Enumerable.Range(0, 32).Select(k => (i * 7919L + k * 104729L) % 131064).ToArray();
            input.Append($"{i * 256} 256 striped 32 8 ").AppendJoin(' ', offsets.Select(o => $"disk0 {o}")).Append('\n');
            printed.Append($"{i * 256} 256 striped 32 8 ").AppendJoin(' ', offsets.Select(o => $"7:0 {o}")).Append('\n');
        }
        return (input.ToString(), printed.ToString());
    }

    [Fact]
    public async Task A_10_MiB_table_is_created_and_printed_back()
    {
        using var host = await HostProcess.StartAsync();
        var (input, printed) = StripedTable(26_000);
        Assert.True(input.Length >= 10 << 20, $"the table is only {input.Length} bytes");
        var file = Path.Combine(host.Dir, "big.table");
        File.WriteAllText(file, input);

        Ok(await host.Dmsetup(["create", "big", file]));
        var table = await host.Dmsetup("table big");
        Ok(table);
        Assert.Equal(printed, table.Out);
        var status = await host.Dmsetup("status big");
        Ok(status);
        Assert.Equal(26_000, status.Out.Count(c => c == '\n'));
        Assert.StartsWith("0 256 striped 32 7:0 7:0 ", status.Out);
        // A big table also goes into the inactive slot (load reads it from stdin).
        Ok(await host.Dmsetup(["load", "big"], stdin: input));
        var inactive = await host.Dmsetup("table big --inactive");
        Ok(inactive);
        Assert.Equal(printed, inactive.Out);
    }

    [Fact]
    public async Task Ten_thousand_devices_are_listed_and_queried()
    {
        const int count = 10_000;
        var names = Enumerable.Range(0, count).Select(i => $"dev-{i:00000}").ToList();
        // From the config, without a journal: 10,000 creates at start are quick then. `ls` is one reply of 180 kB.
        using var host = await HostProcess.StartAsync(
            $"devices = [ {string.Join(", ", names.Select(n => $"{{ name = {n}, table = \"0 8 zero\" }}"))} ]\njournal.enabled = off");
        var ls = await host.Dmsetup("ls");
        Ok(ls);
        Assert.Equal(string.Concat(names.Select((n, i) => $"{n}\t(253:{i})\n")), ls.Out);
        var status = await host.Dmsetup("status");
        Ok(status);
        Assert.Equal(string.Concat(names.Select(n => $"{n}: 0 8 zero \n")), status.Out);
    }

    [Fact]
    public async Task A_request_larger_than_a_frame_fails_at_once_naming_its_size_and_the_limit()
    {
        using var host = await HostProcess.StartAsync(after: $"{FrameSize} = 1MiB");
        var table = string.Concat(Enumerable.Range(0, 150_000).Select(i => $"{i * 8} 8 zero\n"));

        var r = await host.Dmsetup(["create", "huge"], stdin: table);
        Assert.True(r.Code == 1, r.ToString());
        var m = TooLarge().Match(r.Err);
        Assert.True(m.Success, r.ToString());
        Assert.Equal("create", m.Groups[1].Value);
        Assert.Equal("the request", m.Groups[2].Value);
        Assert.True(long.Parse(m.Groups[3].Value) > table.Length, r.Err);
        Assert.Equal((1 << 20) - 4096, long.Parse(m.Groups[4].Value));

        // Nothing reached the host, which still serves.
        Assert.Equal("demo\t(253:0)\n", (await host.Dmsetup("ls")).Out);
    }

    [Fact]
    public async Task A_reply_larger_than_a_frame_is_an_error_naming_its_size_and_the_limit()
    {
        using var host = await HostProcess.StartAsync(after: $"{FrameSize} = 1MiB");
        // `table` prints a flakey line twice as long as it was written ("... 2 error_reads error_writes").
        var table = string.Concat(Enumerable.Range(0, 25_000).Select(i => $"{i * 8} 8 flakey disk0 0 1 0\n"));
        Assert.True(table.Length < (1 << 20) - 4096);
        Ok(await host.Dmsetup(["create", "flaky"], stdin: table));

        var r = await host.Dmsetup("table flaky");
        Assert.True(r.Code == 1, r.ToString());
        Assert.Equal("", r.Out);
        var m = TooLarge().Match(r.Err);
        Assert.True(m.Success, r.ToString());
        Assert.Equal("table", m.Groups[1].Value);
        Assert.Equal("the host's reply", m.Groups[2].Value);
        Assert.True(long.Parse(m.Groups[3].Value) > (1 << 20), r.Err);
        Assert.Equal((1 << 20) - 4096, long.Parse(m.Groups[4].Value));
        Ok(await host.Dmsetup("info flaky"));
    }

    [GeneratedRegex(@"^dmactors: (\w+): (the request|the host's reply) is (\d+) bytes, over the control channel's limit of (\d+) bytes \(akka\.remote\.dot-netty\.tcp\.maximum-frame-size\)\n$")]
    private static partial Regex TooLarge();

    [Fact]
    public async Task A_stopped_host_is_one_line_after_the_timeout_and_leaves_no_errors_in_its_log()
    {
        using var host = await HostProcess.StartAsync();
        host.Pause();
        try
        {
            FailsWith(await host.Dmsetup("--timeout 2 ls"), $"dmactors: no answer from the dmactors host at 127.0.0.1:{host.ControlPort} within 2s\n");
            FailsWith(await host.Dmsetup(["ls"], env: new Dictionary<string, string> { ["DMACTORS_TIMEOUT"] = "1.5" }),
                $"dmactors: no answer from the dmactors host at 127.0.0.1:{host.ControlPort} within 1.5s\n");
        }
        finally { host.Continue(); }
        Assert.Equal("demo\t(253:0)\n", (await host.Dmsetup("ls")).Out);

        // The clients that gave up left half-open associations behind; the host meets them once it runs again.
        Assert.Equal(0, await host.TerminateAsync());
        var log = host.Stdout + host.Stderr;
        Assert.DoesNotContain("ERROR", log);
        Assert.DoesNotMatch(StackTraceLine(), log);
    }

    [Fact]
    public async Task A_bad_timeout_is_refused()
    {
        FailsWith(await fixture.Host.Dmsetup("--timeout soon ls"), "dmsetup: --timeout: 'soon' is not a number of seconds\n");
        FailsWith(await fixture.Host.Dmsetup(["ls"], env: new Dictionary<string, string> { ["DMACTORS_TIMEOUT"] = "0" }),
            "dmactors: DMACTORS_TIMEOUT: '0' is not a number of seconds\n");
    }

    [Fact]
    public async Task A_control_client_that_cannot_start_is_one_line_not_a_crash()
    {
        using var dir = new TempDir("dmactors-client-");
        // Akka refuses frames under 32000 bytes when the client's actor system starts (after the host answered TCP).
        var file = dir["client.hocon"];
        File.WriteAllText(file, $"dmactors.control.port = {fixture.Host.ControlPort}\n{FrameSize} = 1000b\n");
        var r = await HostProcess.Run(["dmsetup", "--config", file, "ls"]);
        Assert.True(r.Code == 1, r.ToString());
        Assert.StartsWith("dmactors: cannot start the control client on 127.0.0.1: maximum-frame-size must be at least 32000 bytes", r.Err);
        Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task A_host_name_is_resolved()
    {
        var r = await HostProcess.Run(["dmsetup", "--control", $"localhost:{fixture.Host.ControlPort}", "table", "demo"]);
        Ok(r);
        Assert.Equal("0 131072 linear 7:0 0\n", r.Out);
    }

    [Fact]
    public async Task A_host_name_that_does_not_resolve_is_one_line()
    {
        var r = await HostProcess.Run(["dmsetup", "--control", "nosuchhost.invalid:10810", "ls"]);
        Assert.True(r.Code == 1, r.ToString());
        Assert.StartsWith("dmactors: cannot reach dmactors host at nosuchhost.invalid:10810: ", r.Err);
        Assert.Single(r.Err.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal("", r.Out);
    }

    [Fact]
    public async Task A_port_that_never_accepts_is_one_line_after_the_timeout()
    {
        // An address that does not answer, on loopback: a listener whose accept queue is full drops further SYNs.
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(0);
        var port = ((IPEndPoint)listener.LocalEndPoint!).Port;
        using var filler = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await filler.ConnectAsync(IPAddress.Loopback, port);

        var r = await HostProcess.Run(["dmsetup", "--control", $"127.0.0.1:{port}", "--timeout", "2", "ls"]);
        FailsWith(r, $"dmactors: cannot reach dmactors host at 127.0.0.1:{port}: connect timed out after 2s\n");
    }

    [Fact]
    public async Task Dmsetup_calls_and_garbage_on_the_control_port_leave_no_errors_in_the_host_log()
    {
        using var host = await HostProcess.StartAsync();
        Ok(await host.Dmsetup(["create", "g", "--table", "0 8 zero"]));
        Ok(await host.Dmsetup("table g"));
        Ok(await host.Dmsetup("info g"));
        Ok(await host.Dmsetup("remove g"));

        // Strangers: an HTTP request, random bytes, a frame that is no Akka PDU. Each is one WARNING at most.
        var random = new Random(10);
        byte[] Bytes(int n) { var b = new byte[n]; random.NextBytes(b); return b; }
        byte[][] garbage = [Encoding.ASCII.GetBytes("GET / HTTP/1.0\r\n\r\n"), Bytes(1000), [5, 0, 0, 0, 0x0a, 0x03, (byte)'a', (byte)'b', (byte)'c']];
        foreach (var bytes in garbage)
        {
            using var stranger = new TcpClient();
            await stranger.ConnectAsync(IPAddress.Loopback, host.ControlPort);
            var stream = stranger.GetStream();
            await stream.WriteAsync(bytes);
            // Done once the host has closed the connection: on the garbage, or on our end of it.
            var sink = new byte[4096];
            using var cts = new CancellationTokenSource(HostProcess.CliTimeout);
            try
            {
                stranger.Client.Shutdown(SocketShutdown.Send);
                while (await stream.ReadAsync(sink, cts.Token) > 0) { }
            }
            catch (Exception e) when (e is IOException or SocketException) { } // reset by the host
        }
        Assert.Equal("demo\t(253:0)\n", (await host.Dmsetup("ls")).Out);

        Assert.Equal(0, await host.TerminateAsync());
        var log = host.Stdout + host.Stderr;
        Assert.DoesNotContain("ERROR", log);
        Assert.DoesNotMatch(StackTraceLine(), log);
        var warnings = log.Split('\n').Where(l => l.Contains("WARNING")).ToList();
        Assert.True(warnings.Count <= garbage.Length, log);
        Assert.All(warnings, w => Assert.Contains("does not speak Akka.Remote", w));
        Assert.Equal(warnings.Count, warnings.Select(w => Regex.Match(w, @"from (\S+) ").Value).Distinct().Count());
    }

    [GeneratedRegex(@"(?m)^\s+at ")]
    private static partial Regex StackTraceLine();
}
