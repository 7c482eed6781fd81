using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>Suspend with IO in flight, IO held while suspended, noflush push-back, reload under IO.</summary>
public sealed class SuspendTests : DeviceHarness
{
    [Fact]
    public void Flush_suspend_waits_for_in_flight_io_and_holds_new_io_until_resume_in_order()
    {
        var d0 = Gate("d0");
        var dev = Create("s", "0 8192 linear d0 0");
        var p = CreateTestProbe();
        d0.Hold = b => b.Op == BioOp.Write;
        var inflight = Write(0, Pattern(8, 1), p);
        dev.Tell(inflight);
        Eventually(() => d0.HeldCount == 1, "the in-flight write");

        var suspender = CreateTestProbe();
        Manager.Tell(new Dm.Suspend("s"), suspender.Ref);
        suspender.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // pending IO: suspend not done
        d0.Hold = _ => false;

        var later = Enumerable.Range(0, 5).Select(i => Write(100 + i * 8, Pattern(8, (byte)(10 + i)), p)).ToList();
        foreach (var b in later) dev.Tell(b);
        d0.Release();
        Assert.Same(inflight, p.ExpectMsg<BioDone>(Wait).Bio);
        suspender.ExpectMsg<Dm.Done>(Wait);
        Assert.True(Info("s").Suspended);
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(200));        // held, not failed
        Assert.Single(Events(e => e.Start && e.Op == BioOp.Write)); // nothing reached the disk while suspended

