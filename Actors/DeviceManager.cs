using Akka.Actor;
using Akka.Event;

namespace DmActors;

/// <summary>
/// The device directory of a host (dm-ioctl's hash cells): creates, finds, renames and removes mapped devices,
/// and forwards everything else to the device by name. Callers reach a device only through here, by name; IO then
/// goes straight to the device actor it hands out.
///
/// A change is decided by <see cref="DeviceCommands"/> (a pure function of the recorded state), its table built by
/// <see cref="DeviceLookup"/>, and with a persistence id its events are recorded by a <see cref="DeviceJournal"/>
/// child before it is applied and acknowledged; commands wait in the stash meanwhile, so they apply one at a time,
/// in order. On start the journal replays and <see cref="DeviceRecovery"/> brings the devices back.
/// </summary>
public sealed class DeviceManager : UntypedActor, IWithUnboundedStash
{
    public sealed record Options(IClock? Clock = null, int MaxDeferred = 65536, TimeSpan? ShutdownTimeout = null,
        TimeSpan? BarrierTimeout = null, string? PersistenceId = null, bool InlineIo = true, string? JournalName = null,
        ITargetRecords? TargetRecords = null);

    public static Props Props(DiskRegistry disks, Options? options = null) =>
        Akka.Actor.Props.Create(() => new DeviceManager(disks, options ?? new Options()));

    /// <summary>
    /// Host shutdown: suspend every device with flush (in-flight IO completes, caches below are quiet) without
    /// recording it, so the devices come back running. Answered with Dm.Done once all are suspended.
    /// </summary>
    public sealed record Quiesce;

    /// <summary>The host's start: what the journal recorded, answered with <see cref="Recorded"/>.</summary>
    public sealed record GetRecorded;
    public sealed record Recorded(HostState State, ConfigDeviceRecords ConfigDevices);

    /// <summary>
    /// The host's start: create a device of the configuration, recorded as the configuration's
    /// (<see cref="DeviceEvents.ConfigDevice"/>) in the same write, so no later start creates it again.
    /// </summary>
    public sealed record CreateConfigDevice(Dm.Create Create);

    /// <summary>The host's start: a device the configuration names, already recorded, becomes the configuration's.</summary>
    public sealed record AdoptConfigDevice(string Name);

    private readonly DiskRegistry _disks;
    private readonly Options _options;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly SortedDictionary<string, ManagedDevice> _devices = new(StringComparer.Ordinal);
    private HostState _state = HostState.Empty;
    private ConfigDeviceRecords _config = ConfigDeviceRecords.Empty;
    private IActorRef? _journal;
    private bool _recovering;
    private string? _unavailable;
    /// <summary>The first replay is done (devices run): a journal that fails later is restarted, not fatal.</summary>
    private bool _recovered;
    /// <summary>Why changes cannot be recorded now (the journal failed and is being restarted); null: they can.</summary>
    private string? _journalDown;
    private string? _writeFailure;
    /// <summary>How many events the journal acknowledged: a restarted journal that replays fewer did not read them all.</summary>
    private long _sequenceNr;
    private TimeSpan _retryDelay = RetryFirst;
    private static readonly TimeSpan RetryFirst = TimeSpan.FromMilliseconds(500), RetryMax = TimeSpan.FromSeconds(5);
    private sealed record RetryJournal;
    private string JournalName => _options.JournalName ?? "journal";
    /// <summary>A change waiting for the journal: what to do once recorded, and what to do if not.</summary>
    private (Action Apply, Action<string> Fail)? _awaiting;
    private long _awaitingId;

    public DeviceManager(DiskRegistry disks, Options options)
    {
        _disks = disks; _options = options;
        if (options.InlineIo) IoDispatcher.Require(Context.System); // declared in the configuration (akka.hocon)
    }

    public IStash Stash { get; set; } = null!;

    protected override void PreStart()
    {
        LostBioAnswerer.Start(Context.System);
        if (_options.PersistenceId == null) return;
        _recovering = true;
        StartJournal();
    }

