using Akka.Actor;

namespace DmActors.Targets;

/// <summary>
/// mirror &lt;log_type&gt; &lt;#log_args&gt; &lt;log_args…&gt; &lt;#devs&gt; (&lt;dev&gt; &lt;offset&gt;)… [&lt;#features&gt; &lt;features…&gt;]
/// (drivers/md/dm-raid1.c, dm-log.c, dm-region-hash.c). The target is cut into regions; a write goes to every live
/// leg that is in sync for its region and completes when all of them have it; a flush or FUA goes to every live
/// leg. Before a write goes out its region is marked dirty in the log (one log write + flush serves every write
/// waiting meanwhile); a failed leg is recorded in the log, and marked stale for every region that may differ,
/// before any write that saw the failure is acknowledged. Regions written while a leg is away are stale for it;
/// when it comes back (a reload with the same legs, or `return_leg`) only those regions are copied to it
/// (<see cref="Resync"/>). Status: `&lt;#legs&gt; &lt;dev…&gt; &lt;in-sync&gt;/&lt;regions&gt; 1 &lt;health…&gt; &lt;log status&gt;`.
/// </summary>
[TargetType("mirror", 1, 15, 0)]
public sealed partial class Mirror : Target
{
    /// <summary>DM_KCOPYD_MAX_REGIONS + 1: a copy has one source and up to eight destinations.</summary>
    private const int MaxLegs = 9;

    [Flags] private enum LegError { None = 0, Write = 1, Flush = 2, Sync = 4, Read = 8 }

    private sealed class Leg(IBlockDevice dev, long offset, string arg, string identity)
    {
        public IBlockDevice Dev { get; } = dev;
        /// <summary>The leg for resync copies, counted so a table replacing this one waits for them (<see cref="BackgroundIo"/>).</summary>
        public IBlockDevice Copies { get; } = BackgroundIo.Track(dev, BackgroundIo.Key(dev, offset));
        public long Offset { get; } = offset;
        public string Arg { get; } = arg;
        /// <summary>How the log and the journal know the leg (<see cref="IDeviceLookup.Identity"/>): the same in every build.</summary>
        public string Identity { get; } = identity;
        /// <summary>Its area's key for <see cref="BackgroundIo"/>.</summary>
        public (object, long) Key { get; } = BackgroundIo.Key(dev, offset);
        /// <summary>The device's <see cref="IBlockDevice.WritesLost"/> this mirror has taken into account (<see cref="NoticeLosses"/>).</summary>
        public long SeenLost = dev.WritesLost;
        /// <summary>On the node of the volume's previous owner, whose cache may have died with it (<see cref="IDeviceLookup.MayLackCachedWrites"/>).</summary>
        public bool MayLackCachedWrites { get; init; }
        /// <summary>Not written, read or copied from until it comes back. (Volatile: lanes read it, see <see cref="MapReadOnLane"/>.)</summary>
        public volatile bool Failed;
        /// <summary>A read failed: still written (its data is intact), never read from or copied from.</summary>
        public volatile bool NoReads;
        /// <summary>The <see cref="LegError"/>s seen, set with Interlocked.Or (a lane sets Read).</summary>
        public int Errors;
        /// <summary>No loss of writes below it that this mirror has not taken into account (<see cref="NoticeLosses"/>).</summary>
        public bool Trusted => Dev.WritesLost == Volatile.Read(ref SeenLost);
        /// <summary>device_status_char: the most severe error seen.</summary>
        public char Health => Volatile.Read(ref Errors) switch
        {
            0 => 'A',
            var e when (e & (int)LegError.Flush) != 0 => 'F',
            var e when (e & (int)LegError.Write) != 0 => 'D',
            var e when (e & (int)LegError.Sync) != 0 => 'S',
            var e when (e & (int)LegError.Read) != 0 => 'R',
            _ => 'U',
        };
    }

