using Akka.Actor;

namespace DmActors;

/// <summary>
/// Marker for every message that may cross a process boundary (the dmsetup control channel, later the cluster).
/// Bound to Hyperion in akka.hocon. Bio traffic never carries it: bulk data stays on the node that owns the disk.
/// </summary>
public interface IControlMessage { }

/// <summary>How a device orders barriers and flushes (see docs/barriers-and-flushes.md).</summary>
public enum BarrierMode
{
    /// <summary>The founding patch: a barrier drains all earlier IO, runs alone, and holds all later IO until it completes.</summary>
    Ordered,
    /// <summary>REQ_PREFLUSH/FUA (2.6.37+): flush caches first, then write with FUA; no draining of unrelated IO.</summary>
    Flush,
}

/// <summary>The control protocol of the device manager: dmsetup's commands, by device name.</summary>
public static class Dm
{
    /// <param name="Node">In a cluster: the node the volume is placed on (`--node`); null is the node the command reached.</param>
    /// <param name="Minor">The minor number asked for (dm's DM_PERSISTENT_DEV_FLAG); null: the next free one.</param>
    public sealed record Create(string Name, string? Table = null, bool ReadOnly = false, string? Uuid = null,
        BarrierMode Mode = BarrierMode.Ordered, string? Node = null, int? Minor = null) : IControlMessage;
    public sealed record Remove(string Name, bool Force = false) : IControlMessage;
    public sealed record Suspend(string Name, bool NoFlush = false) : IControlMessage;
    public sealed record Resume(string Name) : IControlMessage;
    public sealed record Load(string Name, string Table, bool ReadOnly = false) : IControlMessage;
    public sealed record Clear(string Name) : IControlMessage;
    public sealed record Rename(string Name, string NewName, bool SetUuid = false) : IControlMessage;
    public sealed record GetTable(string Name, bool Inactive = false) : IControlMessage;
    public sealed record GetStatus(string Name) : IControlMessage;
    /// <summary>
    /// `info`; with <paramref name="WaitAfter"/> it is also `wait` (dm's DM_DEV_WAIT, which answers the device's status
    /// too): the device answers once its event number differs from WaitAfter, or after <paramref name="Patience"/> with
    /// the number unchanged, so the caller asks again (a long poll that fits every Ask's timeout).
    /// </summary>
    public sealed record GetInfo(string Name, long? WaitAfter = null, TimeSpan? Patience = null) : IControlMessage;
    public sealed record Message(string Name, long Sector, string[] Args) : IControlMessage;
    /// <summary>`ls`: answered with <see cref="DeviceList"/>.</summary>
    public sealed record List : IControlMessage { public static readonly List Instance = new(); }
    /// <summary>The devices that have a live table (what an NBD server exports): answered with <see cref="ExportList"/>.</summary>
    public sealed record ListExports : IControlMessage { public static readonly ListExports Instance = new(); }
    /// <summary>`targets`: answered with <see cref="TargetList"/>.</summary>
    public sealed record ListTargets : IControlMessage { public static readonly ListTargets Instance = new(); }

    /// <summary>dmsetup history (our addition): the device's recorded events, answered with <see cref="HistoryList"/>.</summary>
    public sealed record History(string Name) : IControlMessage;

    // Listings come back as data; how dmsetup prints them is Host/Cli/DmsetupFormat's business.
    public sealed record DeviceEntry(string Name, int Major, int Minor);
    /// <summary>Every device, name-sorted (empty when there are none).</summary>
    public sealed record DeviceList(IReadOnlyList<DeviceEntry> Devices) : IControlMessage;
    public sealed record TargetEntry(string Name, string Version);
    /// <summary>The target types this host knows, name-sorted.</summary>
    public sealed record TargetList(IReadOnlyList<TargetEntry> Targets) : IControlMessage;
    /// <summary>One device's recorded events, oldest first.</summary>
    public sealed record HistoryList(string Name, IReadOnlyList<HistoryEntry> Entries) : IControlMessage;
    /// <summary>Names of the devices an NBD server may export, name-sorted.</summary>
    public sealed record ExportList(IReadOnlyList<string> Names) : IControlMessage;

    /// <summary>Opens a device for IO (an NBD connection, a stacked user): the reply carries the actor to send bios to.</summary>
    /// <param name="Acknowledge">The caller answers an <see cref="Opened"/> that asks for it with <see cref="OpenAcknowledged"/>:
    /// a caller whose Ask timed out never does, and a manager that knows this (a cluster node's, whose remote open can be
    /// late) closes an open not acknowledged in time instead of leaving it counted forever.</param>
    public sealed record Open(string Name, bool Acknowledge = false) : IControlMessage;
    /// <summary>The caller of an <see cref="Open"/> received <see cref="Opened"/> and uses <paramref name="Device"/>.</summary>
    public sealed record OpenAcknowledged(string Name, IActorRef Device) : IControlMessage;
    /// <param name="Device">The device the open handed out: which of several opens of the name this closes.</param>
    public sealed record Close(string Name, IActorRef? Device = null) : IControlMessage;

    /// <summary>Success, with the lines a command prints (a target's table, status or message lines).</summary>
    public sealed record Done(IReadOnlyList<string> Lines) : IControlMessage
    {
        public static readonly Done Empty = new(Array.Empty<string>());
        public static Done Of(params string[] lines) => new(lines);
    }

    /// <summary>
    /// Failure, as dmsetup reports it: `device-mapper: {Op} ioctl on {Name}  failed: {Error}` plus the reason
    /// the kernel would log (e.g. "linear: Invalid argument count").
    /// </summary>
    public sealed record Failed(string Op, string Name, string Error, string Reason = "") : IControlMessage
    {
        public const string NoDevice = "No such device or address";
        public const string Invalid = "Invalid argument";
        public const string Busy = "Device or resource busy";
    }

    public sealed record DeviceInfo(string Name, string? Uuid, bool Suspended, bool ReadOnly, bool LiveTable, bool InactiveTable,
        int OpenCount, long EventNr, int Major, int Minor, int TargetCount, long Sectors, BarrierMode Mode, string? ErrorState = null,
        string? Node = null, IReadOnlyList<Dependency>? Deps = null) : IControlMessage;
    /// <summary>
    /// A device the live table uses (dm's table device list, for `deps` and `ls --tree`): its name (a mapped device's
    /// name, or a disk's) and number; <paramref name="Mapped"/> tells a mapped device from a disk.
    /// </summary>
    public sealed record Dependency(string Name, int Major, int Minor, bool Mapped);
    /// <summary>The manager could not start (e.g. its journal is unreadable); every command gets this reason.</summary>
    public sealed record Unavailable(string Reason) : IControlMessage;
    public sealed record Infos(IReadOnlyList<DeviceInfo> Devices) : IControlMessage;
    /// <param name="AwaitsAcknowledgement">The manager closes this open unless the caller sends <see cref="OpenAcknowledged"/> soon.</param>
    public sealed record Opened(string Name, IActorRef Device, long Sectors, bool ReadOnly, bool HasVolatileCache,
        int PreferredBlock, bool SupportsDiscard, bool SupportsWriteZeroes, bool AwaitsAcknowledgement = false) : IControlMessage;
}
