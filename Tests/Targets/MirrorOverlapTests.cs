using Akka.Actor;
using Akka.TestKit;
using DmActors;
using DmActors.Tests.Core;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// Two overlapping writes in flight together may land in either order on a disk, and each leg could pick a
/// different one: the legs would then differ for a region the mirror calls in sync (found by `dmactors clustertest
/// --seed 12`, trial 1: after resync one leg held write #84 at sector 7516, the other #83). So a write that
/// overlaps one in flight reaches the legs only once that one has ended on every leg.
/// </summary>
public sealed class MirrorOverlapTests : TargetHarness
{
    private (GateDisk A, GateDisk B, IActorRef Dev) Mirror()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        var dev = Create("m", $"0 1024 mirror core 2 256 nosync 2 {a.Name} 0 {b.Name} 0 1 handle_errors");
        Eventually(() => Status("m").Contains(" 4/4 1 AA "), $"in sync (status: {Status("m")})");
        return (a, b, dev);
    }

    /// <summary>Writes at 8 and 12 (8 sectors each, overlapping), and at <paramref name="alsoWrite"/>, sent
    /// together; b holds every write to region 0.</summary>
    private (GateDisk A, GateDisk B, IActorRef Dev, TestProbe Probe) OverlappingWritesHeldAtB(long? alsoWrite = null)
    {
        var (a, b, dev) = Mirror();
        b.Hold = bio => bio.Op == BioOp.Write && bio.Sector < 256;
        var probe = CreateTestProbe();
        dev.Tell(Write(8, Pattern(8, 1), probe), ActorRefs.NoSender);
        dev.Tell(Write(12, Pattern(8, 2), probe), ActorRefs.NoSender);
        if (alsoWrite is { } at) dev.Tell(Write(at, Pattern(8, 4), probe), ActorRefs.NoSender);
        // A write to another region is not held by either: its answer shows every write before it was mapped.
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 512, Pattern(8, 3)));
        return (a, b, dev, probe);
    }

    /// <summary>Releases b's held writes, newest first, until <paramref name="count"/> answers came.</summary>
    private static List<BioDone> AnswersReleasingNewestFirst(GateDisk b, TestProbe probe, int count)
    {
        var answers = new List<BioDone>();
        var until = DateTime.UtcNow + Wait;
        while (answers.Count < count && DateTime.UtcNow < until)
        {
            b.Release(bio => bio.Sector == 12); // the later write first, if it is there
            b.Release();
            if (probe.ReceiveOne(TimeSpan.FromMilliseconds(100)) is BioDone d) answers.Add(d);
        }
        return answers;
    }

    [Fact]
    public void Overlapping_writes_in_flight_together_leave_the_legs_equal()
    {
        var (a, b, dev, probe) = OverlappingWritesHeldAtB();
        Eventually(() => b.HeldCount >= 1, "the first write held at b");
        var answers = AnswersReleasingNewestFirst(b, probe, 2);
        Assert.Equal(2, answers.Count);
        Assert.All(answers, d => Assert.Equal(BioStatus.Ok, d.Status));
        Assert.Equal(Hash(a.Memory), Hash(b.Memory));
        AssertBytes(Pattern(8, 2), ReadBack(dev, 12, 8), "the later write");
    }

    [Fact]
    public void A_write_that_overlaps_one_in_flight_reaches_no_leg_before_that_one_ended_on_every_leg()
    {
        var (a, b, dev, probe) = OverlappingWritesHeldAtB(alsoWrite: 100); // a write that overlaps neither: not held back
        Eventually(() => b.HeldCount >= 2, "the first and the third write held at b");
        var answers = AnswersReleasingNewestFirst(b, probe, 3);
        Assert.Equal(3, answers.Count);
        var firstEnded = Events(e => e.Disk == b.Name && !e.Start && e.Sector == 8).Single().Seq;
        var laterStarts = Events(e => e.Start && e.Op == BioOp.Write && e.Sector == 12).Select(e => e.Seq).ToList();
        Assert.Equal(2, laterStarts.Count);
        Assert.All(laterStarts, s => Assert.True(s > firstEnded, $"the overlapping write started (#{s}) before the first ended at b (#{firstEnded})"));
        var thirdStart = Events(e => e.Disk == a.Name && e.Start && e.Sector == 100).Single().Seq;
        Assert.True(thirdStart < firstEnded, "the write that overlaps nothing was held back too");
    }
}
