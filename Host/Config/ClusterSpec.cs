using System.Text.RegularExpressions;
using AkkaConfig = Akka.Configuration.Config;

namespace DmActors.Host.Configuration;

/// <summary>A seed node's control address.</summary>
public sealed record SeedNode(string Host, int Port)
{
    public override string ToString() => Host.Contains(':') ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}

/// <summary>
/// <c>dmactors.cluster</c>, checked: present only when a node name is set. Everything the host needs to join and
/// to configure Akka.Cluster, the split brain resolver and sharding.
/// </summary>
public sealed partial record ClusterSpec(string Node, string Name, IReadOnlyList<SeedNode> Seeds, IReadOnlyList<string> Roles,
    string Secret, TimeSpan JoinTimeout, TimeSpan StableAfter, TimeSpan HeartbeatPause, TimeSpan RebalanceInterval,
    TimeSpan RehomeAfterStart)
{

    /// <summary>The token of internal exports: the cluster's secret.</summary>
    public string Token => Secret;

    [GeneratedRegex("^[a-z0-9_-]{1,63}$")]
    private static partial Regex NodeName();

    /// <summary>A node name dm tables can carry after '@', or why not.</summary>
    public static string? CheckNode(string node) =>
        NodeName().IsMatch(node) ? null : $"node name '{node}' must be 1 to 63 characters of a-z, 0-9, '_' and '-'";

    internal static ClusterSpec? Read(AkkaConfig config, Func<string, string> fail, Func<string, TimeSpan, TimeSpan> duration)
    {
        var node = config.GetString("dmactors.cluster.node", "");
        if (string.IsNullOrEmpty(node)) return null;
        if (CheckNode(node) is { } bad) fail($"dmactors.cluster.node: {bad}");
        var name = config.GetString("dmactors.cluster.name", "dmactors");
        if (CheckNode(name) != null) fail($"dmactors.cluster.name: '{name}' must be 1 to 63 characters of a-z, 0-9, '_' and '-'");
        var seeds = new List<SeedNode>();
        foreach (var text in config.GetStringList("dmactors.cluster.seed-nodes") ?? [])
        {
            var at = text.LastIndexOf(':');
            if (at <= 0 || !int.TryParse(text[(at + 1)..], out var port) || port is < 1 or > 65535)
                fail($"dmactors.cluster.seed-nodes: '{text}' is not HOST:PORT (a node's control address)");
            seeds.Add(new SeedNode(text[..at].Trim('[', ']'), int.Parse(text[(at + 1)..])));
        }
        var roles = (config.GetStringList("dmactors.cluster.roles") ?? []).ToList();
        foreach (var role in roles.Where(r => r.StartsWith(DmActors.Cluster.ClusterDefaults.RolePrefix, StringComparison.Ordinal)))
            fail($"dmactors.cluster.roles: '{role}' is reserved (every node has the role node:NAME)");
        TimeSpan Positive(string key, TimeSpan fallback)
        {
            var value = duration($"dmactors.cluster.{key}", fallback);
            if (value <= TimeSpan.Zero) fail($"dmactors.cluster.{key} must be positive");
            return value;
        }
        var secret = config.GetString("dmactors.cluster.secret", "");
        // The secret is all that keeps a stranger from opening a node's disks (and fencing their owners) over NBD.
        if (string.IsNullOrWhiteSpace(secret))
            fail("dmactors.cluster.secret must be set: members present it to use each other's disks over NBD (the same on every node)");
        return new ClusterSpec(node, name, seeds, roles, secret,
            Positive("join-timeout", TimeSpan.FromSeconds(60)), Positive("stable-after", TimeSpan.FromSeconds(20)),
            Positive("heartbeat-pause", TimeSpan.FromSeconds(3)), Positive("rebalance-interval", TimeSpan.FromSeconds(2)),
            Positive("rehome-after-start", TimeSpan.FromSeconds(20)));
    }

    /// <summary>
    /// The Akka configuration of a cluster node beyond <see cref="DmActors.Cluster.ClusterDefaults"/> (which the
    /// host layers under it): the extra roles, the failure detector's pause, and a downed node that stops.
    /// </summary>
    public string Hocon => $$"""
        akka.cluster {
          roles = [{{string.Join(", ", Roles.Prepend(DmActors.Cluster.ClusterDefaults.Role(Node)).Select(r => $"\"{r}\""))}}]
          # Joined by hand after the seeds' names were checked (ClusterJoin), not from seed-nodes.
          seed-nodes = []
          failure-detector.acceptable-heartbeat-pause = {{Ms(HeartbeatPause)}}
          # A downed node stops: it must not go on serving volumes that moved away.
          run-coordinated-shutdown-when-down = on
        }
        """;

    private static string Ms(TimeSpan t) => $"{(long)t.TotalMilliseconds}ms";
}
