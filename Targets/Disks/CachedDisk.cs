namespace DmActors;

/// <summary>
/// A volatile write-back cache in front of a disk, like a drive's cache: a plain write is acknowledged as soon as it
/// is in the cache; a flush writes the cache through and flushes the disk below; a FUA write goes through to the
/// disk below (alone) before it is acknowledged. <see cref="PowerCut"/> loses whatever was never flushed (optionally tearing:
/// a random subset of cached sectors reaches the disk first). Used to prove barriers and FUA make data durable.
/// Sector-granular on purpose: a model for tests and crash checks, not a fast path.
/// </summary>
public sealed class CachedDisk : Disk
{
    private readonly Disk _inner;
    private readonly object _gate = new();
    private readonly SortedDictionary<long, (byte[] Data, long Version)> _cache = new();
    private readonly Queue<Action> _serial = new();
    private List<(Bio, Action<Bio, BioStatus>)> _flushWaiters = new();
    private bool _serialBusy;
    private bool _flushQueued;
    private long _version;

    public CachedDisk(Disk inner) : base(inner.Name, inner.Sectors, inner.DevNo) => _inner = inner;

    public Disk Inner => _inner;
    public override bool HasVolatileCache => true;
    /// <summary>A broken disk for proving the crash checker can fail: flushes succeed without writing anything.</summary>
    public bool FlushLies { get; set; }
    public int CachedSectors { get { lock (_gate) return _cache.Count; } }

    protected override void Run(Bio bio, Action<Bio, BioStatus> done)
    {
        switch (bio.Op)
        {
            case BioOp.Write:
                var version = Cache(bio.Sector, bio.Data.Span);
                if ((bio.Flags & BioFlags.Fua) != 0) WriteThrough(bio, version, done);
                else done(bio, BioStatus.Ok);
                break;
            case BioOp.Read:
                // The cached sectors are taken before the read below starts: a flush that writes them down and
                // drops them meanwhile must not let the older data from below show through.
                var cached = CachedIn(bio.Sector, bio.Sectors);
                var child = new Bio(BioOp.Read, bio.Sector, bio.Sectors, bio.Data, Akka.Actor.ActorRefs.Nobody);
                _inner.Start(child, (_, status) =>
                {
                    if (status == BioStatus.Ok)
                        foreach (var (sector, data) in cached)
                            data.CopyTo(bio.Data.Span.Slice((int)(sector - bio.Sector) * Bio.Sector512, Bio.Sector512));
                    done(bio, status);
                });
                break;
            case BioOp.Flush:
                RequestFlush(bio, done);
                break;
            case BioOp.BlockStatus:
                // Taken before the map below, as for a read: a cached sector is data whatever the disk says.
                var dirty = CachedIn(bio.Sector, bio.Sectors);
                var map = new Bio(BioOp.BlockStatus, bio.Sector, bio.Sectors, bio.Data, Akka.Actor.ActorRefs.Nobody);
                _inner.Start(map, (_, status) =>
                {
                    if (status == BioStatus.Ok)
                        foreach (var (sector, _) in dirty) bio.Data.Span[(int)(sector - bio.Sector)] = BlockState.Data;
                    done(bio, status);
                });
                break;
            case BioOp.WriteZeroes when (bio.Flags & BioFlags.NoFallback) != 0:
                // The cached sectors would be dropped before the disk below could refuse: never fast here.
                done(bio, BioStatus.NotSupported);
                break;
            default: // discard, write-zeroes: drop cached sectors of the range, then pass down in order with flushes
                RunSerial(next =>
                {
                    // Answered while it waited its turn (Bio.Abandon): it must not land after what was written since.
                    if (bio.IsAbandoned) { done(bio, BioStatus.IoError); next(); return; }
                    lock (_gate)
                        foreach (var s in _cache.Keys.Where(s => s >= bio.Sector && s < bio.Sector + bio.Sectors).ToList())
                            _cache.Remove(s);
                    var down = new Bio(bio.Op, bio.Sector, bio.Sectors, Memory<byte>.Empty, Akka.Actor.ActorRefs.Nobody, bio.Flags & BioFlags.NoUnmap);
                    _inner.Start(down, (_, status) => { done(bio, status); next(); });
                });
                break;
        }
    }

    private long Cache(long sector, ReadOnlySpan<byte> data)
    {
        lock (_gate)
        {
            var v = ++_version;
            for (var i = 0; i < data.Length / Bio.Sector512; i++)
                _cache[sector + i] = (data.Slice(i * Bio.Sector512, Bio.Sector512).ToArray(), v);
            return v;
        }
    }

