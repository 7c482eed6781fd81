using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>
/// The NoDrain flush (an NBD FLUSH, REQ_PREFLUSH's promise): it covers the writes completed before it and waits
/// for nothing still in flight, in both barrier modes; barriers keep their drain.
/// </summary>
public sealed class CompletedWritesFlushTests : DeviceHarness
{
    [Theory]
    [InlineData(BarrierMode.Ordered)]
    [InlineData(BarrierMode.Flush)]
    public void A_nodrain_flush_completes_while_an_unrelated_write_is_held_in_flight(BarrierMode mode)
    {
        var d0 = Gate("d0");
        var dev = Create("nd", "0 8192 linear d0 0", mode);
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(500, Pattern(1, 1), p))); // completed: the flush must cover it
        d0.Hold = b => b.Op == BioOp.Write && b.Sector == 0;
        var unrelated = Write(0, Pattern(8, 2), p);
        dev.Tell(unrelated);
        Eventually(() => d0.HeldCount == 1, "the unrelated write at the disk");

        var flush = Bio.FlushCompleted(p.Ref);
        dev.Tell(flush);
        var done = p.ExpectMsg<BioDone>(Wait);                 // no drain: answered while the write is held
        Assert.Same(flush, done.Bio);
        Assert.Equal(BioStatus.Ok, done.Status);
        Assert.Equal(1, d0.HeldCount);
        Assert.Single(Events(e => !e.Start && e.Op == BioOp.Flush)); // it really flushed the disk's cache

        d0.Release();
        Assert.Same(unrelated, p.ExpectMsg<BioDone>(Wait).Bio);
    }

    [Theory]
    [InlineData(BarrierMode.Ordered)]
    [InlineData(BarrierMode.Flush)]
    public void Writes_answered_before_a_nodrain_flush_survive_a_power_cut_while_other_io_is_in_flight(BarrierMode mode)
    {
        var mem = new MemoryDisk("m0", 1024, Disks.NextDevNo());
        var cache = Disks.Add(new CachedDisk(mem));
        var g1 = Gate("g1", 1024);
        var dev = Create("dur", "0 1024 linear m0 0\n1024 1024 linear g1 0", mode);
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(8, Pattern(8, 1), p)));
        g1.Hold = b => b.Op == BioOp.Write;
        var held = Write(1100, Pattern(8, 2), p);
        dev.Tell(held);
        Eventually(() => g1.HeldCount == 1, "the write to the other disk");
        Assert.Equal(8, cache.CachedSectors);

        Assert.Equal(BioStatus.Ok, Run(dev, Bio.FlushCompleted(p.Ref)));
        Assert.Equal(0, cache.CachedSectors);
        Assert.Equal(BioStatus.Ok, Run(dev, Write(64, Pattern(8, 3), p))); // after the flush: not covered
        cache.PowerCut();
        var got = new byte[8 * 512];
        mem.ReadAt(8 * 512, got);
        Assert.Equal(Pattern(8, 1), got);                      // answered before the flush: durable
        mem.ReadAt(64 * 512, got);
        Assert.Equal(new byte[8 * 512], got);                  // answered after it, never flushed: lost

        g1.Release();
        Assert.Same(held, p.ExpectMsg<BioDone>(Wait).Bio);
    }

    [Fact]
    public void In_ordered_mode_a_nodrain_flush_waits_behind_a_barrier_in_flight()
    {
        // Barriers keep the founding patch's drain and hold what arrives behind them, flushes included.
        var d0 = Gate("d0");
        var dev = Create("bar", "0 8192 linear d0 0");
        var p = CreateTestProbe();
        d0.Hold = b => b.Op == BioOp.Write && b.Sector == 0;
        var w = Write(0, Pattern(8, 1), p);
        var barrier = Write(100, Pattern(8, 2), p, BioFlags.Barrier);
        var flush = Bio.FlushCompleted(p.Ref);
        dev.Tell(w); dev.Tell(barrier); dev.Tell(flush);
        Eventually(() => d0.HeldCount == 1, "the write at the disk");
        Settle(dev);
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        Assert.DoesNotContain(Events(), e => e.Op == BioOp.Flush || e.Sector == 100);
        d0.Release();
        Assert.Equal(new[] { w, barrier, flush }, p.ReceiveN(3, Wait).Cast<BioDone>().Select(d => d.Bio));
    }

    [Fact]
    public void A_flush_through_an_ordered_device_does_not_drain_the_ordered_device_below()
    {
        // The flush an upper device sends below covers only writes that already completed there.
        var d0 = Gate("d0");
        Ok(new Dm.Create("lower", "0 8192 linear d0 0"));
        var lower = Open("lower");
        var top = Create("top", "0 4096 linear lower 0");
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(top, Write(8, Pattern(1, 1), p)));
        d0.Hold = b => b.Op == BioOp.Write && b.Sector == 6000;  // another user of the lower device, in flight
        var other = Write(6000, Pattern(8, 2), p);
        lower.Tell(other);
        Eventually(() => d0.HeldCount == 1, "the other write at the disk");
        Assert.Equal(BioStatus.Ok, Run(top, Write(16, Pattern(1, 3), p, BioFlags.Barrier)));
        Assert.Equal(1, d0.HeldCount);
        d0.Release();
        Assert.Same(other, p.ExpectMsg<BioDone>(Wait).Bio);
    }
}
