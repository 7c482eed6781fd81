using Akka.Actor;

namespace DmActors.Targets;

/// <summary>Leg failures (fail_mirror): what becomes stale for a failed leg, and what must be durable before the log says so.</summary>
public sealed partial class Mirror
{
    private bool MarkStale(int leg, long r)
    {
        if (!_mem!.Stale[leg].Set(r)) return false;
        if (_mem.Stale.Count(s => s[r]) == 1) lock (_statusGate) _inSync--;
        return true;
    }

    /// <summary>
    /// fail_mirror: the leg gets no more IO; every region that may differ on it (dirty) becomes stale for it, and
    /// the failure goes to the log. No write or flush is answered before it is durable (<see cref="_failSeq"/>).
    /// A region no other live leg holds in sync stays the failed leg's: it is the only copy of every flushed write
    /// there (a first sync had not reached the others), so reads and writes to it fail until the leg returns, and
    /// the resync then copies it from that leg, not from a stale one.
    /// </summary>
    private void FailLeg(int i, LegError why, ITargetContext ctx)
    {
        var leg = _legs[i];
        var first = Interlocked.Or(ref leg.Errors, (int)why) == 0;
        if (why == LegError.Read) leg.NoReads = true;
        else if (!leg.Failed)
        {
            leg.Failed = true;
            _mem!.Failed[i] = true;
            for (long r = 0; r < _regions; r++)
                if (_mem.Dirty[r] && HeldByOther(i, r)) MarkStale(i, r);
            _failSeq = ++_memSeq;
            FlushSurvivors(ctx);
        }
        if (first) ctx.RaiseEvent();
    }

    /// <summary>
    /// A leg failed: the regions it shared become held by the others alone, with writes they acknowledged maybe
    /// still in their caches. Those legs are flushed before any commit (this failure's or a later write's) can
    /// put that on the log: else the log says "only these legs hold it" while a cache that dies with its node
    /// (the owner's own leg) is the only copy. Found by `dmactors clustertest`: a paused owner, fenced at one leg
    /// by the new owner, failed that leg and logged it; its other leg's cache died when it stopped.
    /// </summary>
    private void FlushSurvivors(ITargetContext ctx)
    {
        var survivors = Enumerable.Range(0, _legs.Length).Where(j => !_legs[j].Failed && _legs[j].Dev.HasVolatileCache).ToList();
        if (survivors.Count == 0) { RequestCommit(ctx); return; }
        _commitHolds++;
        var outstanding = survivors.Count;
        foreach (var j in survivors)
        {
            var seen = _legs[j].SeenLost;
            ctx.Submit(_legs[j].Dev, Bio.Flush(ActorRefs.Nobody), answer =>
            {
                if (LostSince(j, seen, answer, ctx) != BioStatus.Ok) FailLeg(j, LegError.Flush, ctx);
                if (--outstanding > 0) return;
                _commitHolds--;
                RequestCommit(ctx);
            });
        }
    }

    /// <summary>Some leg other than <paramref name="leg"/> is live and in sync in region <paramref name="r"/>.</summary>
    private bool HeldByOther(int leg, long r)
    {
        for (var j = 0; j < _legs.Length; j++)
            if (j != leg && !_legs[j].Failed && !_mem!.Stale[j][r]) return true;
        return false;
    }
}
