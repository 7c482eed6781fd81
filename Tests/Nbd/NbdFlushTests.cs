using DmActors.Tests.Core;
using DmActors.Tests.Support;
using Xunit;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Tests.Nbd;

/// <summary>NBD_CMD_FLUSH promises the writes already answered, and only those: it waits for no IO in flight.</summary>
[Collection(NbdCollection.Name)]
public sealed class NbdFlushTests(NbdFixture fx)
{
    [Theory]
    [InlineData(BarrierMode.Ordered)]
    [InlineData(BarrierMode.Flush)]
    public async Task A_flush_is_answered_while_an_unrelated_write_is_still_in_flight(BarrierMode mode)
    {
        var events = new List<IoEvent>();
        var gate = fx.Disks.Add(new GateDisk($"gate-{mode}", 2048, events, fx.Disks.NextDevNo()));
        var name = $"export-gate-{mode}";
        Assert.IsType<Dm.Done>(await fx.AskAsync(new Dm.Create(name, $"0 2048 linear {gate.Name} 0", Mode: mode)));
        using var c = RawNbdClient.Open(fx.Port, name);
        Assert.Equal(0u, c.Write(0, RawNbdClient.Pattern(4096, 1)));
        gate.Hold = b => b.Op == BioOp.Write && b.Sector == 64;
        c.SendRequest(Cmd.Write, 1, 64 * 512, 4096, RawNbdClient.Pattern(4096, 2));
        Poll.Until(() => gate.HeldCount == 1, "the second write at the disk");

        c.SendRequest(Cmd.Flush, 2, 0, 0);
        var flush = c.ReadReply();                             // before the held write's reply
        Assert.Equal((2ul, 0u), (flush.Cookie, flush.Error));
        lock (events) Assert.Contains(events, e => !e.Start && e.Op == BioOp.Flush);

        gate.Release();
        var write = c.ReadReply();
        Assert.Equal((1ul, 0u), (write.Cookie, write.Error));
    }
}