    /// <summary>IO and recovery state of a region with something going on (dm-region-hash's hashed regions).</summary>
    private sealed class RegionIo
    {
        public int Pending => Active.Count;
        /// <summary>Which write touched it last (numbered across regions, so a region tracked anew never reuses one).</summary>
        public long Gen;
        public bool Recovering;
        public readonly Queue<Action> Waiting = new();
        /// <summary>Write parts on their way to the legs and not ended yet.</summary>
        public readonly List<Part> Active = new();
        /// <summary>Write parts that overlap an earlier one still in flight, in arrival order (<see cref="Overlaps"/>).</summary>
        public readonly List<Part> Blocked = new();
    }

    private readonly Leg[] _legs;
    private readonly RegionLog _log;
    private readonly uint _regionSize;
    private readonly long _regions;
    private readonly bool _handleErrors, _keepLog;
    private readonly int _minLegs;
    private readonly object _statusGate = new();

    private volatile MirrorState? _mem;  // what the log should say (null until loaded at the first resume)
    private MirrorState? _disk;          // what it durably says
    private MirrorState? _committed;     // what the commit in flight will make it say (null: none in flight)
    private long _memSeq, _diskSeq;      // changes made / made durable
    private long _failSeq;               // the change that recorded the latest leg failure
    private bool _committing, _commitWanted, _logFailed;
    private readonly List<(long Need, Action<bool> Then)> _durableWaiters = new();
    private readonly List<Action> _beforeLoad = new();
    private readonly Dictionary<long, RegionIo> _regionIo = new();
    /// <summary>Dirty regions with no write in flight: a flush issued now makes them clean.</summary>
    private readonly HashSet<long> _dirtyIdle = new();
    private long _inSync;
    private long _writes;
    private bool _loading, _suspended;

    public Mirror(TargetArgs a) : base(a)
    {
        var args = a.Args;
        if (args.Length < 2) throw new TargetException("Insufficient mirror log arguments");
        var logArgc = a.ReadUInt(1, 0, int.MaxValue, "Invalid mirror log argument count");
        var used = 2 + (int)logArgc;
        if (args.Length < used) throw new TargetException("Insufficient mirror log arguments");
        var logArgs = args[2..used];
        IBlockDevice? logDev = null;
        switch (args[0])
        {
            case "core" when logArgc is 1 or 2:
                _regionSize = RegionLog.ReadRegionSize(logArgs[0], a.Length);
                break;
            case "core": throw new TargetException("Error creating mirror dirty log: wrong number of arguments to dirty region log");
            case "disk" when logArgc is 2 or 3:
                logDev = OpenLog(a, logArgs[0]);
                _regionSize = RegionLog.ReadRegionSize(logArgs[1], a.Length);
                break;
            case "disk": throw new TargetException("Error creating mirror dirty log: wrong number of arguments to disk dirty region log");
            default: throw new TargetException($"Error creating mirror dirty log: unknown dirty log type {args[0]}");
        }
        var sync = RegionLog.ReadSync(logArgs, logDev == null ? 1 : 2);
        _regions = (a.Length + _regionSize - 1) / _regionSize;

        if (used >= args.Length || !uint.TryParse(args[used], System.Globalization.NumberStyles.None, null, out var n) || n < 2 || n > MaxLegs)
            throw new TargetException("Invalid number of mirrors");
        used++;
        if (args.Length - used < 2 * n) throw new TargetException("Too few mirror arguments");
        _legs = new Leg[n];
        for (var i = 0; i < n; i++, used += 2)
        {
            var offset = a.ReadSector(used + 1, "Invalid offset");
            _legs[i] = new Leg(OpenLeg(a, args[used], offset), offset, args[used], a.Lookup.Identity(args[used]))
            {
                MayLackCachedWrites = a.Lookup.MayLackCachedWrites(args[used]),
            };
        }

        _minLegs = 1;
        if (used < args.Length)
        {
            var count = a.ReadUInt(used, 0, int.MaxValue, "Invalid number of features");
            used++;
            if (count > args.Length - used) throw new TargetException("Not enough arguments to support feature count");
            var end = used + (int)count;
            for (; used < end; used++)
                switch (args[used])
                {
                    case "handle_errors": _handleErrors = true; break;
                    case "keep_log": _keepLog = true; break;
                    // DmActors' own: the fewest legs a write must reach (a feature, so it is recorded with the table).
                    case "min_legs" when used + 1 < end:
                        _minLegs = a.ReadInt(++used, 1, (int)n, $"Invalid min_legs {args[used]}: expect 1 to {n}");
                        break;
                    default: throw new TargetException("Unrecognised feature requested");
                }
            if (!_handleErrors && _keepLog) throw new TargetException("keep_log feature requires the handle_errors feature");
        }
        if (used < args.Length) throw new TargetException("Too many mirror arguments");
        CheckAbsentLegs(a, coreLog: logDev == null); // legs that cannot be reached now (AbsentLeg)

        if (logDev != null)
        {
            var disk = new DiskLog(logDev, _legs.Select(l => DiskLog.LegId(l.Identity, l.Offset)).ToArray(), _regions) { RegionSize = _regionSize, Sync = sync };
            if (logDev.Sectors < disk.SectorsNeeded)
                throw new TargetException($"Error creating mirror dirty log: log device {logDev.DevNo} too small: need {disk.SectorsNeeded * Bio.Sector512} bytes");
            _log = disk;
        }
        else _log = new CoreLog(new CoreLog.Identity(_legs.Select(l => l.Dev).ToArray(), _legs.Select(l => l.Offset).ToArray(), a.Length, _regionSize),
            a.Lookup.Records, LegIds, _legs.Select(l => l.Dev is AbsentLeg).ToArray()) { RegionSize = _regionSize, Sync = sync };
        _inSync = sync == LogSync.NoSync ? _regions : 0; // until the log is loaded at the first resume
    }

