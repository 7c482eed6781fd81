using Akka.Actor;

namespace DmActors.Targets;

/// <summary>
/// The write path: a write (or discard) is cut at region boundaries; each part marks its region dirty, waits until
/// the log says so durably, goes to every live leg in sync for the region, and ends when all of them answered and
/// any leg failure they showed is on the log. A write that some leg did not get (failed, or stale there while it is
/// resynced) is flushed on the legs that have it before it is answered: they are its only copies, and a cache that
/// dies with its node (the owner's own leg, say) must not take an acknowledged write with it.
/// </summary>
public sealed partial class Mirror
{
    /// <summary>A write (or a discard, which may span regions: one part per region) and what its legs answered.</summary>
    private sealed class WriteIo(Bio clone, int parts)
    {
        public Bio Clone { get; } = clone;
        public int Parts = parts;
        public BioStatus Status = BioStatus.Ok;
    }

    private sealed class Part(WriteIo io, long region, long sector, long sectors)
    {
        public WriteIo Io { get; } = io;
        public long Region { get; } = region;
        public long Sector { get; } = sector;
        public long Sectors { get; } = sectors;
        public int Outstanding, Succeeded;
        /// <summary>The legs that have it (a bit per leg).</summary>
        public int Took;
        public BioStatus Status = BioStatus.Ok;
        /// <summary>Answered when its first leg had it (<see cref="AckAfterFirstLeg"/>, a broken mode for tests).</summary>
        public bool AckedEarly;
    }

    private void MapWrite(Bio clone, ITargetContext ctx)
    {
        var first = RegionOf(clone.Sector);
        var last = clone.Sectors == 0 ? first : RegionOf(clone.Sector + clone.Sectors - 1);
        var io = new WriteIo(clone, (int)(last - first + 1));
        for (var r = first; r <= last; r++)
        {
            var from = Math.Max(clone.Sector, Begin + r * _regionSize);
            var to = Math.Min(clone.Sector + clone.Sectors, Begin + (r + 1) * _regionSize);
            StartPart(new Part(io, r, from, to - from), ctx);
        }
    }

    private void StartPart(Part p, ITargetContext ctx)
    {
        var rio = Io(p.Region);
        if (rio.Recovering) { rio.Waiting.Enqueue(() => StartPart(p, ctx)); return; }
        if (Blocks(rio, p, rio.Blocked.Count)) { rio.Blocked.Add(p); return; }
        Admit(rio, p, ctx);
    }

    private void Admit(RegionIo rio, Part p, ITargetContext ctx)
    {
        rio.Active.Add(p);
        rio.Gen = ++_writes;
        _dirtyIdle.Remove(p.Region);
        // Dirty before the write goes out; stale for each failed leg, which will not get it (unless no live leg
        // holds the region: then the write fails, and the failed leg keeps what it holds, see FailLeg).
        var changed = _mem!.Dirty.Set(p.Region);
        for (var i = 0; i < _legs.Length; i++)
            if (_legs[i].Failed && HeldByOther(i, p.Region)) changed |= MarkStale(i, p.Region);
        if (changed) _memSeq++;
        if (IsDurable(p.Region)) IssuePart(p, ctx);
        else WhenDurable(_memSeq, ok => { if (ok) IssuePart(p, ctx); else EndPart(p, BioStatus.IoError, ctx); }, ctx);
    }

    /// <summary>
    /// The log says what a write to <paramref name="r"/> needs it to say, and goes on saying it: a commit in flight
    /// that a flush made call the region clean would undo it, so the write waits for the commit after that one
    /// (else an owner killed then leaves a log that calls a region clean whose legs differ).
    /// </summary>
    private bool IsDurable(long r) => Says(_disk, r) && (_committed == null || Says(_committed, r));

    /// <summary>The state marks <paramref name="r"/> dirty, and stale for each failed leg.</summary>
    private bool Says(MirrorState? s, long r)
    {
        if (s == null || !s.Dirty[r]) return false;
        for (var i = 0; i < _legs.Length; i++)
            if (_legs[i].Failed && !s.Stale[i][r]) return false;
        return true;
    }

