using Akka.Actor;
using Akka.Cluster;
using Akka.DistributedData;
using Akka.Event;
using Akka.Persistence;

namespace DmActors.Cluster;

/// <summary>The volume directory's protocol (the facades ask it through the singleton proxy).</summary>
public static class DirectoryCmd
{
    /// <summary>Create: take a name for a new volume of the group its table's volumes are in (or a new group on <paramref name="Node"/>).</summary>
    /// <param name="Uses">The table's arguments: those that name volumes decide the stack group.</param>
    /// <param name="DefaultNode">Where a new group goes without --node: the node the command reached.</param>
    public sealed record Reserve(string Name, string? Uuid, IReadOnlyList<string> Uses, string? Node, string DefaultNode) : IControlMessage;
    public sealed record Reserved(string Name, string EntityId, int Minor, string Node) : IControlMessage;
    /// <param name="Uses">A table's arguments (reload): refused when they name a volume of another group.</param>
    public sealed record Resolve(string Op, string Name, IReadOnlyList<string>? Uses = null) : IControlMessage;
    public sealed record Resolved(string Name, string EntityId, int Minor, string? Uuid, string Node) : IControlMessage;
    public sealed record List : IControlMessage { public static readonly List Instance = new(); }
    public sealed record Listing(IReadOnlyList<Resolved> Volumes) : IControlMessage;
    /// <summary>Rename or set the uuid (SetUuid): answered with the volume under its new name, or Dm.Failed.</summary>
    public sealed record Rename(string Name, string NewName, bool SetUuid) : IControlMessage;
    /// <summary>Remove: the name is free again (only if it still names that entity).</summary>
    public sealed record Release(string Name, string EntityId) : IControlMessage;
    /// <summary>Place the volume's whole stack group on <paramref name="Node"/>: answered with the group once the placement is in effect.</summary>
    public sealed record Move(string Name, string Node) : IControlMessage;
    public sealed record Moving(IReadOnlyList<Resolved> Group, string Node) : IControlMessage;
    /// <summary>A volume entity asks where its stack group is placed before it starts (null: nowhere).</summary>
    public sealed record PlacementOf(string Shard) : IControlMessage;
    public sealed record Placement(string Shard, string? Node) : IControlMessage;
}

/// <summary>
/// The cluster's volume directory (dm's hash cells, cluster-wide), a persistent singleton (persistence id
/// <c>volume-directory</c>): names to volume entities, uuids and minors, unique in the cluster, and stack groups
/// (shards) to nodes. It places groups (in the external allocation's distributed data, written to a majority, before
/// the first message to a new group; a volume entity asks it too before it starts), and it makes sure every volume
/// runs: at its start and whenever a member is removed, groups of nodes that are gone are placed on a survivor
/// (fewest volumes, then lowest address) and every volume is woken until it answers from the node it is placed on.
/// </summary>
public sealed class VolumeDirectory : ReceivePersistentActor
{
    public const string Id = "volume-directory";

    public static Props Props(IActorRef region, ClusterNode node) => Akka.Actor.Props.Create(() => new VolumeDirectory(region, node));

    private sealed record Tick;
    private sealed record RehomeAbsent;
    private sealed record RehomeGone(string Node);
    private sealed record Pending(string Shard, string Address, DateTime Since, Action Then);

    private static readonly LWWDictionaryKey<string, string> LocationsKey = new($"external-sharding-{ClusterDefaults.VolumeType}");
    private static readonly TimeSpan VisibleWithin = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan PublishWithin = TimeSpan.FromSeconds(3);

    private readonly IActorRef _region;
    private readonly ClusterNode _node;
    private readonly Akka.Cluster.Cluster _cluster;
    private readonly IActorRef _replicator;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private DirectoryState _state = DirectoryState.Empty;
    /// <summary>Entities to wake until they answer from their group's node.</summary>
    private readonly HashSet<string> _waking = new(StringComparer.Ordinal);
    /// <summary>Shard locations as the allocation strategy on this node sees them (the same subscription it has).</summary>
    private IReadOnlyDictionary<string, string> _locations = new Dictionary<string, string>();
    private readonly List<Pending> _pending = new();
    private ICancelable? _ticks;

