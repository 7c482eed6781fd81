using DmActors.Cluster;
using DmActors.Host.Cli;
using DmActors.Host.Configuration;
using Xunit;

namespace DmActors.Tests.Cluster;

/// <summary>The dmactors.cluster section: off without a node name, checked with clear errors, and the Akka settings it makes.</summary>
public sealed class ClusterConfigTests
{
    private const string Pg = "dmactors.journal.postgres = \"Host=127.0.0.1;Port=5432;Database=d\"\ndmactors.cluster.secret = s3cret\n";

    [Fact]
    public void Without_a_node_name_the_host_is_a_single_host_as_before()
    {
        var s = HostConfig.Parse("", "f.hocon");
        Assert.Null(s.Cluster);
        Assert.DoesNotContain("provider = cluster", HostConfig.HostAkka(s).ToString());
        Assert.Equal("remote", HostConfig.HostAkka(s).GetString("akka.actor.provider"));
    }

    [Fact]
    public void A_node_name_turns_the_cluster_on_with_its_seeds_roles_and_timings()
    {
        var s = HostConfig.Parse(Pg + """
            dmactors.cluster { node = n2, name = lab, seed-nodes = ["127.0.0.1:4001", "[::1]:4002"], roles = [fast],
              stable-after = 3s, heartbeat-pause = 1500ms, rebalance-interval = 1s, secret = s3cret }
            """, "f.hocon");
        var c = Assert.IsType<ClusterSpec>(s.Cluster);
        Assert.Equal(("n2", "lab", "s3cret"), (c.Node, c.Name, c.Token));
        Assert.Equal([new SeedNode("127.0.0.1", 4001), new SeedNode("::1", 4002)], c.Seeds);
        var akka = HostConfig.HostAkka(s);
        Assert.Equal("cluster", akka.GetString("akka.actor.provider"));
        Assert.Equal(["node:n2", "fast"], akka.GetStringList("akka.cluster.roles"));
        Assert.Equal("keep-majority", akka.GetString("akka.cluster.split-brain-resolver.active-strategy"));
        Assert.Equal(TimeSpan.FromSeconds(3), akka.GetTimeSpan("akka.cluster.split-brain-resolver.stable-after"));
        Assert.Equal(TimeSpan.FromMilliseconds(1500), akka.GetTimeSpan("akka.cluster.failure-detector.acceptable-heartbeat-pause"));
        Assert.Equal(TimeSpan.FromSeconds(1), akka.GetTimeSpan("akka.cluster.sharding.rebalance-interval"));
        Assert.Empty(akka.GetStringList("akka.cluster.seed-nodes"));
    }

    [Fact]
    public void The_grace_period_before_a_start_re_places_absent_nodes_groups_is_read_with_a_default_of_20_s()
    {
        Assert.Equal(TimeSpan.FromSeconds(20), HostConfig.Parse(Pg + "dmactors.cluster.node = n1", "f.hocon").Cluster!.RehomeAfterStart);
        var s = HostConfig.Parse(Pg + "dmactors.cluster { node = n1, rehome-after-start = 90s }", "f.hocon");
        Assert.Equal(TimeSpan.FromSeconds(90), s.Cluster!.RehomeAfterStart);
    }

    [Fact]
    public void A_cluster_without_a_secret_is_refused()
    {
        // Whoever has the secret can open any node's disks over NBD: a cluster does not run without one.
        var e = Assert.Throws<ConfigException>(() => HostConfig.Parse(Pg + "dmactors.cluster { node = n1, secret = \"\" }", "f.hocon"));
        Assert.Equal("f.hocon: dmactors.cluster.secret must be set: members present it to use each other's disks over NBD (the same on every node)", e.Message);
    }

    [Theory]
    [InlineData("dmactors.cluster.node = \"N 1\"", "dmactors.cluster.node: node name 'N 1' must be 1 to 63 characters")]
    [InlineData("dmactors.cluster { node = n1, seed-nodes = [\"nowhere\"] }", "dmactors.cluster.seed-nodes: 'nowhere' is not HOST:PORT")]
    [InlineData("dmactors.cluster { node = n1, seed-nodes = [\"h:99999\"] }", "'h:99999' is not HOST:PORT")]
    [InlineData("dmactors.cluster { node = n1, roles = [\"node:x\"] }", "'node:x' is reserved")]
    [InlineData("dmactors.cluster { node = n1, stable-after = 0s }", "dmactors.cluster.stable-after must be positive")]
    [InlineData("dmactors.cluster { node = n1, rehome-after-start = 0s }", "dmactors.cluster.rehome-after-start must be positive")]
    [InlineData("dmactors.cluster { node = n1, rehome-after-start = later }", "dmactors.cluster.rehome-after-start: 'later' is not a duration")]
    [InlineData("dmactors.cluster { node = n1, join-timeout = soon }", "dmactors.cluster.join-timeout: 'soon' is not a duration")]
    [InlineData("dmactors.cluster { node = n1, name = \"A B\" }", "dmactors.cluster.name: 'A B' must be")]
    [InlineData("dmactors.cluster { node = n1, colour = red }", "colour")]
    public void Bad_cluster_settings_are_refused_naming_the_key(string text, string expected)
    {
        var e = Assert.Throws<ConfigException>(() => HostConfig.Parse(Pg + text, "f.hocon"));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_cluster_without_a_shared_journal_is_refused()
    {
        var e = Assert.Throws<ConfigException>(() => HostConfig.Parse("dmactors.cluster { node = n1, secret = s }", "f.hocon"));
        Assert.Equal("f.hocon: dmactors.cluster: a cluster needs one journal shared by its nodes: set dmactors.journal.postgres", e.Message);
    }

    [Fact]
    public void Cluster_status_prints_one_line_per_member_with_its_volumes()
    {
        var reply = new ClusterCmd.StatusReply("dmactors", "n1", "n1",
        [
            new("n1", "akka.tcp://dmactors@127.0.0.1:4001", "Up", ["node:n1"], ["demo", "vol"]),
            new("n22", "akka.tcp://dmactors@127.0.0.1:4002", "Unreachable", ["node:n22"], []),
        ]);
        Assert.Equal(
        [
            "Cluster dmactors, seen from n1; leader n1",
            "NODE  STATE        ADDRESS                             VOLUMES",
            "n1    Up           akka.tcp://dmactors@127.0.0.1:4001  demo,vol",
            "n22   Unreachable  akka.tcp://dmactors@127.0.0.1:4002  -",
        ], DmsetupFormat.ClusterStatus(reply));
    }

    [Fact]
    public void Info_names_the_owning_node_in_a_cluster_only()
    {
        var info = new DmActors.Dm.DeviceInfo("vol", null, false, false, true, false, 0, 0, 253, 0, 1, 2048, DmActors.BarrierMode.Ordered);
        Assert.DoesNotContain(DmsetupFormat.InfoBlock(info), l => l.StartsWith("Node:"));
        Assert.Contains("Node:              n3", DmsetupFormat.InfoBlock(info with { Node = "n3" }));
    }
}
