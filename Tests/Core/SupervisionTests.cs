using Akka.Actor;
using Akka.TestKit;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>
/// A test-only target that throws from map() when asked to (sector 13), to crash its target actor mid-IO.
/// Otherwise it is linear onto its device at offset 0.
/// </summary>
[TargetType("crashy", 1, 0, 0)]
public sealed class Crashy : Target
{
    private readonly IBlockDevice _dev;
    public Crashy(TargetArgs a) : base(a) => _dev = a.GetDevice(a.Args[0], 0, a.Length);
    public override IReadOnlyList<IBlockDevice> Devices => [_dev];
    public override MapResult Map(Bio clone, int index, ITargetContext ctx) =>
        clone.Sector == 13 ? throw new InvalidOperationException("injected crash") : MapResult.Remapped(_dev);
    // An end_io hook makes the target actor hold its clones until they complete, so a crash has clones to answer.
    public override BioStatus EndIo(Bio clone, BioStatus status, ITargetContext ctx) =>
        clone.Sector == 14 ? throw new InvalidOperationException("injected end_io crash") : status;
    public override string TableParams() => _dev.DevNo;
}

/// <summary>
/// Reads its own copy of sector 0 from the disk before each write (answered inside map by a memory disk, so the
/// target actor keeps the answer), and throws after issuing it for a write to sector 13.
/// </summary>
[TargetType("crashafterownio", 1, 0, 0)]
public sealed class CrashAfterOwnIo : Target
{
    public static int OwnAnswers;
    private readonly IBlockDevice _dev;
    public CrashAfterOwnIo(TargetArgs a) : base(a) => _dev = a.GetDevice(a.Args[0], 0, a.Length);
    public override IReadOnlyList<IBlockDevice> Devices => [_dev];
    public override MapResult Map(Bio clone, int index, ITargetContext ctx)
    {
        ctx.Submit(_dev, Bio.Read(0, new byte[512], ActorRefs.Nobody), st =>
        {
            Interlocked.Increment(ref OwnAnswers);
            ctx.Complete(clone, st); // ignored for the clone the crash answered
        });
        return clone.Sector == 13 ? throw new InvalidOperationException("injected crash after own IO") : MapResult.Submitted;
    }
    public override string TableParams() => _dev.DevNo;
}

/// <summary>Issue 5's supervision rules: nothing hangs when a target crashes, a barrier never completes, or the stash fills.</summary>
public sealed class SupervisionTests : DeviceHarness
{
    public SupervisionTests() => TargetTypes.Register<Crashy>();