    public VolumeDirectory(IActorRef region, ClusterNode node)
    {
        _region = region; _node = node;
        _cluster = Akka.Cluster.Cluster.Get(Context.System);
        _replicator = DistributedData.Get(Context.System).Replicator;
        PersistenceId = Id;
        Recover<SnapshotOffer>(o => { if (o.Snapshot is DirectoryState snapshot) _state = snapshot; });
        Recover<DirectoryEvents.DirectoryEvent>(e => _state = _state.Apply(e));
        // Snapshots keep a start short; the events stay (the journal is the record), older snapshots go.
        Command<SaveSnapshotSuccess>(s => DeleteSnapshots(new SnapshotSelectionCriteria(s.Metadata.SequenceNr - 1)));
        Command<SaveSnapshotFailure>(f => _log.Warning("volume directory: snapshot not saved: {0}", f.Cause.Message));
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(_ => { });
        Recover<RecoveryCompleted>(_ => Started());
        Command<DirectoryCmd.Reserve>(Reserve);
        Command<DirectoryCmd.Resolve>(Resolve);
        Command<DirectoryCmd.List>(_ => Sender.Tell(new DirectoryCmd.Listing(_state.Volumes.Select(v => Resolved(v.Key, v.Value)).ToList())));
        Command<DirectoryCmd.Rename>(Rename);
        Command<DirectoryCmd.Release>(Release);
        Command<DirectoryCmd.Move>(Move);
        Command<DirectoryCmd.PlacementOf>(p => Sender.Tell(new DirectoryCmd.Placement(p.Shard, _state.NodeOf(p.Shard))));
        Command<VolumeEntity.Woken>(w =>
        {
            if (_state.Volumes.Values.FirstOrDefault(v => v.EntityId == w.EntityId) is not { } v || _state.NodeOf(v.Shard) == w.Node)
                _waking.Remove(w.EntityId);
        });
        Command<Tick>(_ => OnTick());
        // Only groups of nodes that are no member at all: one that is down but not yet removed may still hold its
        // shards in the coordinator's view, and a rebalance away from it would wait for the handoff timeout.
        Command<RehomeAbsent>(_ => Rehome(shard => !Present().Contains(_state.NodeOf(shard) ?? "")));
        // A little after the removal: the coordinator must first let go of the dead region's shards, or it starts a
        // rebalance away from that region that waits for the handoff timeout (the dead region never acknowledges).
        Command<ClusterEvent.MemberRemoved>(m =>
        {
            if (ClusterDefaults.NodeOf(m.Member.Roles) is { } gone)
                Context.System.Scheduler.ScheduleTellOnce(_node.RehomeDelay ?? TimeSpan.FromSeconds(2), Self, new RehomeGone(gone), Self);
        });
        Command<RehomeGone>(g => { if (!Present().Contains(g.Node)) Rehome(shard => _state.NodeOf(shard) == g.Node); });
        Command<ClusterEvent.IMemberEvent>(_ => { });
        Command<Changed>(c =>
        {
            if (!c.Key.Equals(LocationsKey)) return;
            _locations = c.Get(LocationsKey).Entries.ToDictionary(e => e.Key, e => e.Value);
            RunVisible(false);
        });
    }

    public override string PersistenceId { get; }

    /// <summary>A recorded event is applied; every <see cref="ClusterNode.DirectorySnapshotEvery"/> events the state is saved as a snapshot.</summary>
    private void Recorded(DirectoryEvents.DirectoryEvent e)
    {
        _state = _state.Apply(e);
        if (LastSequenceNr % _node.DirectorySnapshots == 0) SaveSnapshot(_state);
    }

