using DmActors;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// A mirror's flush promises every write completed before it, so it may succeed on fewer legs only while each
/// region is still held by a leg that flushed and is in sync there (found by `dmactors clustertest`, kill-two with
/// a stacked leg: the resync's source failed the flush while the other leg was still stale, and the flush said Ok).
/// </summary>
public sealed class MirrorFlushHolderTests : TargetHarness
{
    private const int Region = 256;

    /// <summary>A mirror of a and b whose first sync waits at b (its first copy held): b is stale everywhere.</summary>
    private (Tests.Core.GateDisk A, Tests.Core.GateDisk B, Akka.Actor.IActorRef Dev) FirstSyncHeldAtB()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        b.Hold = bio => bio.Op == BioOp.Write;
        var dev = Create("m", $"0 1024 mirror core 1 256 2 {a.Name} 0 {b.Name} 0 1 handle_errors");
        Eventually(() => b.HeldCount == 1, "the first region's copy at b");
        return (a, b, dev);
    }

    [Fact]
    public void A_flush_fails_when_the_only_in_sync_leg_of_a_region_fails_it()
    {
        var (a, b, dev) = FirstSyncHeldAtB();
        // b is stale for region 2: the write goes to a alone.
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region, Pattern(8, 1)));
        a.Fail = bio => bio.Op == BioOp.Flush ? BioStatus.IoError : null;
        Assert.Equal(BioStatus.IoError, Flush(dev));                            // only a held it, and its flush failed
        b.Hold = _ => false;
        b.Release();
    }

    [Fact]
    public void A_flush_succeeds_on_one_leg_when_that_leg_holds_every_region()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        var dev = Create("m", $"0 1024 mirror core 2 256 nosync 2 {a.Name} 0 {b.Name} 0 1 handle_errors");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region, Pattern(8, 1)));    // on both legs
        a.Fail = bio => bio.Op == BioOp.Flush ? BioStatus.IoError : null;
        Assert.Equal(BioStatus.Ok, Flush(dev));                                 // b holds every region: degraded, not lost
        Assert.Matches(@" 1 FA ", Status("m"));
    }
    [Fact]
    public void A_resync_source_that_fails_its_flush_gets_the_region_back_from_the_copy()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        a.Memory.WriteAt(8 * 512, Pattern(8, 7));
        // a's cache is gone (its node died): the region copied from it may be lost there; its flush says so.
        a.Fail = bio => bio.Op == BioOp.Flush ? BioStatus.IoError : null;
        Create("m", $"0 1024 mirror core 1 256 2 {a.Name} 0 {b.Name} 0 1 handle_errors");
        Eventually(() => Status("m").Contains(" F"), $"the source failed (status: {Status("m")})");
        AssertBytes(Pattern(8, 7), Contents(b.Memory, 8, 8), "region 0 copied to b");

        a.Fail = _ => null;
        Assert.Empty(Message("m", "return_leg", a.Name));
        Eventually(() => Status("m").Contains(" 4/4 1 AA "), $"in sync again (status: {Status("m")})");
        // Region 0 went back from b to a (a is not trusted with it), the rest from a to b.
        Assert.Single(Events(e => e.Disk == a.Name && e.Start && e.Op == BioOp.Write && e.Sector == 0 && e.Sectors == Region));
        Assert.Equal(Hash(a.Memory), Hash(b.Memory));
    }

    [Fact]
    public void A_leg_that_fails_while_it_is_the_only_one_in_sync_in_a_region_keeps_it_and_is_its_resync_source()
    {
        // Found by clustertest (kill-leg during the first sync): the failed leg was made stale in the dirty regions
        // the first sync had not reached yet, so they were stale on every leg: never in sync again, and their
        // flushed writes unreadable.
        var (a, b, dev) = FirstSyncHeldAtB();
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region, Pattern(8, 1)));    // b is stale there: a alone
        Assert.Equal(BioStatus.Ok, Flush(dev));                                 // promised
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region + 8, Pattern(8, 2))); // the region is dirty again
        Assert.Empty(Message("m", "fail_leg", a.Name));
        Assert.Equal(BioStatus.IoError, ReadInto(dev, 2 * Region, new byte[8 * 512])); // no live leg holds it
        Assert.Equal(BioStatus.IoError, WriteAt(dev, 2 * Region, Pattern(8, 3)));

        Assert.Empty(Message("m", "return_leg", a.Name));
        b.Hold = _ => false;
        b.Release();
        Eventually(() => Status("m").Contains(" 4/4 1 AA "), $"in sync again (status: {Status("m")})");
        var back = new byte[16 * 512];
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 2 * Region, back));
        AssertBytes([.. Pattern(8, 1), .. Pattern(8, 2)], back, "region 2 through the mirror");
        Assert.Equal(Hash(a.Memory), Hash(b.Memory));
    }

    // Found by clustertest (kill-leg,kill-two with a stacked leg): a mirror started without the dead owner's leg,
    // took it back, and lost the other leg's node before the copy was done; the next flush said Ok.
    [Fact]
    public void A_flush_fails_while_a_region_is_held_in_sync_only_by_a_failed_leg()
    {
        var (a, b, dev) = FirstSyncHeldAtB();
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region, Pattern(8, 1)));    // b is stale there: a alone, not flushed
        Assert.Empty(Message("m", "fail_leg", a.Name));                         // a fails before any flush reached it
        Assert.Equal(BioStatus.IoError, Flush(dev));                            // b flushes, but does not hold region 2
        b.Hold = _ => false;
        b.Release();
    }
}
