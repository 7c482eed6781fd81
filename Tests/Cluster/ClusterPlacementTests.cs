using Akka.Actor;
using Akka.Cluster.Sharding;
using DmActors.Cluster;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Cluster;

/// <summary>
/// A volume starts only on the node its group is placed on. Akka's external allocation gives a shard to the region
/// that asked for it while the placed node's region has not registered with the coordinator: here n3 is a member
/// whose volume machinery starts late, and the first message to a group placed on n3 comes from n1. Before the
/// fix the volume activated on n1 (an epoch, its disks opened there) until the next rebalance moved it to n3.
/// </summary>
[Collection("cluster")]
public sealed class ClusterPlacementTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    private void Step(string what) => output.WriteLine($"{_clock.Elapsed.TotalSeconds,6:F1}s {what}");

    [Fact]
    public async Task A_volume_created_for_a_node_whose_region_is_not_registered_yet_is_created_only_there()
    {
        using var c = new TestCluster(lateVolumes: ["n3"]);
        var n1 = c["n1"];
        Step("cluster up, n3 without its region");
        var create = n1.Manager.Ask<object>(new Dm.Create("v", "0 1024 linear disk0 0", Node: "n3"), TestCluster.Timeout);
        // The coordinator gave the new group to n1's region (the one that asked): the entity is there now.
        AwaitEntityOn(n1, "g0");
        Step("group g0 allocated to n1");
        c.StartVolumes("n3");
        Assert.IsType<Dm.Done>(await create);
        Step("created");

        var id = n1.EntityId("v");
        Assert.Equal("n3", n1.Info("v").Node);
        AssertActivatedOnlyOn(c, id, "n3", epoch: 1);
        Assert.Equal(new[] { "v" }, c["n3"].Cluster.Volumes.Names);
        Assert.Empty(n1.Cluster.Volumes.Names);
    }

    [Fact]
    public async Task After_a_whole_cluster_restart_a_volume_comes_back_only_on_its_node_though_that_node_registers_last()
    {
        using var dir = new TempDir("dmactors-placement");
        var journal = dir["journal.db"];
        TestCluster before;
        string id;
        using (before = new TestCluster(journal: journal))
        {
            before["n1"].Ok(new Dm.Create("v", "0 1024 linear disk0 0", Node: "n3"));
            id = before["n1"].EntityId("v");
            Assert.Equal("n3", before["n1"].Info("v").Node);
        }
        // Its last epoch (the directory may have woken it once more while the nodes left).
        var epoch = before.LatestEpoch(id);
        Step($"first cluster stopped at epoch {epoch}");

        // The whole cluster starts again; n3's region registers last. The directory (on n1, the oldest member)
        // wakes the volume through n1's region, which the coordinator gives the group to.
        using var c = new TestCluster(journal: journal, lateVolumes: ["n3"]);
        var n1 = c["n1"];
        Assert.Equal("n3", ((DirectoryCmd.Resolved)await n1.Directory.Ask<object>(new DirectoryCmd.Resolve("info", "v"), TestCluster.Timeout)).Node);
        AwaitEntityOn(n1, VolumeState.ShardOf(id));
        Step("group allocated to n1");
        c.StartVolumes("n3");
        var info = TestCluster.Eventually(() => n1.Info("v"), i => i.Node == "n3" && i.LiveTable, "v serving on n3");
        Step("v serves on n3");
        Assert.Equal(1024, info.Sectors);
        // One activation since the restart, on n3: no epoch was recorded on n1, and no disk opened there.
        AssertActivatedOnlyOn(c, id, "n3", epoch + 1);
        Assert.Empty(n1.Cluster.Volumes.Names);
    }

    private static void AssertActivatedOnlyOn(TestCluster c, string entityId, string node, long epoch)
    {
        List<(string Volume, string By, long Epoch)> opens;
        lock (c.Epochs) opens = c.Epochs.Where(e => e.Volume == entityId).ToList();
        Assert.NotEmpty(opens);
        Assert.All(opens, o => Assert.Equal((node, epoch), (o.By, o.Epoch)));
    }

    /// <summary>Waits until <paramref name="node"/>'s shard region hosts <paramref name="shard"/> with an entity in it.</summary>
    private static void AwaitEntityOn(TestCluster.Node node, string shard)
    {
        var region = ClusterSharding.Get(node.System).ShardRegion(ClusterDefaults.VolumeType);
        TestCluster.Await(() =>
        {
            var state = region.Ask<CurrentShardRegionState>(GetShardRegionState.Instance, TestCluster.Timeout).GetAwaiter().GetResult();
            return state.Shards.Any(s => s.ShardId == shard && s.EntityIds.Count > 0);
        }, $"group {shard} allocated to {node.Name}");
    }
}
