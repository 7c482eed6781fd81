using System.Buffers.Binary;
using System.Collections.Concurrent;

namespace DmActors.Targets;

/// <summary>One bit per region (dm-log's bitsets), stored little-endian on a disk log as dm stores its clean bits.</summary>
internal sealed class RegionBits
{
    private readonly ulong[] _words;
    public RegionBits(long regions) { Regions = regions; _words = new ulong[(regions + 63) / 64]; }
    private RegionBits(long regions, ulong[] words) { Regions = regions; _words = words; }

    public long Regions { get; }
    public bool this[long r] => (_words[r >> 6] & (1UL << (int)(r & 63))) != 0;
    /// <summary>Sets bit <paramref name="r"/>; true when it was clear.</summary>
    public bool Set(long r)
    {
        var was = this[r];
        _words[r >> 6] |= 1UL << (int)(r & 63);
        return !was;
    }
    public void Clear(long r) => _words[r >> 6] &= ~(1UL << (int)(r & 63));
    public void SetAll() { for (long r = 0; r < Regions; r++) Set(r); }
    public bool Any() => _words.Any(w => w != 0);
    public RegionBits Clone() => new(Regions, (ulong[])_words.Clone());
    public int Words => _words.Length;
    public ulong Word(int i) => _words[i];
    /// <summary>The bits beyond the last region, which stay clear.</summary>
    public ulong ValidMask(int i) => i < _words.Length - 1 || Regions % 64 == 0 ? ulong.MaxValue : (1UL << (int)(Regions % 64)) - 1;
    public void WriteTo(Span<byte> to) { for (var i = 0; i < _words.Length; i++) BinaryPrimitives.WriteUInt64LittleEndian(to[(8 * i)..], _words[i]); }
    public static int Bytes(long regions) => (int)((regions + 63) / 64 * 8);
}

/// <summary>
/// What the region log records: the regions that may have writes not on every leg (dirty), and per leg the
/// regions it does not hold the latest data of (stale: written while it was away, or not yet resynced), and which
/// legs have failed. A region is in sync when no leg is stale for it.
/// </summary>
internal sealed class MirrorState
{
    public MirrorState(int legs, long regions)
    {
        Legs = legs; Regions = regions;
        Dirty = new RegionBits(regions);
        Stale = Enumerable.Range(0, legs).Select(_ => new RegionBits(regions)).ToArray();
        Failed = new bool[legs];
    }

    private MirrorState(MirrorState o)
    {
        Legs = o.Legs; Regions = o.Regions;
        Dirty = o.Dirty.Clone(); Stale = o.Stale.Select(s => s.Clone()).ToArray(); Failed = (bool[])o.Failed.Clone();
    }

    public int Legs { get; }
    public long Regions { get; }
    public RegionBits Dirty { get; }
    public RegionBits[] Stale { get; }
    public bool[] Failed { get; }

    public MirrorState Clone() => new(this);
    public bool InSync(long r) => Stale.All(s => !s[r]);

    /// <summary>A log that knows nothing (new, or `sync` asked for): every leg but the first is resynced from it, as dm does.</summary>
    public static MirrorState Fresh(int legs, long regions, bool nosync)
    {
        var s = new MirrorState(legs, regions);
        if (!nosync) for (var i = 1; i < legs; i++) s.Stale[i].SetAll();
        return s;
    }
}

public enum LogSync { Default, Sync, NoSync }

/// <summary>
/// A dirty region log (dm-log.c): `core` keeps the state in memory, `disk` on a log device. It stores the whole
/// <see cref="MirrorState"/>; the mirror commits it (write + flush) before a write that needs it goes out or is
/// acknowledged, and loads it at the first resume, after the table it replaces has stopped touching the devices.
/// </summary>
internal abstract class RegionLog
{
    public required uint RegionSize { get; init; }
    public required LogSync Sync { get; init; }
    public abstract string Name { get; }
    public virtual IBlockDevice? Device => null;
    /// <summary>How many log arguments the table had (1 or 2 for core, 2 or 3 for disk).</summary>
    protected int ArgCount => (Sync == LogSync.Default ? 1 : 2) + (Device != null ? 1 : 0);
    protected string SyncText => Sync switch { LogSync.Sync => "sync ", LogSync.NoSync => "nosync ", _ => "" };

    /// <summary>The table's log part, with its trailing space (core_status / disk_status, STATUSTYPE_TABLE).</summary>
    public abstract string TableParams();
    /// <summary>The status's log part (STATUSTYPE_INFO).</summary>
    public abstract string StatusParams();
    public abstract void Load(ITargetContext ctx, Func<MirrorState> fresh, Action<MirrorState> loaded);
    /// <summary>Makes <paramref name="state"/> durable; <paramref name="done"/> says whether it is.</summary>
    public abstract void Commit(ITargetContext ctx, MirrorState state, Action<bool> done);
    /// <summary>The table is suspended: what a table that replaces it may take over.</summary>
    public virtual void Suspended(MirrorState state) { }
    public virtual void Resumed(MirrorState state) { }

