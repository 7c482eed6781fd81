using Akka.Actor;
using Akka.Event;

namespace DmActors;

/// <summary>
/// The device directory of a host (dm-ioctl's hash cells): creates, finds, renames and removes mapped devices,
/// builds tables against the host's disks and devices, and forwards everything else to the device by name.
/// Callers reach a device only through here, by name; IO then goes straight to the device actor it hands out.
///
/// With a persistence id, every change is an event recorded by a <see cref="DeviceJournal"/> child before it is
/// applied and acknowledged; commands wait in the stash meanwhile, so they apply one at a time, in order. On start
/// the journal replays and the devices come back, lower devices before the devices stacked on them.
/// </summary>
public sealed class DeviceManager : UntypedActor, IWithUnboundedStash
{
    public sealed record Options(IClock? Clock = null, int MaxDeferred = 65536, TimeSpan? ShutdownTimeout = null,
        TimeSpan? BarrierTimeout = null, string? PersistenceId = null, bool InlineIo = true);

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

    private sealed record Entry(IActorRef Actor, DeviceShared Shared, MappedDeviceHandle Handle)
    {
        /// <summary>Names of the mapped devices this device's tables use (for loop detection).</summary>
        public HashSet<string> Uses { get; } = new();

        /// <summary>Why the recorded live table could not be rebuilt at recovery (a missing disk); named by devices stacked on it.</summary>
        public string? Error { get; set; }
    }

