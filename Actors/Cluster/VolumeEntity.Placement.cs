using Akka.Actor;
using Akka.Cluster.Sharding;
using Akka.Event;

namespace DmActors.Cluster;

/// <summary>
/// A volume starts only on the node the directory places its group on. Akka's external allocation gives a shard to
/// the region that asked for it when the placed node's region has not registered with the coordinator yet (a
/// cluster that just formed, a coordinator that just moved), when the placement has not reached the coordinator's
/// node, or when its lookup times out. Started there, the volume would record a new epoch and open its disks until
/// the next rebalance moved it. So before it activates (or is created) the entity asks the directory; on another
/// node it stays idle: no epoch, no disk. It holds the commands that reach it (a handoff, the rebalance that takes
/// the shard to its node, sends them on there through the region) and answers those that waited too long with a
/// retryable error; it asks again now and then, so a group the directory re-places here (failover) starts here.
/// </summary>
public sealed partial class VolumeEntity
{
    /// <summary>The directory's answer: the node the group is placed on, or why it is not known.</summary>
    private sealed record PlacementChecked(string? Node, string? Why);

    private sealed record CheckPlacement { public static readonly CheckPlacement Instance = new(); }

    private static readonly TimeSpan PlacementRecheck = TimeSpan.FromMilliseconds(500);
    // A question lost while the directory singleton moves (its proxy's buffer is bounded) is asked again soon.
    private static readonly TimeSpan PlacementAsk = TimeSpan.FromSeconds(5);

    /// <summary>Waiting for the directory, or idle on a node that is not the group's: commands are held.</summary>
    private bool _placing;
    /// <summary>The directory placed the group on this node (this incarnation asked it).</summary>
    private bool _placementConfirmed;
    /// <summary>Since when the held commands wait on a node that is not the group's (null: not known to be misplaced).</summary>
    private DateTime? _heldSince;

    private void ConfirmPlacement()
    {
        if (_placing) return;
        _placing = true;
        AskPlacement();
    }

    private void AskPlacement()
    {
        if (!_placing) return;
        var shard = VolumeState.ShardOf(EntityId);
        _directory.Ask<object>(new DirectoryCmd.PlacementOf(shard), _node.Timeout < PlacementAsk ? _node.Timeout : PlacementAsk).ContinueWith(t =>
                t.IsCompletedSuccessfully && t.Result is DirectoryCmd.Placement p ? new PlacementChecked(p.Node, p.Node == null ? "it is placed nowhere" : null)
                : new PlacementChecked(null, "the volume directory did not answer"),
            TaskContinuationOptions.ExecuteSynchronously).PipeTo(Self);
    }

    private void OnPlacementChecked(PlacementChecked p)
    {
        if (!_placing || _stopping) return;
        if (p.Node == Self_)
        {
            _placing = false;
            _placementConfirmed = true;
            _heldSince = null;
            if (_state.Device != null && _active == null) Activate(); // its Restore lets the held commands in
            else Stash.UnstashAll();
            return;
        }
        var where = p.Node != null ? $"it is placed on node {p.Node}" : p.Why!;
        if (_heldSince == null)
        {
            _heldSince = DateTime.UtcNow;
            _log.Info("volume {0} ({1}) does not start on {2}: {3}", _state.Device?.Name ?? "being created", EntityId, Self_, where);
        }
        else if (DateTime.UtcNow - _heldSince > _node.Timeout / 2)
        {
            // Nothing waits for ever: the caller tries again (through a proxy, the data channel asks who owns it).
            foreach (var e in Stash.ClearStash())
                e.Sender.Tell(new Dm.Failed(Op(e.Message), NameOf(e.Message) is { Length: > 0 } n ? n : _state.Device?.Name ?? "",
                    "Resource temporarily unavailable", $"volume {_state.Device?.Name ?? EntityId} does not run on {Self_}: {where}; try again"));
            _heldSince = DateTime.UtcNow;
        }
        Context.System.Scheduler.ScheduleTellOnce(PlacementRecheck, Self, CheckPlacement.Instance, Self);
    }

    /// <summary>A command while the placement is not confirmed: held, except a handoff (it goes) and a wake (asked again).</summary>
    private void WhilePlacing(object message)
    {
        switch (message)
        {
            case HandOff:
                // The rebalance takes the shard to its node: what was held goes there through the region (which
                // buffers the shard during the handoff). Nothing was started here, so nothing is to stop.
                _placing = false;
                _stopping = true;
                var region = ClusterSharding.Get(Context.System).ShardRegion(ClusterDefaults.VolumeType);
                foreach (var e in Stash.ClearStash()) region.Tell(new VolumeEnvelope(EntityId, e.Message), e.Sender);
                Context.Stop(Self);
                return;
            case Wake: return; // the directory wakes it again until it answers from its node
            default: Stash.Stash(); return;
        }
    }
}
