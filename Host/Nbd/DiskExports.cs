using System.Security.Cryptography;
using System.Text;
using Akka.Actor;
using Akka.Event;

namespace DmActors.Host.Nbd;

/// <summary>
/// Exports the NBD server does not list and the device manager does not know: names that
/// <see cref="InternalExport.IsInternal"/>. An open counts as one connection's use of the export, undone by
/// <see cref="CloseAsync"/> with the shown name the open answered with (that open, once), or with the same name.
/// </summary>
public interface IInternalExports
{
    /// <summary>Opens <paramref name="name"/> for one connection; the error says why not. May block for a while (a fence claim).</summary>
    Task<(Dm.Opened? Opened, string? Error)> OpenAsync(string name);
    Task CloseAsync(string name);
}

/// <summary>
/// Serves this node's disks to the other members of the cluster (the data channel: the owner of a volume reaches
/// a disk of another node over NBD). An open of <c>.dmactors/TOKEN/disk/DISK/VOLUME/EPOCH</c> checks the token (the
/// cluster's secret: only members use internal exports), finds the disk, and claims its fence for the volume at
/// the epoch (<see cref="FenceTable.Claim"/>: refused when a newer epoch has claimed it). The connection then sends
/// its bios to a mapped device with the table <c>0 SECTORS linear FENCED 0</c> over a <see cref="FencedDisk"/>, one
/// device per (disk, volume, epoch), shared by that epoch's connections and removed when the last one closes.
/// When a newer epoch claims the disk, the devices of older epochs are removed: their connections close (the NBD
/// server watches the device), and their bios still queued are refused by the fence, so an old owner lands no
/// write. Names are shown (logs, NBD_INFO_NAME) with the token replaced by '-' and the open's number
/// (<c>.dmactors/-7/disk/...</c>), so the secret is never logged and a close names the open it ends: a second
/// close of one open, or an open the caller gave up on (its answer came too late), leaves nothing held.
/// </summary>
public sealed class DiskExports : IInternalExports, IDisposable
{
    private readonly DiskRegistry _disks;
    private readonly FenceTable _fences;
    private readonly byte[] _token;
    private readonly IActorRef _exporter;
    private readonly TimeSpan _askTimeout;
    private readonly ILoggingAdapter _log;
    private long _nextOpen;

    public DiskExports(ActorSystem system, DiskRegistry disks, FenceTable fences, string token, TimeSpan? askTimeout = null)
    {
        if (string.IsNullOrEmpty(token) || token.Contains('/')) throw new ArgumentException("the cluster token is empty or contains '/'", nameof(token));
        _disks = disks; _fences = fences; _token = Encoding.UTF8.GetBytes(token);
        _askTimeout = askTimeout ?? TimeSpan.FromSeconds(10);
        _log = Logging.GetLogger(system, "internal-exports");
        var dispatcher = system.Dispatchers.HasDispatcher(IoDispatcher.DispatcherId) ? IoDispatcher.DispatcherId : Akka.Dispatch.Dispatchers.DefaultDispatcherId;
        _exporter = system.ActorOf(Props.Create(() => new Exporter(dispatcher)));
        _fences.Raised += OnRaised;
    }

    /// <summary>How <paramref name="e"/> is shown: its name without the token.</summary>
    public static string Shown(InternalExport e) => (e with { Token = "-" }).Format();

    /// <summary>How one open of <paramref name="e"/> is shown: the token replaced by '-' and the open's number.</summary>
    private static string Shown(InternalExport e, long open) => (e with { Token = $"-{open}" }).Format();

    /// <summary>The open a shown name names (<c>-N</c> in place of the token); null for any other name.</summary>
    private static long? OpenOf(InternalExport e) =>
        e.Token.Length > 1 && e.Token[0] == '-' && long.TryParse(e.Token.AsSpan(1), System.Globalization.NumberStyles.None,
            System.Globalization.CultureInfo.InvariantCulture, out var n) ? n : null;

    /// <summary>How many opens the exports hold (connections that have not closed), once earlier opens and closes are done.</summary>
    public Task<int> OpenCountAsync(TimeSpan? within = null) => _exporter.Ask<int>(CountOpens.Instance, within ?? _askTimeout);

