using DmActors;
using DmActors.Tests.Core;
using DmActors.Tests.Support;
using Xunit;
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
}
