namespace DmActors.Targets;

/// <summary>
/// Resync (dm-raid1's recovery through kcopyd): one region at a time, from a live leg in sync for it (never a
/// failed one, nor one that failed a read) to every live leg stale for it. IO to the region waits from the moment
/// it is chosen; its writes in flight finish first. The copy is flushed on its destinations before the region
/// counts as in sync, and the log gets the progress at its next write, so an interrupted resync resumes where
/// it stopped. `resync_rate &lt;KiB/s&gt;` paces it (0: as fast as the legs go).
/// </summary>
public sealed partial class Mirror
{
    private long _cursor;
    private long _quiescing = -1;
    private bool _resyncing;
    /// <summary>The region being copied (one at a time), or -1: a lane's read of it goes to the actor, which holds it.</summary>
    private long _copying = -1;
    private long _rateKiB;
    private bool _announcedInSync;

    // ---- suspend, resume, destroy ----------------------------------------------------------------------------

    public override void PreSuspend(ITargetContext ctx) => _suspended = true;

    /// <summary>
    /// Postsuspend: every write is done, so flush the legs and write the log (dm's disk_flush): a reload starts
    /// from a log whose only unclean regions are those really out of sync (if this table's actor lives to see the
    /// flush through; if not, the next table resyncs a few regions more).
    /// </summary>
    public override void PostSuspend(ITargetContext ctx)
    {
        if (_mem == null) return;
        _log.Suspended(_mem);
        FlushLegs(ctx, _ => WhenDurable(++_memSeq, _ => { }, ctx));
    }

    /// <summary>The areas this mirror's background IO touches: each leg's, and the log device.</summary>
    private (object, long)[] BackgroundKeys => _legs.Select(l => BackgroundIo.Key(l.Dev, l.Offset)).Concat(_log.Device is { } d ? [BackgroundIo.Key(d, -1)] : []).ToArray();
    private bool _leased;

    public override void Resume(ITargetContext ctx)
    {
        _suspended = false;
        CheckLossesEverySecond(ctx);
        if (_mem != null) { _log.Resumed(_mem); KickResync(ctx); return; }
        if (_loading) return;
        _loading = true;
        // The table this one replaces may still run, or have copies or log writes in flight: wait until it is gone.
        var keys = BackgroundKeys;
        var tries = 0;
        void TryLoad()
        {
            // A table whose IO never ends (a leg that never answers) does not hold this one for ever: after about
            // 30 s it starts anyway, so IO is answered rather than held.
            if (!BackgroundIo.Free(keys) && ++tries < 6000) { ctx.Schedule(TimeSpan.FromMilliseconds(5), TryLoad); return; }
            BackgroundIo.Lease(keys, 1);
            _leased = true;
            // A leg whose device in the table before this one is gone (its node was removed), or that lost writes
            // no table saw, may lack what its cache held: the regions that were dirty then.
            var lost = new bool[_legs.Length];
            for (var i = 0; i < _legs.Length; i++)
                (lost[i], _legs[i].SeenLost) = BackgroundIo.TakeOver(_legs[i].Key, _legs[i].Dev, _legs[i].SeenLost);
            _log.Load(ctx, () => MirrorState.Fresh(_legs.Length, _regions, _log.Sync == LogSync.NoSync), s => Loaded(s, lost, ctx));
        }
        TryLoad();
    }

    /// <summary>
    /// A leg that is gone (its node was removed) loses none of the mirror's writes while every region is held by
    /// another leg that is neither failed nor gone: each write completed there too, and what the gone leg may lack
    /// is dirty or stale for it, which the next table over the same legs copies to it.
    /// </summary>
    public override bool SurvivesLossOf(IBlockDevice dev)
    {
        var gone = Array.FindIndex(_legs, l => ReferenceEquals(l.Dev, dev));
        if (gone < 0) return false;
        var holders = Enumerable.Range(0, _legs.Length).Where(i => i != gone && !_legs[i].Failed && !_legs[i].Dev.IsGone).ToList();
        if (holders.Count == 0) return false;
        var s = _mem;
        if (s == null) return true; // never loaded: no write completed
        for (long r = 0; r < _regions; r++)
            if (holders.All(i => s.Stale[i][r])) return false;
        return true;
    }

