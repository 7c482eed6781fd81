using System.Reflection;
using Akka.Actor;

namespace DmActors;

/// <summary>What map() decided (DM_MAPIO_*).</summary>
public enum MapKind : byte { Remapped, Submitted, Kill, Requeue }

public readonly record struct MapResult(MapKind Kind, IBlockDevice? Device = null)
{
    /// <summary>Send the (remapped) clone to <paramref name="device"/>.</summary>
    public static MapResult Remapped(IBlockDevice device) => new(MapKind.Remapped, device);
    /// <summary>The target owns the clone and calls <see cref="ITargetContext.Complete"/> itself, now or later.</summary>
    public static readonly MapResult Submitted = new(MapKind.Submitted);
    /// <summary>Fail the clone with EIO.</summary>
    public static readonly MapResult Kill = new(MapKind.Kill);
    /// <summary>Hand the clone back for requeue (only honoured during a noflush suspend; EIO otherwise).</summary>
    public static readonly MapResult Requeue = new(MapKind.Requeue);
}

/// <summary>What a target may ask of the actor that runs it. Every call happens on that actor's thread.</summary>
public interface ITargetContext
{
    /// <summary>Completes a clone the target owns (after map returned Submitted): end_io runs, the device is told.</summary>
    void Complete(Bio clone, BioStatus status);
    /// <summary>Issues an extra bio of the target's own to a device; <paramref name="done"/> runs in the target actor.</summary>
    void Submit(IBlockDevice device, Bio bio, Action<BioStatus> done);
    /// <summary>Runs <paramref name="action"/> inside the target actor after <paramref name="delay"/> (no thread waits).</summary>
    ICancelable Schedule(TimeSpan delay, Action action);
    /// <summary>dm_table_event: bumps the device's event number.</summary>
    void RaiseEvent();
    /// <summary>Runs an action inside the target actor; the function returned may be called on any thread (a journal's answer).</summary>
    Action<Action> Inbox { get; }
    IClock Clock { get; }
}

/// <summary>Time as targets see it: wall time in production, driven by hand in tests (flakey intervals).</summary>
public interface IClock { TimeSpan Now { get; } }

public sealed class WallClock : IClock
{
    public static readonly WallClock Instance = new();
    private readonly long _start = System.Diagnostics.Stopwatch.GetTimestamp();
    public TimeSpan Now => System.Diagnostics.Stopwatch.GetElapsedTime(_start);
}

public sealed class ManualClock : IClock
{
    private long _ticks;
    public TimeSpan Now => TimeSpan.FromTicks(Interlocked.Read(ref _ticks));
    public void Advance(TimeSpan by) => Interlocked.Add(ref _ticks, by.Ticks);
}

/// <summary>A constructor, map or message error; the text is dm's where dm has one.</summary>
public class TargetException(string message) : Exception(message);

/// <summary>
/// A device that exists but cannot be reached now (its node is not a member of the cluster): a mirror may start
/// without that leg, degraded, where any other target fails its table.
/// </summary>
public sealed class DeviceUnreachableException(string message) : TargetException(message);

/// <summary>
/// One table line's target instance (struct dm_target plus its type's hooks). Constructed when a table is loaded,
/// so argument errors surface at load; runs inside its own target actor once the table is live.
/// A new target type is one new file: a subclass with [TargetType] and a constructor taking <see cref="TargetArgs"/>.
/// </summary>
public abstract class Target
{
    protected Target(TargetArgs args)
    {
        Begin = args.Begin; Length = args.Length;
        _opened = args.Opened; // filled as the subclass's constructor opens its devices
        TypeName = GetType().GetCustomAttribute<TargetTypeAttribute>()?.Name ?? GetType().Name.ToLowerInvariant();
        HasEndIo = GetType().GetMethod(nameof(EndIo))!.DeclaringType != typeof(Target);
    }

    /// <summary>False when the type keeps the default end_io: its remapped clones then complete straight to the device.</summary>
    public bool HasEndIo { get; }

    public long Begin { get; }
    public long Length { get; }
    public string TypeName { get; }

