namespace DmActors.Cluster;

/// <summary>
/// The cluster's control protocol beside dmsetup's (<see cref="Dm"/>): `dmactors cluster status` and
/// `dmactors cluster move`. Small records only: they cross nodes.
/// </summary>
public static class ClusterCmd
{
    /// <summary>`dmactors cluster status`: answered with <see cref="StatusReply"/>.</summary>
    public sealed record Status : IControlMessage { public static readonly Status Instance = new(); }

    /// <param name="Node">The node's name (dmactors.cluster.node).</param>
    /// <param name="Address">Its Akka address (akka.tcp://SYSTEM@HOST:PORT).</param>
    /// <param name="State">Akka's member status: Joining, Up, Leaving, Exiting, Down, Removed; Unreachable when the failure detector says so.</param>
    /// <param name="Volumes">Names of the volumes placed on it, sorted.</param>
    public sealed record MemberEntry(string Node, string Address, string State, IReadOnlyList<string> Roles, IReadOnlyList<string> Volumes) : IControlMessage;

    /// <param name="Self">The node that answered.</param>
    /// <param name="Leader">The node Akka sees as leader (null while there is none).</param>
    public sealed record StatusReply(string ClusterName, string Self, string? Leader, IReadOnlyList<MemberEntry> Members) : IControlMessage;

    /// <summary>
    /// `dmactors cluster move VOL NODE`: hands the volume (with every volume of its stack group) over to NODE:
    /// suspend, stop, start there, resume. Answered with Dm.Done once it serves on NODE, or Dm.Failed.
    /// </summary>
    /// <param name="Within">How long the manager waits for the volume to serve on NODE before it answers that it
    /// does not yet (the CLI's timeout; the CLI waits a little longer for the answer). Null: twice the ask timeout.</param>
    public sealed record Move(string Name, string Node, TimeSpan? Within = null) : IControlMessage;

    /// <summary>
    /// What a node asks a seed before it joins, and a member asks another for its data channel: answered by the
    /// node's control gate with <see cref="HelloReply"/>, before the node is a member too.
    /// </summary>
    public sealed record Hello : IControlMessage { public static readonly Hello Instance = new(); }

    /// <param name="Cluster">The cluster name it belongs to (dmactors.cluster.name); null for a single host.</param>
    /// <param name="Nbd">Its NBD endpoint ("HOST:PORT", null until it listens): where members reach its exports.</param>
    /// <param name="Members">Node names of the members it sees, with their addresses, so a joiner can refuse a taken name.</param>
    public sealed record HelloReply(string? Cluster, string? Node, string? Nbd, IReadOnlyList<NodeAddress> Members) : IControlMessage;

    public sealed record NodeAddress(string Node, string Address) : IControlMessage;
}