    public async Task<(Dm.Opened? Opened, string? Error)> OpenAsync(string name)
    {
        var e = InternalExport.TryParse(name, out var problem);
        if (e == null) return (null, $"internal export: {problem}");
        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(e.Token), _token))
        {
            _log.Warning("internal export {0}: refused, wrong cluster token", Shown(e));
            return (null, "internal export: not a member of this cluster (wrong token)");
        }
        var disk = _disks.Find(e.Disk);
        if (disk == null) return (null, $"internal export: no disk {e.Disk} on this node");
        FenceCell cell;
        // Blocks this (the connection's) thread while the claim is written and older epochs' IO drains.
        try { cell = _fences.Claim(e.Disk, e.VolumeId, e.Epoch); }
        catch (Exception x) when (x is FencedException or TimeoutException or IOException or UnauthorizedAccessException)
        {
            _log.Info("internal export {0}: {1}", Shown(e), x.Message);
            return (null, $"internal export: {x.Message}");
        }
        var open = Interlocked.Increment(ref _nextOpen);
        try
        {
            return await _exporter.Ask<object>(new Serve(Key.Of(e), open, disk, cell, Shown(e), Shown(e, open)), _askTimeout) switch
            {
                Dm.Opened o => (o, null),
                Dm.Failed f => (null, $"internal export: {f.Reason}"),
                var other => (null, $"internal export: unexpected reply {other.GetType().Name}"),
            };
        }
        catch (AskTimeoutException)
        {
            // The exporter may still serve it (its mailbox is in order: the serve, then this): nobody would close it.
            _exporter.Tell(new Release(Key.Of(e), open));
            return (null, $"internal export: no answer within {_askTimeout}");
        }
    }

    public Task CloseAsync(string name)
    {
        if (InternalExport.TryParse(name, out _) is { } e) _exporter.Tell(new Release(Key.Of(e), OpenOf(e)));
        return Task.CompletedTask;
    }

    /// <summary>A newer epoch claimed a disk (through an export or on this node itself): older epochs' devices go.</summary>
    private void OnRaised(string disk, string volumeId, long epoch) => _exporter.Tell(new Fenced(disk, volumeId, epoch));

    public void Dispose()
    {
        _fences.Raised -= OnRaised;
        _exporter.Tell(PoisonPill.Instance);
    }

    // ---- the exporter: owns the devices, one message at a time -------------------------------------------------

    private sealed record Key(string Disk, string Volume, long Epoch)
    {
        public static Key Of(InternalExport e) => new(e.Disk, e.VolumeId, e.Epoch);
    }

    private sealed record Serve(Key Key, long Open, Disk Disk, FenceCell Cell, string Shown, string OpenShown);
    /// <param name="Open">The open it ends; null for a name without one (the newest open of the key).</param>
    private sealed record Release(Key Key, long? Open);
    private sealed record CountOpens { public static readonly CountOpens Instance = new(); }
    private sealed record Fenced(string Disk, string Volume, long Epoch);

    private sealed class Served(IActorRef device, long sectors, bool volatileCache)
    {
        public IActorRef Device { get; } = device;
        public long Sectors { get; } = sectors;
        public bool HasVolatileCache { get; } = volatileCache;
        /// <summary>The opens (connections) using the device; it goes with the last.</summary>
        public readonly SortedSet<long> Opens = new();
    }

    /// <summary>Hands every name to the one fenced disk, whatever the table line calls it.</summary>
    private sealed class OneDevice(IBlockDevice device) : IDeviceLookup
    {
        public IBlockDevice? Find(string name) => device;
    }

    private sealed class Exporter(string dispatcher) : UntypedActor
    {
        private readonly Dictionary<Key, Served> _served = new();
        private int _next;

        protected override void OnReceive(object message)
        {
            switch (message)
            {
                case Serve s: OnServe(s); break;
                case Release r:
                    // An open that is not held (closed already, or refused) releases nothing.
                    if (_served.TryGetValue(r.Key, out var x) && x.Opens.Remove(r.Open ?? (x.Opens.Count > 0 ? x.Opens.Max : 0)) && x.Opens.Count == 0)
                        Remove(r.Key, x);
                    break;
                case CountOpens: Sender.Tell(_served.Values.Sum(v => v.Opens.Count)); break;
                case Fenced f:
                    foreach (var (key, old) in _served.Where(p => p.Key.Disk == f.Disk && p.Key.Volume == f.Volume && p.Key.Epoch < f.Epoch).ToList())
                        Remove(key, old);
                    break;
                case Terminated t:
                    foreach (var (key, _) in _served.Where(p => p.Value.Device.Equals(t.ActorRef)).ToList()) _served.Remove(key);
                    break;
                case Dm.Done: break; // the devices' answers to LoadTable, Resume and Shutdown
                case Dm.Failed f: Context.GetLogger().Warning("internal export device: {0}", f); break;
                default: Unhandled(message); break;
            }
        }

        private void OnServe(Serve s)
        {
            var current = s.Cell.Epoch;
            // A newer epoch claimed the disk after this open's claim: refuse, as the claim itself would now.
            if (current > s.Key.Epoch) { Sender.Tell(Failed(s, FenceTable.Refusal(s.Key.Disk, s.Key.Volume, current, s.Key.Epoch))); return; }
            if (!_served.TryGetValue(s.Key, out var x))
            {
                if (s.Disk.Sectors == 0) { Sender.Tell(Failed(s, $"disk {s.Key.Disk} is empty")); return; }
                var fenced = new FencedDisk(s.Disk, s.Cell, s.Key.Epoch);
                Table table;
                try { table = Table.Build(Table.Parse($"0 {s.Disk.Sectors} linear fenced 0"), new OneDevice(fenced)); }
                catch (TableException e) { Sender.Tell(Failed(s, e.Message)); return; }
                var shared = new DeviceShared(s.Shown, ++_next);
                // Flush mode: NBD's FLUSH and FUA map onto an empty preflush and FUA, with no draining of other IO.
                var device = Context.Watch(Context.ActorOf(MappedDevice.Props(shared,
                    new MappedDevice.Options(BarrierMode.Flush, Uuid: s.Shown, Dispatcher: dispatcher)), $"export-{_next}"));
                // Both are in the device's mailbox before any bio: the Opened reply goes out after them.
                device.Tell(new MappedDevice.LoadTable(table, Reply: false));
                device.Tell(new Dm.Resume(s.Shown));
                _served[s.Key] = x = new Served(device, table.Sectors, table.HasVolatileCache);
            }
            x.Opens.Add(s.Open);
            Sender.Tell(new Dm.Opened(s.OpenShown, x.Device, x.Sectors, false, x.HasVolatileCache, 4096, true, true));
        }

        /// <summary>Remove, as dmsetup does: in-flight IO completes (or is refused by the fence), then the device stops.</summary>
        private void Remove(Key key, Served x)
        {
            _served.Remove(key);
            x.Device.Tell(new MappedDevice.Shutdown());
        }

        private static Dm.Failed Failed(Serve s, string reason) => new("open", s.Shown, Dm.Failed.NoDevice, reason);
    }
}