    /// <summary>Split read/write bios at multiples of this many sectors from the target start (0 = no limit).</summary>
    public virtual long MaxIoLen => 0;
    /// <summary>Clones per empty flush (num_flush_bios); each carries its index in <see cref="Bio.Tag"/> order.</summary>
    public virtual int NumFlushBios => Devices.Count > 0 ? 1 : 0;
    /// <summary>Clones per discard / write-zeroes (0 = not supported: EOPNOTSUPP).</summary>
    public virtual int NumDiscardBios => 0;
    public virtual int NumWriteZeroesBios => 0;
    /// <summary>When every target of a table sets this, flushes go straight to each distinct device (dm 2024).</summary>
    public virtual bool FlushBypassesMap => false;
    /// <summary>The devices this target uses (iterate_devices).</summary>
    public virtual IReadOnlyList<IBlockDevice> Devices => [];
    /// <summary>
    /// The writes this target completed are safe without <paramref name="dev"/> (one of its devices that is gone):
    /// they are on another of its devices as well, so a swapped-out table's lost cache there is no loss of the device's.
    /// </summary>
    public virtual bool SurvivesLossOf(IBlockDevice dev) => false;
    /// <summary>
    /// True when map and end_io keep no state between bios (or only thread-safe counters) and use nothing of the
    /// context but <see cref="ITargetContext.Complete"/> and <see cref="ITargetContext.RaiseEvent"/>, and the
    /// suspend hooks do nothing: then a device's lanes may map its bios on many threads at once (docs/threading.md).
    /// </summary>
    public virtual bool Stateless => false;

    /// <summary>
    /// True when reads may be mapped on a device's lanes although the target keeps state (mirror): the lane calls
    /// <see cref="MapReadOnLane"/> and <see cref="EndReadOnLane"/> on its own thread, at the same time as the target
    /// actor runs everything else, so both may only read state that the actor publishes safely. Writes, flushes and
    /// discards still go through the device.
    /// </summary>
    public virtual bool ReadsOnLanes => false;

    /// <summary>map of a read on a lane: the device to send the remapped clone to, or null to let the device map it.</summary>
    public virtual IBlockDevice? MapReadOnLane(Bio clone) => null;

    /// <summary>
    /// end_io of a read mapped on a lane (<see cref="Bio.Device"/> is where it went). <see cref="BioStatus.Incomplete"/>
    /// hands the original bio to the device, which maps it again through the target actor.
    /// </summary>
    public virtual BioStatus EndReadOnLane(Bio clone, BioStatus status, ITargetContext ctx) => status;

    /// <summary>
    /// map: <paramref name="clone"/>.Sector is the device sector; a Remapped result must have set it to the
    /// sector on the returned device. <paramref name="index"/> is the clone number for duplicated flush/discard bios.
    /// </summary>
    public abstract MapResult Map(Bio clone, int index, ITargetContext ctx);

    /// <summary>
    /// end_io: may change the status (e.g. to Requeue) or count errors; <see cref="BioStatus.Incomplete"/> keeps the
    /// clone, which the target then completes through <see cref="ITargetContext.Complete"/> (end_io runs again then).
    /// </summary>
    public virtual BioStatus EndIo(Bio clone, BioStatus status, ITargetContext ctx) => status;

    /// <summary>The table parameters as `dmsetup table` prints them (devices as major:minor).</summary>
    public abstract string TableParams();
    /// <summary>The status (INFO) parameters as `dmsetup status` prints them.</summary>
    public virtual string StatusParams() => "";
    public virtual string? Message(string[] args, ITargetContext ctx) => throw new TargetException("Target type does not support messages");

    public virtual void PreSuspend(ITargetContext ctx) { }
    public virtual void PostSuspend(ITargetContext ctx) { }
    public virtual void Resume(ITargetContext ctx) { }
    /// <summary>dtr: the table is gone; closes every device the constructor opened. Called once, through <see cref="Release"/>.</summary>
    public virtual void Destroy() { foreach (var d in _opened) d.Close(); }

    private readonly IReadOnlyList<IBlockDevice> _opened;

    private int _released;

    /// <summary>
    /// Runs <see cref="Destroy"/> exactly once, whoever gets there first: the target's actor when it stops after its
    /// last message, or the table when it never went live.
    /// </summary>
    public void Release()
    {
        if (Interlocked.Exchange(ref _released, 1) == 0) Destroy();
    }

