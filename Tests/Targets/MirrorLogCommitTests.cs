using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// A flush makes the regions it covered clean on the log, lazily, in the next commit. A write to such a region
/// that arrives while that commit is in flight must wait for the commit after it: the log the write saw (dirty)
/// is about to say clean. Found by `dmactors clustertest --seed 24`, trial 11: the owner was killed just after
/// acknowledging such a write, the new owner's log called the region clean and resynced nothing, and a later kill
/// of the leg that had the write lost it.
/// </summary>
public sealed class MirrorLogCommitTests : TargetHarness
{
    [Fact]
    public void A_write_waits_for_the_log_while_a_commit_in_flight_would_call_its_region_clean()
    {
        var (a, b, log) = (Gate("a", 1024), Gate("b", 1024), Gate("log", 64));
        var dev = Create("m", $"0 1024 mirror disk 3 {log.Name} 256 nosync 2 {a.Name} 0 {b.Name} 0");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 1)));              // region 0 dirty on the log

        log.Hold = bio => bio.Op == BioOp.Write;
        Assert.Equal(BioStatus.Ok, Flush(dev));                                 // region 0 clean, committed lazily
        Eventually(() => log.HeldCount == 1, "the commit that calls region 0 clean");
        var cleaning = Events(e => e.Disk == log.Name && e.Start && e.Op == BioOp.Write).Last().Seq;

        var p = CreateTestProbe();
        dev.Tell(Write(8, Pattern(8, 2), p));                                   // region 0 again
        Settle(dev);
        Assert.Empty(Events(e => e.Disk == a.Name && e.Start && e.Op == BioOp.Write && e.Sector == 8));
        Assert.False(p.HasMessages, "the write went out while the log was about to call its region clean");

        log.Hold = _ => false;
        log.Release();
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        var written = Events(e => e.Disk == a.Name && e.Start && e.Op == BioOp.Write && e.Sector == 8).Single().Seq;
        // Another commit (dirty again) started after the cleaning one and before the write reached a leg.
        Assert.Contains(Events(e => e.Disk == log.Name && e.Start && e.Op == BioOp.Write), e => e.Seq > cleaning && e.Seq < written);
    }
}
