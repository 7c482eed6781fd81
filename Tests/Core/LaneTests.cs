using Akka.Actor;
using DmActors.Tests.Support;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>A stateless test target (lanes map it) whose map throws at sector 13 and end_io at sector 14; else linear at 0.</summary>
[TargetType("crashy-stateless", 1, 0, 0)]
public sealed class CrashyStateless : Target
{
    private readonly IBlockDevice _dev;
    public CrashyStateless(TargetArgs a) : base(a) => _dev = a.GetDevice(a.Args[0], 0, a.Length);
    public override IReadOnlyList<IBlockDevice> Devices => [_dev];
    public override bool Stateless => true;
    public override MapResult Map(Bio clone, int index, ITargetContext ctx) =>
        clone.Sector == 13 ? throw new InvalidOperationException("injected crash") : MapResult.Remapped(_dev);
    public override BioStatus EndIo(Bio clone, BioStatus status, ITargetContext ctx) =>
        clone.Sector == 14 ? throw new InvalidOperationException("injected end_io crash") : status;
    public override string TableParams() => _dev.DevNo;
}

/// <summary>
/// One device fed by several opens (lanes, docs/threading.md): a lane maps bios of a stateless table itself, and
/// barriers, suspends, table swaps and removes still see every lane's IO, observed at the disk.
/// </summary>
public sealed class LaneTests : DeviceHarness
{
    public LaneTests() => TargetTypes.Register<CrashyStateless>();

    private static bool IsWrite(Bio b) => b.Op == BioOp.Write;

    /// <summary>Sends one write through each of lanes <paramref name="a"/> and <paramref name="b"/> and holds both at the disk.</summary>
    private (Bio A, Bio B) OneWriteOfEachLaneHeld(GateDisk disk, IActorRef a, IActorRef b, Akka.TestKit.TestProbe replyTo)
    {
        disk.Hold = IsWrite;
        var wa = Write(0, Pattern(8, 1), replyTo);
        var wb = Write(8, Pattern(8, 2), replyTo);
        a.Tell(wa); b.Tell(wb);
        Eventually(() => disk.HeldCount == 2, "one write of each lane at the disk");
        return (wa, wb);
    }

    /// <summary>Who the clones that reached a disk answer (a lane maps itself; else the device's target actors did).</summary>
    private readonly List<string> _mappers = new();

    private Func<Bio, bool> Noting(Func<Bio, bool> hold) => b =>
    {
        lock (_mappers) _mappers.Add(b.ReplyTo.Path.Name);
        return hold(b);
    };

    private List<string> Mappers() { lock (_mappers) return _mappers.ToList(); }

    [Fact]
    public void A_lane_counts_the_io_it_maps_in_the_devices_statistics()
    {
        var d0 = Gate("d0");
        Create("ln", "0 8192 linear d0 0");
        var b = Open("ln");
        var p = CreateTestProbe();
        d0.Hold = Noting(_ => false);
        b.Tell(Write(0, Pattern(8, 1), p));
        b.Tell(Write(8, Pattern(16, 2), p));
        b.Tell(Read(0, 24, p));
        var done = p.ReceiveN(3, Wait).Cast<BioDone>().ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        Assert.Equal(3, Mappers().Count);
        Assert.All(Mappers(), m => Assert.StartsWith("lane-", m)); // the lane mapped them, not the device
        var c = Assert.IsType<DeviceIoStats>(Control(new GetIoStats("ln"))).Counters;
        Assert.Equal((2L, 24L, 1L, 24L, 0L), (c.Writes, c.WriteSectors, c.Reads, c.ReadSectors, c.InFlight));
    }

