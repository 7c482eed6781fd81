using System.Collections.Immutable;

namespace DmActors;

/// <summary>
/// Marker for what the journal stores (events and snapshots), bound to <see cref="JournalSerializer"/>: each type
/// needs a manifest there. Rows of older journals are Hyperion's and name these types by CLR name: see there
/// before renaming one.
/// </summary>
public interface IPersistedEvent { }

/// <summary>
/// Every fact about a mapped device, as an event: persisted before the command that causes it is acknowledged,
/// replayed on restart. Tables are kept as the text the user loaded, so a restart rebuilds them against the disks.
/// </summary>
public static class DeviceEvents
{
    public abstract record DeviceEvent(string Name, DateTime At) : IPersistedEvent;
    public sealed record Created(string Name, DateTime At, int Minor, BarrierMode Mode, bool ReadOnly, string? Uuid) : DeviceEvent(Name, At);
    public sealed record TableLoaded(string Name, DateTime At, string Table, bool ReadOnly) : DeviceEvent(Name, At);
    public sealed record TableCleared(string Name, DateTime At) : DeviceEvent(Name, At);
    public sealed record Suspended(string Name, DateTime At, bool NoFlush) : DeviceEvent(Name, At);
    /// <summary>Resume: the inactive table (if any) becomes live and the device runs.</summary>
    public sealed record Resumed(string Name, DateTime At) : DeviceEvent(Name, At);
    public sealed record Renamed(string Name, DateTime At, string NewName) : DeviceEvent(Name, At);
    public sealed record UuidSet(string Name, DateTime At, string Uuid) : DeviceEvent(Name, At);
    public sealed record Removed(string Name, DateTime At) : DeviceEvent(Name, At);
    /// <summary>
    /// The device is the configuration's (`dmactors.devices`): created from it, or found recorded when the
    /// configuration first named it. What it had then is kept (<see cref="ConfigDeviceRecords"/>), so a restart
    /// neither creates it again after a dmsetup remove nor undoes a dmsetup reload, and can say why.
    /// </summary>
    public sealed record ConfigDevice(string Name, DateTime At, string? Table, bool ReadOnly, BarrierMode Mode) : DeviceEvent(Name, At);
}

/// <summary>One line of `dmactors dmsetup history`.</summary>
public sealed record HistoryEntry(DateTime At, string What) : IPersistedEvent;

/// <summary>What the journal knows about one device.</summary>
public sealed record DeviceRecord(string Name, int Minor, BarrierMode Mode, bool ReadOnly, string? Uuid,
    string? Live, bool LiveReadOnly, string? Inactive, bool InactiveReadOnly, bool Suspended,
    ImmutableList<HistoryEntry> History) : IPersistedEvent;

/// <summary>
/// The recorded state of a host's devices: a pure fold over <see cref="DeviceEvents"/>, also the snapshot.
/// </summary>
public sealed record HostState(ImmutableSortedDictionary<string, DeviceRecord> Devices, int NextMinor) : IPersistedEvent
{
    public static readonly HostState Empty = new(ImmutableSortedDictionary.Create<string, DeviceRecord>(StringComparer.Ordinal), 0);

    public HostState Apply(DeviceEvents.DeviceEvent e)
    {
        if (e is DeviceEvents.Created c)
            return new HostState(Devices.SetItem(c.Name, new DeviceRecord(c.Name, c.Minor, c.Mode, c.ReadOnly, c.Uuid,
                null, false, null, false, false, [new HistoryEntry(c.At, Describe(e))])), Math.Max(NextMinor, c.Minor + 1));
        if (!Devices.TryGetValue(e.Name, out var d)) return this; // an event for a device already gone: nothing to do
        d = d with { History = d.History.Add(new HistoryEntry(e.At, Describe(e))) };
        return e switch
        {
            DeviceEvents.TableLoaded t => With(d with { Inactive = t.Table, InactiveReadOnly = t.ReadOnly }),
            DeviceEvents.TableCleared => With(d with { Inactive = null }),
            DeviceEvents.Suspended => With(d with { Suspended = true }),
            DeviceEvents.Resumed => With(d.Inactive != null
                ? d with { Live = d.Inactive, LiveReadOnly = d.InactiveReadOnly, Inactive = null, Suspended = false }
                : d with { Suspended = false }),
            DeviceEvents.Renamed r => this with { Devices = Devices.Remove(d.Name).SetItem(r.NewName, d with { Name = r.NewName }) },
            DeviceEvents.UuidSet u => With(d with { Uuid = u.Uuid }),
            DeviceEvents.Removed => this with { Devices = Devices.Remove(d.Name) },
            DeviceEvents.ConfigDevice => With(d), // only its history line: the record is ConfigDeviceRecords'
            _ => this,
        };
    }