    /// <summary>iterate_devices: the legs (the log device is the target's own business).</summary>
    public override IReadOnlyList<IBlockDevice> Devices => _legs.Select(l => l.Dev).Distinct().ToArray();
    public override long MaxIoLen => _regionSize;
    public override int NumFlushBios => 1;
    public override int NumDiscardBios => 1;

    private long RegionOf(long sector) => (sector - Begin) / _regionSize;
    private RegionIo Io(long r) => _regionIo.TryGetValue(r, out var io) ? io : _regionIo[r] = new RegionIo();

    public override MapResult Map(Bio clone, int index, ITargetContext ctx)
    {
        if (_mem == null) { _beforeLoad.Add(() => Map(clone, index, ctx)); return MapResult.Submitted; }
        NoticeLosses(ctx);
        switch (clone.Op)
        {
            case BioOp.Read when RemapRead(clone) is { } leg: return MapResult.Remapped(leg);
            case BioOp.Read: clone.Device = null; MapRead(clone, ctx); break;
            case BioOp.Flush: MapFlush(clone, ctx); break;
            case BioOp.Write or BioOp.Discard: MapWrite(clone, ctx); break;
            case BioOp.BlockStatus: // legs may differ in allocation: data is true of every one
                clone.Data.Span.Fill(BlockState.Data);
                ctx.Complete(clone, BioStatus.Ok);
                break;
            default: ctx.Complete(clone, BioStatus.NotSupported); break;
        }
        return MapResult.Submitted;
    }

    // ---- reads and flushes ------------------------------------------------------------------------------------

    /// <summary>
    /// The common read: its region is not being copied and a leg can serve it, so the clone itself goes there
    /// (no bio of the mirror's own, no callback); <see cref="EndIo"/> looks at the answer.
    /// </summary>
    private IBlockDevice? RemapRead(Bio clone)
    {
        var r = RegionOf(clone.Sector);
        if (r == Volatile.Read(ref _copying)) return null;
        var i = ReadLeg(r);
        if (i < 0) return null;
        clone.Sector = _legs[i].Offset + (clone.Sector - Begin);
        return _legs[i].Dev;
    }

    /// <summary>The leg a remapped read went to (<see cref="Bio.Device"/>, its sector on that leg), or -1.</summary>
    private int LegOf(Bio clone)
    {
        for (var i = 0; i < _legs.Length; i++)
        {
            var l = _legs[i];
            if (ReferenceEquals(l.Dev, clone.Device) && clone.Sector >= l.Offset && clone.Sector < l.Offset + Length) return i;
        }
        return -1;
    }

