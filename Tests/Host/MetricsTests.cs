using System.Text;
using Akka.Actor;
using DmActors.Cluster;
using DmActors.Host.Metrics;
using Prometheus;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>The metrics' series as a scrape shows them, from counters set up in process.</summary>
public sealed class MetricsTests
{
    private static string Export(CollectorRegistry registry)
    {
        using var stream = new MemoryStream();
        registry.CollectAndExportAsTextAsync(stream).GetAwaiter().GetResult();
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private static ClusterCmd.MemberEntry Member(string node, params string[] volumes) => new(node, "akka.tcp://x@h:1", "Up", [], volumes);

    [Fact]
    public void Cluster_volume_counts_follow_the_members_and_drop_those_gone()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var metrics = new ClusterMetrics(Prometheus.Metrics.WithCustomRegistry(registry), ActorRefs.Nobody);
        metrics.Update(new ClusterCmd.StatusReply("c", "a", "a", [Member("a", "v1", "v2"), Member("b", "v3")]));
        var text = Export(registry);
        Assert.Contains("dmactors_cluster_volumes{node=\"a\"} 2\n", text);
        Assert.Contains("dmactors_cluster_volumes{node=\"b\"} 1\n", text);
        metrics.Update(new ClusterCmd.StatusReply("c", "a", "a", [Member("a", "v1", "v2", "v3")]));
        text = Export(registry);
        Assert.Contains("dmactors_cluster_volumes{node=\"a\"} 3\n", text);
        Assert.DoesNotContain("node=\"b\"", text);
    }

    [Fact]
    public void A_device_created_again_under_its_name_starts_its_counters_again_and_a_removed_one_vanishes()
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var board = new IoStatsBoard([TimeSpan.FromMilliseconds(1)]);
        var metrics = new DeviceMetrics(Prometheus.Metrics.WithCustomRegistry(registry), board);
        var shared = new DeviceShared("d", 0);
        var first = new IoStats(board.Bounds);
        board.Add(shared, first);
        var write = new Bio(BioOp.Write, 0, 8, new byte[4096], ActorRefs.Nobody);
        for (var i = 0; i < 3; i++) first.Done(write, BioStatus.Ok, first.Start());
        metrics.Update();
        var text = Export(registry);
        Assert.Contains("dmactors_device_writes_completed_total{device=\"d\"} 3\n", text);
        Assert.Contains("dmactors_device_written_sectors_total{device=\"d\"} 24\n", text);
        Assert.Contains("dmactors_device_io_latency_le_total{device=\"d\",le=\"+Inf\"} 3\n", text);

        board.Remove(first);
        var again = new IoStats(board.Bounds);
        board.Add(shared, again);
        again.Done(write, BioStatus.Ok, again.Start());
        metrics.Update();
        Assert.Contains("dmactors_device_writes_completed_total{device=\"d\"} 1\n", Export(registry));

        board.Remove(again);
        metrics.Update();
        Assert.DoesNotContain("device=\"d\"", Export(registry));
    }
}
