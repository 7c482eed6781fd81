using DmActors;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// A region that only a failed leg holds in sync (it failed before the other leg was copied there) may have its
/// writes in that leg's cache only: a later flush that reaches just the other legs cannot promise them. Found by
/// `dmactors clustertest` (kill-leg,kill-two with a stacked leg): a mirror started without the dead owner's leg,
/// took it back, and lost the other leg's node before the copy was done; the next flush said Ok.
/// </summary>
public sealed class MirrorKeptRegionFlushTests : TargetHarness
{
    private const int Region = 256;

    [Fact]
    public void A_flush_fails_while_a_region_is_held_in_sync_only_by_a_failed_leg()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        b.Hold = bio => bio.Op == BioOp.Write;                                  // the resync to b waits at b
        var dev = Create("m", $"0 1024 mirror core 1 256 2 {a.Name} 0 {b.Name} 0 1 handle_errors");
        Eventually(() => b.HeldCount == 1, "the first region's copy at b");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region, Pattern(8, 1)));    // b is stale there: a alone, not flushed
        Assert.Empty(Message("m", "fail_leg", a.Name));                         // a fails before any flush reached it
        Assert.Equal(BioStatus.IoError, Flush(dev));                            // b flushes, but does not hold region 2
        b.Hold = _ => false;
        b.Release();
    }
}