    /// <summary>
    /// end_io of a remapped read (<see cref="Bio.Device"/> is its leg). A failed read fails the leg for reads and
    /// goes to another; so does one whose leg failed, or lost writes, or became stale there while it was in flight
    /// (its data may be older than an answered write). Other clones (completed by the mirror itself) pass.
    /// </summary>
    public override BioStatus EndIo(Bio clone, BioStatus status, ITargetContext ctx)
    {
        if (clone.Op != BioOp.Read || clone.Device == null || _mem == null) return status;
        var i = LegOf(clone);
        if (i < 0) return status;
        var leg = _legs[i];
        clone.Sector = clone.Sector - leg.Offset + Begin;
        clone.Device = null;
        if (status == BioStatus.Ok)
        {
            NoticeLosses(ctx);
            if (!leg.Failed && !leg.NoReads && !_mem.Stale[i][RegionOf(clone.Sector)]) return status;
        }
        else if (status == BioStatus.NotSupported || (clone.Flags & BioFlags.ReadAhead) != 0) return status;
        else FailLeg(i, LegError.Read, ctx);
        MapRead(clone, ctx); // another leg, through the mirror's own bio; it completes the clone
        return BioStatus.Incomplete;
    }

    // ---- reads on lanes: on the lanes' threads, beside the target actor -------------------------------------

    /// <summary>
    /// Reads map on the device's lanes. They read only what the actor publishes safely: the legs' volatile
    /// Failed and NoReads, their loss counts, and the stale bits (whole words; a leg becomes stale for a region
    /// only once it failed, or when the table loads, before any read maps), and the region being copied (whose
    /// reads wait for the copy in the actor). Anything unusual (a read error, a leg
    /// that failed, lost writes or became stale meanwhile, no leg to read) goes to the target actor.
    /// </summary>
    public override bool ReadsOnLanes => true;

    /// <summary>A leg whose loss the actor has not taken into account sends the read there: it fails that leg first.</summary>
    public override IBlockDevice? MapReadOnLane(Bio clone)
    {
        if (_mem == null) return null;
        foreach (var l in _legs) if (!l.Failed && !l.Trusted) return null;
        return RemapRead(clone);
    }

    public override BioStatus EndReadOnLane(Bio clone, BioStatus status, ITargetContext ctx)
    {
        var i = LegOf(clone);
        if (i < 0) return status;
        var leg = _legs[i];
        if (status == BioStatus.Ok)
            return leg.Trusted && !leg.Failed && !leg.NoReads && !_mem!.Stale[i][(clone.Sector - leg.Offset) / _regionSize] ? status : BioStatus.Incomplete;
        if (status == BioStatus.NotSupported || (clone.Flags & BioFlags.ReadAhead) != 0) return status;
        // As FailLeg does for a read error: the leg is not read from again; the device reads another.
        leg.NoReads = true;
        if (Interlocked.Or(ref leg.Errors, (int)LegError.Read) == 0) ctx.RaiseEvent();
        return BioStatus.Incomplete;
    }

    private void MapRead(Bio clone, ITargetContext ctx)
    {
        var r = RegionOf(clone.Sector);
        var rio = Io(r);
        if (rio.Recovering) { rio.Waiting.Enqueue(() => MapRead(clone, ctx)); return; }
        var i = ReadLeg(r);
        if (i >= 0)
        {
            var l = _legs[i];
            var child = new Bio(BioOp.Read, l.Offset + (clone.Sector - Begin), clone.Sectors, clone.Data, ActorRefs.Nobody, clone.Flags & BioFlags.ReadAhead);
            var (at, seen) = (i, l.SeenLost);
            ctx.Submit(l.Dev, child, st =>
            {
                // Read from a leg that lost writes meanwhile, the data may be older than an answered write: read again.
                if (st == BioStatus.Ok && LostSince(at, seen, st, ctx) != BioStatus.Ok) { MapRead(clone, ctx); return; }
                if (st == BioStatus.Ok || st == BioStatus.NotSupported || (clone.Flags & BioFlags.ReadAhead) != 0) { ctx.Complete(clone, st); return; }
                FailLeg(at, LegError.Read, ctx); // then try another leg
                MapRead(clone, ctx);
            });
            return;
        }
        ctx.Complete(clone, BioStatus.IoError);
    }

    private int _readTurn; // lanes on several cores may race on it: a read then goes to the same leg as another, no harm

