using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using Akka.Event;
using Akka.Persistence;

namespace DmActors.Cluster;

/// <summary>
/// One volume of the cluster, as a sharded persistent entity (persistence id <c>volume-ENTITYID</c>): it owns the
/// volume's <see cref="MappedDevice"/> while it runs on a node. A change is decided by <see cref="DeviceCommands"/>
/// against a one-device <see cref="HostState"/>, its table built first (<see cref="VolumeLookup"/>), its events
/// persisted, then applied to the device, which answers — as <see cref="DeviceManager"/> does on one host. Each
/// start with a created volume records a higher epoch (<see cref="VolumeEvents.Activated"/>) before it opens a
/// disk, then brings the device back as recorded (<see cref="DeviceRecovery"/>). A handoff (move) suspends the
/// device with flush, stops it, and stops the entity; the directory wakes it on its new node. It starts only on
/// the node the directory places its group on (<c>VolumeEntity.Placement.cs</c>).
/// </summary>
public sealed partial class VolumeEntity : ReceivePersistentActor
{
    /// <summary>A create, as the facade sends it: the minor the directory reserved and the node it placed the volume on.</summary>
    public sealed record CreateVolume(Dm.Create Create, int Minor, string Node) : IControlMessage;

    /// <summary>Start if not running; answered with <see cref="Woken"/>.</summary>
    public sealed record Wake : IControlMessage { public static readonly Wake Instance = new(); }
    public sealed record Woken(string EntityId, string Node, string? Name) : IControlMessage;

    /// <summary>The shard's stop message at a handoff (move): suspend with flush, stop the device, stop.</summary>
    public sealed record HandOff : IControlMessage { public static readonly HandOff Instance = new(); }

    /// <summary>A lower volume of the stack group is not active here yet: try the recovery again.</summary>
    private sealed record RetryRestore(int Attempt);

    /// <summary>A target's note to persist (<see cref="TargetRecords"/>); <see cref="Done"/> says whether it is.</summary>
    private sealed record RecordTarget(string Key, string Value, Action<bool> Done);

    // A lower volume's build may wait for its disks' fence claims (up to 30 s for an old owner's bios) and connects.
    private const int RestoreAttempts = 240;
    private static readonly TimeSpan RestoreRetry = TimeSpan.FromMilliseconds(250);

    public static Props Props(string entityId, ClusterNode node, IActorRef directory) =>
        Akka.Actor.Props.Create(() => new VolumeEntity(entityId, node, directory)).WithDispatcher(ClusterDefaults.VolumeDispatcher);

    private readonly ClusterNode _node;
    private readonly IActorRef _directory;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private VolumeState _state;
    private ActiveVolume? _active;
    private bool _activating;
    private bool _stopping;
    private Action<string>? _onPersistFailure;
    private readonly TargetRecords _records;
    /// <summary>Notes being persisted: answered false if the entity stops first, so no write waits for ever.</summary>
    private readonly List<RecordTarget> _recording = new();

    public VolumeEntity(string entityId, ClusterNode node, IActorRef directory)
    {
        _node = node;
        _directory = directory;
        _state = VolumeState.Empty(entityId);
        PersistenceId = "volume-" + entityId;
        Recover<IPersistedEvent>(e => _state = _state.Apply(e));
        Recover<RecoveryCompleted>(_ => { if (_state.Device != null) ConfirmPlacement(); });
        Command<PlacementChecked>(OnPlacementChecked);
        Command<CheckPlacement>(_ => AskPlacement());
        // A retry scheduled before a handoff stopped the activation finds nothing to do.
        Command<RetryRestore>(r => { if (_activating && !_stopping) Restore(r.Attempt); });
        Command<ClusterEvent.MemberUp>(OnMemberUp);
        Command<ClusterEvent.MemberRemoved>(OnMemberRemoved);
        Command<ClusterEvent.IMemberEvent>(_ => { });
        Command<RetryTables>(RetryTablesNow);
        Command<Terminated>(OnTerminated);
        // Not stashed while activating: a table that goes live at activation may wait for its note.
        Command<RecordTarget>(Record);
        CommandAny(Handle);
        _records = new TargetRecords(this, Self);
    }

    public override string PersistenceId { get; }
    private string EntityId => _state.EntityId;
    private string Self_ => _node.Self;

    protected override void PreStart()
    {
        LostBioAnswerer.Start(Context.System);
        // A disk's node that is removed takes the volume's live table with it (the connections to it are dropped).
        Akka.Cluster.Cluster.Get(Context.System).Subscribe(Self, ClusterEvent.SubscriptionInitialStateMode.InitialStateAsEvents, typeof(ClusterEvent.MemberRemoved));
        base.PreStart();
    }

    // ---- Activation ---------------------------------------------------------------------------------------------