    private void StartJournal() => _journal = Context.Watch(Context.ActorOf(DeviceJournal.Props(_options.PersistenceId!)));

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case DeviceJournal.Msg.Recovered r when _recovered && r.SequenceNr < _sequenceNr:
                // A database restored from an old backup, or one that lost its last commits (synchronous_commit =
                // off and a crash): taken as the truth, this replay would forget devices that run. This journal is
                // stopped and another one tried; changes fail meanwhile, naming the gap.
                _journalDown = $"{JournalName}: unavailable: it replayed {r.SequenceNr} of {_sequenceNr} events";
                _log.Warning($"{_journalDown}; retrying");
                _recovering = false;
                Stash.UnstashAll();
                Context.Stop(_journal);
                return;
            case DeviceJournal.Msg.Recovered r:
                // A journal restarted after a failed write replays too; its devices are running already.
                var first = !_recovered;
                _sequenceNr = r.SequenceNr;
                (_state, _config, _recovering, _recovered) = (r.State, r.ConfigDevices, false, true);
                if (_journalDown != null) _log.Info($"{JournalName}: recording again");
                (_journalDown, _retryDelay) = (null, RetryFirst);
                if (first) DeviceRecovery.Restore(r.State, d => Spawn(d.Name, d.Minor, d.Mode, d.ReadOnly, d.Uuid), Build, _log);
                Stash.UnstashAll();
                return;
            case DeviceJournal.Msg.RecoveryFailed f when _recovered:
                // The database went away: devices and their IO go on, changes fail (naming the journal) until it is back.
                _journalDown = $"{JournalName}: unavailable: {f.Reason}";
                _log.Warning($"{_journalDown}; retrying");
                _recovering = false;
                Stash.UnstashAll();
                return;
            case DeviceJournal.Msg.RecoveryFailed f:
                _unavailable = $"cannot recover devices from the journal: {f.Reason}";
                _log.Error(_unavailable);
                _recovering = false;
                Stash.UnstashAll();
                return;
            case DeviceJournal.Msg.Recorded r:
                (_state, _config, _sequenceNr) = (r.State, r.ConfigDevices, r.SequenceNr);
                if (r.Id == _awaitingId) Settle(null);
                return;
            case DeviceJournal.Msg.Rejected r:
                if (r.Id == _awaitingId) Settle($"journal rejected the change: {r.Reason}");
                return;
            case DeviceJournal.Msg.WriteFailed w:
                _writeFailure = w.Reason;
                return;
            case Terminated t when t.ActorRef.Equals(_journal):
                // The journal stops when a write fails: the waiting command fails, and a new journal replays at
                // once (commands wait for it). One that cannot replay is retried, backing off, until it can.
                Settle($"{JournalName}: write failed{(_writeFailure is { } why ? $": {why}" : "")}");
                _writeFailure = null;
                if (_unavailable != null) return;
                if (_journalDown == null) { _recovering = true; StartJournal(); }
                else
                {
                    Context.System.Scheduler.ScheduleTellOnce(_retryDelay, Self, new RetryJournal(), Self);
                    _retryDelay = TimeSpan.FromTicks(Math.Min(_retryDelay.Ticks * 2, RetryMax.Ticks));
                }
                return;
            case RetryJournal:
                StartJournal();
                return;
            case Terminated t:
                foreach (var gone in _devices.Where(d => d.Value.Actor.Equals(t.ActorRef)).Select(d => d.Key).ToList())
                    _devices.Remove(gone);
                return;
        }
        if (_recovering || _awaiting != null) { Stash.Stash(); return; }
        if (_unavailable != null) { Sender.Tell(new Dm.Unavailable(_unavailable)); return; }
        Command(message);
    }

    private void Command(object message)
    {
        if (DeviceCommands.Changes(message)) { Change(message); return; }
        switch (message)
        {
            case GetRecorded: Sender.Tell(new Recorded(_state, _config)); break;
            case Dm.GetTable t: Forward("table", t.Name, t); break;
            case Dm.GetStatus s: Forward("status", s.Name, s); break;
            case Dm.GetInfo i: Forward("info", i.Name, i); break;
            case GetIoStats st: Forward("stats", st.Name, st); break;
            case Dm.Message m: Forward("message", m.Name, m); break;
            case Dm.History h:
                WithDevice("history", h.Name, _ => Sender.Tell(new Dm.HistoryList(h.Name,
                    _state.Devices.TryGetValue(h.Name, out var rec) ? rec.History.ToArray() : [])));
                break;
            case Quiesce:
                var gather = Context.ActorOf(Akka.Actor.Props.Create(() => new ReplyGather(_devices.Count, Sender)));
                foreach (var e in _devices.Values) e.Actor.Tell(new Dm.Suspend(e.Shared.Name), gather);
                break;
            case Dm.List:
                Sender.Tell(new Dm.DeviceList(_devices.Select(d => new Dm.DeviceEntry(d.Key, MappedDevice.Major, d.Value.Shared.Minor)).ToArray()));
                break;
            case Dm.ListExports:
                Sender.Tell(new Dm.ExportList(_devices.Where(d => d.Value.Shared.Sectors > 0).Select(d => d.Key).ToArray()));
                break;
            case Dm.ListTargets:
                Sender.Tell(new Dm.TargetList(TargetTypes.All.Select(t => new Dm.TargetEntry(t.Name, t.Version)).ToArray()));
                break;
            case Dm.Open o:
                WithDevice("open", o.Name, e =>
                {
                    if (e.Shared.Sectors == 0) { Sender.Tell(new Dm.Failed("open", o.Name, Dm.Failed.NoDevice, "device has no live table")); return; }
                    e.Shared.Open();
                    // Each open gets a lane of the device (docs/threading.md); the device answers with it.
                    e.Actor.Tell(new MappedDevice.OpenLane(new Dm.Opened(o.Name, e.Actor, e.Shared.Sectors, e.Shared.ReadOnly,
                        e.Shared.HasVolatileCache, 4096, true, true)), Sender);
                });
                break;
            case Dm.Close c:
                WithDevice("close", c.Name, e =>
                {
                    e.Shared.Close();
                    if (c.Device != null) e.Actor.Tell(new MappedDevice.CloseLane(c.Device));
                    Sender.Tell(Dm.Done.Empty);
                });
                break;
            default: Unhandled(message); break;
        }
    }

    // ---- Changes: decide, build, record, apply ----------------------------------------------------------------

    private DeviceFacts? Facts(string name) =>
        _devices.TryGetValue(name, out var e) ? new DeviceFacts(e.Shared.OpenCount, e.Shared.Sectors) : null;

    private void Change(object command)
    {
        var d = DeviceCommands.Decide(_state, Facts, command, DateTime.UtcNow);
        if (d.Refused) { Sender.Tell(d.Refusal); return; }
        BuiltTable? built = null;
        if (d.Build is { } text)
        {
            try { built = Build(d.Name, text.Text, text.ReadOnly); }
            catch (TableException e) { Sender.Tell(new Dm.Failed(d.Op, d.Name, Dm.Failed.Invalid, e.Message)); return; }
        }
        var device = _devices.GetValueOrDefault(d.Name);
        var sender = Sender;
        Commit(d.Events, () => Apply(command, d, device, built, sender), reason =>
        {
            built?.Table.Destroy();
            sender.Tell(new Dm.Failed(d.Op, d.Name, "Input/output error", reason));
        });
    }

    /// <summary>Carries out a recorded change; where the device does the work, the device answers the caller.</summary>
    private void Apply(object command, Decision d, ManagedDevice? e, BuiltTable? built, IActorRef sender) =>
        DeviceChange.Apply(command, d, e, built, sender, c => Spawn(c.Name, c.Minor, c.Mode, c.ReadOnly, c.Uuid),
            removed: () => _devices.Remove(d.Name),
            renamed: newName =>
            {
                _devices.Remove(d.Name);
                _devices[newName] = e!;
                foreach (var other in _devices.Values)
                    if (other.Uses.Remove(d.Name)) other.Uses.Add(newName);
            });

    /// <summary>Records <paramref name="events"/>, then runs <paramref name="apply"/>; if the journal refuses, runs <paramref name="fail"/>.</summary>
    private void Commit(IReadOnlyList<DeviceEvents.DeviceEvent> events, Action apply, Action<string> fail)
    {
        if (_journalDown is { } down) { fail(down); return; }
        if (_journal == null)
        {
            foreach (var e in events) (_state, _config) = (_state.Apply(e), _config.Apply(e));
            apply();
            return;
        }
        _awaiting = (apply, fail);
        _journal.Tell(new DeviceJournal.Msg.Record(++_awaitingId, events));
    }

    private void Settle(string? failure)
    {
        if (_awaiting is not { } waiting) return;
        _awaiting = null;
        if (failure == null) waiting.Apply(); else waiting.Fail(failure);
        Stash.UnstashAll();
    }

    private ManagedDevice Spawn(string name, int minor, BarrierMode mode, bool readOnly, string? uuid)
    {
        var shared = new DeviceShared(name, minor);
        var actor = Context.ActorOf(MappedDevice.Props(shared, new MappedDevice.Options(mode, _options.MaxDeferred,
            _options.Clock, _options.ShutdownTimeout, readOnly, uuid, _options.BarrierTimeout,
            _options.InlineIo ? IoDispatcher.DispatcherId : Akka.Dispatch.Dispatchers.DefaultDispatcherId)), ActorName(minor));
        Context.Watch(actor);
        return _devices[name] = new ManagedDevice(actor, shared, new MappedDeviceHandle(actor, shared));
    }

    /// <summary>dm-MINOR; a minor asked for again while its removed device is still stopping gets a suffix.</summary>
    private string ActorName(int minor)
    {
        var name = $"dm-{minor}";
        for (var k = 1; !Context.Child(name).IsNobody(); k++) name = $"dm-{minor}.{k}";
        return name;
    }

    private BuiltTable Build(string self, string text, bool readOnly) =>
        DeviceLookup.Build(_devices, _disks, _options.Clock, self, text, readOnly, _options.TargetRecords);

    private void Forward(string op, string name, object message) => WithDevice(op, name, e => e.Actor.Forward(message));

    private void WithDevice(string op, string name, Action<ManagedDevice> action)
    {
        if (_devices.TryGetValue(name, out var e)) action(e);
        else Sender.Tell(DeviceCommands.NoSuchDevice(op, name));
    }
}