    /// <summary>
    /// After a leg failed a flush: every region still has a leg that flushed and is in sync for it. A region whose
    /// only in-sync legs failed the flush (a leg stale there while the resync copies it, or failed before) holds
    /// writes that may be lost with their cache: the flush cannot promise them.
    /// </summary>
    private bool EveryRegionHeld(bool[] flushed)
    {
        for (long r = 0; r < _regions; r++)
        {
            var held = false;
            for (var i = 0; i < _legs.Length && !held; i++) held = flushed[i] && !_mem!.Stale[i][r];
            if (!held) return false;
        }
        return true;
    }

    public override void Destroy()
    {
        var keys = BackgroundKeys;
        if (_leased) BackgroundIo.Lease(keys, -1);
        _lossCheck?.Cancel();
        foreach (var l in _legs) BackgroundIo.Forget(l.Key, l.Dev);
        // Copies and log writes still in flight finish before the devices are let go.
        BackgroundIo.OnQuiet(keys, base.Destroy);
    }

    /// <summary>The log is read: failed legs come back with this table, and regions that may differ get resynced.</summary>
    private void Loaded(MirrorState s, bool[] lost, ITargetContext ctx)
    {
        for (var i = 0; i < _legs.Length; i++) s.Failed[i] = false;
        long inSync = 0;
        for (long r = 0; r < _regions; r++)
        {
            // A write was in flight when the last table stopped: the legs may differ; the first in sync wins, unless
            // it may have lost its cache (then another, if any): a loss this process saw, or a leg on the node of the
            // previous owner, which may have died with it. Every acknowledged write is on each leg in sync, so a leg
            // whose cache lived on holds them all.
            if (s.Dirty[r])
            {
                var source = Enumerable.Range(0, _legs.Length).Where(i => !s.Stale[i][r])
                    .OrderBy(i => lost[i] || _legs[i].MayLackCachedWrites).DefaultIfEmpty(-1).First();
                for (var i = 0; i < _legs.Length; i++) if (i != source) s.Stale[i].Set(r);
                s.Dirty.Clear(r);
            }
            if (s.InSync(r)) inSync++;
        }
        lock (_statusGate) _inSync = inSync;
        _announcedInSync = inSync == _regions;
        _mem = s;
        _memSeq++;
        // A leg that could not be reached starts failed (recorded before any write is answered).
        for (var i = 0; i < _legs.Length; i++) if (_legs[i].Dev is AbsentLeg) FailLeg(i, LegError.Write, ctx);
        RequestCommit(ctx);
        foreach (var queued in _beforeLoad) queued();
        _beforeLoad.Clear();
        _cursor = 0;
        KickResync(ctx);
    }

    /// <summary>The region's last write finished: if resync waits for it, the copy starts.</summary>
    private void RegionQuiet(long r, RegionIo rio, ITargetContext ctx)
    {
        if (r == _quiescing) { _quiescing = -1; Copy(r, ctx); }
    }

    private int SourceFor(long r)
    {
        for (var i = 0; i < _legs.Length; i++)
            if (!_legs[i].Failed && !_legs[i].NoReads && !_mem!.Stale[i][r]) return i;
        return -1;
    }

    private List<int> DestinationsFor(long r) => Enumerable.Range(0, _legs.Length).Where(i => !_legs[i].Failed && _mem!.Stale[i][r]).ToList();

    /// <summary>Starts copying the next region that needs it, unless a copy runs, the table is suspended or nothing is left.</summary>
    private void KickResync(ITargetContext ctx)
    {
        if (_resyncing || _suspended || _mem == null) return;
        NoticeLosses(ctx);
        for (; _cursor < _regions; _cursor++)
        {
            if (DestinationsFor(_cursor).Count == 0 || SourceFor(_cursor) < 0) continue;
            _resyncing = true;
            var rio = Io(_cursor);
            rio.Recovering = true;
            Volatile.Write(ref _copying, _cursor);
            if (rio.Pending == 0) Copy(_cursor, ctx);
            else _quiescing = _cursor;
            return;
        }
        if (!_announcedInSync && Interlocked.Read(ref _inSync) == _regions)
        {
            // The sync is complete (do_recovery): legs that are live again show no errors.
            _announcedInSync = true;
            foreach (var l in _legs) if (!l.Failed) { l.Errors = 0; l.NoReads = false; }
            ctx.RaiseEvent();
        }
    }

