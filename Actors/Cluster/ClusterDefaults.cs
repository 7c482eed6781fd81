namespace DmActors.Cluster;

/// <summary>
/// The Akka configuration a cluster node needs for volumes (the host layers its own values over it, tests shorten
/// the timings): the cluster provider, the split brain resolver (keep-majority), sharding over distributed data
/// without remembered entities or passivation (the volume directory wakes volumes), and the node's role.
/// </summary>
public static class ClusterDefaults
{
    /// <summary>The sharding type name of volumes.</summary>
    public const string VolumeType = "volume";

    /// <summary>The role that names a node: a node name maps to the member that carries <c>node:NAME</c>.</summary>
    public const string RolePrefix = "node:";

    public static string Role(string node) => RolePrefix + node;

    /// <summary>
    /// The dispatcher of volume entities: a table build may wait on the network (another node's hello, an NBD
    /// connect, a fence claim), so entities get threads of their own, never the default dispatcher's.
    /// </summary>
    public const string VolumeDispatcher = "akka.actor.dmactors-volume-dispatcher";

    /// <summary>The node name of a member, from its role; null for a member that carries none.</summary>
    public static string? NodeOf(IEnumerable<string> roles) =>
        roles.FirstOrDefault(r => r.StartsWith(RolePrefix, StringComparison.Ordinal))?[RolePrefix.Length..];

    /// <summary>
    /// HOCON for a cluster node named <paramref name="node"/>. <paramref name="stableAfter"/> is the split brain
    /// resolver's wait before it downs unreachable members; <paramref name="rebalanceInterval"/> how soon a move
    /// starts (the coordinator hands a shard over only at a rebalance tick).
    /// </summary>
    public static string Hocon(string node, TimeSpan? stableAfter = null, TimeSpan? rebalanceInterval = null) => $$"""
        akka {
          actor.provider = cluster
          actor.dmactors-volume-dispatcher {
            type = ForkJoinDispatcher
            throughput = 16
            dedicated-thread-pool { thread-count = 4 }
          }
          cluster {
            roles = ["{{Role(node)}}"]
            downing-provider-class = "Akka.Cluster.SBR.SplitBrainResolverProvider, Akka.Cluster"
            split-brain-resolver {
              active-strategy = keep-majority
              stable-after = {{Ms(stableAfter ?? TimeSpan.FromSeconds(20))}}
            }
            sharding {
              state-store-mode = ddata
              remember-entities = off
              # Volumes are woken by the directory and stay up until they move or are removed.
              passivate-idle-entity-after = off
              # How soon a placement change (move) is acted on: the coordinator rebalances only at this tick.
              rebalance-interval = {{Ms(rebalanceInterval ?? TimeSpan.FromSeconds(2))}}
              # Nothing durable in distributed data: its LMDB store is not usable here and nothing needs it.
              distributed-data.durable.keys = []
            }
            distributed-data {
              durable.keys = []
              # Placements reach the allocation strategy through a subscription: notify it soon.
              notify-subscribers-interval = 100ms
            }
          }
        }
        """;

    private static string Ms(TimeSpan t) => $"{(long)t.TotalMilliseconds}ms";
}
