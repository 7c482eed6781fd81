using Akka.Actor;
using Xunit;
using static DmActors.Tests.Cluster.ClusterVolumeTests;

namespace DmActors.Tests.Cluster;

/// <summary>
/// A mirror's owner dies with a leg on its own node, whose write-back cache dies with it. A write it acknowledged is
/// on both legs' caches, and its region is dirty in the log; only the other leg still has it. The next owner must
/// resync that region from the other leg: copying it from the owner's old leg would undo an acknowledged write, and
/// a flush after the failover would then promise what is gone.
/// </summary>
public sealed partial class ClusterMirrorTests
{
    [Fact]
    public void A_region_dirty_when_the_owner_died_is_resynced_from_the_leg_whose_cache_lived_on()
    {
        // The group waits for its node (long rehome delay): the owner comes back under its name, over the disk
        // that lost its cache, and builds the mirror again itself.
        using var c = new TestCluster(writeBackCache: true, rehomeDelay: TimeSpan.FromSeconds(60));
        c[LogNode].Disks.AddMemory("log0", 64);
        // The owner's own disk is the first leg: the one a resync would take first.
        c[Owner].Ok(new Dm.Create("m", $"0 {Regions * RegionSectors} mirror disk 2 log0@{LogNode} {RegionSectors} 2 disk0@{Owner} 0 disk0@{Leg} 0 1 handle_errors"));
        TestCluster.Eventually(() => Status(c[Owner], "m"), x => x.Contains($" {Regions}/{Regions} 1 AA "), "m in sync");
        Write(c[Owner], "m", 0, 3); // and flushed
        // Acknowledged, not flushed: in both legs' caches, its region dirty.
        var opened = c[Owner].Open("m");
        Assert.Equal(BioStatus.Ok, Io(opened.Device, Bio.Write(0, Data(Block, 4), ActorRefs.Nobody)));
        c[Owner].Ok(new Dm.Close("m"));
        Step("written");

        c.Kill(Owner);
        var back = c.Restart(Owner, keepDisks: true);
        Assert.Equal(Data(Block, 3), ReadCached(back, 0)); // the owner's leg lost the write with its cache
        TestCluster.Eventually(() => back.Info("m"), i => i.Node == Owner && i.LiveTable, "m back on its node", TimeSpan.FromSeconds(60));
        TestCluster.Eventually(() => Status(back, "m"), x => x.Contains($" {Regions}/{Regions} 1 AA "), "m in sync again", TimeSpan.FromSeconds(60));
        Step("owner back, m in sync");

        Assert.Equal(Data(Block, 4), Read(back, "m", 0));
        Assert.Equal(Data(Block, 4), ReadCached(back, 0));
        Assert.Equal(Data(Block, 4), ReadCached(c[Leg], 0));
    }

    /// <summary>What a node's disk0 (a write-back cache) answers a read with.</summary>
    private static byte[] ReadCached(TestCluster.Node node, long sector)
    {
        var data = new byte[Block * Bio.Sector512];
        var done = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        node.Disks.Find("disk0")!.Submit(Bio.Read(sector, data, CallbackRef.ForBios(d => done.TrySetResult(d.Status))));
        Assert.True(done.Task.Wait(TestCluster.Timeout), "the disk did not answer");
        Assert.Equal(BioStatus.Ok, done.Task.Result);
        return data;
    }
}