        Ok(new Dm.Resume("s"));
        var done = p.ReceiveN(5, Wait).Cast<BioDone>().ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        var starts = Events(e => e.Start && e.Op == BioOp.Write).Skip(1).Select(e => e.Sector);
        Assert.Equal(later.Select(b => b.Sector), starts);    // replayed in submission order
    }

    [Fact]
    public void While_suspended_readahead_fails_and_nowait_gets_eagain()
    {
        Gate("d0");
        var dev = Create("s", "0 8192 linear d0 0");
        Ok(new Dm.Suspend("s"));
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.IoError, Run(dev, Read(0, 8, p, BioFlags.ReadAhead)));
        Assert.Equal(BioStatus.Again, Run(dev, Read(0, 8, p, BioFlags.NoWait)));
        Ok(new Dm.Resume("s"));
    }

    [Fact]
    public void Noflush_suspend_puts_pushed_back_bios_at_the_head_in_order_and_reissues_them_on_the_new_table()
    {
        var d0 = Gate("d0");
        var d1 = Gate("d1");
        var dev = Create("mp", "0 8192 linear d0 0");
        var p = CreateTestProbe();
        d0.Hold = b => b.Op == BioOp.Write;
        var w1 = Write(0, Pattern(8, 1), p);
        var w2 = Write(8, Pattern(8, 2), p);
        dev.Tell(w1); dev.Tell(w2);
        Eventually(() => d0.HeldCount == 2, "W1 and W2 at d0");

        var suspender = CreateTestProbe();
        dev.Tell(new Dm.Suspend("mp", NoFlush: true), suspender.Ref); // straight to the device: ordered before W3
        var w3 = Write(16, Pattern(8, 3), p);
        dev.Tell(w3);                                        // deferred behind the suspend
        d0.Release(status: BioStatus.Requeue);               // like multipath with no path: push back
        suspender.ExpectMsg<Dm.Done>(Wait);
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(100));       // nobody answered yet

        Ok(new Dm.Load("mp", "0 8192 linear d1 0"));
        Ok(new Dm.Resume("mp"));
        var done = p.ReceiveN(3, Wait).Cast<BioDone>().ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        Assert.Equal(new long[] { 0, 8, 16 }, Events(e => e.Start && e.Disk == "d1").Select(e => e.Sector));
        Assert.Equal(Pattern(8, 2), ReadBack(dev, 8, 8));
        var onD1 = new byte[8 * 512];
        d1.Memory.ReadAt(8 * 512, onD1);
        Assert.Equal(Pattern(8, 2), onD1);
    }

    [Fact]
    public void A_push_back_outside_a_noflush_suspend_becomes_eio()
    {
        var d0 = Gate("d0");
        var dev = Create("mp", "0 8192 linear d0 0");
        d0.Fail = _ => BioStatus.Requeue;
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.IoError, RunOnce(dev, Write(0, Pattern(8, 1), p)));
        Assert.Equal(BioStatus.IoError, RunOnce(dev, Write(0, Pattern(8, 1), p, BioFlags.Barrier)));
    }

    [Fact]
    public void A_pushed_back_barrier_goes_to_the_head_and_completes_after_resume()
    {
        var d0 = Gate("d0");
        var dev = Create("mp", "0 8192 linear d0 0");
        var p = CreateTestProbe();
        d0.Hold = b => b.Op == BioOp.Write;
        var barrier = Write(0, Pattern(8, 1), p, BioFlags.Barrier);
        dev.Tell(barrier);
        Eventually(() => d0.HeldCount == 1, "the barrier's data");
        var suspender = CreateTestProbe();
        dev.Tell(new Dm.Suspend("mp", NoFlush: true), suspender.Ref); // straight to the device: ordered before W3
        var after = Write(64, Pattern(8, 2), p);
        dev.Tell(after);
        d0.Release(status: BioStatus.Requeue);
        suspender.ExpectMsg<Dm.Done>(Wait);
        d0.Hold = _ => false;
        Ok(new Dm.Resume("mp"));
        var done = p.ReceiveN(2, Wait).Cast<BioDone>().ToList();
        Assert.Equal(new[] { barrier, after }, done.Select(d => d.Bio));
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
    }

    [Fact]
    public void Io_pushed_back_while_a_barrier_drains_replays_before_the_barrier()
    {
        var d0 = Gate("d0");
        var dev = Create("mp", "0 8192 linear d0 0");
        var p = CreateTestProbe();
        d0.Hold = b => b.Op == BioOp.Write && b.Sector == 0;
        var w = Write(0, Pattern(8, 1), p);
        var barrier = Write(0, Pattern(8, 2), p, BioFlags.Barrier); // same sectors: the order decides what stays
        dev.Tell(w); dev.Tell(barrier);
        Eventually(() => d0.HeldCount == 1, "W at the disk");
        var suspender = CreateTestProbe();
        dev.Tell(new Dm.Suspend("mp", NoFlush: true), suspender.Ref);
        d0.Hold = _ => false;
        d0.Release(status: BioStatus.Requeue);             // W is pushed back while the barrier drains
        suspender.ExpectMsg<Dm.Done>(Wait);
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(100));     // the barrier did not run ahead of W
        Ok(new Dm.Resume("mp"));
        var done = p.ReceiveN(2, Wait).Cast<BioDone>().ToList();
        Assert.Equal(new[] { w, barrier }, done.Select(d => d.Bio));
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        Assert.Equal(Pattern(8, 2), ReadBack(dev, 0, 8));   // the barrier's data is the last word
    }

    [Fact]
    public void Load_and_resume_without_suspend_swaps_under_running_io_without_errors()
    {
        var d0 = Disks.AddMemory("d0", 8192);
        var dev = Create("r", "0 4096 linear d0 0");
        var p = CreateTestProbe();
        const int n = 400;
        for (var i = 0; i < n; i++)
        {
            dev.Tell(Write(i % 4096, Pattern(1, (byte)i), p));
            if (i == n / 2)
            {
                Manager.Tell(new Dm.Load("r", "0 2048 linear d0 0\n2048 2048 linear d0 2048"), TestActor);
                Manager.Tell(new Dm.Resume("r"), TestActor);
            }
        }
        var done = p.ReceiveN(n, Wait).Cast<BioDone>().ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        Assert.Equal(n, done.Select(d => d.Bio).Distinct().Count());
        ExpectMsg<Dm.Done>(Wait);
        ExpectMsg<Dm.Done>(Wait);
        Assert.Equal(2, Info("r").TargetCount);
        Assert.Equal(Pattern(1, unchecked((byte)(n - 1))), ReadBack(dev, (n - 1) % 4096, 1));
    }

    [Fact]
    public void A_bio_sent_to_a_removed_device_is_answered_with_eio()
    {
        Gate("d0");
        var dev = Create("gone", "0 8192 linear d0 0");
        Ok(new Dm.Close("gone"));
        Watch(dev);
        Ok(new Dm.Remove("gone"));
        ExpectTerminated(dev, Wait);
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.IoError, Run(dev, Write(0, Pattern(1, 1), p)));
    }

    [Fact]
    public void Removing_a_suspended_device_answers_its_deferred_bios_with_an_error()
    {
        Gate("d0");
        Ok(new Dm.Create("gone", "0 8192 linear d0 0"));
        var dev = Sys.ActorSelection($"/user/devices/dm-{Info("gone").Minor}").ResolveOne(Wait).Result;
        Ok(new Dm.Suspend("gone"));
        var p = CreateTestProbe();
        var held = Write(0, Pattern(1, 1), p);
        dev.Tell(held);
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        Ok(new Dm.Remove("gone"));
        var done = p.ExpectMsg<BioDone>(Wait);
        Assert.Same(held, done.Bio);
        Assert.Equal(BioStatus.IoError, done.Status);
    }
}
