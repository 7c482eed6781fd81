using System.Runtime.InteropServices;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Nbd;

/// <summary>
/// NbdDisk when the server stops answering, answers garbage, closes, or the disk is aborted: every request is
/// answered exactly once, within the request timeout, and nothing hangs.
/// </summary>
public sealed partial class NbdDiskTests
{
    private const int SigCont = 18;
    [DllImport("libc", SetLastError = true)] private static extern int kill(int pid, int signal);

    [Fact]
    public async Task A_paused_server_times_out_each_request_with_IoError_once_and_serves_again_once_continued()
    {
        var kit = StartNbdkit("memory", "16M");
        var disk = Connect(kit.Endpoint, "", new NbdDiskOptions { RequestTimeout = TimeSpan.FromMilliseconds(500) });
        await Write(disk, 0, RawNbdClient.Pattern(4096, 1));
        HostProcess.Pause(kit.Pid); // as a disk node under SIGSTOP; every thread stopped, so none takes the write
        try
        {
            var write = _io.Start(disk, WriteBio(8, RawNbdClient.Pattern(4096, 2)));
            var read = _io.Start(disk, ReadBio(0, new byte[4096]));
            var flush = _io.Start(disk, OpBio(BioOp.Flush));
            Assert.Equal(BioStatus.IoError, await write.WaitAsync(Wait));
            Assert.Equal(BioStatus.IoError, await read.WaitAsync(Wait));
            Assert.Equal(BioStatus.IoError, await flush.WaitAsync(Wait));
            Assert.Contains("no answer from the server", disk.LastFailure);
        }
        finally { kill(kit.Pid, SigCont); }
        var data = RawNbdClient.Pattern(4096, 3);
        // Patient: under a loaded CI the reconnect after SIGCONT once took longer than the default wait; the message
        // names the disk's last failure, so a disk that never comes back says why.
        try
        {
            await Poll.UntilAsync(async () => await _io.Run(disk, WriteBio(16, data)) == BioStatus.Ok,
                "a write to succeed once the server continues", TimeSpan.FromSeconds(90));
        }
        catch (Exception e) { throw new Xunit.Sdk.XunitException($"{e.Message}; the disk's last failure: {disk.LastFailure}"); }
        Assert.Equal(data, await Read(disk, 16, 4096));
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
    }

    [Theory]
    [InlineData(ScriptedAction.Garbage)]
    [InlineData(ScriptedAction.WrongCookie)]
    [InlineData(ScriptedAction.Close)]
    public async Task A_broken_connection_fails_its_writes_and_flushes_once_resends_its_reads_and_reconnects(ScriptedAction breaks)
    {
        using var server = new ScriptedNbdServer();
        var disk = Connect(server.Endpoint, "x", new NbdDiskOptions { Connections = 1 });
        // The first connection holds a write and a read, then breaks on the flush; later ones answer.
        server.Script = r => r.Connection > 1 ? ScriptedAction.Answer : r.Type == ScriptedNbdServer.Flush ? breaks : ScriptedAction.Hold;
        var write = _io.Start(disk, WriteBio(0, RawNbdClient.Pattern(4096, 1)));
        var into = RawNbdClient.Pattern(4096, 2);
        var read = _io.Start(disk, ReadBio(8, into));
        await Poll.UntilAsync(() => Task.FromResult(server.HeldCount == 2), "the server to hold the write and the read");
        var flush = _io.Start(disk, OpBio(BioOp.Flush));
        // The write may have landed (or may land later): the bio hears so, rather than a silent second try.
        Assert.Equal(BioStatus.IoError, await write.WaitAsync(Wait));
        Assert.Equal(BioStatus.IoError, await flush.WaitAsync(Wait));
        Assert.Equal(BioStatus.Ok, await read.WaitAsync(Wait));
        Assert.Equal(new byte[4096], into);
        Assert.True(disk.Reconnects >= 1);
        var data = RawNbdClient.Pattern(4096, 3);
        await Write(disk, 16, data);
        Assert.Equal(data, server.Memory(16 * 512, 4096));
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
        Assert.Equal(4, _io.Completions.Count);
    }

    [Fact]
    public async Task A_reply_after_the_timeout_is_ignored_and_each_request_is_answered_once()
    {
        using var server = new ScriptedNbdServer();
        server.Script = r => r.Connection == 1 && r.Type == ScriptedNbdServer.Write ? ScriptedAction.Hold : ScriptedAction.Answer;
        var disk = Connect(server.Endpoint, "x", new NbdDiskOptions { RequestTimeout = TimeSpan.FromMilliseconds(300), Connections = 1 });
        var writes = Enumerable.Range(0, 4).Select(i => _io.Start(disk, WriteBio(i * 8, new byte[4096]))).ToArray();
        Assert.All(await Task.WhenAll(writes).WaitAsync(Wait), s => Assert.Equal(BioStatus.IoError, s));
        server.ReplyHeld(); // the server wakes up and answers them all
        var data = RawNbdClient.Pattern(4096, 4);
        await Write(disk, 64, data);
        Assert.Equal(data, await Read(disk, 64, 4096));
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
        Assert.Equal(6, _io.Completions.Count);
    }

