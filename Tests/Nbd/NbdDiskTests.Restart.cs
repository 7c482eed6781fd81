using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Nbd;

/// <summary>
/// NbdDisk and a server that restarted: answered writes its write-back cache held are gone with it, so the first
/// flush after the disk lost every connection fails (once) instead of covering them on the new server.
/// </summary>
public sealed partial class NbdDiskTests
{
    /// <summary>nbdkit serving <paramref name="file"/> through a write-back cache: a write lives only in nbdkit until a flush.</summary>
    private NbdKit StartCachingNbdkit(string file) => StartNbdkit("--filter=cache", "file", file, "cache=writeback");

    [Fact]
    public async Task A_flush_after_a_restart_of_the_server_that_lost_answered_writes_fails_once()
    {
        var file = _dir["cached.img"];
        File.WriteAllBytes(file, new byte[4 << 20]);
        var kit = StartCachingNbdkit(file);
        var endpoint = kit.Endpoint;
        var disk = Connect(() => endpoint, "");
        Assert.True(disk.HasVolatileCache);
        var data = RawNbdClient.Pattern(8192, 21);
        await Write(disk, 16, data); // answered, not flushed: only nbdkit's cache has it

        Assert.Equal(0, disk.WritesLost);
        kit.Dispose(); // SIGKILL: the cache is lost
        await Poll.UntilAsync(() => Task.FromResult(!disk.IsConnected), "the disk to see the server die");
        Assert.Equal(1, disk.WritesLost); // said at once, before any flush (a mirror fails the leg on it)
        var again = StartCachingNbdkit(file);
        endpoint = again.Endpoint; // the same export, a new server process
        Assert.NotEqual(data, await Read(disk, 16, data.Length)); // the write is really gone

        Assert.Equal(BioStatus.IoError, await _io.Run(disk, OpBio(BioOp.Flush)));
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, OpBio(BioOp.Flush))); // reported once
        await Write(disk, 16, data);
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, OpBio(BioOp.Flush)));
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
    }

    [Fact]
    public async Task A_flush_held_while_the_server_is_down_fails_on_the_new_server_when_answered_writes_were_lost()
    {
        var file = _dir["cached.img"];
        File.WriteAllBytes(file, new byte[4 << 20]);
        var kit = StartCachingNbdkit(file);
        var endpoint = kit.Endpoint;
        var disk = Connect(() => endpoint, "", new NbdDiskOptions { ReconnectFor = TimeSpan.FromMinutes(5) });
        await Write(disk, 0, RawNbdClient.Pattern(4096, 22));
        kit.Dispose();
        await Poll.UntilAsync(() => Task.FromResult(!disk.IsConnected), "the disk to see the server die");
        var flush = _io.Start(disk, OpBio(BioOp.Flush)); // waits for a connection
        var again = StartCachingNbdkit(file);
        endpoint = again.Endpoint;
        Assert.Equal(BioStatus.IoError, await flush.WaitAsync(Wait));
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, OpBio(BioOp.Flush)));
    }

    [Fact]
    public async Task A_restart_after_every_answered_write_was_flushed_or_fua_fails_no_flush()
    {
        var file = _dir["cached.img"];
        File.WriteAllBytes(file, new byte[4 << 20]);
        var kit = StartCachingNbdkit(file);
        var endpoint = kit.Endpoint;
        var disk = Connect(() => endpoint, "");
        var (flushed, fua) = (RawNbdClient.Pattern(4096, 23), RawNbdClient.Pattern(4096, 24));
        await Write(disk, 0, flushed);
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, OpBio(BioOp.Flush)));
        await Write(disk, 8, fua, BioFlags.Fua); // durable when answered

        kit.Dispose();
        await Poll.UntilAsync(() => Task.FromResult(!disk.IsConnected), "the disk to see the server die");
        var again = StartCachingNbdkit(file);
        endpoint = again.Endpoint;
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, OpBio(BioOp.Flush)));
        Assert.Equal(0, disk.WritesLost);
        Assert.Equal(flushed, await Read(disk, 0, 4096));
        Assert.Equal(fua, await Read(disk, 8, 4096));
    }

    [Fact]
    public async Task Losing_one_connection_of_a_multi_conn_export_while_another_stays_up_fails_no_flush()
    {
        using var server = new ScriptedNbdServer(multiConn: true);
        var disk = Connect(server.Endpoint, "x", new NbdDiskOptions { Connections = 2 });
        await Poll.UntilAsync(() => Task.FromResult(disk.Connections == 2), "two connections");
        await Write(disk, 0, RawNbdClient.Pattern(4096, 25)); // not flushed
        // The first connection closes on a read (which goes again on the other); the server, and its cache, stays.
        server.Script = r => r.Connection == 1 && r.Type == ScriptedNbdServer.Read ? ScriptedAction.Close : ScriptedAction.Answer;
        await Poll.UntilAsync(async () =>
        {
            await Read(disk, 0, 512);
            return disk.LastFailure != null;
        }, "the first connection to close");
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, OpBio(BioOp.Flush)));
        Assert.Equal(0, disk.WritesLost);
    }

    [Fact]
    public async Task A_write_abandoned_while_it_waited_for_a_reconnect_never_reaches_the_new_server()
    {
        var file = _dir["abandon.img"];
        File.WriteAllBytes(file, new byte[4 << 20]);
        var kit = StartNbdkit("file", file);
        var endpoint = kit.Endpoint;
        var disk = Connect(() => endpoint, "", new NbdDiskOptions { ReconnectFor = TimeSpan.FromMinutes(5) });
        await Write(disk, 0, RawNbdClient.Pattern(4096, 30));
        kit.Dispose();
        await Poll.UntilAsync(() => Task.FromResult(!disk.IsConnected), "the disk to see the server die");

        // Both wait for a connection; the first one's submitter is told it failed meanwhile (a crashed target actor).
        var (stale, kept) = (WriteBio(0, RawNbdClient.Pattern(4096, 31)), WriteBio(64, RawNbdClient.Pattern(4096, 32)));
        var (staleDone, keptDone) = (_io.Start(disk, stale), _io.Start(disk, kept));
        stale.Abandon();
        var again = StartNbdkit("file", file);
        endpoint = again.Endpoint;

        Assert.Equal(BioStatus.IoError, await staleDone.WaitAsync(Wait));
        Assert.Equal(BioStatus.Ok, await keptDone.WaitAsync(Wait));
        Assert.Equal(RawNbdClient.Pattern(4096, 30), await Read(disk, 0, 4096)); // not the abandoned data
        Assert.Equal(RawNbdClient.Pattern(4096, 32), await Read(disk, 64, 4096));
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
    }
}
