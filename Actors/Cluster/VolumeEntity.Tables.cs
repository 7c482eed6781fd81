using Akka.Actor;
using Akka.Cluster;
using Akka.Event;

namespace DmActors.Cluster;

/// <summary>
/// Recorded tables that do not serve as recorded, built again when a member comes up: a live table that could not
/// be built at activation (a disk of a node that is gone), one that lost a disk of a node removed while it ran, and
/// a mirror that started without a leg whose node was not a member (degraded).
/// </summary>
public sealed partial class VolumeEntity
{
    /// <summary>Try the tables again; only the latest chain of tries goes on (each member that comes up starts one).</summary>
    private sealed record RetryTables(int Attempt, int Chain);
    // A returning node is a member before its NBD server listens: keep trying for a while after it comes up.
    private static readonly TimeSpan[] DefaultTableRetries = [TimeSpan.Zero, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(3),
        TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(20), TimeSpan.FromSeconds(30)];
    private TimeSpan[] TableRetries => _node.TableRetries is { Length: > 0 } t ? t : DefaultTableRetries;
    /// <summary>A degraded mirror tries at least this often while a left-out leg's node is up.</summary>
    private TimeSpan DegradedRetry => TimeSpan.FromSeconds(Math.Min(5, TableRetries[^1].TotalSeconds));

    /// <summary>The live table goes without these devices (mirror legs whose node was not a member when it was built).</summary>
    private string[]? _degraded;
    /// <summary>The live table could not be built at activation: no table serves, so one without some legs is better.</summary>
    private bool _liveMissing;
    private int _retryChain;
    /// <summary>Members seen up and not removed since, by address (a node that returns has a new one): their node names.</summary>
    private readonly Dictionary<Address, string> _up = new();

    /// <summary>A recorded table built again at activation; the live one may go without a leg whose node is not a member.</summary>
    private BuiltTable Rebuild(string text, bool readOnly, bool live)
    {
        var built = Build(text, readOnly, Self_, rebuild: live).Built;
        if (live && _active != null) _active.Device.Shared.MayLackCachedWrites = built.MayLackCachedWrites;
        if (built.Unreachable is { Count: > 0 } away)
        {
            _degraded = away.ToArray();
            _log.Warning("volume {0} starts degraded, without {1} (not a member); rebuilt when its node is up", _state.Device?.Name, string.Join(", ", away));
        }
        return built;
    }