    private void IssuePart(Part p, ITargetContext ctx)
    {
        var clone = p.Io.Clone;
        var targets = 0;
        for (var i = 0; i < _legs.Length; i++) if (WritesTo(i, p.Region)) targets++;
        if (targets < _minLegs) { EndPart(p, BioStatus.IoError, ctx); return; }
        // Answered while it waited for the log (Bio.Abandon): no leg gets it. Its leg writes are not abandoned with
        // it one by one: a leg that dropped its part would differ from one that had already written it.
        if (clone.IsAbandoned) { EndPart(p, BioStatus.IoError, ctx); return; }
        p.Outstanding = targets;
        var data = clone.Op == BioOp.Write ? clone.Data.Slice((int)((p.Sector - clone.Sector) << Bio.SectorShift), (int)(p.Sectors << Bio.SectorShift)) : Memory<byte>.Empty;
        if (AckAfterFirstLeg) data = data.ToArray(); // answered early, the caller may reuse its buffer
        for (var i = 0; i < _legs.Length; i++)
        {
            if (!WritesTo(i, p.Region)) continue;
            var leg = _legs[i];
            var child = new Bio(clone.Op, leg.Offset + (p.Sector - Begin), p.Sectors, data, ActorRefs.Nobody, clone.Flags & BioFlags.Fua);
            var (at, seen) = (i, leg.SeenLost);
            ctx.Submit(leg.Dev, child, st => LegWritten(p, at, LostSince(at, seen, st, ctx), ctx));
        }
    }

    /// <summary>A write to region <paramref name="r"/> goes to leg <paramref name="i"/>: it is live and in sync there.</summary>
    private bool WritesTo(int i, long r) => !_legs[i].Failed && !_mem!.Stale[i][r];

    private void LegWritten(Part p, int leg, BioStatus st, ITargetContext ctx)
    {
        if (st == BioStatus.Ok) { p.Took |= 1 << leg; if (++p.Succeeded == 1 && AckAfterFirstLeg) AckEarly(p, ctx); }
        else if (p.Io.Clone.Op == BioOp.Discard) p.Status = st; // a discard a leg cannot do degrades nothing (write_callback)
        else FailLeg(leg, LegError.Write, ctx);
        if (--p.Outstanding > 0) return;
        var status = p.Status != BioStatus.Ok ? p.Status : p.Succeeded >= _minLegs ? BioStatus.Ok : BioStatus.IoError;
        // Every leg failure known now is on the log before the write is answered: the failure it saw, and one
        // that made it skip a leg (else a restart could resync the region from the leg that missed it).
        WhenDurable(_failSeq, ok =>
        {
            if (ok && status == BioStatus.Ok && p.Succeeded < _legs.Length) FlushFewCopies(p, ctx);
            else EndPart(p, ok ? status : BioStatus.IoError, ctx);
        }, ctx);
    }

    /// <summary>
    /// The part is on fewer legs than the mirror has: it is made durable on those with a volatile cache (unless it
    /// was FUA) before it is answered. A leg that fails that flush is failed; the part fails if fewer than
    /// `min_legs` hold it then.
    /// </summary>
    private void FlushFewCopies(Part p, ITargetContext ctx)
    {
        var volatileLegs = Enumerable.Range(0, _legs.Length).Where(i => (p.Took & (1 << i)) != 0 && _legs[i].Dev.HasVolatileCache).ToList();
        if (p.Io.Clone.Op != BioOp.Write || (p.Io.Clone.Flags & BioFlags.Fua) != 0 || volatileLegs.Count == 0) { EndPart(p, BioStatus.Ok, ctx); return; }
        var outstanding = volatileLegs.Count;
        var durable = p.Succeeded;
        foreach (var i in volatileLegs)
        {
            var seen = _legs[i].SeenLost;
            ctx.Submit(_legs[i].Dev, Bio.Flush(ActorRefs.Nobody), answer =>
            {
                if (LostSince(i, seen, answer, ctx) != BioStatus.Ok) { durable--; FailLeg(i, LegError.Flush, ctx); }
                if (--outstanding > 0) return;
                var status = durable >= _minLegs ? BioStatus.Ok : BioStatus.IoError;
                WhenDurable(_failSeq, ok => EndPart(p, ok ? status : BioStatus.IoError, ctx), ctx);
            });
        }
    }

    private void EndPart(Part p, BioStatus status, ITargetContext ctx)
    {
        var rio = Io(p.Region);
        rio.Active.Remove(p);
        StartUnblocked(rio, ctx);
        if (rio.Pending == 0)
        {
            _dirtyIdle.Add(p.Region);
            RegionQuiet(p.Region, rio, ctx);
        }
        if (p.AckedEarly) return;
        if (status != BioStatus.Ok && p.Io.Status == BioStatus.Ok) p.Io.Status = status;
        if (--p.Io.Parts == 0) ctx.Complete(p.Io.Clone, p.Io.Status);
    }
}