    /// <summary>create_log_context's region size rule: a power of two, at least 2 and at most the target length.</summary>
    public static uint ReadRegionSize(string arg, long targetLength) =>
        uint.TryParse(arg, System.Globalization.NumberStyles.None, null, out var v) && v >= 2 && v <= targetLength && (v & (v - 1)) == 0
            ? v : throw new TargetException($"Error creating mirror dirty log: invalid region size {arg}");

    public static LogSync ReadSync(string[] args, int at) =>
        at >= args.Length ? LogSync.Default
        : args[at] == "sync" ? LogSync.Sync
        : args[at] == "nosync" ? LogSync.NoSync
        : throw new TargetException($"Error creating mirror dirty log: unrecognised sync argument to dirty region log: {args[at]}");
}

/// <summary>
/// `core`: the state lives in memory, so a restart resyncs every region (dm's core log). A reload with the same
/// legs in the same process takes over the suspended table's state, so a leg that failed and came back gets only
/// its stale regions. The state stays parked after the table is gone (a remove and create with the same legs is a
/// reload too); it is one bitset per leg. Where the device has a journal (<see cref="ITargetRecords"/>), the legs
/// that may lack an acknowledged write (failed, or stale anywhere) are recorded there before such a write is
/// acknowledged, so a restart or a failover resyncs from a leg that has every write, never from one of those.
/// </summary>
internal sealed class CoreLog(CoreLog.Identity identity, ITargetRecords? records, string[] legIds, bool[] absent) : RegionLog
{
    /// <summary>
    /// Which mirror a state belongs to: the same leg devices (the objects, not names; a disk of another node by its
    /// DISK@NODE name, as each build connects to it anew) at the same offsets.
    /// </summary>
    public sealed class Identity(IBlockDevice[] legs, long[] offsets, long length, uint regionSize)
    {
        private readonly object[] _legs = legs.Select(l => l.IsRemote ? (object)("remote " + l.Name) : l).ToArray();
        private readonly string _geometry = $"{string.Join(' ', offsets)} {length} {regionSize}";
        public override bool Equals(object? o) => o is Identity i && i._geometry == _geometry && i._legs.Length == _legs.Length
            && _legs.Zip(i._legs).All(p => p.First is string s ? s.Equals(p.Second) : ReferenceEquals(p.First, p.Second));
        public override int GetHashCode() => _legs.Aggregate(_geometry.GetHashCode(), (h, d) => HashCode.Combine(h, d is string s ? s.GetHashCode() : System.Runtime.CompilerServices.RuntimeHelpers.GetHashCode(d)));
    }

    private static readonly ConcurrentDictionary<Identity, MirrorState> Parked = new();
    private readonly Identity _identity = identity;
    /// <summary>The journal's key: the legs as the table names them.</summary>
    private readonly string _key = "mirror " + string.Join(',', legIds);
    /// <summary>What the journal says now: the legs that may lack an acknowledged write.</summary>
    private string _recorded = "";

    public override string Name => "core";
    public override string TableParams() => $"core {ArgCount} {RegionSize} {SyncText}";
    public override string StatusParams() => "1 core";

    public override void Load(ITargetContext ctx, Func<MirrorState> fresh, Action<MirrorState> loaded)
    {
        var f = fresh();
        _recorded = records?.Get(_key) ?? "";
        if (Sync == LogSync.Default && Parked.TryRemove(_identity, out var s) && s.Legs == f.Legs && s.Regions == f.Regions) { loaded(s); return; }
        var behind = Behind(records, legIds);
        loaded(behind.Any(b => b) || (absent[0] && Sync != LogSync.NoSync) ? FromRecord(f, behind) : f);
    }

    /// <summary>Per leg, whether the journal says it may lack an acknowledged write.</summary>
    public static bool[] Behind(ITargetRecords? records, string[] legIds)
    {
        var recorded = (records?.Get("mirror " + string.Join(',', legIds)) ?? "").Split(',');
        return legIds.Select(recorded.Contains).ToArray();
    }

    /// <summary>
    /// A start that knows which legs may lack writes: the first other leg that could be reached is the source of
    /// every region; with `nosync` the other legs are taken as equal to it, else they are resynced from it too.
    /// </summary>
    private MirrorState FromRecord(MirrorState fresh, bool[] behind)
    {
        var s = new MirrorState(fresh.Legs, fresh.Regions);
        var source = Enumerable.Range(0, s.Legs).Where(i => !behind[i]).OrderBy(i => absent[i]).DefaultIfEmpty(0).First();
        for (var i = 0; i < s.Legs; i++)
            if (i != source && (behind[i] || Sync != LogSync.NoSync)) s.Stale[i].SetAll();
        return s;
    }