    /// <summary>A recorded volume starts here: a new epoch first, then the device as recorded.</summary>
    private void Activate()
    {
        _activating = true;
        // A HandOff meanwhile waits in the persistence's stash and comes right after the handler (HandOverActivating).
        var previous = _state.Node;
        Persist(new VolumeEvents.Activated(_state.Epoch + 1, Self_, DateTime.UtcNow), a =>
        {
            _previousOwner = previous;
            _state = _state.Apply(a);
            _log.Info("volume {0} ({1}) activated on {2}, epoch {3}", _state.Device?.Name, EntityId, Self_, _state.Epoch);
            Restore(0);
        });
    }

    private void Restore(int attempt)
    {
        var d = _state.Device!;
        // Lower volumes of the group wake in any order: wait for them (each is found here once its tables are
        // built, or have failed) before a table is given up.
        if (attempt < RestoreAttempts && MissingLower(d) is { } missing)
        {
            _log.Debug("volume {0}: waiting for lower volume {1}", d.Name, missing);
            Context.System.Scheduler.ScheduleTellOnce(RestoreRetry, Self, new RetryRestore(attempt + 1), Self);
            return;
        }
        DeviceRecovery.Restore(_state.AsHost(), r => Spawn(r.Name, r.Minor, r.Mode, r.ReadOnly, r.Uuid),
            (_, text, readOnly) => Rebuild(text, readOnly, live: text == d.Live), _log);
        // Only now may a stacked table find it: before, its size is 0 and a table over it fails ("too small").
        if (_active != null) _node.Volumes.Add(_active);
        _activating = false;
        _liveMissing = InError;
        if (InError || _degraded != null) WatchMembersComingUp();
        Stash.UnstashAll();
    }

    private string? MissingLower(DeviceRecord d)
    {
        foreach (var text in new[] { d.Live, d.Inactive })
        {
            if (text == null) continue;
            IEnumerable<string> args;
            try { args = Table.Parse(text).SelectMany(l => l.Args); }
            catch (TableException) { continue; }
            var missing = args.FirstOrDefault(a => a.StartsWith($"{MappedDevice.Major}:", StringComparison.Ordinal) && _node.Volumes.Find(a) == null);
            if (missing != null) return missing;
        }
        return null;
    }

    // ---- Commands -----------------------------------------------------------------------------------------------

    private void Handle(object message)
    {
        if (_placing) { WhilePlacing(message); return; }
        if (_activating)
        {
            if (message is HandOff) HandOverActivating();
            else Stash.Stash();
            return;
        }
        if (_stopping)
        {
            // Handing off: the regions buffer this shard now, so a command that reached the old incarnation goes
            // back through the region to the next one (after a remove it finds no device) instead of being lost.
            if (message is not HandOff)
                ClusterSharding.Get(Context.System).ShardRegion(ClusterDefaults.VolumeType).Tell(new VolumeEnvelope(EntityId, message), Sender);
            return;
        }
        switch (message)
        {
            case Wake: Sender.Tell(new Woken(EntityId, Self_, _state.Device?.Name)); return;
            case HandOff: HandOver(); return;
            case CreateVolume c: Create(c); return;
        }
        var name = _state.Device?.Name;
        if (name == null || _active == null)
        {
            Sender.Tell(DeviceCommands.NoSuchDevice(Op(message), NameOf(message)));
            return;
        }
        if (DeviceCommands.Changes(message)) { Change(message, Self_); return; }
        var device = _active.Device;
        switch (message)
        {
            case Dm.GetTable or Dm.GetStatus or Dm.Message or IStatsCommand: device.Actor.Forward(message); break;
            case Dm.GetInfo i:
                var node = Self_;
                // A wait (dmsetup wait) may take its patience before the device answers; a device removed while it waits
                // answers it with a failure (as on a single host), which passes on as it is.
                device.Actor.Ask<object>(i, _node.Timeout + (i.Patience ?? TimeSpan.Zero))
                    .ContinueWith(t => !t.IsCompletedSuccessfully ? new Dm.Failed("info", name, "Connection timed out", "the device did not answer")
                        : t.Result is Dm.DeviceInfo info ? info with { Node = node } : t.Result)
                    .PipeTo(Sender);
                break;
            case Dm.History: Sender.Tell(new Dm.HistoryList(name, _state.Device!.History.ToArray())); break;
            default: Unhandled(message); break;
        }
    }

