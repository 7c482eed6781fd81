using Akka.Actor;
using DmActors.Cluster;
using DmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace DmActors.Tests.Cluster;

/// <summary>
/// A whole-cluster start whose nodes join one by one: the volume directory re-places the groups of nodes that are not
/// members only once the grace period has passed since the last member joined. Before the fix it counted from the
/// directory's start, so a node slower to join than that found its group moved to a node that was up (seen once in
/// <c>ClusterLifecycleProcessTests</c> on a loaded machine).
/// </summary>
[Collection("cluster")]
public sealed class ClusterStartGraceTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Grace = TimeSpan.FromSeconds(12);

    [Fact]
    public void A_node_that_joins_after_the_grace_period_since_the_start_but_within_it_since_the_last_join_keeps_its_group()
    {
        using var dir = new TempDir("dmactors-grace");
        var journal = dir["journal.db"];
        string bId;
        using (var before = new TestCluster(journal: journal))
        {
            before["n1"].Ok(new Dm.Create("a", "0 1024 linear disk0 0", Node: "n2"));
            before["n1"].Ok(new Dm.Create("b", "0 1024 linear disk0 0", Node: "n3"));
            bId = before["n1"].EntityId("b");
            before.Halt(); // no node leaves, so no group moves while the cluster stops
        }

        // The cluster starts again with n1 alone; n2 joins late in the grace period, n3 after its end.
        using var c = new TestCluster(journal: journal, joinLater: ["n2", "n3"], rehomeAfterStart: Grace);
        var n1 = c["n1"];
        var resolved = TestCluster.Eventually(() => Node(n1, "b"), n => n != null, "the directory to answer");
        var started = DateTime.UtcNow; // the directory started no later than this
        Assert.Equal("n3", resolved);
        Assert.Equal("n2", Node(n1, "a"));

        // The grace period is what is tested: the joins are placed in time around its end.
        TestCluster.Await(() => DateTime.UtcNow > started + Grace * 0.6, "well into the grace period", Grace);
        c.Join("n2");
        output.WriteLine($"n2 up {(DateTime.UtcNow - started).TotalSeconds:F1} s after the directory answered");
        TestCluster.Await(() => DateTime.UtcNow > started + Grace + TimeSpan.FromSeconds(1), "the grace period since the start over", Grace);
        Assert.Equal("n3", Node(n1, "b"));
        c.Join("n3");
        output.WriteLine($"n3 up {(DateTime.UtcNow - started).TotalSeconds:F1} s after the directory answered");

        var info = TestCluster.Eventually(() => n1.Info("b"), i => i.Node == "n3" && i.LiveTable, "b serving on n3");
        Assert.Equal(1024, info.Sectors);
        Assert.Equal("n2", n1.Info("a").Node);
        lock (c.Epochs) Assert.All(c.Epochs.Where(e => e.Volume == bId), e => Assert.Equal("n3", e.By));
    }

    private static string? Node(TestCluster.Node node, string volume) =>
        node.Directory.Ask<object>(new DirectoryCmd.Resolve("info", volume), TimeSpan.FromSeconds(5)).GetAwaiter().GetResult() is DirectoryCmd.Resolved r
            ? r.Node : null;
}