    public override void Commit(ITargetContext ctx, MirrorState state, Action<bool> done)
    {
        var value = string.Join(',', legIds.Where((_, i) => state.Failed[i] || state.Stale[i].Any()));
        if (records == null || value == _recorded) { done(true); return; }
        // Answered on the journal's thread: back into the target's actor before the mirror goes on.
        var inbox = ctx.Inbox;
        records.Put(_key, value, ok => inbox(() =>
        {
            if (ok) _recorded = value;
            done(ok);
        }));
    }

    public override void Suspended(MirrorState state) => Parked[_identity] = state;
    public override void Resumed(MirrorState state) => Parked.TryRemove(new KeyValuePair<Identity, MirrorState>(_identity, state));
}

/// <summary>
/// `disk`: dm's on-disk layout (drivers/md/dm-log.c) plus the per-leg state dm lacks. Sector 0: magic "MiRr",
/// version 2, nr_regions; sector 2 on: the clean bits (a region is clean when no leg is stale and no write may be
/// unfinished). Sector 1 (unused by dm): magic "DmAM", version, leg count, failed-leg mask and a hash of each
/// leg's table argument, so a replaced leg is resynced whole; after the clean bits, one stale bitset per leg.
/// </summary>
internal sealed class DiskLog(IBlockDevice dev, ulong[] legIds, long regions) : RegionLog
{
    private const uint Magic = 0x4D695272, Version = 2, ExtMagic = 0x4D416D44, ExtVersion = 1;
    private readonly IBlockDevice _dev = dev;
    private readonly IBlockDevice _io = BackgroundIo.Track(dev, BackgroundIo.Key(dev, -1));
    private readonly ulong[] _legIds = legIds;
    private readonly int _bitsetSectors = (RegionBits.Bytes(regions) + Bio.Sector512 - 1) / Bio.Sector512;
    private volatile char _health = 'A';

    public override string Name => "disk";
    public override IBlockDevice Device => _dev;
    public long SectorsNeeded => 2 + (1L + _legIds.Length) * _bitsetSectors;
    public override string TableParams() => $"disk {ArgCount} {_dev.DevNo} {RegionSize} {SyncText}";
    public override string StatusParams() => $"3 disk {_dev.DevNo} {_health}";

    public override void Load(ITargetContext ctx, Func<MirrorState> fresh, Action<MirrorState> loaded)
    {
        var image = new byte[SectorsNeeded * Bio.Sector512];
        ctx.Submit(_io, Bio.Read(0, image, Akka.Actor.ActorRefs.Nobody), st =>
        {
            // disk_resume: a log that cannot be read means every region is out of sync.
            if (st != BioStatus.Ok) { _health = 'D'; ctx.RaiseEvent(); loaded(fresh()); return; }
            loaded(Decode(image, fresh) ?? fresh());
        });
    }

    public override void Commit(ITargetContext ctx, MirrorState state, Action<bool> done)
    {
        ctx.Submit(_io, Bio.Write(0, Encode(state), Akka.Actor.ActorRefs.Nobody), st =>
        {
            if (st != BioStatus.Ok) { Failed('D', ctx); done(false); return; }
            ctx.Submit(_io, Bio.Flush(Akka.Actor.ActorRefs.Nobody), fs =>
            {
                if (fs != BioStatus.Ok) Failed('F', ctx);
                done(fs == BioStatus.Ok);
            });
        });
    }

    private void Failed(char why, ITargetContext ctx)
    {
        if (_health == 'A') ctx.RaiseEvent();
        _health = why;
    }