    [Fact]
    public void A_crashing_target_actor_answers_every_clone_it_held_with_eio_and_the_device_goes_on()
    {
        var d0 = Gate("d0");
        var dev = Create("c", "0 8192 crashy d0");
        var p = CreateTestProbe();
        d0.Hold = b => b.Op == BioOp.Write;
        var held = Enumerable.Range(0, 3).Select(i => Write(100 + i * 8, Pattern(8, 1), p)).ToList();
        foreach (var b in held) dev.Tell(b);
        Eventually(() => d0.HeldCount == 3, "three writes at the disk");
        var events = Info("c").EventNr;

        EventFilter.Exception<InvalidOperationException>().ExpectOne(() => dev.Tell(Write(13, Pattern(1, 2), p)));
        var done = p.ReceiveN(4, Wait).Cast<BioDone>().ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.IoError, d.Status));
        d0.Release();                                     // late disk completions are ignored, not answered twice
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        Assert.True(Info("c").EventNr > events);

        d0.Hold = _ => false;
        Assert.Equal(BioStatus.Ok, Run(dev, Write(40, Pattern(8, 3), p)));
        Assert.Equal(Pattern(8, 3), ReadBack(dev, 40, 8));
    }

    [Fact]
    public void A_write_a_crashed_target_actor_answered_with_eio_never_lands_over_a_newer_write()
    {
        var d0 = Gate("d0");
        var dev = Create("s", "0 8192 crashy d0");
        var p = CreateTestProbe();
        var old = Write(100, Pattern(8, 1), p);
        d0.Hold = b => b.Parent == old; // queued at the disk, not started (a busy queue, a data channel reconnecting)
        dev.Tell(old);
        Eventually(() => d0.HeldCount == 1, "the write at the disk");
        EventFilter.Exception<InvalidOperationException>().ExpectOne(() => dev.Tell(Write(13, Pattern(1, 2), p)));
        Assert.All(p.ReceiveN(2, Wait).Cast<BioDone>(), d => Assert.Equal(BioStatus.IoError, d.Status));

        // Told the write failed, the submitter writes the sectors again; only then does the disk reach the old one.
        Assert.Equal(BioStatus.Ok, Run(dev, Write(100, Pattern(8, 3), p)));
        d0.Release();
        Assert.Equal(Pattern(8, 3), ReadBack(dev, 100, 8));
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
    }

    [Fact]
    public void A_barrier_whose_data_timed_out_at_the_disk_never_lands_over_a_write_that_followed_it()
    {
        var d0 = Gate("d0");
        var p = CreateTestProbe();
        var dev = LinearWithBarrierTimeout("bt", p);

        var barrier = Write(64, Pattern(8, 1), p, BioFlags.Barrier);
        d0.Hold = b => b.Parent == barrier; // the barrier's data waits at the disk
        dev.Tell(barrier);
        var first = p.ExpectMsg<BioDone>(Wait);
        Assert.Same(barrier, first.Bio);
        Assert.Equal(BioStatus.TimedOut, first.Status);
        Assert.Equal(BioStatus.Ok, Run(dev, Write(64, Pattern(8, 2), p))); // held behind the barrier until it timed out
        d0.Release();
        Assert.Equal(Pattern(8, 2), ReadBack(dev, 64, 8));
    }

    [Fact]
    public void An_answer_to_the_targets_own_io_kept_when_it_crashed_reaches_the_next_incarnation()
    {
        TargetTypes.Register<CrashAfterOwnIo>();
        Gate("d0");
        var dev = Create("own", "0 8192 crashafterownio d0");
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(40, Pattern(1, 1), p)));
        var before = Volatile.Read(ref CrashAfterOwnIo.OwnAnswers);
        var bad = Write(13, Pattern(1, 2), p);
        EventFilter.Exception<InvalidOperationException>().ExpectOne(() => dev.Tell(bad));
        var done = p.ExpectMsg<BioDone>(Wait);
        Assert.Same(bad, done.Bio);
        Assert.Equal(BioStatus.IoError, done.Status);
        // The read it issued before throwing was answered inline and kept: the restarted actor takes it in.
        Eventually(() => Volatile.Read(ref CrashAfterOwnIo.OwnAnswers) == before + 1, "the kept answer taken in");
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(200)); // and the crashed clone is not answered twice
        Assert.Equal(BioStatus.Ok, Run(dev, Write(40, Pattern(1, 3), p)));
    }

    [Fact]
    public void A_crash_in_end_io_still_answers_that_bio()
    {
        Gate("d0");
        var dev = Create("e", "0 8192 crashy d0");
        var p = CreateTestProbe();
        var bad = Write(14, Pattern(1, 2), p);
        EventFilter.Exception<InvalidOperationException>().ExpectOne(() => dev.Tell(bad));
        var done = p.ExpectMsg<BioDone>(Wait);
        Assert.Same(bad, done.Bio);
        Assert.Equal(BioStatus.IoError, done.Status);
        Assert.Equal(BioStatus.Ok, Run(dev, Write(40, Pattern(8, 3), p)));
    }

    [Fact]
    public void A_barrier_stuck_behind_a_disk_that_never_answers_times_out_and_releases_later_bios()
    {
        var d0 = Gate("d0");
        var p = CreateTestProbe();
        var dev = LinearWithBarrierTimeout("t", p);

        d0.Hold = b => b.Sector == 0;                      // this write never completes
        var stuck = Write(0, Pattern(1, 1), p);
        var barrier = Write(64, Pattern(1, 2), p, BioFlags.Barrier);
        var after = Write(128, Pattern(1, 3), p);
        dev.Tell(stuck); dev.Tell(barrier); dev.Tell(after);
        var first = p.ExpectMsg<BioDone>(Wait);
        Assert.Same(barrier, first.Bio);
        Assert.Equal(BioStatus.TimedOut, first.Status);
        var second = p.ExpectMsg<BioDone>(Wait);
        Assert.Same(after, second.Bio);
        Assert.Equal(BioStatus.Ok, second.Status);
        d0.Release();
        Assert.Same(stuck, p.ExpectMsg<BioDone>(Wait).Bio);
    }

    /// <summary>A linear volume over d0 from a manager whose barriers time out after 300 ms, opened.</summary>
    private IActorRef LinearWithBarrierTimeout(string name, TestProbe p)
    {
        var manager = Engine.StartManager(new DeviceManager.Options(BarrierTimeout: TimeSpan.FromMilliseconds(300)));
        manager.Tell(new Dm.Create(name, "0 8192 linear d0 0"), p.Ref);
        p.ExpectMsg<Dm.Done>(Wait);
        manager.Tell(new Dm.Open(name), p.Ref);
        return p.ExpectMsg<Dm.Opened>(Wait).Device;
    }

    [Fact]
    public void The_deferred_bios_are_bounded_and_overflow_gets_eagain()
    {
        var manager = Engine.StartManager(new DeviceManager.Options(MaxDeferred: 4));
        Gate("d0");
        var p = CreateTestProbe();
        manager.Tell(new Dm.Create("b", "0 8192 linear d0 0"), p.Ref);
        p.ExpectMsg<Dm.Done>(Wait);
        manager.Tell(new Dm.Open("b"), p.Ref);
        var dev = p.ExpectMsg<Dm.Opened>(Wait).Device;
        manager.Tell(new Dm.Suspend("b"), p.Ref);
        p.ExpectMsg<Dm.Done>(Wait);
        var bios = Enumerable.Range(0, 6).Select(i => Write(i, Pattern(1, 1), p)).ToList();
        foreach (var b in bios) dev.Tell(b);
        var refused = p.ReceiveN(2, Wait).Cast<BioDone>().ToList();
        Assert.All(refused, d => Assert.Equal(BioStatus.Again, d.Status));
        Assert.Equal(bios.Skip(4), refused.Select(d => d.Bio));
        manager.Tell(new Dm.Resume("b"), p.Ref);
        var rest = p.ReceiveN(5, Wait).OfType<BioDone>().ToList();
        Assert.Equal(4, rest.Count);
        Assert.All(rest, d => Assert.Equal(BioStatus.Ok, d.Status));
    }
}