    [Fact]
    public void A_barrier_on_one_lane_waits_for_io_another_lane_accepted_and_that_lanes_later_io_waits_for_it()
    {
        var d0 = Gate("d0");
        var a = Create("ln", "0 8192 linear d0 0");
        var b = Open("ln");
        var p = CreateTestProbe();
        d0.Hold = Noting(IsWrite);

        var w1 = Write(0, Pattern(8, 1), p);
        b.Tell(w1);
        Eventually(() => d0.HeldCount == 1, "W1 of lane B at the disk");
        Assert.StartsWith("lane-", Mappers().Single());          // lane B mapped it on this thread, not the device

        var barrier = Write(200, Pattern(8, 2), p, BioFlags.Barrier);
        a.Tell(barrier);
        Settle(a);                                              // the device has taken the barrier up
        var w2 = Write(300, Pattern(8, 3), p);
        b.Tell(w2);
        Settle(b);
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        Assert.DoesNotContain(Events(), e => e.Start && e.Sector >= 200); // the barrier drains B's W1 first; W2 waits

        d0.Release();                                           // W1 completes: the barrier goes on
        Eventually(() => d0.HeldCount == 1, "the barrier's data at the disk");
        Assert.DoesNotContain(Events(), e => e.Start && e.Sector == 300);
        d0.Hold = _ => false;
        d0.Release();
        var done = p.ReceiveN(3, Wait).Cast<BioDone>().ToList();
        Assert.Equal(new[] { w1, barrier, w2 }, done.Select(d => d.Bio));
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        var ev = Events();
        var postflush = ev.Where(e => e.Start && e.Op == BioOp.Flush).Max(e => e.Seq);
        Assert.True(ev.Single(e => !e.Start && e.Op == BioOp.Write && e.Sector == 0).Seq < ev.First(e => e.Start && e.Op == BioOp.Flush).Seq);
        Assert.True(postflush < ev.Single(e => e.Start && e.Sector == 300).Seq, string.Join("\n", ev));
    }

    [Fact]
    public void A_barrier_holds_the_later_io_of_its_own_lane_even_while_the_other_lanes_map()
    {
        var d0 = Gate("d0");
        var a = Create("ln", "0 8192 linear d0 0");
        Open("ln");
        var p = CreateTestProbe();
        d0.Hold = b => IsWrite(b) && b.Sector == 0;
        var w1 = Write(0, Pattern(8, 1), p);
        var barrier = Bio.Flush(p.Ref);
        var after = Write(64, Pattern(8, 2), p);
        a.Tell(w1); a.Tell(barrier); a.Tell(after);
        Eventually(() => d0.HeldCount == 1, "W1 at the disk");
        Settle(a);
        Assert.DoesNotContain(Events(), e => e.Sector == 64 || e.Op == BioOp.Flush);
        d0.Release();
        Assert.Equal(new[] { w1, barrier, after }, p.ReceiveN(3, Wait).Cast<BioDone>().Select(d => d.Bio));
    }

    [Fact]
    public void A_suspend_waits_for_io_in_flight_on_every_lane_and_holds_each_lanes_new_io_until_resume_in_order()
    {
        var d0 = Gate("d0");
        var a = Create("s", "0 8192 linear d0 0");
        var b = Open("s");
        var p = CreateTestProbe();
        var (ia, ib) = OneWriteOfEachLaneHeld(d0, a, b, p);

        var suspender = CreateTestProbe();
        Manager.Tell(new Dm.Suspend("s"), suspender.Ref);
        suspender.ExpectNoMsg(TimeSpan.FromMilliseconds(200));  // lanes have IO in flight: not suspended yet
        d0.Hold = _ => false;
        var later = Enumerable.Range(0, 6).Select(i => Write(100 + i * 8, Pattern(8, (byte)(10 + i)), p)).ToList();
        for (var i = 0; i < later.Count; i++) (i % 2 == 0 ? a : b).Tell(later[i]);
        Settle(a); Settle(b);
        Assert.Equal(2, Events(e => e.Start && e.Op == BioOp.Write).Count); // the later ones are held
        d0.Release(w => w.Sector == 0);
        Assert.Same(ia, p.ExpectMsg<BioDone>(Wait).Bio);
        suspender.ExpectNoMsg(TimeSpan.FromMilliseconds(100));  // lane B still has its write in flight
        d0.Release();
        Assert.Same(ib, p.ExpectMsg<BioDone>(Wait).Bio);
        suspender.ExpectMsg<Dm.Done>(Wait);
        Assert.True(Info("s").Suspended);
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
        Assert.Equal(2, Events(e => e.Start && e.Op == BioOp.Write).Count);

        Ok(new Dm.Resume("s"));
        var done = p.ReceiveN(later.Count, Wait).Cast<BioDone>().ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        var starts = Events(e => e.Start && e.Op == BioOp.Write).Skip(2).Select(e => e.Sector).ToList();
        Assert.Equal(later.Select(w => w.Sector), starts);      // replayed in the order the lanes took them
    }