    private byte[] Encode(MirrorState s)
    {
        var image = new byte[SectorsNeeded * Bio.Sector512];
        var span = image.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(span, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], Version);
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], (ulong)s.Regions);
        var ext = span.Slice(Bio.Sector512, Bio.Sector512);
        BinaryPrimitives.WriteUInt32LittleEndian(ext, ExtMagic);
        BinaryPrimitives.WriteUInt32LittleEndian(ext[4..], ExtVersion);
        BinaryPrimitives.WriteUInt32LittleEndian(ext[8..], (uint)s.Legs);
        uint failed = 0;
        for (var i = 0; i < s.Legs; i++) if (s.Failed[i]) failed |= 1u << i;
        BinaryPrimitives.WriteUInt32LittleEndian(ext[12..], failed);
        for (var i = 0; i < s.Legs; i++) BinaryPrimitives.WriteUInt64LittleEndian(ext[(16 + 8 * i)..], _legIds[i]);
        // Word by word: a commit serves every write waiting meanwhile and must stay cheap on big volumes.
        for (var w = 0; w < s.Dirty.Words; w++)
        {
            var unclean = s.Dirty.Word(w);
            foreach (var stale in s.Stale) unclean |= stale.Word(w);
            BinaryPrimitives.WriteUInt64LittleEndian(span[(2 * Bio.Sector512 + 8 * w)..], ~unclean & s.Dirty.ValidMask(w));
        }
        for (var i = 0; i < s.Legs; i++) s.Stale[i].WriteTo(span[(int)(StaleAt(i) * Bio.Sector512)..]);
        return image;
    }

    /// <summary>The state on the log, or null when it holds none (a new log, or `sync`: resync everything).</summary>
    private MirrorState? Decode(byte[] image, Func<MirrorState> fresh)
    {
        var span = image.AsSpan();
        if (Sync == LogSync.Sync || BinaryPrimitives.ReadUInt32LittleEndian(span) != Magic) return null;
        var s = fresh();
        var had = (long)Math.Min(BinaryPrimitives.ReadUInt64LittleEndian(span[8..]), (ulong)s.Regions);
        var ext = span.Slice(Bio.Sector512, Bio.Sector512);
        var known = new bool[s.Legs];
        if (BinaryPrimitives.ReadUInt32LittleEndian(ext) == ExtMagic && BinaryPrimitives.ReadUInt32LittleEndian(ext[8..]) == s.Legs)
            for (var i = 0; i < s.Legs; i++) known[i] = BinaryPrimitives.ReadUInt64LittleEndian(ext[(16 + 8 * i)..]) == _legIds[i];
        // No leg we know (a log written by dm, or every leg replaced): dm's rule, the first leg is the source.
        var withExt = known.Any(k => k);
        for (long r = 0; r < s.Regions; r++)
        {
            for (var i = 0; i < s.Legs; i++) s.Stale[i].Clear(r);
            // Regions the log did not cover (the target grew) are in sync only with nosync (disk_resume).
            var clean = r < had ? GetBit(span, 2, r) : Sync == LogSync.NoSync;
            if (clean) continue;
            if (!withExt) { for (var i = 1; i < s.Legs; i++) s.Stale[i].Set(r); continue; }
            for (var i = 0; i < s.Legs; i++)
                if (!known[i] || (r < had && GetBit(span, StaleAt(i), r))) s.Stale[i].Set(r);
            s.Dirty.Set(r); // made stale on all legs but one when the mirror starts
        }
        return s;
    }

    private long StaleAt(int leg) => 2 + (1L + leg) * _bitsetSectors;
    private static bool GetBit(ReadOnlySpan<byte> image, long sector, long r) => (image[(int)(sector * Bio.Sector512 + (r >> 3))] & (1 << (int)(r & 7))) != 0;

    /// <summary>A stable id of a leg's table argument (FNV-1a), so the log can tell a leg that came back from a new one.</summary>
    public static ulong LegId(string arg, long offset)
    {
        var h = 14695981039346656037UL;
        foreach (var b in System.Text.Encoding.UTF8.GetBytes($"{arg} {offset}")) h = (h ^ b) * 1099511628211UL;
        return h;
    }
}

/// <summary>The mirror's side of its log: commits, and what waits for them.</summary>
public sealed partial class Mirror
{
    /// <summary>Runs <paramref name="then"/> once the change numbered <paramref name="need"/> is on the log (false: the log failed).</summary>
    private void WhenDurable(long need, Action<bool> then, ITargetContext ctx)
    {
        if (_diskSeq >= need) { then(true); return; }
        if (_logFailed) { then(false); return; }
        _durableWaiters.Add((need, then));
        RequestCommit(ctx);
    }

    /// <summary>Flushes of surviving legs under way (<see cref="FlushSurvivors"/>): no commit starts until they end.</summary>
    private int _commitHolds;

    /// <summary>Group commit: one log write + flush at a time; whatever changes meanwhile goes in the next.</summary>
    private void RequestCommit(ITargetContext ctx)
    {
        if (_mem == null || _logFailed) return;
        if (_committing || _commitHolds > 0) { _commitWanted = true; return; }
        _committing = true;
        _commitWanted = false;
        var (snapshot, seq) = (_mem.Clone(), _memSeq);
        _committed = snapshot;
        _log.Commit(ctx, snapshot, ok =>
        {
            _committing = false;
            _committed = null;
            if (ok) (_disk, _diskSeq) = (snapshot, Math.Max(_diskSeq, seq));
            else _logFailed = true; // no write that needs the log can be answered Ok from now on
            foreach (var w in _durableWaiters.Where(w => !ok || w.Need <= _diskSeq).ToList())
            {
                _durableWaiters.Remove(w);
                w.Then(ok);
            }
            if (_commitWanted) RequestCommit(ctx);
        });
    }
}
