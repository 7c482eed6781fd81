using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Cluster.Sharding.External;
using Akka.Cluster.Tools.Singleton;

namespace DmActors.Cluster;

/// <summary>A command to one volume entity, through the shard region.</summary>
public sealed record VolumeEnvelope(string EntityId, object Command) : IControlMessage;

/// <summary>Entity id = the envelope's; shard = the entity id's stack group (the part before ':').</summary>
public sealed class VolumeMessageExtractor : IMessageExtractor
{
    public string? EntityId(object message) => message is VolumeEnvelope e ? e.EntityId : null;

    public object? EntityMessage(object message) => message is VolumeEnvelope e ? e.Command : message;

    [Obsolete("Use ShardId(entityId, messageHint)")]
    public string? ShardId(object message) => EntityId(message) is { } id ? VolumeState.ShardOf(id) : null;

    public string ShardId(string entityId, object? messageHint = null) => VolumeState.ShardOf(entityId);
}

/// <summary>
/// A node's volume machinery: the shard region of volumes (external allocation: a stack group runs where the
/// directory placed it, and nothing moves when a node joins), the volume directory singleton and its proxy, and the
/// manager facade that answers dmsetup's protocol. The host calls <see cref="Start"/> once per actor system, after
/// the cluster configuration (<see cref="ClusterDefaults"/>) and a journal are in place.
/// </summary>
public static class ClusterVolumes
{
    public sealed record Started(IActorRef Manager, IActorRef Region, IActorRef Directory);

    /// <param name="managerName">The facade's name under /user ("devices": the NBD server and the control gate find it there).</param>
    public static Started Start(ActorSystem system, ClusterNode node, string managerName = "devices")
    {
        var sharding = ClusterSharding.Get(system);
        // The entities ask the directory where their group is placed before they start (VolumeEntity.Placement).
        var directory = system.ActorOf(ClusterSingletonProxy.Props("/user/volume-directory",
            ClusterSingletonProxySettings.Create(system)), "volume-directory-proxy");
        var region = sharding.Start(ClusterDefaults.VolumeType, id => VolumeEntity.Props(id, node, directory),
            ClusterShardingSettings.Create(system), new VolumeMessageExtractor(),
            new ExternalShardAllocationStrategy(system, ClusterDefaults.VolumeType), VolumeEntity.HandOff.Instance);
        system.ActorOf(ClusterSingletonManager.Props(VolumeDirectory.Props(region, node),
            PoisonPill.Instance, ClusterSingletonManagerSettings.Create(system)), "volume-directory");
        var manager = system.ActorOf(ClusterDeviceManager.Props(node, region, directory), managerName);
        return new Started(manager, region, directory);
    }
}
