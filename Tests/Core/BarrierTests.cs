using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>Every behaviour of the founding patch (dm: implement basic barrier support), observed at the disk.</summary>
public sealed class BarrierTests : DeviceHarness
{
    private static bool IsWrite(Bio b) => b.Op == BioOp.Write;

    [Fact]
    public void Barrier_waits_for_earlier_io_then_is_issued_as_a_plain_write_and_later_io_waits_for_it()
    {
        var d0 = Gate("d0");
        var dev = Create("bar", "0 8192 linear d0 0");
        var p = CreateTestProbe();
        d0.Hold = IsWrite;

        var w1 = Write(0, Pattern(8, 1), p);
        var w2 = Write(100, Pattern(8, 2), p);
        var barrier = Write(200, Pattern(8, 3), p, BioFlags.Barrier);
        var w3 = Write(300, Pattern(8, 4), p);
        dev.Tell(w1); dev.Tell(w2); dev.Tell(barrier); dev.Tell(w3);

        Eventually(() => d0.HeldCount == 2, "W1 and W2 at the disk");
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        Assert.DoesNotContain(Events(), e => e.Start && e.Op == BioOp.Write && e.Sector >= 200); // drain first

        d0.Release();                                    // W1, W2 complete
        Eventually(() => d0.HeldCount == 1, "the barrier's data at the disk");
        var barrierWrite = Events(e => e.Start && e.Sector == 200).Single();
        Assert.Equal(BioFlags.None, barrierWrite.Flags & BioFlags.Barrier); // converted to a non-barrier write
        Assert.DoesNotContain(Events(), e => e.Start && e.Sector == 300); // W3 waits behind the barrier

        d0.Hold = _ => false;
        d0.Release();
        var done = p.ReceiveN(4, Wait).Cast<BioDone>().ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        Assert.Equal(new[] { w1, w2, barrier }, done.Take(3).Select(d => d.Bio).OrderBy(b => b.Sector));
        Assert.Same(w3, done[3].Bio);

        // Order at the disk: W1,W2 done < flush < barrier write < its completion < flush < W3 start.
        var ev = Events();
        long At(Func<IoEvent, bool> f) => ev.First(f).Seq;
        var drained = ev.Where(e => !e.Start && e.Op == BioOp.Write && e.Sector < 200).Max(e => e.Seq);
        var preflush = At(e => e.Start && e.Op == BioOp.Flush);
        var dataStart = At(e => e.Start && e.Sector == 200);
        var dataDone = At(e => !e.Start && e.Sector == 200);
        var postflush = ev.Where(e => e.Start && e.Op == BioOp.Flush).Select(e => e.Seq).Last();
        var w3Start = At(e => e.Start && e.Sector == 300);
        Assert.True(drained < preflush && preflush < dataStart && dataDone < postflush && postflush < w3Start,
            string.Join("\n", ev));
    }

    [Fact]
    public void In_ordered_mode_a_preflush_write_is_a_barrier_it_drains_first()
    {
        var d0 = Gate("d0");
        var dev = Create("bar", "0 8192 linear d0 0");
        var p = CreateTestProbe();
        d0.Hold = b => b.Op == BioOp.Write && b.Sector == 0;
        var w1 = Write(0, Pattern(8, 1), p);
        var pf = Write(64, Pattern(8, 2), p, BioFlags.Preflush | BioFlags.Fua);
        dev.Tell(w1); dev.Tell(pf);
        Eventually(() => d0.HeldCount == 1, "W1 at the disk");
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        Assert.DoesNotContain(Events(), e => e.Sector == 64 || e.Op == BioOp.Flush);
        d0.Release();
        Assert.Equal(new[] { w1, pf }, p.ReceiveN(2, Wait).Cast<BioDone>().Select(d => d.Bio));
        Assert.Equal(BioFlags.Fua, Events(e => e.Start && e.Sector == 64).Single().Flags); // FUA kept, preflush done by the device
    }

