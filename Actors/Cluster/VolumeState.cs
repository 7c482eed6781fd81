using System.Collections.Immutable;

namespace DmActors.Cluster;

/// <summary>What a volume entity records beside its device's events (<see cref="DeviceEvents"/>).</summary>
public static class VolumeEvents
{
    /// <summary>
    /// The volume started on <paramref name="Node"/> as activation <paramref name="Epoch"/>: each activation
    /// (create, failover, move) records a higher epoch before it opens a disk, so a disk's node can refuse an older
    /// owner (fencing).
    /// </summary>
    public sealed record Activated(long Epoch, string Node, DateTime At) : IPersistedEvent;

    /// <summary>
    /// A target of the volume's live table noted <paramref name="Value"/> under <paramref name="Key"/> (a core-log
    /// mirror: the legs that may lack acknowledged writes), read by the next build of its table on any node.
    /// </summary>
    public sealed record TargetRecorded(string Key, string Value, DateTime At) : IPersistedEvent;
}

/// <summary>
/// The recorded state of one volume: its device as <see cref="HostState"/> keeps it (null before create and after
/// remove), its immutable entity id, its latest epoch and the node it last started on. A pure fold.
/// </summary>
public sealed record VolumeState(string EntityId, DeviceRecord? Device, long Epoch, string? Node, int Minor)
{
    public static VolumeState Empty(string entityId) => new(entityId, null, 0, null, 0);

    /// <summary>The targets' notes (<see cref="VolumeEvents.TargetRecorded"/>), the latest per key; a create starts without.</summary>
    public ImmutableSortedDictionary<string, string> Records { get; init; } = ImmutableSortedDictionary.Create<string, string>(StringComparer.Ordinal);

    /// <summary>The shard (stack group) of an entity id <c>SHARD:SUFFIX</c>.</summary>
    public static string ShardOf(string entityId)
    {
        var colon = entityId.IndexOf(':');
        return colon > 0 ? entityId[..colon] : entityId;
    }

    public string Shard => ShardOf(EntityId);

    /// <summary>The one-device host state the device commands decide against (its next minor is the reserved one).</summary>
    public HostState AsHost(int? minor = null) => new(
        Device == null ? HostState.Empty.Devices : HostState.Empty.Devices.Add(Device.Name, Device), minor ?? Minor);

    public VolumeState Apply(IPersistedEvent e) => e switch
    {
        VolumeEvents.Activated a => this with { Epoch = Math.Max(Epoch, a.Epoch), Node = a.Node },
        VolumeEvents.TargetRecorded t => this with { Records = Records.SetItem(t.Key, t.Value) },
        DeviceEvents.Created c => this with { Device = AsHost(c.Minor).Apply(c).Devices.Values.Single(), Minor = c.Minor, Records = Records.Clear() },
        DeviceEvents.DeviceEvent d => this with { Device = AsHost().Apply(d).Devices.Values.SingleOrDefault() },
        _ => this,
    };
}

/// <summary>A volume as the directory knows it: its entity (immutable), uuid and minor (unique in the cluster).</summary>
public sealed record VolumeEntry(string EntityId, string? Uuid, int Minor)
{
    public string Shard => VolumeState.ShardOf(EntityId);
}

/// <summary>What the volume directory records.</summary>
public static class DirectoryEvents
{
    public abstract record DirectoryEvent : IPersistedEvent;
    /// <summary>A name is taken by a new volume (create).</summary>
    public sealed record Reserved(string Name, string EntityId, string? Uuid, int Minor) : DirectoryEvent;
    public sealed record Renamed(string Name, string NewName) : DirectoryEvent;
    public sealed record UuidSet(string Name, string Uuid) : DirectoryEvent;
    /// <summary>The volume was removed: its name (and uuid) are free again.</summary>
    public sealed record Released(string Name) : DirectoryEvent;
    /// <summary>A stack group is placed on a node (create, move, failover).</summary>
    public sealed record Placed(string Shard, string Node) : DirectoryEvent;
}

/// <summary>The directory's recorded state: names to volumes, stack groups to nodes. A pure fold; also its snapshot.</summary>
public sealed record DirectoryState(ImmutableSortedDictionary<string, VolumeEntry> Volumes,
    ImmutableSortedDictionary<string, string> Shards, int NextMinor) : IPersistedEvent
{
    public static readonly DirectoryState Empty = new(ImmutableSortedDictionary.Create<string, VolumeEntry>(StringComparer.Ordinal),
        ImmutableSortedDictionary.Create<string, string>(StringComparer.Ordinal), 0);

    public DirectoryState Apply(DirectoryEvents.DirectoryEvent e) => e switch
    {
        DirectoryEvents.Reserved r => this with
        {
            Volumes = Volumes.SetItem(r.Name, new VolumeEntry(r.EntityId, r.Uuid, r.Minor)), NextMinor = Math.Max(NextMinor, r.Minor + 1),
        },
        DirectoryEvents.Renamed r when Volumes.TryGetValue(r.Name, out var v) => this with { Volumes = Volumes.Remove(r.Name).SetItem(r.NewName, v) },
        DirectoryEvents.UuidSet u when Volumes.TryGetValue(u.Name, out var v) => this with { Volumes = Volumes.SetItem(u.Name, v with { Uuid = u.Uuid }) },
        DirectoryEvents.Released r => this with { Volumes = Volumes.Remove(r.Name) },
        DirectoryEvents.Placed p => this with { Shards = Shards.SetItem(p.Shard, p.Node) },
        _ => this,
    };

    /// <summary>The volume a table argument names: by name or by its device number (253:MINOR).</summary>
    public (string Name, VolumeEntry Entry)? Named(string arg)
    {
        if (Volumes.TryGetValue(arg, out var v)) return (arg, v);
        foreach (var (name, e) in Volumes)
            if (arg == $"{MappedDevice.Major}:{e.Minor}") return (name, e);
        return null;
    }

    public string? NodeOf(string shard) => Shards.GetValueOrDefault(shard);

    public IEnumerable<(string Name, VolumeEntry Entry)> InShard(string shard) =>
        Volumes.Where(v => v.Value.Shard == shard).Select(v => (v.Key, v.Value));
}