    private readonly DiskRegistry _disks;
    private readonly Options _options;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly SortedDictionary<string, Entry> _devices = new(StringComparer.Ordinal);
    private HostState _state = HostState.Empty;
    private ConfigDeviceRecords _config = ConfigDeviceRecords.Empty;
    private IActorRef? _journal;
    private bool _recovering;
    private string? _unavailable;
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
            case DeviceJournal.Msg.Recovered r:
                _config = r.ConfigDevices;
                Recovered(r.State);
                return;
            case DeviceJournal.Msg.RecoveryFailed f:
                _unavailable = $"cannot recover devices from the journal: {f.Reason}";
                _log.Error(_unavailable);
                _recovering = false;
                Stash.UnstashAll();
                return;
            case DeviceJournal.Msg.Recorded r:
                (_state, _config) = (r.State, r.ConfigDevices);
                if (r.Id == _awaitingId) Settle(null);
                return;
            case DeviceJournal.Msg.Rejected r:
                if (r.Id == _awaitingId) Settle($"journal rejected the change: {r.Reason}");
                return;
            case Terminated t when t.ActorRef.Equals(_journal):
                // The journal stops when a write fails: the waiting command fails, and a new journal replays.
                Settle("journal write failed");
                if (_unavailable == null) { _recovering = true; StartJournal(); }
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
        switch (message)
        {
            case Dm.Create c: Create(c); break;
            case CreateConfigDevice c: Create(c.Create, fromConfig: true); break;
            case AdoptConfigDevice a:
                WithDevice("create", a.Name, _ =>
                {
                    var rec = _state.Devices[a.Name];
                    var sender = Sender;
                    Commit([new DeviceEvents.ConfigDevice(a.Name, Now, rec.Live, rec.ReadOnly, rec.Mode)], () => sender.Tell(Dm.Done.Empty),
                        reason => sender.Tell(new Dm.Failed("create", a.Name, "Input/output error", reason)));
                });
                break;
            case GetRecorded: Sender.Tell(new Recorded(_state, _config)); break;
            case Dm.Load l: WithDevice("reload", l.Name, e => Load(e, l)); break;
            case Dm.Remove r: WithDevice("remove", r.Name, e => Remove(e, r)); break;
            case Dm.Rename r: WithDevice("rename", r.Name, e => Rename(e, r)); break;
            case Dm.Suspend s: WithDevice("suspend", s.Name, e => Change(e, s, new DeviceEvents.Suspended(s.Name, Now, s.NoFlush))); break;
            case Dm.Resume r: WithDevice("resume", r.Name, e => Change(e, r, new DeviceEvents.Resumed(r.Name, Now))); break;
            case Dm.Clear c: WithDevice("clear", c.Name, e => Change(e, c, new DeviceEvents.TableCleared(c.Name, Now))); break;
            case Dm.GetTable t: Forward("table", t.Name, t); break;
            case Dm.GetStatus s: Forward("status", s.Name, s); break;
            case Dm.GetInfo i: Forward("info", i.Name, i); break;
            case Dm.Message m: Forward("message", m.Name, m); break;
            case Dm.History h:
                WithDevice("history", h.Name, _ => Sender.Tell(new Dm.Done(
                    _state.Devices.TryGetValue(h.Name, out var rec)
                        ? rec.History.Select(x => $"{x.At:yyyy-MM-dd HH:mm:ss.fff}  {x.What}").ToArray()
                        : [])));
                break;
            case Dm.PowerCut p: PowerCut(p); break;
            case Quiesce:
                var gather = Context.ActorOf(Akka.Actor.Props.Create(() => new Gather(_devices.Count, Sender)));
                foreach (var e in _devices.Values) e.Actor.Tell(new Dm.Suspend(e.Shared.Name), gather);
                break;
            case Dm.List:
                Sender.Tell(_devices.Count == 0
                    ? Dm.Done.Of("No devices found")
                    : new Dm.Done(_devices.Select(d => $"{d.Key}\t({MappedDevice.Major}:{d.Value.Shared.Minor})").ToArray()));
                break;
            case Dm.ListExports:
                Sender.Tell(new Dm.Done(_devices.Where(d => d.Value.Shared.Sectors > 0).Select(d => d.Key).ToArray()));
                break;
            case Dm.ListTargets:
                Sender.Tell(new Dm.Done(TargetTypes.All.Select(t => $"{t.Name,-16} {t.Version}").ToArray()));
                break;
            case Dm.Open o:
                WithDevice("open", o.Name, e =>
                {
                    if (e.Shared.Sectors == 0) { Sender.Tell(new Dm.Failed("open", o.Name, Dm.Failed.NoDevice, "device has no live table")); return; }
                    e.Shared.Open();
                    Sender.Tell(new Dm.Opened(o.Name, e.Actor, e.Shared.Sectors, e.Shared.ReadOnly, e.Shared.HasVolatileCache, 4096, true, true));
                });
                break;
            case Dm.Close c: WithDevice("close", c.Name, e => { e.Shared.Close(); Sender.Tell(Dm.Done.Empty); }); break;
            default: Unhandled(message); break;
        }
    }

    private static DateTime Now => DateTime.UtcNow;

    // ---- Recording changes ------------------------------------------------------------------------------------

    /// <summary>Records <paramref name="events"/>, then runs <paramref name="apply"/>; if the journal refuses, runs <paramref name="fail"/>.</summary>
    private void Commit(IReadOnlyList<DeviceEvents.DeviceEvent> events, Action apply, Action<string> fail)
    {
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

    /// <summary>A change the device itself carries out: record it, then forward (the device answers the caller).</summary>
    private void Change(Entry e, object command, DeviceEvents.DeviceEvent evt)
    {
        var sender = Sender;
        Commit([evt], () => e.Actor.Tell(command, sender), reason => sender.Tell(Failure(evt, reason)));
    }

    private static Dm.Failed Failure(DeviceEvents.DeviceEvent e, string reason) =>
        new(e.GetType().Name.ToLowerInvariant(), e.Name, "Input/output error", reason);

    // ---- Commands ---------------------------------------------------------------------------------------------

    private void Create(Dm.Create c, bool fromConfig = false)
    {
        if ((CheckName(c.Name) ?? CheckUuid(c.Uuid)) is { } bad) { Sender.Tell(new Dm.Failed("create", Printable(c.Name), Dm.Failed.Invalid, bad)); return; }
        if (_devices.ContainsKey(c.Name)) { Sender.Tell(new Dm.Failed("create", c.Name, Dm.Failed.Busy, $"device {c.Name} already exists")); return; }
        // dm_hash_insert: a uuid names one device, like a name (an empty uuid is none, as in the ioctl).
        if (c.Uuid is { Length: > 0 } && _state.WithUuid(c.Uuid) is { } holder)
        {
            Sender.Tell(new Dm.Failed("create", c.Name, Dm.Failed.Busy, $"device with uuid {c.Uuid} already exists: {holder.Name}"));
            return;
        }
        if (c.Uuid == "") c = c with { Uuid = null };
        // Build first: a create whose table fails leaves nothing behind (dmsetup's _revert_create).
        (Table Table, HashSet<string> Uses)? built = null;
        if (!string.IsNullOrWhiteSpace(c.Table))
        {
            try { built = Build(c.Name, c.Table, c.ReadOnly); }
            catch (TableException e) { Sender.Tell(new Dm.Failed("create", c.Name, Dm.Failed.Invalid, e.Message)); return; }
        }
        var minor = _state.NextMinor;
        var events = new List<DeviceEvents.DeviceEvent> { new DeviceEvents.Created(c.Name, Now, minor, c.Mode, c.ReadOnly, c.Uuid) };
        if (built != null)
        {
            events.Add(new DeviceEvents.TableLoaded(c.Name, Now, c.Table!, c.ReadOnly));
            events.Add(new DeviceEvents.Resumed(c.Name, Now));
        }
        if (fromConfig) events.Add(new DeviceEvents.ConfigDevice(c.Name, Now, c.Table, c.ReadOnly, c.Mode));
        var sender = Sender;
        Commit(events, () =>
        {
            var e = Spawn(c.Name, minor, c.Mode, c.ReadOnly, c.Uuid);
            if (built is not { } b) { sender.Tell(Dm.Done.Empty); return; }
            e.Uses.UnionWith(b.Uses);
            e.Actor.Tell(new MappedDevice.LoadTable(b.Table, Reply: false));
            e.Actor.Tell(new Dm.Resume(c.Name), sender);
        }, reason =>
        {
            built?.Table.Destroy();
            sender.Tell(new Dm.Failed("create", c.Name, "Input/output error", reason));
        });
    }

    private Entry Spawn(string name, int minor, BarrierMode mode, bool readOnly, string? uuid)
    {
        var shared = new DeviceShared(name, minor);
        var actor = Context.ActorOf(MappedDevice.Props(shared, new MappedDevice.Options(mode, _options.MaxDeferred,
            _options.Clock, _options.ShutdownTimeout, readOnly, uuid, _options.BarrierTimeout,
            _options.InlineIo ? IoDispatcher.DispatcherId : Akka.Dispatch.Dispatchers.DefaultDispatcherId)), $"dm-{minor}");
        Context.Watch(actor);
        return _devices[name] = new Entry(actor, shared, new MappedDeviceHandle(actor, shared));
    }

    private void Load(Entry e, Dm.Load l)
    {
        (Table Table, HashSet<string> Uses) built;
        try { built = Build(l.Name, l.Table, l.ReadOnly); }
        catch (TableException ex) { Sender.Tell(new Dm.Failed("reload", l.Name, Dm.Failed.Invalid, ex.Message)); return; }
        var sender = Sender;
        Commit([new DeviceEvents.TableLoaded(l.Name, Now, l.Table, l.ReadOnly)], () =>
        {
            e.Uses.UnionWith(built.Uses);
            e.Actor.Tell(new MappedDevice.LoadTable(built.Table), sender);
        }, reason =>
        {
            built.Table.Destroy();
            sender.Tell(new Dm.Failed("reload", l.Name, "Input/output error", reason));
        });
    }

    /// <summary>Cuts the power of cached disks; off the actor's thread, since a torn cut writes to the disks below.</summary>
    private void PowerCut(Dm.PowerCut p)
    {
        var named = p.Disks.Select(n => (n, _disks.Find(n))).ToList();
        if (named.FirstOrDefault(d => d.Item2 == null) is { n: { } missing })
        {
            Sender.Tell(new Dm.Failed("powercut", missing, Dm.Failed.NoDevice, $"no disk {missing}"));
            return;
        }
        var disks = p.Disks.Length == 0 ? _disks.All.Where(d => d.HasVolatileCache).ToList() : named.Select(d => d.Item2!).ToList();
        var sender = Sender;
        Task.Run(() => (object)new Dm.Done(disks.Select(d =>
        {
            if (d is not CachedDisk c) return $"{d.Name}: no write-back cache, nothing lost";
            var lost = c.CachedSectors;
            c.PowerCut(p.Tear ? new Random() : null);
            return $"{d.Name}: power cut, {lost} cached sector(s) {(p.Tear ? "torn" : "lost")}";
        }).ToArray())).PipeTo(sender);
    }

    private (Table, HashSet<string>) Build(string self, string text, bool readOnly)
    {
        var lookup = new Lookup(this, self);
        var lines = Table.Parse(text);
        return (Table.Build(lines, lookup, readOnly, _options.Clock), lookup.Used);
    }

    private void Remove(Entry e, Dm.Remove r)
    {
        var sender = Sender;
        if (e.Shared.OpenCount > 0)
        {
            var busy = new Dm.Failed("remove", r.Name, Dm.Failed.Busy, $"{r.Name} is open ({e.Shared.OpenCount})");
            if (!r.Force) { sender.Tell(busy); return; }
            // remove --force first wipes the table to `error` (so IO fails instead of hanging), then still refuses.
            var wipe = $"0 {Math.Max(1, e.Shared.Sectors)} error";
            var (table, _) = Build(r.Name, wipe, false);
            Commit([new DeviceEvents.TableLoaded(r.Name, Now, wipe, false), new DeviceEvents.Resumed(r.Name, Now)],
                () => { e.Actor.Tell(new MappedDevice.Wipe(table), ActorRefs.Nobody); sender.Tell(busy); },
                reason => sender.Tell(new Dm.Failed("remove", r.Name, "Input/output error", reason)));
            return;
        }
        Commit([new DeviceEvents.Removed(r.Name, Now)], () =>
        {
            _devices.Remove(r.Name);
            e.Actor.Tell(new MappedDevice.Shutdown(), sender);
        }, reason => sender.Tell(new Dm.Failed("remove", r.Name, "Input/output error", reason)));
    }

    private void Rename(Entry e, Dm.Rename r)
    {
        var sender = Sender;
        if (r.SetUuid)
        {
            // dev_rename, then dm_hash_rename: a valid string, not another device's uuid, no uuid yet.
            if ((r.NewName.Length == 0 ? "Invalid new mapped device name or uuid string supplied." : CheckUuid(r.NewName)) is { } invalid)
            {
                sender.Tell(new Dm.Failed("rename", r.Name, Dm.Failed.Invalid, invalid));
                return;
            }
            if (_state.WithUuid(r.NewName) != null)
            {
                sender.Tell(new Dm.Failed("rename", r.Name, Dm.Failed.Busy,
                    $"Unable to change uuid on mapped device {r.Name} to one that already exists: {r.NewName}"));
                return;
            }
            var current = _state.Devices.TryGetValue(r.Name, out var rec) ? rec.Uuid : null;
            if (current != null)
            {
                sender.Tell(new Dm.Failed("rename", r.Name, Dm.Failed.Invalid,
                    $"Unable to change uuid of mapped device {r.Name} to {r.NewName} because uuid is already set to {current}"));
                return;
            }
            Commit([new DeviceEvents.UuidSet(r.Name, Now, r.NewName)], () => e.Actor.Tell(new MappedDevice.SetUuid(r.NewName), sender),
                reason => sender.Tell(new Dm.Failed("rename", r.Name, "Input/output error", reason)));
            return;
        }
        if (CheckName(r.NewName) is { } bad) { sender.Tell(new Dm.Failed("rename", r.Name, Dm.Failed.Invalid, bad)); return; }
        if (_devices.ContainsKey(r.NewName)) { sender.Tell(new Dm.Failed("rename", r.Name, Dm.Failed.Busy, $"device {r.NewName} already exists")); return; }
        Commit([new DeviceEvents.Renamed(r.Name, Now, r.NewName)], () =>
        {
            _devices.Remove(r.Name);
            _devices[r.NewName] = e;
            foreach (var other in _devices.Values)
                if (other.Uses.Remove(r.Name)) other.Uses.Add(r.NewName);
            e.Actor.Tell(new MappedDevice.Renamed(r.NewName), sender);
        }, reason => sender.Tell(new Dm.Failed("rename", r.Name, "Input/output error", reason)));
    }

    // ---- Recovery ---------------------------------------------------------------------------------------------

    /// <summary>
    /// Brings back every recorded device: lower devices first, so the tables stacked on them find them with their
    /// size. A table that cannot be rebuilt (a missing disk) leaves its device in an error state, named in `info`.
    /// </summary>
    private void Recovered(HostState state)
    {
        var first = _devices.Count == 0;
        _state = state;
        _recovering = false;
        if (first)
        {
            foreach (var d in state.InDependencyOrder())
            {
                var e = Spawn(d.Name, d.Minor, d.Mode, d.ReadOnly, d.Uuid);
                if (d.Live != null && Rebuild(e, d.Name, d.Live, d.LiveReadOnly, "live") is { } live)
                {
                    e.Shared.Sectors = live.Sectors; // stacked devices recovered next check their size against this
                    e.Actor.Tell(new MappedDevice.LoadTable(live, Reply: false));
                    e.Actor.Tell(new Dm.Resume(d.Name), ActorRefs.Nobody);
                }
                if (d.Inactive != null && Rebuild(e, d.Name, d.Inactive, d.InactiveReadOnly, "inactive") is { } inactive)
                    e.Actor.Tell(new MappedDevice.LoadTable(inactive, Reply: false));
                if (d.Suspended) e.Actor.Tell(new Dm.Suspend(d.Name), ActorRefs.Nobody);
            }
            _log.Info("recovered {0} device(s) from the journal", state.Devices.Count);
        }
        Stash.UnstashAll();
    }

    private Table? Rebuild(Entry e, string name, string text, bool readOnly, string slot)
    {
        try
        {
            var (table, uses) = Build(name, text, readOnly);
            e.Uses.UnionWith(uses);
            return table;
        }
        catch (TableException ex)
        {
            var cause = WithFileError(ex.Message, text);
            if (slot == "live") e.Error = cause;
            var reason = $"{slot} table could not be rebuilt: {cause}";
            _log.Error("device {0}: {1}", name, reason);
            e.Actor.Tell(new MappedDevice.MarkError(reason));
            return null;
        }
    }

    /// <summary>"Device lookup failed: /x.img" says which file, not that it is gone: add the reason.</summary>
    private static string WithFileError(string message, string table)
    {
        IEnumerable<string> args;
        try { args = Table.Parse(table).SelectMany(l => l.Args); }
        catch (TableException) { return message; }
        var missing = args.FirstOrDefault(a => (a.StartsWith('/') || a.StartsWith("./")) && message.EndsWith(a, StringComparison.Ordinal) && !File.Exists(a));
        return missing == null ? message : $"{message}: No such file or directory";
    }

    // ---- Lookup -----------------------------------------------------------------------------------------------

    private void Forward(string op, string name, object message) => WithDevice(op, name, e => e.Actor.Forward(message));

    private void WithDevice(string op, string name, Action<Entry> action)
    {
        if (_devices.TryGetValue(name, out var e)) action(e);
        else Sender.Tell(new Dm.Failed(op, name, Dm.Failed.NoDevice, "Device does not exist."));
    }

    /// <summary>Collects <paramref name="count"/> replies, then answers Dm.Done (or the first failure).</summary>
    private sealed class Gather : UntypedActor
    {
        private readonly IActorRef _replyTo;
        private int _left;
        private object _reply = Dm.Done.Empty;

        public Gather(int count, IActorRef replyTo)
        {
            _left = count; _replyTo = replyTo;
            if (count == 0) Finish();
        }

        protected override void OnReceive(object message)
        {
            if (message is Dm.Failed f && _reply is Dm.Done) _reply = f;
            if (--_left == 0) Finish();
        }

        private void Finish()
        {
            _replyTo.Tell(_reply);
            Context.Stop(Self);
        }
    }

    /// <summary>
    /// A device name dm accepts: at most 127 bytes (DM_NAME_LEN with its NUL; libdm's message), no '/', not
    /// "control", "." or ".." (dm-ioctl's check_name, its messages), and no control characters: dm takes them,
    /// but a newline breaks every listing (`dmsetup ls`), so they are refused too.
    /// </summary>
    public static string? CheckName(string name) => name switch
    {
        "" => "device name cannot be empty",
        _ when System.Text.Encoding.UTF8.GetByteCount(name) > 127 => $"Name \"{Printable(name)}\" too long.",
        _ when name.Contains('/') => "device name cannot contain '/'",
        "." or ".." or "control" => "device name cannot be \"control\", \".\", or \"..\"",
        _ when name.Any(char.IsControl) => $"Name \"{Printable(name)}\" invalid. It contains a control character.",
        _ => null,
    };

    /// <summary>A uuid dm accepts: at most 128 bytes (DM_UUID_LEN with its NUL; libdm's message), no control characters.</summary>
    public static string? CheckUuid(string? uuid) => uuid switch
    {
        null => null,
        _ when System.Text.Encoding.UTF8.GetByteCount(uuid) > 128 => $"Uuid \"{Printable(uuid)}\" too long",
        _ when uuid.Any(char.IsControl) => $"Uuid \"{Printable(uuid)}\" invalid. It contains a control character.",
        _ => null,
    };

    /// <summary>Control characters as libdm mangles them (\xNN), so a refused name prints on one line.</summary>
    private static string Printable(string s) =>
        s.Any(char.IsControl) ? string.Concat(s.Select(ch => char.IsControl(ch) ? $"\\x{(int)ch:x2}" : ch.ToString())) : s;

    /// <summary>Resolves table arguments: mapped devices by name or major:minor, then disks by name, devno or path.</summary>
    private sealed class Lookup(DeviceManager manager, string self) : IDeviceLookup
    {
        public HashSet<string> Used { get; } = new();

        public IBlockDevice? Find(string name)
        {
            var dev = manager._devices.FirstOrDefault(d => d.Key == name || d.Value.Shared.DevNo == name);
            if (dev.Value != null)
            {
                if (dev.Key == self || manager.DependsOn(dev.Key, self)) throw new TargetException($"{name}: a device cannot map onto itself");
                // Rather than "too small ... dev_size=0": say why the device below has no table.
                if (dev.Value.Error is { } error && dev.Value.Shared.Sectors == 0)
                    throw new TargetException($"lower device '{dev.Key}' has no live table ({error})");
                Used.Add(dev.Key);
                return dev.Value.Handle;
            }
            return manager._disks.Find(name) ?? manager._disks.All.FirstOrDefault(d => d.DevNo == name);
        }
    }

    private bool DependsOn(string device, string on) =>
        _devices.TryGetValue(device, out var e) && e.Uses.Any(u => u == on || DependsOn(u, on));
}
