using DmActors.Cluster;
using Xunit;

namespace DmActors.Tests.Cluster;

/// <summary>
/// A node killed and started again under its name before the directory re-placed its groups (they stay placed on
/// it): its volumes must start on the new incarnation. Before the fix nothing started them: the placement published
/// for the allocation still named the dead incarnation's address, and the directory woke nothing (seen in
/// <c>ClusterTestCommandTests</c>: the owner restarted within the rehome delay, and its volume never served again).
/// </summary>
[Collection("cluster")]
public sealed class ClusterRejoinTests
{
    [Fact]
    public void A_node_back_under_its_name_before_its_groups_were_re_placed_serves_them_again()
    {
        using var c = new TestCluster(rehomeDelay: TimeSpan.FromSeconds(15));
        c["n1"].Ok(new Dm.Create("v", "0 1024 linear disk0 0", Node: "n3"));
        Assert.Equal("n3", c["n1"].Info("v").Node);
        var id = c["n1"].EntityId("v");
        var before = c.LatestEpoch(id);

        c.Kill("n3");
        c.Restart("n3", keepDisks: true); // a member again well within the rehome delay: its groups stay placed on it

        var info = TestCluster.Eventually(() => c["n1"].Info("v"), i => i.Node == "n3" && i.LiveTable, "v serving on the new n3");
        Assert.Equal(1024, info.Sectors);
        Assert.True(c.LatestEpoch(id) > before, "the volume started again with a newer epoch");
    }
}