    /// <summary>
    /// The leg a read of region <paramref name="r"/> goes to: never a failed or stale one, nor one that failed a
    /// read; a leg on this node before one on another (a round trip saved), and the reads spread over the legs of
    /// that kind in turn.
    /// </summary>
    private int ReadLeg(long r)
    {
        var remote = -1;
        var from = _readTurn = (_readTurn + 1) % _legs.Length;
        for (var k = 0; k < _legs.Length; k++)
        {
            var i = (from + k) % _legs.Length;
            var l = _legs[i];
            if (l.Failed || l.NoReads || !l.Trusted || _mem!.Stale[i][r]) continue;
            if (!l.Dev.IsRemote) return i;
            if (remote < 0) remote = i;
        }
        return remote;
    }

    private void MapFlush(Bio clone, ITargetContext ctx) => FlushLegs(ctx, st => ctx.Complete(clone, st));

    /// <summary>An empty flush to every live leg; then the dirty regions whose writes it covers are clean.</summary>
    private void FlushLegs(ITargetContext ctx, Action<BioStatus> done)
    {
        var targets = Enumerable.Range(0, _legs.Length).Where(i => !_legs[i].Failed).ToList();
        if (targets.Count == 0) { done(BioStatus.IoError); return; }
        // What this flush will make durable on every leg: the dirty regions whose writes have all completed.
        var covered = _dirtyIdle.Select(r => (r, Io(r).Gen)).ToList();
        int outstanding = targets.Count, succeeded = 0;
        var flushed = new bool[_legs.Length];
        foreach (var i in targets)
        {
            var seen = _legs[i].SeenLost;
            ctx.Submit(_legs[i].Dev, new Bio(BioOp.Flush, 0, 0, Memory<byte>.Empty, ActorRefs.Nobody), answer =>
            {
                var st = LostSince(i, seen, answer, ctx);
                if (st == BioStatus.Ok) { succeeded++; flushed[i] = true; }
                else FailLeg(i, LegError.Flush, ctx);
                if (--outstanding > 0) return;
                // With a leg failed, a region only it holds in sync (its writes maybe still in its cache) fails the flush.
                var status = succeeded >= _minLegs && (succeeded == _legs.Length || EveryRegionHeld(flushed)) ? BioStatus.Ok : BioStatus.IoError;
                if (status == BioStatus.Ok) ClearCovered(covered, ctx);
                WhenDurable(_failSeq, ok => done(ok ? status : BioStatus.IoError), ctx);
            });
        }
    }

    /// <summary>Regions a flush covered and nobody wrote since become clean, on the log at its next write (lazily).</summary>
    private void ClearCovered(List<(long Region, long Gen)> covered, ITargetContext ctx)
    {
        var any = false;
        foreach (var (r, gen) in covered)
            if (_regionIo.TryGetValue(r, out var rio) && rio.Pending == 0 && rio.Gen == gen && !rio.Recovering && _dirtyIdle.Remove(r))
            {
                _mem!.Dirty.Clear(r);
                if (rio.Waiting.Count == 0) _regionIo.Remove(r);
                any = true;
            }
        if (any) RequestCommit(ctx);
    }

    // ---- table and status -------------------------------------------------------------------------------------

    public override string TableParams()
    {
        var features = new List<string>();
        if (_handleErrors) features.Add("handle_errors");
        if (_keepLog) features.Add("keep_log");
        if (_minLegs != 1) features.AddRange(["min_legs", _minLegs.ToString()]);
        var legs = string.Join(' ', _legs.Select(l => $"{l.Dev.DevNo} {l.Offset}"));
        return $"{_log.TableParams()}{_legs.Length} {legs}{(features.Count > 0 ? $" {features.Count} {string.Join(' ', features)}" : "")}";
    }

    // Read by the device actor while this target's actor works: the counters it reads are kept under a lock.
    public override string StatusParams()
    {
        long inSync;
        lock (_statusGate) inSync = _inSync;
        return $"{_legs.Length} {string.Join(' ', _legs.Select(l => l.Dev.DevNo))} {inSync}/{_regions} 1 " +
               $"{new string(_legs.Select(l => l.Health).ToArray())} {_log.StatusParams()}";
    }
}
