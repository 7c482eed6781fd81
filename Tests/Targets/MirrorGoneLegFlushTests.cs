using Akka.Actor;
using DmActors;
using DmActors.Tests.Core;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// A mirror volume rebuilt over a new connection to a leg whose old connection is gone (its node was removed and
/// came back; found by `dmactors clustertest`): the old table's leg is a stale device of the volume. Its loss loses
/// no write of the mirror's while another leg holds every region, so it fails no flush; otherwise it does, once.
/// </summary>
public sealed class MirrorGoneLegFlushTests
{
    /// <summary>Runs everything at once on the caller's thread: the mirror's own IO, timers and journal answers.</summary>
    private sealed class InlineContext : ITargetContext
    {
        public void Complete(Bio clone, BioStatus status) => clone.Complete(status);
        public void Submit(IBlockDevice device, Bio bio, Action<BioStatus> done)
        {
            bio.ReplyTo = CallbackRef.ForBios(d => done(d.Status));
            device.Submit(bio);
        }
        // Short waits run at once; periodic checks (a second or more) never run here.
        public ICancelable Schedule(TimeSpan delay, Action action)
        {
            if (delay < TimeSpan.FromSeconds(1)) action();
            return Cancelable.CreateCanceled();
        }
        public void RaiseEvent() { }
        public Action<Action> Inbox => a => a();
        public IClock Clock { get; } = new ManualClock();
    }

    /// <summary>
    /// The volume's tables before and after the rebuild, the tracker after the swap with a mirror write unflushed,
    /// and the old connection gone; <paramref name="failOther"/> fails the other leg in the old mirror first.
    /// </summary>
    private static (FlushTracker Tracker, GateDisk OldLeg, Table Old, Table Next) Rebuilt(bool failOther)
    {
        var log = new List<IoEvent>();
        var id = Guid.NewGuid().ToString("N")[..8]; // remote legs are keyed by name across tables: no other test's
        var oldLeg = new GateDisk($"a-{id}", 1024, log, "7:90") { Remote = true };
        var newLeg = new GateDisk($"a-{id}", 1024, log, "7:91") { Remote = true };
        var b = new GateDisk($"b-{id}", 1024, log, "7:92");
        var text = $"0 1024 mirror core 2 256 nosync 2 {oldLeg.Name} 0 {b.Name} 0 1 handle_errors";
        var old = Table.Build(Table.Parse(text), new DeviceList(oldLeg, b));
        var ctx = new InlineContext();
        old.Targets[0].Resume(ctx);
        if (failOther) old.Targets[0].Message(["fail_leg", b.Name], ctx);
        var tracker = new FlushTracker();
        tracker.Swap(null, old);
        tracker.WriteCompleted(Bio.Write(0, new byte[512], ActorRefs.Nobody));
        var next = Table.Build(Table.Parse(text), new DeviceList(newLeg, b));
        tracker.Swap(old, next);
        oldLeg.Fail = _ => BioStatus.IoError;
        oldLeg.Gone = true;
        return (tracker, oldLeg, old, next);
    }

    [Fact]
    public void A_gone_leg_of_a_swapped_out_mirror_fails_no_flush_while_another_leg_holds_every_region()
    {
        var (tracker, oldLeg, old, next) = Rebuilt(failOther: false);
        Assert.True(tracker.HasStale);
        var io = new DmIo(Bio.Flush(ActorRefs.Nobody), DmIo.Kinds.Normal, 0);
        Assert.Null(tracker.Begin(io)); // let go, not flushed
        Assert.False(tracker.HasStale);
        old.Destroy();
        next.Destroy();
        Assert.Equal(0, oldLeg.OpenCount);
    }

    [Fact]
    public void A_gone_leg_that_alone_held_the_mirrors_writes_fails_one_flush()
    {
        var (tracker, oldLeg, old, next) = Rebuilt(failOther: true);
        var io = new DmIo(Bio.Flush(ActorRefs.Nobody), DmIo.Kinds.Normal, 0);
        Assert.Same(oldLeg, Assert.Single(tracker.Begin(io)!));
        tracker.Flushed(io, BioStatus.IoError);
        Assert.False(tracker.HasStale); // reported once: no later flush can do better
        old.Destroy();
        next.Destroy();
    }
}