    /// <summary>Sector relative to the target start.</summary>
    protected long Offset(Bio bio) => bio.Sector - Begin;

    /// <summary>
    /// The sector on a device whose area for this target begins at <paramref name="start"/>. The constructor checked
    /// that the area fits on the device, so this cannot overflow; checked anyway, so a broken invariant fails the
    /// clone (the target actor's restart answers it with EIO) instead of sending it to a wrapped-around sector.
    /// </summary>
    protected long RemapSector(long start, Bio bio) => checked(start + (bio.Sector - Begin));
}

[AttributeUsage(AttributeTargets.Class)]
public sealed class TargetTypeAttribute(string name, int major, int minor, int patch) : Attribute
{
    public string Name { get; } = name;
    public string Version { get; } = $"v{major}.{minor}.{patch}";
}

/// <summary>
/// What a target constructor gets: its place in the table, its arguments, readers for them (dm_read_arg and
/// friends, with the caller's error text) and a way to open devices. It records every device it opens: the
/// target closes them in <see cref="Target.Destroy"/>, and <see cref="TargetTypes.Construct"/> closes them when the
/// constructor throws, so no constructor needs a try of its own.
/// </summary>
public sealed class TargetArgs
{
    public required long Begin { get; init; }
    public required long Length { get; init; }
    public required string[] Args { get; init; }
    public required IDeviceLookup Lookup { get; init; }
    public IClock Clock { get; init; } = WallClock.Instance;

    private readonly List<IBlockDevice> _opened = new();

    /// <summary>The devices opened through these arguments, in order (a device named twice is opened twice).</summary>
    public IReadOnlyList<IBlockDevice> Opened => _opened;

    /// <summary>
    /// dm_get_device: opens <paramref name="name"/> and checks that [start, start+len) fits on it, with dm's
    /// messages ("Device lookup failed", "… too small for target: start=…, len=…, dev_size=…").
    /// </summary>
    public IBlockDevice GetDevice(string name, long start, long len, string lookupError = "Device lookup failed")
    {
        var dev = Lookup.Find(name) ?? throw new TargetException($"{lookupError}: {name}");
        // Opened (and recorded) first, so a device refused below is closed with the others: a lookup may have
        // connected it (a disk of another node), and only its last close lets that go.
        Open(dev);
        // device_area_is_invalid, without start + len: a start near long.MaxValue would wrap it negative.
        if (start < 0 || len < 0 || start > dev.Sectors || len > dev.Sectors - start)
            throw new TargetException($"{dev.Name} too small for target: start={start}, len={len}, dev_size={dev.Sectors}");
        return dev;
    }

    /// <summary>Opens a device the target uses whole, for itself (log-writes' log): no area to check.</summary>
    public IBlockDevice GetWholeDevice(string name, string lookupError) =>
        Open(Lookup.Find(name) ?? throw new TargetException($"{lookupError}: {name}"));

