using System.Collections.Concurrent;

namespace DmActors.Cluster;

/// <summary>
/// The volumes active on this node, by entity id: what a stacked table on this node resolves a volume name to, and
/// what an Open on this node hands out. Written by the volume entities (on their own threads), read by the manager
/// facade and by table builds; a device's name is read from its <see cref="DeviceShared"/>, so a rename needs no
/// bookkeeping here.
/// </summary>
public sealed class NodeVolumes
{
    private readonly ConcurrentDictionary<string, ActiveVolume> _active = new(StringComparer.Ordinal);

    internal void Add(ActiveVolume v) => _active[v.EntityId] = v;

    internal void Remove(string entityId, ActiveVolume v) => _active.TryRemove(new KeyValuePair<string, ActiveVolume>(entityId, v));

    /// <summary>A volume active here, by name or device number (253:MINOR); null when it is not.</summary>
    internal ActiveVolume? Find(string nameOrDevNo) =>
        _active.Values.FirstOrDefault(v => v.Device.Shared.Name == nameOrDevNo) ??
        _active.Values.FirstOrDefault(v => v.Device.Shared.DevNo == nameOrDevNo);

    internal ActiveVolume? ById(string entityId) => _active.GetValueOrDefault(entityId);

    internal IReadOnlyList<ActiveVolume> All => _active.Values.ToList();

    /// <summary>The device handle of a volume active here (what a test's remote-volume stand-in hands out).</summary>
    public MappedDeviceHandle? Handle(string name) => Find(name)?.Device.Handle;

    public IReadOnlyList<string> Names => _active.Values.Select(v => v.Device.Shared.Name).OrderBy(n => n, StringComparer.Ordinal).ToList();
}

/// <summary>A volume entity's device while it runs on this node; <see cref="ManagedDevice.Uses"/> holds entity ids.</summary>
internal sealed record ActiveVolume(string EntityId, ManagedDevice Device)
{
    public string Shard => VolumeState.ShardOf(EntityId);
}

/// <summary>
/// Resolves a volume's table on the node it runs on: <c>DISK@NODE</c> through <see cref="IClusterDisks"/> at the
/// volume's epoch; a plain name first as a volume active on this node of the same stack group (stacking), else as a
/// disk of the node the volume is placed on. Remembers how to write each argument down so the recorded table never
/// depends on where it is rebuilt: disks qualified (<c>disk0</c> -> <c>disk0@n1</c>), volumes by device number
/// (253:MINOR, which a rename does not change).
/// </summary>
internal sealed class VolumeLookup : IDeviceLookup
{
    private readonly NodeVolumes _volumes;
    private readonly IClusterDisks _disks;
    private readonly string _entityId;
    private readonly long _epoch;
    private readonly string _placeNode;
    private readonly Dictionary<string, string> _recorded = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _identity = new(StringComparer.Ordinal);
    private readonly HashSet<string> _uses = new(StringComparer.Ordinal);
    private readonly HashSet<string> _unreachable = new(StringComparer.Ordinal);
    private readonly HashSet<string> _lacking = new(StringComparer.Ordinal);
    private readonly bool _rebuild;
    private readonly string? _previousOwner;

    private VolumeLookup(NodeVolumes volumes, IClusterDisks disks, string entityId, long epoch, string placeNode, ITargetRecords? records, bool rebuild,
        string? previousOwner)
    {
        _volumes = volumes; _disks = disks; _entityId = entityId; _epoch = epoch; _placeNode = placeNode; Records = records; _rebuild = rebuild;
        _previousOwner = previousOwner;
    }

    /// <summary>The volume's journal, for its targets' notes.</summary>
    public ITargetRecords? Records { get; }

    /// <summary>Builds <paramref name="text"/>; returns the table, the entity ids it uses, and its text as recorded.</summary>
    /// <param name="rebuild">A recorded table (activation, a node back): a mirror may go without a leg whose node is
    /// not a member. A new table (create, reload) needs every device.</param>
    /// <param name="previousOwner">The node the volume last served on before this activation: its disks may lack
    /// what its cache held, if it stopped without handing over (<see cref="MayLackCachedWrites"/>).</param>
    public static (BuiltTable Built, string Recorded) Build(NodeVolumes volumes, IClusterDisks disks, IClock? clock,
        string entityId, long epoch, string placeNode, string text, bool readOnly, ITargetRecords? records = null, bool rebuild = false,
        string? previousOwner = null)
    {
        var lookup = new VolumeLookup(volumes, disks, entityId, epoch, placeNode, records, rebuild, previousOwner);
        var lines = Table.Parse(text);
        var table = Table.Build(lines, lookup, readOnly, clock);
        var recorded = string.Join("\n", lines.Select(l =>
            string.Join(' ', new[] { l.Start.ToString(), l.Length.ToString(), l.Type }.Concat(l.Args.Select(a => lookup._recorded.GetValueOrDefault(a, a))))));
        return (new BuiltTable(table, lookup._uses, lookup._unreachable, lookup._lacking.Count > 0), recorded);
    }

    public bool MayLackCachedWrites(string name) => _lacking.Contains(name);

    /// <summary>A disk as DISK@NODE; a volume by its entity id, which neither a rename nor a failover changes.</summary>
    public string Identity(string name) => _identity.GetValueOrDefault(name) ?? _recorded.GetValueOrDefault(name, name);

    public IBlockDevice? Find(string name)
    {
        var at = name.LastIndexOf('@');
        if (at > 0 && at < name.Length - 1)
        {
            _recorded[name] = name;
            if (name[(at + 1)..] == _previousOwner) _lacking.Add(name);
            try { return _disks.Open(name[..at], name[(at + 1)..], _entityId, _epoch); }
            catch (DeviceUnreachableException e)
            {
                if (!_rebuild) throw new TargetException(e.Message);
                _unreachable.Add(name);
                throw;
            }
        }
        if (_volumes.Find(name) is { } v)
        {
            if (v.EntityId == _entityId || DependsOn(v.EntityId, _entityId)) throw new TargetException($"{name}: a device cannot map onto itself");
            if (v.Shard != VolumeState.ShardOf(_entityId))
                throw new TargetException($"{name}: volume of another stack group (a stacked volume lives with the volumes below it)");
            if (v.Device.Error is { } error && v.Device.Shared.Sectors == 0)
                throw new TargetException($"lower device '{v.Device.Shared.Name}' has no live table ({error})");
            _uses.Add(v.EntityId);
            if (v.Device.Shared.MayLackCachedWrites) _lacking.Add(name);
            _recorded[name] = v.Device.Shared.DevNo;
            _identity[name] = "volume " + v.EntityId;
            return v.Device.Handle;
        }
        if (name.StartsWith($"{MappedDevice.Major}:", StringComparison.Ordinal))
            throw new TargetException($"volume {name} is not active on this node");
        _recorded[name] = $"{name}@{_placeNode}";
        if (_placeNode == _previousOwner) _lacking.Add(name);
        return _disks.Open(name, _placeNode, _entityId, _epoch);
    }

    private bool DependsOn(string entityId, string on) =>
        _volumes.ById(entityId) is { } v && v.Device.Uses.Any(u => u == on || DependsOn(u, on));
}