    private void Started()
    {
        _cluster.Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.IMemberEvent));
        DistributedData.Get(Context.System).Replicator.Tell(new Subscribe(LocationsKey, Self));
        // Make sure every volume runs (a whole-cluster start, or this singleton's node died).
        foreach (var v in _state.Volumes.Values) _waking.Add(v.EntityId);
        var every = _node.WakeInterval ?? TimeSpan.FromSeconds(1);
        _ticks = Context.System.Scheduler.ScheduleTellRepeatedlyCancelable(every, every, Self, new Tick(), Self);
        Context.System.Scheduler.ScheduleTellOnce(_node.RehomeAfterStart ?? TimeSpan.FromSeconds(20), Self, new RehomeAbsent(), Self);
        _log.Info("volume directory started on {0}: {1} volume(s) in {2} group(s)", _node.Self, _state.Volumes.Count, _state.Shards.Count);
    }

    protected override void PostStop()
    {
        _ticks?.Cancel();
        _cluster.Unsubscribe(Self);
        base.PostStop();
    }

    // ---- Commands -----------------------------------------------------------------------------------------------

    private void Reserve(DirectoryCmd.Reserve r)
    {
        var uuid = string.IsNullOrEmpty(r.Uuid) ? null : r.Uuid;
        Dm.Failed Refuse(string error, string reason) => new("create", r.Name, error, reason);
        if (_state.Volumes.ContainsKey(r.Name)) { Sender.Tell(Refuse(Dm.Failed.Busy, $"device {r.Name} already exists")); return; }
        if (uuid != null && _state.Volumes.FirstOrDefault(v => v.Value.Uuid == uuid) is { Key: { } holder })
        {
            Sender.Tell(Refuse(Dm.Failed.Busy, $"device with uuid {uuid} already exists: {holder}"));
            return;
        }
        if (r.Node != null && !Members().ContainsKey(r.Node)) { Sender.Tell(Refuse(Dm.Failed.Invalid, $"no cluster member named {r.Node}")); return; }
        var lower = Lower(r.Uses);
        var groups = lower.GroupBy(l => l.Entry.Shard).ToList();
        if (groups.Count > 1)
        {
            Sender.Tell(Refuse(Dm.Failed.Invalid, "the table uses volumes of different stack groups: " +
                string.Join(" and ", groups.Select(g => $"{g.First().Name} (on {_state.NodeOf(g.Key)})")) +
                "; a stacked volume lives with the volumes below it, on one node"));
            return;
        }
        string node, shard;
        var newGroup = groups.Count == 0;
        var minor = _state.NextMinor;
        if (!newGroup)
        {
            shard = groups[0].Key;
            node = _state.NodeOf(shard)!;
            if (r.Node != null && r.Node != node)
            {
                Sender.Tell(Refuse(Dm.Failed.Invalid,
                    $"{groups[0].First().Name} is on node {node}: a volume stacked on it is placed there too, not on {r.Node}"));
                return;
            }
        }
        else
        {
            node = r.Node ?? r.DefaultNode;
            shard = $"g{minor}";
            if (!Members().ContainsKey(node)) { Sender.Tell(Refuse(Dm.Failed.Invalid, $"no cluster member named {node}")); return; }
        }
        var entityId = $"{shard}:v{minor}";
        var sender = Sender;
        var events = new List<DirectoryEvents.DirectoryEvent> { new DirectoryEvents.Reserved(r.Name, entityId, uuid, minor) };
        if (newGroup) events.Add(new DirectoryEvents.Placed(shard, node));
        var left = events.Count;
        PersistAll(events, e =>
        {
            Recorded(e);
            if (--left > 0) return;
            var reserved = new DirectoryCmd.Reserved(r.Name, entityId, minor, node);
            if (newGroup) Place(shard, node, () => sender.Tell(reserved));
            else sender.Tell(reserved);
        });
    }

    private void Resolve(DirectoryCmd.Resolve r)
    {
        if (!_state.Volumes.TryGetValue(r.Name, out var v)) { Sender.Tell(DeviceCommands.NoSuchDevice(r.Op, r.Name)); return; }
        if (r.Uses != null && Lower(r.Uses).FirstOrDefault(l => l.Entry.Shard != v.Shard) is { Name: { } other } found)
        {
            Sender.Tell(new Dm.Failed(r.Op, r.Name, Dm.Failed.Invalid,
                $"{other} is in another stack group (on {_state.NodeOf(found.Entry.Shard)}): a volume can only use volumes of its own group"));
            return;
        }
        Sender.Tell(Resolved(r.Name, v));
    }

    private void Rename(DirectoryCmd.Rename r)
    {
        if (!_state.Volumes.TryGetValue(r.Name, out var v)) { Sender.Tell(DeviceCommands.NoSuchDevice("rename", r.Name)); return; }
        DirectoryEvents.DirectoryEvent e;
        if (r.SetUuid)
        {
            if (_state.Volumes.Any(o => o.Value.Uuid == r.NewName))
            {
                Sender.Tell(new Dm.Failed("rename", r.Name, Dm.Failed.Busy,
                    $"Unable to change uuid on mapped device {r.Name} to one that already exists: {r.NewName}"));
                return;
            }
            if (v.Uuid is { } current)
            {
                Sender.Tell(new Dm.Failed("rename", r.Name, Dm.Failed.Invalid,
                    $"Unable to change uuid of mapped device {r.Name} to {r.NewName} because uuid is already set to {current}"));
                return;
            }
            e = new DirectoryEvents.UuidSet(r.Name, r.NewName);
        }
        else
        {
            if (_state.Volumes.ContainsKey(r.NewName)) { Sender.Tell(new Dm.Failed("rename", r.Name, Dm.Failed.Busy, $"device {r.NewName} already exists")); return; }
            e = new DirectoryEvents.Renamed(r.Name, r.NewName);
        }
        var name = r.SetUuid ? r.Name : r.NewName;
        Persist(e, ev =>
        {
            Recorded(ev);
            Sender.Tell(Resolved(name, _state.Volumes[name]));
        });
    }

    private void Release(DirectoryCmd.Release r)
    {
        if (!_state.Volumes.TryGetValue(r.Name, out var v) || v.EntityId != r.EntityId) { Sender.Tell(Dm.Done.Empty); return; }
        Persist(new DirectoryEvents.Released(r.Name), e =>
        {
            Recorded(e);
            _waking.Remove(r.EntityId);
            Sender.Tell(Dm.Done.Empty);
        });
    }

    private void Move(DirectoryCmd.Move m)
    {
        if (!_state.Volumes.TryGetValue(m.Name, out var v)) { Sender.Tell(DeviceCommands.NoSuchDevice("move", m.Name)); return; }
        if (!Members().ContainsKey(m.Node)) { Sender.Tell(new Dm.Failed("move", m.Name, Dm.Failed.Invalid, $"no cluster member named {m.Node}")); return; }
        var shard = v.Shard;
        var sender = Sender;
        DirectoryCmd.Moving Moving() => new(_state.InShard(shard).Select(g => Resolved(g.Name, g.Entry)).ToList(), m.Node);
        if (_state.NodeOf(shard) == m.Node) { sender.Tell(Moving()); return; }
        Persist(new DirectoryEvents.Placed(shard, m.Node), e =>
        {
            Recorded(e);
            _log.Info("stack group {0} ({1}) moves to {2}", shard, m.Name, m.Node);
            foreach (var (_, entry) in _state.InShard(shard)) _waking.Add(entry.EntityId);
            Place(shard, m.Node, () => sender.Tell(Moving()));
        });
    }

    // ---- Placement and waking ------------------------------------------------------------------------------------

    /// <summary>Tells the allocation strategy where <paramref name="shard"/> goes, and runs <paramref name="then"/> once it sees it.</summary>
    private void Place(string shard, string node, Action then)
    {
        if (!Members().TryGetValue(node, out var address)) { then(); return; }
        Publish(shard, address);
        _pending.Add(new Pending(shard, address.ToString(), DateTime.UtcNow, then));
        RunVisible(false);
    }

    /// <summary>
    /// Writes the placement as Akka's allocation client does, but to a majority (the client writes locally only):
    /// a placement written just before this node dies is then still known to the next coordinator. A write that
    /// reaches no majority in time is still written here and gossiped.
    /// </summary>
    private void Publish(string shard, Address address)
    {
        var self = _cluster.SelfUniqueAddress;
        var update = Dsl.Update(LocationsKey, LWWDictionary<string, string>.Empty, new WriteMajority(PublishWithin),
            existing => existing.SetItem(self, shard, address.ToString()));
        _replicator.Ask<IUpdateResponse>(update, PublishWithin + PublishWithin).ContinueWith(t =>
        {
            if (!t.IsCompletedSuccessfully || t.Result is not UpdateSuccess)
                _log.Warning("placing stack group {0} on {1}: not confirmed by a majority yet ({2})", shard, address,
                    t.IsCompletedSuccessfully ? t.Result.GetType().Name : t.Exception?.GetBaseException().Message);
        });
    }

    /// <summary>Runs the placements' continuations the strategy now sees (or, with <paramref name="late"/>, that waited too long).</summary>
    private void RunVisible(bool late)
    {
        var now = DateTime.UtcNow;
        foreach (var p in _pending.ToList())
        {
            if (_locations.GetValueOrDefault(p.Shard) != p.Address && !(late && now - p.Since > VisibleWithin)) continue;
            _pending.Remove(p);
            p.Then();
        }
    }

    private void OnTick()
    {
        RunVisible(true);
        if (_waking.Count == 0) return;
        var members = Members();
        foreach (var id in _waking.ToList())
        {
            var shard = VolumeState.ShardOf(id);
            if (_state.NodeOf(shard) is not { } node || !members.TryGetValue(node, out var address)) continue; // re-placed when its node is removed
            // Distributed data is not durable: after a whole-cluster start the strategy knows no placement yet.
            if (_locations.GetValueOrDefault(shard) != address.ToString()) { Publish(shard, address); continue; }
            _region.Tell(new VolumeEnvelope(id, VolumeEntity.Wake.Instance), Self);
        }
    }

    /// <summary>Places every group that <paramref name="lost"/> selects on a survivor: fewest volumes, then lowest address.</summary>
    private void Rehome(Func<string, bool> lost)
    {
        var members = Members();
        if (members.Count == 0) return;
        var placed = new List<DirectoryEvents.Placed>();
        var counts = members.Keys.ToDictionary(n => n, n => _state.Volumes.Values.Count(v => _state.NodeOf(v.Shard) == n));
        foreach (var shard in _state.Shards.Keys.Where(lost))
        {
            var size = _state.InShard(shard).Count();
            if (size == 0) continue; // an empty group needs no home
            var target = members.OrderBy(m => counts[m.Key]).ThenBy(m => m.Value.ToString(), StringComparer.Ordinal).First().Key;
            counts[target] += size;
            _log.Warning("stack group {0} was on {1}, which is not a member: it goes to {2}", shard, _state.NodeOf(shard), target);
            placed.Add(new DirectoryEvents.Placed(shard, target));
        }
        if (placed.Count == 0) return;
        PersistAll(placed, e =>
        {
            Recorded(e);
            foreach (var (_, entry) in _state.InShard(e.Shard)) _waking.Add(entry.EntityId);
            Place(e.Shard, e.Node, () => { });
        });
    }

    // ---- Helpers --------------------------------------------------------------------------------------------------

    /// <summary>The members that are up, by node name (role node:NAME).</summary>
    private Dictionary<string, Address> Members()
    {
        var members = new Dictionary<string, Address>(StringComparer.Ordinal);
        foreach (var m in _cluster.State.Members)
            if (m.Status is MemberStatus.Up or MemberStatus.WeaklyUp && ClusterDefaults.NodeOf(m.Roles) is { } name &&
                !_cluster.State.Unreachable.Contains(m))
                members[name] = m.Address;
        return members;
    }

    /// <summary>The node names of every member, whatever its state (a removed one is no longer listed).</summary>
    private HashSet<string> Present() =>
        _cluster.State.Members.Select(m => ClusterDefaults.NodeOf(m.Roles)).OfType<string>().ToHashSet(StringComparer.Ordinal);

    private List<(string Name, VolumeEntry Entry)> Lower(IEnumerable<string> uses) =>
        uses.Select(u => _state.Named(u)).Where(n => n != null).Select(n => n!.Value).DistinctBy(n => n.Name).ToList();

    private DirectoryCmd.Resolved Resolved(string name, VolumeEntry v) => new(name, v.EntityId, v.Minor, v.Uuid, _state.NodeOf(v.Shard) ?? "");
}