    /// <summary>
    /// FUA, as a drive does it: only this write goes through to the medium before it is acknowledged; the rest of
    /// the cache stays volatile. Serialised with flushes so an older cached copy never lands after it.
    /// </summary>
    private void WriteThrough(Bio bio, long version, Action<Bio, BioStatus> done) => RunSerial(next =>
    {
        if (FlushLies) { done(bio, BioStatus.Ok); next(); return; }
        var through = new Bio(BioOp.Write, bio.Sector, bio.Sectors, bio.Data, Akka.Actor.ActorRefs.Nobody, BioFlags.Fua);
        _inner.Start(through, (_, status) =>
        {
            if (status == BioStatus.Ok)
                lock (_gate)
                    for (var s = bio.Sector; s < bio.Sector + bio.Sectors; s++)
                        if (_cache.TryGetValue(s, out var e) && e.Version <= version) _cache.Remove(s);
            done(bio, status);
            next();
        });
    });

    private List<(long Sector, byte[] Data)> CachedIn(long sector, long sectors)
    {
        var found = new List<(long, byte[])>();
        lock (_gate)
            for (var s = sector; s < sector + sectors; s++)
                if (_cache.TryGetValue(s, out var e)) found.Add((s, e.Data));
        return found;
    }

    private void RequestFlush(Bio bio, Action<Bio, BioStatus> done)
    {
        lock (_gate)
        {
            _flushWaiters.Add((bio, done));
            if (_flushQueued) return; // the queued flush has not started yet: it covers this caller too
            _flushQueued = true;
        }
        RunSerial(FlushCache);
    }

    private void FlushCache(Action next)
    {
        List<(Bio, Action<Bio, BioStatus>)> waiters;
        List<(long Sector, byte[] Data, long Version)> entries;
        lock (_gate)
        {
            _flushQueued = false;
            waiters = _flushWaiters;
            _flushWaiters = new();
            entries = _cache.Select(e => (e.Key, e.Value.Data, e.Value.Version)).ToList();
        }
        void Finish(BioStatus status)
        {
            if (status == BioStatus.Ok && !FlushLies)
                lock (_gate)
                    foreach (var e in entries)
                        if (_cache.TryGetValue(e.Sector, out var now) && now.Version == e.Version) _cache.Remove(e.Sector);
            foreach (var (b, d) in waiters) d(b, status);
            next();
        }
        if (FlushLies) { Finish(BioStatus.Ok); return; }
        var runs = Runs(entries);
        var left = runs.Count + 1;
        var worst = BioStatus.Ok;
        void OneDone(BioStatus s)
        {
            if (s != BioStatus.Ok) worst = s;
            if (Interlocked.Decrement(ref left) != 0) return;
            if (worst != BioStatus.Ok) { Finish(worst); return; }
            _inner.Start(Bio.Flush(Akka.Actor.ActorRefs.Nobody), (_, fs) => Finish(fs));
        }
        foreach (var (sector, data) in runs)
            _inner.Start(new Bio(BioOp.Write, sector, data.Length / Bio.Sector512, data, Akka.Actor.ActorRefs.Nobody), (_, s) => OneDone(s));
        OneDone(BioStatus.Ok);
    }

    private static List<(long Sector, byte[] Data)> Runs(List<(long Sector, byte[] Data, long Version)> entries)
    {
        var runs = new List<(long, byte[])>();
        for (var i = 0; i < entries.Count;)
        {
            var j = i + 1;
            while (j < entries.Count && entries[j].Sector == entries[j - 1].Sector + 1 && j - i < 2048) j++;
            var data = new byte[(j - i) * Bio.Sector512];
            for (var k = i; k < j; k++) entries[k].Data.CopyTo(data, (k - i) * Bio.Sector512);
            runs.Add((entries[i].Sector, data));
            i = j;
        }
        return runs;
    }

    /// <summary>Runs operations that touch the disk below one at a time, in order.</summary>
    private void RunSerial(Action<Action> op)
    {
        lock (_gate)
        {
            if (_serialBusy) { _serial.Enqueue(() => op(Next)); return; }
            _serialBusy = true;
        }
        op(Next);
    }

    private void Next()
    {
        Action? op;
        lock (_gate)
        {
            if (!_serial.TryDequeue(out op)) { _serialBusy = false; return; }
        }
        op();
    }

    /// <summary>Power loss: the cache is gone. With <paramref name="tear"/>, a random part of it reached the disk first.</summary>
    public override void PowerCut(Random? tear = null)
    {
        List<(long, byte[], long)> lost;
        lock (_gate)
        {
            lost = _cache.Select(e => (e.Key, e.Value.Data, e.Value.Version)).ToList();
            _cache.Clear();
        }
        if (lost.Count > 0) Interlocked.Increment(ref _losses);
        if (tear == null) return;
        var survivors = lost.Where(_ => tear.Next(2) == 0).ToList();
        using var all = new CountdownEvent(1);
        foreach (var (sector, data) in Runs(survivors))
        {
            all.AddCount();
            _inner.Start(new Bio(BioOp.Write, sector, data.Length / Bio.Sector512, data, Akka.Actor.ActorRefs.Nobody), (_, _) => all.Signal());
        }
        all.Signal();
        all.Wait(TimeSpan.FromSeconds(30));
    }

    private long _losses;
    /// <summary>Power cuts that found something in the cache.</summary>
    public override long WritesLost => Interlocked.Read(ref _losses) + _inner.WritesLost;

    public override void Dispose() => _inner.Dispose();
}