    private HostState With(DeviceRecord d) => this with { Devices = Devices.SetItem(d.Name, d) };

    /// <summary>The device that has <paramref name="uuid"/>, if any (uuids are unique, like names).</summary>
    public DeviceRecord? WithUuid(string uuid) => Devices.Values.FirstOrDefault(d => string.Equals(d.Uuid, uuid, StringComparison.Ordinal));

    public static string Describe(DeviceEvents.DeviceEvent e) => e switch
    {
        DeviceEvents.Created c => $"created (minor {c.Minor}, {c.Mode.ToString().ToLowerInvariant()} barriers{(c.ReadOnly ? ", read-only" : "")}{(c.Uuid != null ? ", uuid " + c.Uuid : "")})",
        DeviceEvents.TableLoaded t => $"table loaded into the inactive slot{(t.ReadOnly ? " (read-only)" : "")}: {t.Table.Replace("\n", "; ")}",
        DeviceEvents.TableCleared => "inactive table cleared",
        DeviceEvents.Suspended s => s.NoFlush ? "suspended (noflush)" : "suspended",
        DeviceEvents.Resumed => "resumed",
        DeviceEvents.Renamed r => $"renamed to {r.NewName}",
        DeviceEvents.UuidSet u => $"uuid set to {u.Uuid}",
        DeviceEvents.Removed => "removed",
        DeviceEvents.ConfigDevice => "recorded as a configuration device (a restart leaves it as recorded)",
        _ => e.GetType().Name,
    };

    /// <summary>Device names in an order where every device comes after the devices its tables use.</summary>
    public IReadOnlyList<DeviceRecord> InDependencyOrder()
    {
        var order = new List<DeviceRecord>();
        var placed = new HashSet<string>();
        var pending = Devices.Values.OrderBy(d => d.Minor).ToList();
        while (pending.Count > 0)
        {
            var ready = pending.FirstOrDefault(d => Uses(d).All(u => placed.Contains(u) || !Devices.ContainsKey(u))) ?? pending[0];
            order.Add(ready);
            placed.Add(ready.Name);
            pending.Remove(ready);
        }
        return order;
    }

    private IEnumerable<string> Uses(DeviceRecord d) =>
        new[] { d.Live, d.Inactive }.Where(t => t != null)
            .SelectMany(t => Table.Parse(t!).SelectMany(l => l.Args))
            .Where(a => Devices.ContainsKey(a) && a != d.Name);
}

/// <summary>
/// A device of the configuration, by the name the configuration gives it: the table and flags it had when it
/// became the configuration's (as declared, when the configuration created it), and the name the device has now
/// (renamed with dmsetup), or null once removed.
/// </summary>
public sealed record ConfigDeviceRecord(string? Table, bool ReadOnly, BarrierMode Mode, string? Current) : IPersistedEvent;

/// <summary>
/// The configuration's devices the journal knows, by configured name: a fold over the same events as
/// <see cref="HostState"/>, kept beside it rather than in it, because snapshots written before it existed must
/// still read as a HostState (Hyperion reads a type by its fields).
/// </summary>
public sealed record ConfigDeviceRecords(ImmutableSortedDictionary<string, ConfigDeviceRecord> ByName) : IPersistedEvent
{
    public static readonly ConfigDeviceRecords Empty = new(ImmutableSortedDictionary.Create<string, ConfigDeviceRecord>(StringComparer.Ordinal));

    public ConfigDeviceRecords Apply(DeviceEvents.DeviceEvent e) => e switch
    {
        DeviceEvents.ConfigDevice c => new(ByName.SetItem(c.Name, new ConfigDeviceRecord(c.Table, c.ReadOnly, c.Mode, c.Name))),
        DeviceEvents.Renamed r => Follow(r.Name, r.NewName),
        DeviceEvents.Removed => Follow(e.Name, null),
        _ => this,
    };

    /// <summary>The configuration's device now called <paramref name="name"/> is called <paramref name="now"/> (null: removed).</summary>
    private ConfigDeviceRecords Follow(string name, string? now) => ByName.FirstOrDefault(c => c.Value.Current == name) is { Value: { } device } found
        ? new(ByName.SetItem(found.Key, device with { Current = now }))
        : this;
}

/// <summary>A snapshot of the journal (older snapshots are a bare <see cref="HostState"/>).</summary>
public sealed record HostSnapshot(HostState State, ConfigDeviceRecords ConfigDevices) : IPersistedEvent;
