using Akka.Actor;
using Akka.Cluster;
using Akka.Event;
using DmActors.Cluster;

namespace DmActors.Host.Cluster;

/// <summary>
/// Drops this node's connections to the disks of a member that is removed from the cluster (downed or left), so
/// the volumes over them get errors at once instead of waiting out the data channel's reconnect hold.
/// </summary>
internal sealed class RemovedMembers : ReceiveActor
{
    public static Props Props(ClusterDisks disks) => Akka.Actor.Props.Create(() => new RemovedMembers(disks));

    public RemovedMembers(ClusterDisks disks)
    {
        Receive<ClusterEvent.MemberRemoved>(m =>
        {
            if (ClusterDefaults.NodeOf(m.Member.Roles) is not { } node || node == disks.Self) return;
            var log = Context.GetLogger();
            // Closing a connection waits for its threads: never on an actor's thread.
            Task.Run(() =>
            {
                var dropped = disks.Drop(node, $"node {node} was removed from the cluster");
                if (dropped > 0) log.Warning("node {0} was removed from the cluster: dropped {1} connection(s) to its disks", node, dropped);
            });
        });
        Receive<ClusterEvent.IMemberEvent>(_ => { });
    }

    protected override void PreStart() =>
        Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberRemoved));

    protected override void PostStop() => Akka.Cluster.Cluster.Get(Context.System).Unsubscribe(Self);
}
