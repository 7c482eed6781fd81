using Akka.Actor;
using DmActors;
using DmActors.Tests.Core;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// A mirror's reads map on the device's lanes (the opener's thread, no hop through the target actor); its writes
/// and flushes still go through the device. Anything unusual about a lane's read (a read error, a leg that lost
/// writes) hands the read to the device, which maps it again; a barrier waits for such a read too.
/// </summary>
public sealed class MirrorLaneTests : TargetHarness
{
    /// <summary>Who the clones that reached a disk answer: a lane, or the mirror's target actor.</summary>
    private readonly List<(string Disk, BioOp Op, string Mapper)> _mappers = new();

    private Func<Bio, bool> Noting(string disk, Func<Bio, bool>? hold = null) => b =>
    {
        lock (_mappers) _mappers.Add((disk, b.Op, b.ReplyTo.Path.Name));
        return hold?.Invoke(b) ?? false;
    };

    private List<(string Disk, BioOp Op, string Mapper)> Mappers() { lock (_mappers) return _mappers.ToList(); }

    private (GateDisk A, GateDisk B, IActorRef Lane) InSyncMirror()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        var lane = Create("m", $"0 1024 mirror core 2 256 nosync 2 {a.Name} 0 {b.Name} 0 1 handle_errors");
        Assert.Equal(BioStatus.Ok, WriteAt(lane, 0, Pattern(8, 1)));           // the log is loaded: lanes map reads
        a.Hold = Noting("a");
        b.Hold = Noting("b");
        return (a, b, lane);
    }

    [Fact]
    public void Reads_map_on_the_lane_and_writes_go_through_the_device()
    {
        var (_, _, lane) = InSyncMirror();
        for (var i = 0; i < 4; i++) AssertBytes(Pattern(8, 1), ReadBack(lane, 0, 8), "read");
        Assert.Equal(BioStatus.Ok, WriteAt(lane, 8, Pattern(8, 2)));
        var m = Mappers();
        Assert.Equal(4, m.Count(x => x.Op == BioOp.Read));
        Assert.All(m.Where(x => x.Op == BioOp.Read), x => Assert.StartsWith("lane-", x.Mapper));
        Assert.Equal(new[] { "a", "b" }, m.Where(x => x.Op == BioOp.Read).Select(x => x.Disk).Distinct().Order()); // spread over both legs
        Assert.All(m.Where(x => x.Op == BioOp.Write), x => Assert.DoesNotContain("lane-", x.Mapper));
        Assert.Equal(2, m.Count(x => x.Op == BioOp.Write));
    }

    [Fact]
    public void A_read_that_fails_on_a_lane_is_read_from_the_other_leg_and_the_leg_is_not_read_again()
    {
        var (a, b, lane) = InSyncMirror();
        a.Fail = bio => bio.Op == BioOp.Read ? BioStatus.IoError : null;
        for (var i = 0; i < 4; i++) AssertBytes(Pattern(8, 1), ReadBack(lane, 0, 8), "read");
        Assert.Single(Events(e => e.Disk == "a" && e.Op == BioOp.Read && e.Start)); // failed once, then never read
        Assert.Contains(" 4/4 1 RA ", Status("m"));
        Assert.True(Info("m").EventNr > 0, "the read error raised an event");
    }

    [Fact]
    public void A_leg_that_lost_writes_is_not_read_on_a_lane_and_is_failed()
    {
        var (a, b, lane) = InSyncMirror();
        a.Memory.WriteAt(0, Pattern(8, 9));                                     // what a holds after it lost the write
        a.Lost = 1;
        for (var i = 0; i < 4; i++) AssertBytes(Pattern(8, 1), ReadBack(lane, 0, 8), "read");
        Assert.Empty(Events(e => e.Disk == "a" && e.Op == BioOp.Read));
        Assert.Contains(" 1 FA ", Status("m"));                                 // the first read went to the device, which failed a
    }

    [Fact]
    public void A_barrier_waits_for_a_lane_read_that_was_handed_back_to_the_device()
    {
        var (a, b, lane) = InSyncMirror();
        var p = CreateTestProbe();
        a.Hold = Noting("a", bio => bio.Op == BioOp.Read);
        b.Hold = Noting("b", bio => bio.Op == BioOp.Read);
        var read = Read(0, 8, p);
        lane.Tell(read);
        Eventually(() => a.HeldCount + b.HeldCount == 1, "the read at a leg");
        var (at, other) = a.HeldCount == 1 ? (a, b) : (b, a);
        other.Hold = _ => false;
        var barrier = Write(512, Pattern(8, 3), p, BioFlags.Barrier);
        lane.Tell(barrier);
        Settle(lane);
        Assert.DoesNotContain(Events(), e => e.Start && e.Sector == 512);      // the barrier waits for the read
        at.Release(status: BioStatus.IoError);                                  // handed back: the device reads the other leg
        var done = p.ReceiveN(2, Wait).Cast<BioDone>().ToList();
        p.ExpectNoMsg(Quiet);                                                   // each answered once
        Assert.Equal(new[] { read, barrier }, done.Select(d => d.Bio));
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        AssertBytes(Pattern(8, 1), read.Data.ToArray(), "read from the other leg");
        var ev = Events();
        Assert.True(ev.Last(e => !e.Start && e.Disk == other.Name && e.Op == BioOp.Read).Seq < ev.First(e => e.Start && e.Sector == 512).Seq,
            "the handed-back read ended before the barrier's write started");
    }

    [Fact]
    public void A_read_handed_back_to_a_device_that_stopped_is_answered_with_an_error()
    {
        Gate("d0");
        var lane = Create("gone", "0 8192 linear d0 0");
        var gone = Sys.ActorSelection(lane.Path.Parent).ResolveOne(Wait).GetAwaiter().GetResult();
        Watch(gone);
        Ok(new Dm.Close("gone", lane));
        Ok(new Dm.Remove("gone"));
        ExpectTerminated(gone, Wait);
        var p = CreateTestProbe();
        var read = Read(0, 8, p);
        gone.Tell(new DeviceLane.Msg.Reissue(read));
        Assert.Equal(BioStatus.IoError, p.ExpectMsg<BioDone>(Wait).Status);
    }
}
