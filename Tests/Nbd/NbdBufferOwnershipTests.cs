using DmActors;
using DmActors.Tests.Core;
using DmActors.Tests.Support;
using Xunit;
using DmActors.Host.Nbd;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Tests.Nbd;

/// <summary>
/// Who owns a request's buffer when its bio is answered before the IO below it ended. A crashed target actor
/// answers the clones it held with EIO while the disk still has them (so does a remove or a barrier that times
/// out): the disk may still read into the buffer later, so the connection must not give it to another request.
/// </summary>
[Collection(NbdCollection.Name)]
public sealed class NbdBufferOwnershipTests(NbdFixture fx)
{
    private const int Chunk = 64 << 10, Count = 32, ChunkSectors = Chunk >> 9;

    [Fact]
    public async Task A_read_answered_with_an_error_while_its_disk_still_has_it_never_lands_in_another_requests_buffer()
    {
        TargetTypes.Register<Crashy>();
        var gate = new GateDisk($"owngate{Guid.NewGuid():N}"[..16], 2 * Count * ChunkSectors, new List<IoEvent>(), fx.Disks.NextDevNo());
        fx.Disks.Add(gate);
        var name = await fx.CreateTableExportAsync($"0 {gate.Sectors} crashy {gate.Name}");
        using var c = RawNbdClient.Open(fx.Port, name);
        const ulong WritesAt = (ulong)Count * Chunk; // reads in the first half, writes in the second
        for (var i = 0; i < Count; i++) Assert.Equal(0u, c.Write((ulong)(i * Chunk), RawNbdClient.Pattern(Chunk, i)));

        // 32 reads the disk holds; then a write to sector 13 crashes the target actor, which answers them EIO.
        gate.Hold = b => b.Op == BioOp.Read && b.Sector < (long)WritesAt >> 9;
        for (var i = 0; i < Count; i++) c.SendRequest(Cmd.Read, (ulong)i, (ulong)(i * Chunk), Chunk);
        await Poll.UntilAsync(() => Task.FromResult(gate.HeldCount == Count), "the disk to hold the reads");
        c.SendRequest(Cmd.Write, 1000, 13 * 512, 512, new byte[512]);
        for (var i = 0; i <= Count; i++) Assert.NotEqual(0u, c.ReadReply().Error);

        // New writes rent buffers (the pool would hand out the reads' buffers first) and wait at the disk too.
        gate.Hold = b => (b.Op == BioOp.Read && b.Sector < (long)WritesAt >> 9) || (b.Op == BioOp.Write && b.Sector >= (long)WritesAt >> 9);
        for (var i = 0; i < Count; i++)
            c.SendRequest(Cmd.Write, 2000 + (ulong)i, WritesAt + (ulong)(i * Chunk), Chunk, RawNbdClient.Pattern(Chunk, 100 + i));
        await Poll.UntilAsync(() => Task.FromResult(gate.HeldCount == 2 * Count), "the disk to hold the writes too");

        // The old reads end first and fill whatever buffers they still point at; then the writes run.
        gate.Release(b => b.Op == BioOp.Read);
        gate.Hold = _ => false;
        gate.Release();
        for (var i = 0; i < Count; i++) Assert.Equal(0u, c.ReadReply().Error);
        for (var i = 0; i < Count; i++)
            Assert.True(RawNbdClient.Pattern(Chunk, 100 + i).AsSpan().SequenceEqual(c.Read(WritesAt + (ulong)(i * Chunk), Chunk)),
                $"write {i} landed with another request's data");
    }

    [Fact]
    public async Task A_write_of_a_client_that_vanished_never_lands_after_its_retry_on_a_new_connection()
    {
        var gate = new GateDisk($"gonegate{Guid.NewGuid():N}"[..16], 4096, new List<IoEvent>(), fx.Disks.NextDevNo());
        fx.Disks.Add(gate);
        var name = await fx.CreateTableExportAsync($"0 {gate.Sectors} linear {gate.Name} 0");
        await using var server = await fx.StartServerAsync(new NbdServerOptions { Tcp = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0) });
        var port = server.TcpEndpoint!.Port;

        // The first client's write waits at the disk (queued, not started); the client vanishes without NBD_CMD_DISC.
        var first = RawNbdClient.Open(port, name);
        gate.Hold = b => b.Op == BioOp.Write;
        first.SendRequest(Cmd.Write, 1, 0, 4096, RawNbdClient.Pattern(4096, 1));
        await Poll.UntilAsync(() => Task.FromResult(gate.HeldCount == 1), "the disk to hold the write");
        first.Abort();
        await Poll.UntilAsync(() => Task.FromResult(server.ConnectionCount == 0), "the server to see the client go");

        // It never heard an answer, so it writes the block again on a new connection; then the disk reaches the old one.
        gate.Hold = _ => false;
        using var second = RawNbdClient.Open(port, name);
        Assert.Equal(0u, second.Write(0, RawNbdClient.Pattern(4096, 2)));
        gate.Release();
        Assert.Equal(RawNbdClient.Pattern(4096, 2), second.Read(0, 4096));
    }

    [Fact]
    public async Task A_write_in_flight_at_nbd_cmd_disc_is_still_written_when_the_drain_gave_up_waiting()
    {
        var gate = new GateDisk($"discgate{Guid.NewGuid():N}"[..16], 4096, new List<IoEvent>(), fx.Disks.NextDevNo());
        fx.Disks.Add(gate);
        var name = await fx.CreateTableExportAsync($"0 {gate.Sectors} linear {gate.Name} 0");
        await using var server = await fx.StartServerAsync(new NbdServerOptions
        {
            Tcp = new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0),
            DrainTimeout = TimeSpan.FromMilliseconds(100),
        });
        var c = RawNbdClient.Open(server.TcpEndpoint!.Port, name);
        gate.Hold = b => b.Op == BioOp.Write;
        c.SendRequest(Cmd.Write, 1, 0, 4096, RawNbdClient.Pattern(4096, 3));
        await Poll.UntilAsync(() => Task.FromResult(gate.HeldCount == 1), "the disk to hold the write");
        // A soft disconnect: the connection closes after the drain timeout, but the client asked for the write.
        c.SendRequest(Cmd.Disc, 2, 0, 0);
        await Poll.UntilAsync(() => Task.FromResult(server.ConnectionCount == 0), "the server to close the connection");
        gate.Hold = _ => false;
        gate.Release();
        c.Dispose();
        var back = new byte[4096];
        gate.Memory.ReadAt(0, back);
        Assert.Equal(RawNbdClient.Pattern(4096, 3), back);
    }
}