    /// <summary>
    /// Watch for members coming up. Subscribing replays the members up now, so one that came up while the table was
    /// being built (after the build found it missing) is seen too.
    /// </summary>
    private void WatchMembersComingUp() =>
        Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberUp));

    private void OnMemberUp(ClusterEvent.MemberUp m)
    {
        if (ClusterDefaults.NodeOf(m.Member.Roles) is { } node) _up[m.Member.Address] = node;
        if (InError || _degraded != null) Self.Tell(new RetryTables(0, ++_retryChain));
    }

    /// <summary>
    /// A member was removed: when the live table uses one of its disks (not one it already goes without), the volume
    /// is in error (info names the disk and the node; the connections to it are dropped, so its IO fails at once)
    /// until the node is a member again and the recorded tables build again, as after a failover that found a disk
    /// missing.
    /// </summary>
    private void OnMemberRemoved(ClusterEvent.MemberRemoved m)
    {
        _up.Remove(m.Member.Address);
        if (ClusterDefaults.NodeOf(m.Member.Roles) is not { } node || node == Self_) return;
        if (_active == null || _activating || _stopping || InError || _state.Device?.Live is not { } live) return;
        string? disk;
        try { disk = Table.Parse(live).SelectMany(l => l.Args).FirstOrDefault(a => a.EndsWith("@" + node, StringComparison.Ordinal) && _degraded?.Contains(a) != true); }
        catch (TableException) { return; }
        if (disk == null) return;
        var reason = $"{disk}: node {node} was removed from the cluster";
        _log.Warning("volume {0}: live table lost {1}", _state.Device.Name, reason);
        _active.Device.Error = reason;
        _active.Device.Actor.Tell(new MappedDevice.MarkError($"live table lost its disk: {reason}"));
        WatchMembersComingUp();
    }

    /// <summary>The recorded live table could not be rebuilt at activation, or lost a disk since, and no command has replaced it.</summary>
    private bool InError => _active is { } a && a.Device.Error != null && _state.Device?.Live != null && !_stopping;

    /// <summary>Rebuilds the device as recorded (live, inactive, suspended) once its tables build again; not recorded.</summary>
    private void RetryTablesNow(RetryTables r)
    {
        if (r.Chain != _retryChain || !(InError || _degraded != null) || _activating || _stopping) return;
        var d = _state.Device!;
        var device = _active!.Device;
        BuiltTable live;
        try
        {
            live = Build(d.Live!, d.LiveReadOnly, Self_, rebuild: true).Built;
            // Without a leg still: better than no table, not in place of one that serves (that one goes on).
            if (live.Unreachable is { Count: > 0 } away && !_liveMissing)
            {
                live.Table.Destroy();
                throw new TableException($"still without {string.Join(", ", away)}");
            }
        }
        catch (TableException e)
        {
            _log.Debug("volume {0}: live table still cannot be rebuilt: {1}", d.Name, e.Message);
            RetryLater(r);
            return;
        }
        _liveMissing = false;
        _degraded = live.Unreachable is { Count: > 0 } without ? without.ToArray() : null;
        _log.Info("volume {0}: live table rebuilt on {1}{2}", d.Name, Self_, _degraded != null ? $", degraded without {string.Join(", ", _degraded)}" : "");
        device.Uses.UnionWith(live.Uses);
        device.Shared.Sectors = live.Table.Sectors; // before the error is cleared: a table stacked on it checks the size
        device.Shared.MayLackCachedWrites = live.MayLackCachedWrites;
        device.Error = null;
        device.Actor.Tell(new MappedDevice.LoadTable(live.Table, Reply: false));
        device.Actor.Tell(new Dm.Resume(d.Name), ActorRefs.Nobody);
        if (d.Inactive != null)
        {
            try
            {
                var inactive = Build(d.Inactive, d.InactiveReadOnly, Self_).Built;
                device.Uses.UnionWith(inactive.Uses);
                device.Actor.Tell(new MappedDevice.LoadTable(inactive.Table, Reply: false));
            }
            catch (TableException e) { device.Actor.Tell(new MappedDevice.MarkError($"inactive table could not be rebuilt: {e.Message}")); }
        }
        if (d.Suspended) device.Actor.Tell(new Dm.Suspend(d.Name), ActorRefs.Nobody);
        if (_degraded == null) Akka.Cluster.Cluster.Get(Context.System).Unsubscribe(Self, typeof(ClusterEvent.MemberUp));
        else RetryLater(r); // a left-out leg's node may have come up meanwhile
    }

    /// <summary>
    /// The next try of this chain: a few within about a minute; and for as long as a left-out leg's node is up (it
    /// may not serve its disks yet, or this node's view of the members may not have it yet), at least every few seconds.
    /// </summary>
    private void RetryLater(RetryTables r)
    {
        var next = r.Attempt + 1;
        var delay = next < TableRetries.Length ? TableRetries[next] : (TimeSpan?)null;
        if (_degraded?.Any(IsUp) == true) delay = delay is { } t && t < DegradedRetry ? t : DegradedRetry;
        if (delay is { } after) Context.System.Scheduler.ScheduleTellOnce(after, Self, r with { Attempt = next }, Self);
    }

    /// <summary>A device's node (DISK@NODE) is a member this entity has seen up.</summary>
    private bool IsUp(string device) => device.LastIndexOf('@') is var at and > 0 && _up.ContainsValue(device[(at + 1)..]);
}