    private void Create(CreateVolume c)
    {
        if (_state.Device != null)
        {
            Sender.Tell(new Dm.Failed("create", c.Create.Name, Dm.Failed.Busy, $"device {c.Create.Name} already exists"));
            return;
        }
        // The coordinator may give a new group to the region that asked for it: created only where it is placed.
        if (c.Node != Self_ && !_placementConfirmed) { ConfirmPlacement(); Stash.Stash(); return; }
        // A volume's first activation is its create: epoch 1 (or one above a removed incarnation's).
        var epoch = _state.Epoch + 1;
        var events = new List<IPersistedEvent> { new VolumeEvents.Activated(epoch, Self_, DateTime.UtcNow) };
        Decide(c.Create, _state.AsHost(c.Minor), epoch, c.Node, events);
    }

    private void Change(object command, string placeNode) => Decide(command, _state.AsHost(), _state.Epoch, placeNode, new List<IPersistedEvent>());

    private DeviceFacts? Facts(string name) =>
        _active != null && _active.Device.Shared.Name == name ? new DeviceFacts(_active.Device.Shared.OpenCount, _active.Device.Shared.Sectors) : null;

    private void Decide(object command, HostState host, long epoch, string placeNode, List<IPersistedEvent> events)
    {
        var d = DeviceCommands.Decide(host, Facts, command, DateTime.UtcNow);
        if (d.Refused) { Sender.Tell(d.Refusal); return; }
        BuiltTable? built = null;
        string? recorded = null;
        if (d.Build is { } text)
        {
            try { (built, recorded) = Build(text.Text, text.ReadOnly, placeNode, epoch); }
            catch (TableException e) { Sender.Tell(new Dm.Failed(d.Op, d.Name, Dm.Failed.Invalid, e.Message)); return; }
        }
        // The table as recorded names every disk with its node, so a failover never opens another node's disk.
        events.AddRange(d.Events.Select(e => e is DeviceEvents.TableLoaded t && recorded != null ? t with { Table = recorded } : e));
        var sender = Sender;
        var left = events.Count;
        _onPersistFailure = reason =>
        {
            built?.Table.Destroy();
            sender.Tell(new Dm.Failed(d.Op, d.Name, "Input/output error", reason));
        };
        // A resume that swaps in a new live table replaces one that could not be rebuilt: stop retrying that one.
        var replacesLive = command is Dm.Resume && host.Devices.Values.SingleOrDefault()?.Inactive != null;
        var started = JournalTiming.Now();
        PersistAll(events, e =>
        {
            _state = _state.Apply(e);
            if (--left > 0) return;
            JournalTiming.Get(Context.System).Recorded(started);
            _onPersistFailure = null;
            if (replacesLive && _active != null) { _active.Device.Error = null; _degraded = null; _liveMissing = false; }
            Apply(command, d, built, sender);
        });
    }

    /// <summary>Carries out a recorded change; where the device does the work, the device answers the caller.</summary>
    private void Apply(object command, Decision d, BuiltTable? built, IActorRef sender) =>
        DeviceChange.Apply(command, d, _active?.Device, built, sender, c => Spawn(c.Name, c.Minor, c.Mode, c.ReadOnly, c.Uuid),
            removed: Unregister, renamed: _ => { });

    private (BuiltTable Built, string Recorded) Build(string text, bool readOnly, string placeNode, long? epoch = null, bool rebuild = false) =>
        VolumeLookup.Build(_node.Volumes, _node.Disks, _node.Options.Clock, EntityId, epoch ?? _state.Epoch, placeNode, text, readOnly, _records, rebuild,
            rebuild ? _previousOwner : null);

    /// <summary>
    /// Where the volume served before this activation (a failover, a move, a restart): that node's caches may have died
    /// with it, so its disks may lack writes it answered. Recorded tables built again in this activation say so.
    /// </summary>
    private string? _previousOwner;

    private ManagedDevice Spawn(string name, int minor, BarrierMode mode, bool readOnly, string? uuid)
    {
        var o = _node.Options;
        var shared = new DeviceShared(name, minor);
        var actor = Context.ActorOf(MappedDevice.Props(shared, new MappedDevice.Options(mode, o.MaxDeferred, o.Clock, o.ShutdownTimeout,
            readOnly, uuid, o.BarrierTimeout, o.InlineIo ? IoDispatcher.DispatcherId : Akka.Dispatch.Dispatchers.DefaultDispatcherId)), $"dm-{minor}");
        Context.Watch(actor);
        var device = new ManagedDevice(actor, shared, new MappedDeviceHandle(actor, shared));
        _active = new ActiveVolume(EntityId, device);
        if (!_activating) _node.Volumes.Add(_active); // an activation adds it once its recorded tables are built
        return device;
    }

    private void Unregister()
    {
        if (_active != null) _node.Volumes.Remove(EntityId, _active);
    }

    // ---- Targets' notes ----------------------------------------------------------------------------------------

    /// <summary>The volume's journal as its tables' targets see it: read on any thread, written through the entity.</summary>
    private sealed class TargetRecords(VolumeEntity entity, IActorRef self) : ITargetRecords
    {
        public string? Get(string key) => Volatile.Read(ref entity._state).Records.GetValueOrDefault(key);
        public void Put(string key, string value, Action<bool> done) => self.Tell(new RecordTarget(key, value, done));
    }