    /// <summary>Opens and records <paramref name="dev"/>; a file that cannot be opened again (another process locked it) is a table error.</summary>
    private IBlockDevice Open(IBlockDevice dev)
    {
        try { dev.Open(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ObjectDisposedException) { throw new TargetException(e.Message); }
        _opened.Add(dev);
        return dev;
    }

    /// <summary>A constructor failed: closes what it had opened.</summary>
    internal void CloseOpened()
    {
        foreach (var d in _opened) d.Close();
        _opened.Clear();
    }

    public void ExpectArgs(int min, int max = -1, string error = "Invalid argument count")
    {
        if (Args.Length < min || (max >= 0 && Args.Length > max)) throw new TargetException(error);
    }

    /// <summary>A sector (offset on a device): a number from 0 up.</summary>
    public long ReadSector(int index, string error) => ReadLong(index, 0, long.MaxValue, error);

    /// <summary>Argument <paramref name="index"/> as a number in [min, max] (an optional sign, as .NET reads it), else <paramref name="error"/>.</summary>
    public long ReadLong(int index, long min, long max, string error) =>
        index < Args.Length && long.TryParse(Args[index], out var v) && v >= min && v <= max ? v : throw new TargetException(error);

    public int ReadInt(int index, int min, int max, string error) => (int)ReadLong(index, min, max, error);

    /// <summary>dm_read_arg: argument <paramref name="index"/> as digits only (kstrtouint) in [min, max], else <paramref name="error"/>.</summary>
    public uint ReadUInt(int index, uint min, uint max, string error) =>
        index < Args.Length && uint.TryParse(Args[index], System.Globalization.NumberStyles.None, null, out var v) && v >= min && v <= max
            ? v : throw new TargetException(error);

    /// <summary>
    /// dm_read_arg_group: a count at <paramref name="index"/> (at most <paramref name="max"/>) and that many
    /// arguments after it, which must be there; returns where they are, as [Start, End) of <see cref="Args"/>.
    /// </summary>
    public (int Start, int End) ReadGroup(int index, uint max, string error)
    {
        var count = ReadUInt(index, 0, max, error);
        if (count > Args.Length - index - 1) throw new TargetException(error);
        return (index + 1, index + 1 + (int)count);
    }
}

/// <summary>Resolves a table's device argument: a disk name, a file path, or a mapped device name.</summary>
public interface IDeviceLookup
{
    IBlockDevice? Find(string name);
    /// <summary>Where the device being built keeps its targets' durable notes (its journal); null: nowhere.</summary>
    ITargetRecords? Records => null;
    /// <summary>
    /// The lasting identity of a device argument <see cref="Find"/> resolved, for what a target records about it (a
    /// mirror's log and journal): the same device has the same identity in every build of the table, whatever the
    /// table text calls it (a name, a device number, a disk with or without its node).
    /// </summary>
    string Identity(string name) => name;
    /// <summary>
    /// The device argument <paramref name="name"/> resolved to may lack writes the volume's previous owner had answered
    /// from its cache: it is on that owner's node (or below a volume that is), and its cache may have died with that
    /// owner, which left no note of what it held. A mirror resyncs its dirty regions from another leg.
    /// </summary>
    bool MayLackCachedWrites(string name) => false;
}

/// <summary>
/// A target's own durable notes, kept in its device's journal beside the tables (a core-log mirror's legs that may
/// lack acknowledged writes): how a target that has no device of its own to write them to makes a fact survive a
/// restart or a failover, without knowing about actors or journals.
/// </summary>
public interface ITargetRecords
{
    /// <summary>The value last recorded under <paramref name="key"/> when the table was built, or null.</summary>
    string? Get(string key);
    /// <summary>Records <paramref name="value"/> under <paramref name="key"/>; <paramref name="done"/> (on any thread) says whether it is durable.</summary>
    void Put(string key, string value, Action<bool> done);
}

/// <summary>Every target type, found by [TargetType] in the loaded assemblies.</summary>
public static class TargetTypes
{
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, (Type Type, string Version)> Types = Discover();

    private static System.Collections.Concurrent.ConcurrentDictionary<string, (Type, string)> Discover()
    {
        var found = new System.Collections.Concurrent.ConcurrentDictionary<string, (Type, string)>();
        foreach (var t in typeof(Target).Assembly.GetTypes())
            if (t.GetCustomAttribute<TargetTypeAttribute>() is { } a && typeof(Target).IsAssignableFrom(t))
                found[a.Name] = (t, a.Version);
        return found;
    }

    /// <summary>Adds a target type from another assembly (a plugin, or a test's own target).</summary>
    public static void Register<T>() where T : Target
    {
        var a = typeof(T).GetCustomAttribute<TargetTypeAttribute>() ?? throw new ArgumentException($"{typeof(T)} has no [TargetType]");
        Types[a.Name] = (typeof(T), a.Version);
    }

    public static IEnumerable<(string Name, string Version)> All => Types.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => (t.Key, t.Value.Version));

    public static bool Exists(string name) => Types.ContainsKey(name);

    public static Target Construct(string type, TargetArgs args)
    {
        if (!Types.TryGetValue(type, out var t)) throw new TargetException($"{type}: unknown target type");
        try { return (Target)Activator.CreateInstance(t.Type, args)!; }
        catch (Exception e)
        {
            args.CloseOpened(); // what the constructor opened before it failed: the one place that releases it
            if (e is TargetInvocationException { InnerException: { } inner }) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(inner);
            throw;
        }
    }
}
