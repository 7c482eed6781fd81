using Akka.Actor;
using Xunit;

namespace DmActors.Tests.Cluster;

/// <summary>
/// `dmsetup wait` through the cluster facade answers as the single-host manager does: a volume removed while a
/// wait is pending fails the wait with ENXIO ("device removed while waiting"), from the owner and from another node.
/// </summary>
[Collection("cluster")]
public sealed class ClusterWaitTests
{
    [Fact]
    public void A_wait_on_a_volume_removed_while_waiting_fails_with_no_such_device()
    {
        using var c = new TestCluster(nodes: 2);
        var (n1, n2) = (c["n1"], c["n2"]);
        n1.Ok(new Dm.Create("w1", "0 1024 linear disk0 0"));
        n1.Ok(new Dm.Create("w2", "0 1024 linear disk0 1024"));
        // Longer than the nodes' ask timeout: a wait may last as long as the client is willing to wait.
        var patience = TestCluster.Timeout * 2;
        var fromOwner = n1.Manager.Ask<object>(new Dm.GetInfo("w1", 0, patience), patience * 2);
        var fromOther = n2.Manager.Ask<object>(new Dm.GetInfo("w2", 0, patience), patience * 2);
        // Both are waiting (no event yet); a wait that reached the device after the remove fails the same way.
        Assert.False(Task.WaitAny([fromOwner, fromOther], TimeSpan.FromMilliseconds(500)) >= 0, "a wait answered before any event");
        n2.Ok(new Dm.Remove("w1"));
        n1.Ok(new Dm.Remove("w2"));
        foreach (var (wait, name) in new[] { (fromOwner, "w1"), (fromOther, "w2") })
        {
            Assert.True(wait.Wait(TestCluster.Timeout), $"the wait on {name} was not answered after the remove");
            var failed = Assert.IsType<Dm.Failed>(wait.Result);
            Assert.Equal((name, Dm.Failed.NoDevice), (failed.Name, failed.Error));
        }
    }
}
