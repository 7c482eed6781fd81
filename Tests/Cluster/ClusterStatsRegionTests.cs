using Akka.Actor;
using Xunit;

namespace DmActors.Tests.Cluster;

/// <summary>dmstats regions through the cluster facade: made, counted, read and deleted from a node that does not own the volume.</summary>
[Collection("cluster")]
public sealed class ClusterStatsRegionTests
{
    [Fact]
    public void Regions_are_made_read_and_deleted_from_any_node()
    {
        using var c = new TestCluster(nodes: 2);
        var (n1, n2) = (c["n1"], c["n2"]);
        n1.Ok(new Dm.Create("st", "0 1024 linear disk0 0\n1024 1024 linear disk0 4096"));
        var created = Assert.IsType<StatsRegionsCreated>(n2.Command(new CreateStatsRegion("st", null, null, true, [], "dmstats")));
        Assert.Equal([(1L, 0L, 1024L), (2L, 1024L, 1024L)], created.Regions.Select(r => (r.Id, r.Start, r.Length)));

        var opened = n1.Open("st");
        var probe = new Akka.TestKit.TestProbe(n1.System, new Akka.TestKit.Xunit2.XunitAssertions());
        opened.Device.Tell(Bio.Write(1020, new byte[8 * Bio.Sector512], probe.Ref)); // 4 sectors in each line
        Assert.Equal(BioStatus.Ok, probe.ExpectMsg<BioDone>(TestCluster.Timeout).Status);
        n1.Ok(new Dm.Close("st"));

        var stats = Assert.IsType<DeviceIoStats>(n2.Command(new GetIoStats("st")));
        Assert.Equal([(1L, 1L, 4L), (2L, 1L, 4L)], stats.Regions!.Select(r => (r.Id, r.Counters.Writes, r.Counters.WriteSectors)));
        n2.Ok(new DeleteStatsRegion("st", 1));
        Assert.Equal([2L], Assert.IsType<DeviceIoStats>(n1.Command(new GetIoStats("st"))).Regions!.Select(r => r.Id));
        Assert.Equal(Dm.Failed.NoDevice, n2.Fails(new DeleteStatsRegion("nope", null)).Error);
    }
}