    [Fact]
    public void A_noflush_suspend_pushes_back_io_of_every_lane_and_the_new_table_runs_it()
    {
        var d0 = Gate("d0");
        var d1 = Gate("d1");
        var a = Create("mp", "0 8192 linear d0 0");
        var b = Open("mp");
        var p = CreateTestProbe();
        d0.Hold = IsWrite;
        var w1 = Write(0, Pattern(8, 1), p);
        var w2 = Write(8, Pattern(8, 2), p);
        a.Tell(w1); b.Tell(w2);
        Eventually(() => d0.HeldCount == 2, "one write of each lane at d0");
        var suspender = CreateTestProbe();
        a.Tell(new Dm.Suspend("mp", NoFlush: true), suspender.Ref); // through lane A, so Settle(a) knows it arrived
        Settle(a);
        d0.Release(status: BioStatus.Requeue);                  // pushed back, as multipath without a path
        suspender.ExpectMsg<Dm.Done>(Wait);
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(100));          // nobody answered yet

        Ok(new Dm.Load("mp", "0 8192 linear d1 0"));
        Ok(new Dm.Resume("mp"));
        var done = p.ReceiveN(2, Wait).Cast<BioDone>().ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        Assert.Equal(new long[] { 0, 8 }, Events(e => e.Start && e.Disk == "d1").Select(e => e.Sector).Order());
        Assert.Equal(Pattern(8, 2), ReadBack(b, 8, 8));
    }

    [Fact]
    public void A_table_swap_under_io_from_two_lanes_answers_every_bio_once_and_the_lanes_then_map_the_new_table()
    {
        var d0 = Gate("d0", 8192);
        var d1 = Gate("d1", 8192);
        var a = Create("r", "0 4096 linear d0 0");
        var b = Open("r");
        var p = CreateTestProbe();
        const int n = 400;
        for (var i = 0; i < n; i++)
        {
            (i % 2 == 0 ? a : b).Tell(Write(i % 4096, Pattern(1, (byte)i), p));
            if (i == n / 2)
            {
                Manager.Tell(new Dm.Load("r", "0 2048 linear d1 0\n2048 2048 linear d1 2048"), TestActor);
                Manager.Tell(new Dm.Resume("r"), TestActor);
            }
        }
        var done = p.ReceiveN(n, Wait).Cast<BioDone>().ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        Assert.Equal(n, done.Select(d => d.Bio).Distinct().Count());
        ExpectMsg<Dm.Done>(Wait);
        ExpectMsg<Dm.Done>(Wait);
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(100));

        d1.Hold = Noting(IsWrite);
        var wa = Write(4000, Pattern(1, 7), p);
        var wb = Write(4001, Pattern(1, 8), p);
        a.Tell(wa); b.Tell(wb);
        Eventually(() => d1.HeldCount == 2, "both writes on the new table's disk");
        Assert.All(Mappers(), m => Assert.StartsWith("lane-", m)); // released again, with the new table
        d1.Release();
        Assert.Equal(2, p.ReceiveN(2, Wait).Count);
        Assert.DoesNotContain(Events(), e => e.Disk == "d0" && e.Start && e.Sector >= 4000);
    }

    [Fact]
    public void Removing_a_device_while_its_lanes_have_io_in_flight_answers_every_bio_once()
    {
        var d0 = Gate("d0");
        var a = Create("gone", "0 8192 linear d0 0");
        var b = Open("gone");
        var p = CreateTestProbe();
        var (wa, wb) = OneWriteOfEachLaneHeld(d0, a, b, p);
        Ok(new Dm.Close("gone", a));
        Ok(new Dm.Close("gone", b));
        Watch(a); Watch(b);
        var remover = CreateTestProbe();
        Manager.Tell(new Dm.Remove("gone"), remover.Ref);
        remover.ExpectNoMsg(TimeSpan.FromMilliseconds(200));   // the remove's suspend waits for the lanes' IO
        d0.Release();
        var done = p.ReceiveN(2, Wait).Cast<BioDone>().ToList();
        Assert.Equal(new[] { wa, wb }.ToHashSet(), done.Select(d => d.Bio).ToHashSet());
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        remover.ExpectMsg<Dm.Done>(Wait);
        ExpectTerminated(a, Wait); ExpectTerminated(b, Wait);
        Assert.Equal(BioStatus.IoError, Run(a, Write(0, Pattern(1, 1), p))); // a closed lane is gone: EIO, not a hang
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(100));
    }

    [Fact]
    public void A_remove_that_gives_up_on_a_disk_that_never_answers_fails_each_lanes_bios_once()
    {
        var manager = Engine.StartManager(new DeviceManager.Options(Clock, ShutdownTimeout: TimeSpan.FromMilliseconds(300)), name: "short");
        var d0 = Gate("d0");
        manager.Ok(new Dm.Create("stuck", "0 8192 linear d0 0"));
        var a = manager.Open("stuck");
        var b = manager.Open("stuck");
        var p = CreateTestProbe();
        var (wa, wb) = OneWriteOfEachLaneHeld(d0, a, b, p);
        manager.Ok(new Dm.Close("stuck", a));
        manager.Ok(new Dm.Close("stuck", b));
        manager.Ok(new Dm.Remove("stuck"));                     // answered after the shutdown timeout
        var done = p.ReceiveN(2, Wait).Cast<BioDone>().ToList();
        Assert.Equal(new[] { wa, wb }.ToHashSet(), done.Select(d => d.Bio).ToHashSet());
        Assert.All(done, d => Assert.Equal(BioStatus.IoError, d.Status));
        d0.Release();                                           // the disk answers at last: nobody hears twice
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        var landed = new byte[16 * 512];
        d0.Memory.ReadAt(0, landed);
        Assert.True(landed.All(b => b == 0), "a write answered EIO by the remove landed after it"); // they had not started
    }

    [Fact]
    public void A_nodrain_flush_on_one_lane_covers_a_write_completed_on_another()
    {
        var d0 = Gate("d0");
        var a = Create("nd", "0 8192 linear d0 0");
        var b = Open("nd");
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(b, Bio.FlushCompleted(p.Ref)));  // the table going live is flushed
        var flushes = Events(e => e.Start && e.Op == BioOp.Flush).Count;
        Assert.Equal(BioStatus.Ok, Run(b, Bio.FlushCompleted(p.Ref)));  // nothing new: skipped
        Assert.Equal(flushes, Events(e => e.Start && e.Op == BioOp.Flush).Count);

        Assert.Equal(BioStatus.Ok, Run(a, Write(0, Pattern(8, 1), p)));   // answered on lane A
        Assert.Equal(BioStatus.Ok, Run(b, Bio.FlushCompleted(p.Ref)));  // lane B's flush must reach the disk
        var ev = Events();
        Assert.True(ev.Count(e => e.Start && e.Op == BioOp.Flush) == flushes + 1, string.Join("\n", ev));
        Assert.True(ev.Last(e => e.Start && e.Op == BioOp.Flush).Seq > ev.Single(e => !e.Start && e.Op == BioOp.Write).Seq);
    }

    [Fact]
    public void A_lane_of_a_device_with_a_stateful_target_leaves_the_mapping_to_the_device()
    {
        var d0 = Gate("d0");
        var a = Create("fl", "0 8192 flakey d0 0 10 0");
        var p = CreateTestProbe();
        d0.Hold = Noting(IsWrite);
        var w = Write(0, Pattern(8, 1), p);
        a.Tell(w);
        Eventually(() => d0.HeldCount == 1, "the write at the disk");
        Assert.DoesNotContain(Mappers(), m => m.StartsWith("lane-")); // flakey's actor mapped it
        d0.Release();
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
    }

    [Fact]
    public void A_target_that_throws_on_a_lane_fails_that_bio_once_raises_an_event_and_the_lane_maps_on()
    {
        var d0 = Gate("d0");
        var a = Create("c", "0 8192 crashy-stateless d0");
        var b = Open("c");
        var p = CreateTestProbe();
        var events = Info("c").EventNr;
        d0.Hold = Noting(_ => false);
        Assert.Equal(BioStatus.IoError, RunOnce(a, Write(13, Pattern(1, 1), p)));  // map threw
        Assert.Equal(BioStatus.IoError, RunOnce(b, Write(14, Pattern(1, 2), p)));  // end_io threw
        Eventually(() => Info("c").EventNr >= events + 2, "an event per failure");
        Assert.Equal(BioStatus.Ok, RunOnce(a, Write(40, Pattern(8, 3), p)));
        Assert.Equal(Pattern(8, 3), ReadBack(b, 40, 8));
        Assert.All(Mappers(), m => Assert.StartsWith("lane-", m));
    }
}