    private void Record(RecordTarget r)
    {
        _recording.Add(r);
        Persist(new VolumeEvents.TargetRecorded(r.Key, r.Value, DateTime.UtcNow), e =>
        {
            _state = _state.Apply(e);
            if (_recording.Remove(r)) r.Done(true);
        });
    }

    private void FailRecording()
    {
        foreach (var r in _recording) r.Done(false);
        _recording.Clear();
    }

    // ---- Stopping -----------------------------------------------------------------------------------------------

    /// <summary>Handoff: suspend with flush (in-flight bios complete), stop the device (deferred bios get ESHUTDOWN), stop.</summary>
    private void HandOver()
    {
        _stopping = true;
        if (_active == null) { Context.Stop(Self); return; }
        Unregister(); // no new open or stacked table finds it here any more
        _log.Info("volume {0} ({1}) hands over from {2}", _active.Device.Shared.Name, EntityId, Self_);
        // What reaches the device from now on was never started: answered with ESHUTDOWN, resent to the new owner.
        LostBioAnswerer.HandedOff(_active.Device.Actor);
        _active.Device.Actor.Tell(new MappedDevice.Shutdown(HandOff: true), ActorRefs.Nobody);
    }

    /// <summary>
    /// A handoff while the recorded tables wait for a lower volume of the group (one that is handed off too would
    /// never come): nothing is built yet, so the entity stops now rather than hold the shard's handoff until Akka's
    /// handoff timeout. What it held goes on through the region to the next owner, which records a newer epoch than
    /// the one recorded here (no disk was opened at it).
    /// </summary>
    private void HandOverActivating()
    {
        _activating = false;
        _stopping = true;
        _log.Info("volume {0} ({1}) hands over from {2} before its tables were built", _state.Device?.Name, EntityId, Self_);
        var region = ClusterSharding.Get(Context.System).ShardRegion(ClusterDefaults.VolumeType);
        foreach (var e in Stash.ClearStash()) region.Tell(new VolumeEnvelope(EntityId, e.Message), e.Sender);
        HandOver(); // stops at once; a device spawned meanwhile would stop as at any handoff
    }

    private void OnTerminated(Terminated t)
    {
        if (_active == null || !t.ActorRef.Equals(_active.Device.Actor)) return;
        Unregister();
        _active = null;
        if (_stopping) Context.Stop(Self);
        // Removed: nothing runs here any more; let the region forget the entity.
        else if (_state.Device == null) Context.Parent.Tell(new Passivate(HandOff.Instance));
    }

    protected override void PostStop()
    {
        Akka.Cluster.Cluster.Get(Context.System).Unsubscribe(Self);
        Unregister();
        FailRecording();
        base.PostStop();
    }

    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        _onPersistFailure?.Invoke(cause.Message);
        base.OnPersistFailure(cause, @event, sequenceNr);
    }

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        if (@event is VolumeEvents.TargetRecorded) FailRecording(); // one at a time: Persist holds the next back
        _onPersistFailure?.Invoke($"journal rejected the change: {cause.Message}");
        _onPersistFailure = null;
        base.OnPersistRejected(cause, @event, sequenceNr);
    }

    internal static string Op(object command) => command switch
    {
        Dm.Create or CreateVolume => "create", Dm.Load => "reload", Dm.Remove => "remove", Dm.Rename => "rename",
        Dm.Suspend => "suspend", Dm.Resume => "resume", Dm.Clear => "clear", Dm.GetTable => "table", Dm.GetStatus => "status",
        Dm.GetInfo => "info", Dm.Message => "message", Dm.History => "history", Dm.Open => "open", Dm.Close => "close", IStatsCommand => "stats",
        ClusterCmd.Move => "move", Dm.List => "list", Dm.ListExports => "list", ClusterCmd.Status => "status",
        _ => command.GetType().Name.ToLowerInvariant(),
    };

    internal static string NameOf(object command) => command switch
    {
        Dm.Create c => c.Name, CreateVolume c => c.Create.Name, Dm.Load l => l.Name, Dm.Remove r => r.Name, Dm.Rename r => r.Name,
        Dm.Suspend s => s.Name, Dm.Resume r => r.Name, Dm.Clear c => c.Name, Dm.GetTable t => t.Name, Dm.GetStatus s => s.Name,
        Dm.GetInfo i => i.Name, Dm.Message m => m.Name, Dm.History h => h.Name, Dm.Open o => o.Name, Dm.Close c => c.Name,
        ClusterCmd.Move m => m.Name, IStatsCommand g => g.Name,
        _ => "",
    };
}