    /// <summary>At most this many sectors (1 MiB) per copy bio, whatever the region size.</summary>
    private const long CopyChunk = 2048;

    private void Copy(long r, ITargetContext ctx)
    {
        var src = SourceFor(r);
        var dests = DestinationsFor(r);
        if (src < 0 || dests.Count == 0) { EndCopy(r, 0, ctx); return; }
        var start = r * _regionSize;
        var end = Math.Min(start + _regionSize, Length);
        CopyPiece(r, src, dests, start, end, new byte[Math.Min(CopyChunk, end - start) << Bio.SectorShift], ctx);
    }

    /// <summary>Copies [<paramref name="at"/>, <paramref name="end"/>) of the region piece by piece, one buffer reused.</summary>
    private void CopyPiece(long r, int src, List<int> dests, long at, long end, byte[] buffer, ITargetContext ctx)
    {
        if (at >= end || dests.Count == 0) { FlushCopies(r, src, dests, (int)((end - r * _regionSize) << Bio.SectorShift), ctx); return; }
        var data = buffer.AsMemory(0, (int)(Math.Min(CopyChunk, end - at) << Bio.SectorShift));
        var source = _legs[src];
        var seen = source.SeenLost;
        ctx.Submit(source.Copies, Bio.Read(source.Offset + at, data, Akka.Actor.ActorRefs.Nobody), answer =>
        {
            if (LostSince(src, seen, answer, ctx) is var st && st != BioStatus.Ok)
            {
                // A sync failure of the source: it is not read from again; another source gets the region.
                FailLeg(src, LegError.Read, ctx);
                Interlocked.Or(ref source.Errors, (int)LegError.Sync);
                EndCopy(r, 0, ctx, retry: true);
                return;
            }
            var outstanding = dests.Count;
            var written = new List<int>();
            foreach (var d in dests)
                ctx.Submit(_legs[d].Copies, Bio.Write(_legs[d].Offset + at, data, Akka.Actor.ActorRefs.Nobody), ws =>
                {
                    if (ws == BioStatus.Ok) written.Add(d); else FailLeg(d, LegError.Sync, ctx);
                    if (--outstanding == 0) CopyPiece(r, src, written, at + (data.Length >> Bio.SectorShift), end, buffer, ctx);
                });
        });
    }

    /// <summary>
    /// The copies are flushed before the region counts as in sync on them, and so is the source: what it was copied
    /// from may sit in its cache still (writes an earlier table had acknowledged), and the region is no longer dirty
    /// to say so. A source that fails that flush may have lost the region: it becomes stale there, the copies hold it.
    /// </summary>
    private void FlushCopies(long r, int src, List<int> written, int bytes, ITargetContext ctx)
    {
        if (written.Count == 0) { EndCopy(r, bytes, ctx); return; }
        var outstanding = written.Count + 1;
        var sourceLost = false;
        var durable = new List<int>();
        void Flushed()
        {
            if (--outstanding > 0) return;
            foreach (var d in durable)
                if (!_legs[d].Failed)
                {
                    _mem!.Stale[d].Clear(r);
                    if (_mem.InSync(r)) lock (_statusGate) _inSync++;
                }
            if (sourceLost && durable.Any(d => !_legs[d].Failed)) MarkStale(src, r);
            _memSeq++;
            RequestCommit(ctx); // the progress; nobody waits for it (a region copied twice is harmless)
            EndCopy(r, bytes, ctx);
        }
        foreach (var d in written)
            ctx.Submit(_legs[d].Copies, Bio.Flush(Akka.Actor.ActorRefs.Nobody), fs =>
            {
                if (fs != BioStatus.Ok) FailLeg(d, LegError.Sync, ctx);
                else durable.Add(d);
                Flushed();
            });
        ctx.Submit(_legs[src].Copies, Bio.Flush(Akka.Actor.ActorRefs.Nobody), fs =>
        {
            if (fs != BioStatus.Ok) { sourceLost = true; FailLeg(src, LegError.Flush, ctx); }
            Flushed();
        });
    }

