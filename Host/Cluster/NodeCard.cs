using Akka.Actor;
using DmActors.Cluster;

namespace DmActors.Host.Cluster;

/// <summary>
/// Who this host is in its cluster, as its control gate tells a node that says hello: the cluster and node
/// names, where its NBD server listens (set once it does), and the members it sees.
/// </summary>
public sealed class NodeCard(string? cluster, string? node)
{
    private volatile string? _nbd;

    public string? Cluster { get; } = cluster;
    public string? Node { get; } = node;

    /// <summary>The NBD endpoint other members use for this node's exports ("HOST:PORT").</summary>
    public string? Nbd { get => _nbd; set => _nbd = value; }

    public ClusterCmd.HelloReply Reply(ActorSystem system) => new(Cluster, Node, Nbd, Members(system));

    /// <summary>The members of <paramref name="system"/>'s cluster that carry a node name (none without a cluster).</summary>
    public static IReadOnlyList<ClusterCmd.NodeAddress> Members(ActorSystem system)
    {
        if (system is not ExtendedActorSystem { Provider: Akka.Cluster.IClusterActorRefProvider }) return [];
        return Akka.Cluster.Cluster.Get(system).State.Members
            .Select(m => (Node: ClusterDefaults.NodeOf(m.Roles), m.Address))
            .Where(m => m.Node != null)
            .Select(m => new ClusterCmd.NodeAddress(m.Node!, m.Address.ToString()))
            .ToList();
    }
}