    [Fact]
    public void Barrier_error_goes_to_the_barrier_only_and_later_io_proceeds()
    {
        var d0 = Gate("d0");
        var dev = Create("bar", "0 8192 linear d0 0");
        d0.Fail = b => b.Op == BioOp.Write && b.Sector == 200 ? BioStatus.IoError : null;
        var p = CreateTestProbe();
        var before = Write(0, Pattern(8, 1), p);
        var barrier = Write(200, Pattern(8, 2), p, BioFlags.Barrier);
        var after = Write(300, Pattern(8, 3), p);
        dev.Tell(before); dev.Tell(barrier); dev.Tell(after);

        var done = p.ReceiveN(3, Wait).Cast<BioDone>().ToDictionary(d => d.Bio, d => d.Status);
        Assert.Equal(BioStatus.Ok, done[before]);
        Assert.Equal(BioStatus.IoError, done[barrier]);
        Assert.Equal(BioStatus.Ok, done[after]);
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(50));
    }

    [Fact]
    public void Only_one_barrier_is_in_flight_a_second_waits_its_turn()
    {
        var d0 = Gate("d0");
        var dev = Create("bar", "0 8192 linear d0 0");
        d0.Hold = IsWrite;
        var p = CreateTestProbe();
        var b1 = Write(100, Pattern(8, 1), p, BioFlags.Barrier);
        var b2 = Write(200, Pattern(8, 2), p, BioFlags.Barrier);
        dev.Tell(b1); dev.Tell(b2);

        Eventually(() => d0.HeldCount == 1, "B1 at the disk");
        Settle(dev);                                     // B2 reached the device: from here only B1's completion moves it
        Assert.Equal(1, d0.HeldCount);
        Assert.DoesNotContain(Events(), e => e.Start && e.Sector == 200);
        d0.Release();
        Assert.Same(b1, p.ExpectMsg<BioDone>(Wait).Bio);
        Eventually(() => d0.HeldCount == 1, "B2 at the disk");
        d0.Release();
        Assert.Same(b2, p.ExpectMsg<BioDone>(Wait).Bio);
    }

    [Fact]
    public void Empty_barrier_completes_after_the_drain_and_flushes_the_cache()
    {
        var d0 = Gate("d0");
        var dev = Create("bar", "0 8192 linear d0 0");
        d0.Hold = IsWrite;
        var p = CreateTestProbe();
        var w = Write(0, Pattern(8, 1), p);
        var empty = Bio.Flush(p.Ref);
        dev.Tell(w); dev.Tell(empty);
        Eventually(() => d0.HeldCount == 1, "the write at the disk");
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // the empty barrier waits for the write
        Assert.DoesNotContain(Events(), e => e.Op == BioOp.Flush);
        d0.Release();
        var done = p.ReceiveN(2, Wait).Cast<BioDone>().ToList();
        Assert.Same(w, done[0].Bio);
        Assert.Same(empty, done[1].Bio);
        Assert.Equal(BioStatus.Ok, done[1].Status);
        Assert.Single(Events(e => e.Start && e.Op == BioOp.Flush)); // empty: one flush, no data
    }

    [Fact]
    public void Without_a_live_table_a_bio_fails_and_a_barrier_reports_eio_as_its_barrier_error()
    {
        Ok(new Dm.Create("bare"));
        Assert.False(Info("bare").LiveTable);
        var dev = DeviceActor("bare"); // the manager refuses to open a device without a table: go to the actor
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.IoError, Run(dev, Write(0, Pattern(1, 1), p)));
        Assert.Equal(BioStatus.IoError, RunOnce(dev, Write(0, Pattern(1, 1), p, BioFlags.Barrier)));
        Assert.Equal(BioStatus.IoError, RunOnce(dev, Bio.Flush(p.Ref))); // an empty barrier too: nothing was flushed
    }

    [Fact]
    public void Barrier_data_on_a_cache_disk_is_durable_when_it_completes()
    {
        var mem = new MemoryDisk("m0", 8192, Disks.NextDevNo());
        var cache = Disks.Add(new CachedDisk(mem));
        var dev = Create("dur", "0 8192 linear m0 0");
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(8, 1), p)));
        Assert.Equal(BioStatus.Ok, RunOnce(dev, Write(64, Pattern(8, 2), p, BioFlags.Barrier)));
        Assert.Equal(BioStatus.Ok, Run(dev, Write(128, Pattern(8, 3), p)));
        Assert.True(cache.CachedSectors > 0);
        cache.PowerCut();

        var survived = new byte[8 * 512];
        mem.ReadAt(0, survived);
        Assert.Equal(Pattern(8, 1), survived);          // completed before the barrier: durable
        mem.ReadAt(64 * 512, survived);
        Assert.Equal(Pattern(8, 2), survived);          // the barrier's own data: durable
        mem.ReadAt(128 * 512, survived);
        Assert.Equal(new byte[8 * 512], survived);      // after the barrier, never flushed: lost with the cache
    }

    private IActorRef DeviceActor(string name) =>
        Sys.ActorSelection($"/user/devices/dm-{Info(name).Minor}").ResolveOne(Wait).Result;
}
