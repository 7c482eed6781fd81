using Akka.Actor;

namespace DmActors;

/// <summary>
/// The device directory of a host (dm-ioctl's hash cells): creates, finds, renames and removes mapped devices,
/// builds tables against the host's disks and devices, and forwards everything else to the device by name.
/// Callers reach a device only through here, by name; IO then goes straight to the device actor it hands out.
/// </summary>
public sealed class DeviceManager : UntypedActor
{
    public sealed record Options(IClock? Clock = null, int MaxDeferred = 65536, TimeSpan? ShutdownTimeout = null, TimeSpan? BarrierTimeout = null);

    public static Props Props(DiskRegistry disks, Options? options = null) =>
        Akka.Actor.Props.Create(() => new DeviceManager(disks, options ?? new Options()));

    private sealed record Entry(IActorRef Actor, DeviceShared Shared, MappedDeviceHandle Handle)
    {
        /// <summary>Names of the mapped devices this device's tables use (for loop detection).</summary>
        public HashSet<string> Uses { get; } = new();
    }

    private readonly DiskRegistry _disks;
    private readonly Options _options;
    private readonly SortedDictionary<string, Entry> _devices = new(StringComparer.Ordinal);
    private int _nextMinor;

    public DeviceManager(DiskRegistry disks, Options options)
    {
        _disks = disks; _options = options;
    }

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case Dm.Create c: Create(c); break;
            case Dm.Load l: WithDevice("reload", l.Name, e => Load(e, l.Name, l.Table, l.ReadOnly, reply: true)); break;
            case Dm.Remove r: WithDevice("remove", r.Name, e => Remove(e, r)); break;
            case Dm.Rename r: WithDevice("rename", r.Name, e => Rename(e, r)); break;
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
            case Dm.Suspend s: Forward("suspend", s.Name, s); break;
            case Dm.Resume r: Forward("resume", r.Name, r); break;
            case Dm.Clear c: Forward("clear", c.Name, c); break;
            case Dm.GetTable t: Forward("table", t.Name, t); break;
            case Dm.GetStatus s: Forward("status", s.Name, s); break;
            case Dm.GetInfo i: Forward("info", i.Name, i); break;
            case Dm.Message m: Forward("message", m.Name, m); break;
            case Terminated t:
                foreach (var gone in _devices.Where(d => d.Value.Actor.Equals(t.ActorRef)).Select(d => d.Key).ToList())
                    _devices.Remove(gone);
                break;
            default: Unhandled(message); break;
        }
    }

    private void Create(Dm.Create c)
    {
        if (CheckName(c.Name) is { } bad) { Sender.Tell(new Dm.Failed("create", c.Name, Dm.Failed.Invalid, bad)); return; }
        if (_devices.ContainsKey(c.Name)) { Sender.Tell(new Dm.Failed("create", c.Name, Dm.Failed.Busy, $"device {c.Name} already exists")); return; }
        // Build first: a create whose table fails leaves nothing behind (dmsetup's _revert_create).
        Table? table = null;
        HashSet<string>? uses = null;
        if (!string.IsNullOrWhiteSpace(c.Table))
        {
            try { (table, uses) = Build(c.Name, c.Table, c.ReadOnly); }
            catch (TableException e) { Sender.Tell(new Dm.Failed("create", c.Name, Dm.Failed.Invalid, e.Message)); return; }
        }
        var shared = new DeviceShared(c.Name, _nextMinor++);
        var actor = Context.ActorOf(MappedDevice.Props(shared, new MappedDevice.Options(c.Mode, _options.MaxDeferred,
            _options.Clock, _options.ShutdownTimeout, c.ReadOnly, c.Uuid, _options.BarrierTimeout)), $"dm-{shared.Minor}");
        Context.Watch(actor);
        var entry = new Entry(actor, shared, new MappedDeviceHandle(actor, shared));
        _devices[c.Name] = entry;
        if (table == null) { Sender.Tell(Dm.Done.Empty); return; }
        entry.Uses.UnionWith(uses!);
        actor.Tell(new MappedDevice.LoadTable(table, Reply: false));
        actor.Tell(new Dm.Resume(c.Name), Sender);
    }

    private void Load(Entry e, string name, string text, bool readOnly, bool reply)
    {
        try
        {
            var (table, uses) = Build(name, text, readOnly);
            e.Uses.UnionWith(uses);
            e.Actor.Tell(new MappedDevice.LoadTable(table, reply), Sender);
        }
        catch (TableException ex) { Sender.Tell(new Dm.Failed("reload", name, Dm.Failed.Invalid, ex.Message)); }
    }

    private (Table, HashSet<string>) Build(string self, string text, bool readOnly)
    {
        var lookup = new Lookup(this, self);
        var lines = Table.Parse(text);
        return (Table.Build(lines, lookup, readOnly, _options.Clock), lookup.Used);
    }

    private void Remove(Entry e, Dm.Remove r)
    {
        if (e.Shared.OpenCount > 0)
        {
            // remove --force first wipes the table to `error` (so IO fails instead of hanging), then still refuses.
            if (r.Force) e.Actor.Tell(new MappedDevice.Wipe(), ActorRefs.Nobody);
            Sender.Tell(new Dm.Failed("remove", r.Name, Dm.Failed.Busy, $"{r.Name} is open ({e.Shared.OpenCount})"));
            return;
        }
        _devices.Remove(r.Name);
        e.Actor.Tell(new MappedDevice.Shutdown(), Sender);
    }

    private void Rename(Entry e, Dm.Rename r)
    {
        if (r.SetUuid) { e.Actor.Forward(new MappedDevice.SetUuid(r.NewName)); return; }
        if (CheckName(r.NewName) is { } bad) { Sender.Tell(new Dm.Failed("rename", r.Name, Dm.Failed.Invalid, bad)); return; }
        if (_devices.ContainsKey(r.NewName)) { Sender.Tell(new Dm.Failed("rename", r.Name, Dm.Failed.Busy, $"device {r.NewName} already exists")); return; }
        _devices.Remove(r.Name);
        _devices[r.NewName] = e;
        foreach (var other in _devices.Values)
            if (other.Uses.Remove(r.Name)) other.Uses.Add(r.NewName);
        e.Actor.Forward(new MappedDevice.Renamed(r.NewName));
    }

    private void Forward(string op, string name, object message) => WithDevice(op, name, e => e.Actor.Forward(message));

    private void WithDevice(string op, string name, Action<Entry> action)
    {
        if (_devices.TryGetValue(name, out var e)) action(e);
        else Sender.Tell(new Dm.Failed(op, name, Dm.Failed.NoDevice, "Device does not exist."));
    }

    /// <summary>dm-ioctl's check_name.</summary>
    public static string? CheckName(string name) => name switch
    {
        "" => "device name cannot be empty",
        "." or ".." or "control" => $"device name cannot be {name}",
        _ when name.Contains('/') => "device name cannot contain '/'",
        _ when name.Length > 127 => "device name is longer than 127 characters",
        _ => null,
    };

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
                Used.Add(dev.Key);
                return dev.Value.Handle;
            }
            return manager._disks.Find(name) ?? manager._disks.All.FirstOrDefault(d => d.DevNo == name);
        }
    }

    private bool DependsOn(string device, string on) =>
        _devices.TryGetValue(device, out var e) && e.Uses.Any(u => u == on || DependsOn(u, on));
}