    [Fact]
    public async Task Abort_fails_everything_in_flight_and_waiting_at_once_and_never_reconnects()
    {
        using var server = new ScriptedNbdServer(multiConn: true);
        server.Script = _ => ScriptedAction.Hold;
        var disk = Connect(server.Endpoint, "x", new NbdDiskOptions { RequestTimeout = TimeSpan.FromMinutes(10), MaxInFlight = 2, Connections = 1 });
        var ios = Enumerable.Range(0, 6)
            .Select(i => _io.Start(disk, i % 2 == 0 ? WriteBio(i * 8, new byte[4096]) : ReadBio(i * 8, new byte[4096]))).ToArray();
        await Poll.UntilAsync(() => Task.FromResult(server.HeldCount == 2), "two requests on the wire, four waiting");
        disk.Abort("member n3 was removed from the cluster");
        Assert.All(ios, io => Assert.True(io.IsCompleted, "a request still waits after Abort returned"));
        Assert.All(await Task.WhenAll(ios), s => Assert.Equal(BioStatus.IoError, s));
        Assert.Equal(BioStatus.IoError, await _io.Run(disk, WriteBio(0, new byte[512])));
        Assert.Equal("member n3 was removed from the cluster", disk.LastFailure);
        Assert.False(disk.IsConnected);
        await Task.Delay(300); // many backoffs (20 ms at first): a reconnect would have happened by now
        Assert.Equal(1, server.Connections);
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
    }

    [Fact]
    public async Task A_multi_conn_export_is_served_over_several_connections_and_a_plain_one_over_one()
    {
        using var multi = new ScriptedNbdServer(multiConn: true);
        var disk = Connect(multi.Endpoint, "x", new NbdDiskOptions { Connections = 3 });
        await Poll.UntilAsync(() => Task.FromResult(disk.Connections == 3), "three connections");
        var data = Enumerable.Range(0, 48).Select(i => RawNbdClient.Pattern(4096, i)).ToArray();
        Assert.All(await Task.WhenAll(data.Select((d, i) => _io.Start(disk, WriteBio(i * 8, d)))).WaitAsync(Wait), s => Assert.Equal(BioStatus.Ok, s));
        for (var i = 0; i < data.Length; i++) Assert.Equal(data[i], multi.Memory(i * 8 * 512, 4096));
        Assert.True(multi.Requests.Select(r => r.Connection).Distinct().Count() > 1, "every request went over one connection");

        using var plain = new ScriptedNbdServer(multiConn: false);
        var one = Connect(plain.Endpoint, "x", new NbdDiskOptions { Connections = 3 });
        Assert.All(await Task.WhenAll(data.Select((d, i) => _io.Start(one, WriteBio(i * 8, d)))).WaitAsync(Wait), s => Assert.Equal(BioStatus.Ok, s));
        Assert.Equal(1, plain.Connections);
        Assert.Equal(1, one.Connections);
    }
}

/// <summary>NbdDisk and ESHUTDOWN: a request the server did not perform is held and sent again, never failed or run twice.</summary>
public sealed partial class NbdDiskTests
{
    [Fact]
    public async Task Writes_and_flushes_answered_ESHUTDOWN_are_sent_again_on_a_new_connection_and_succeed_once()
    {
        using var server = new ScriptedNbdServer();
        var disk = Connect(server.Endpoint, "x", new NbdDiskOptions { Connections = 1 });
        // The first connection takes a write, another write and a flush, then answers each one ESHUTDOWN; later ones serve.
        server.Script = r => r.Connection == 1 ? ScriptedAction.Hold : ScriptedAction.Answer;
        var (a, b) = (RawNbdClient.Pattern(4096, 5), RawNbdClient.Pattern(4096, 6));
        var first = _io.Start(disk, WriteBio(0, a));
        var second = _io.Start(disk, WriteBio(8, b));
        var flush = _io.Start(disk, OpBio(BioOp.Flush));
        await Poll.UntilAsync(() => Task.FromResult(server.HeldCount == 3), "the server to hold two writes and a flush");
        Assert.True(server.ReplyHeld(error: 108));
        // Not performed, so not failed: the three go again on the next connection, after the first one drained.
        Assert.Equal(BioStatus.Ok, await first.WaitAsync(Wait));
        Assert.Equal(BioStatus.Ok, await second.WaitAsync(Wait));
        Assert.Equal(BioStatus.Ok, await flush.WaitAsync(Wait));
        Assert.Equal(a, server.Memory(0, 4096));
        Assert.Equal(b, server.Memory(8 * 512, 4096));
        Assert.Equal(2, server.Connections);
        Assert.Equal(2, server.Requests.Count(r => r.Type == ScriptedNbdServer.Write && r.Connection == 2)); // each sent again once
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
    }

    [Fact]
    public async Task A_server_that_keeps_answering_ESHUTDOWN_fails_the_request_after_the_reconnect_bound()
    {
        using var server = new ScriptedNbdServer();
        server.Script = _ => ScriptedAction.Shutdown;
        var disk = Connect(server.Endpoint, "x", new NbdDiskOptions { Connections = 1, ReconnectFor = TimeSpan.FromMilliseconds(500) });
        // Bounced from connection to connection, it gives up with EIO once it has waited ReconnectFor, not never.
        Assert.Equal(BioStatus.IoError, await _io.Start(disk, WriteBio(0, new byte[4096])).WaitAsync(Wait));
        Assert.True(server.Connections > 1, "the request was never sent again");
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
    }
}