    /// <summary>The region is done (or given up for now): its waiting IO goes on, and the next region follows at the set rate.</summary>
    private void EndCopy(long r, int bytes, ITargetContext ctx, bool retry = false)
    {
        var rio = Io(r);
        rio.Recovering = false;
        Volatile.Write(ref _copying, -1);
        while (rio.Waiting.TryDequeue(out var go)) go();
        if (rio.Pending == 0 && rio.Waiting.Count == 0 && !_dirtyIdle.Contains(r)) _regionIo.Remove(r); // nothing left to track
        if (!retry && _cursor == r) _cursor = r + 1; // unless return_leg started over meanwhile
        if (_rateKiB > 0 && bytes > 0)
            ctx.Schedule(TimeSpan.FromSeconds(bytes / 1024.0 / _rateKiB), () => { _resyncing = false; KickResync(ctx); });
        else
        {
            _resyncing = false;
            KickResync(ctx);
        }
    }

    /// <summary>
    /// DmActors' messages (dm-raid1 has none): `resync_rate &lt;KiB/s&gt;`, `fail_leg &lt;dev&gt;` (fence a leg: it gets no
    /// more IO, recorded like a write failure) and `return_leg &lt;dev&gt;` (it is back: its stale regions are copied).
    /// </summary>
    public override string? Message(string[] args, ITargetContext ctx)
    {
        if (args.Length != 2) throw new TargetException($"Invalid mirror message arguments, expect 2 arguments, got {args.Length}");
        switch (args[0])
        {
            case "resync_rate":
                if (!long.TryParse(args[1], System.Globalization.NumberStyles.None, null, out var rate))
                    throw new TargetException($"Invalid resync_rate {args[1]}: expect KiB/s, 0 for no limit");
                _rateKiB = rate;
                return null;
            case "fail_leg" or "return_leg":
                var i = Array.FindIndex(_legs, l => l.Dev.DevNo == args[1] || l.Dev.Name == args[1] || l.Arg == args[1]);
                if (i < 0) throw new TargetException($"{args[1]} is not a leg of this mirror");
                if (_mem == null) throw new TargetException("The mirror's log is not loaded yet");
                if (args[0] == "fail_leg") FailLeg(i, LegError.Write, ctx);
                else ReturnLeg(i, ctx);
                return null;
            default: throw new TargetException($"Unrecognised mirror message received: {args[0]}");
        }
    }

    private void ReturnLeg(int i, ITargetContext ctx)
    {
        // A failed leg comes back as it is now. What it lost while away (a cache that died with its node) lies in
        // regions stale for it, which are copied next; a device below that reports such a loss does so once, at
        // the next flush, so that flush goes first and its answer is not held against the leg (else the copies'
        // flush would fail and the leg with them). A leg that is not failed gets no such pass.
        if (_legs[i].Dev is AbsentLeg gone) throw new TargetException($"{gone.Name} cannot return to this table: {gone.Reason}");
        if (!_legs[i].Failed) { Returned(i, ctx); return; }
        ctx.Submit(_legs[i].Dev, Bio.Flush(Akka.Actor.ActorRefs.Nobody), _ => { if (_legs[i].Failed) Returned(i, ctx); });
    }

    private void Returned(int i, ITargetContext ctx)
    {
        var leg = _legs[i];
        leg.Failed = false;
        leg.NoReads = false;
        leg.Errors = 0;
        _mem!.Failed[i] = false;
        _memSeq++;
        RequestCommit(ctx);
        _announcedInSync = false;
        _cursor = 0;
        KickResync(ctx);
    }
}
