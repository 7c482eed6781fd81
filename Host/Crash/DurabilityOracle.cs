namespace DmActors.Host.Crash;

/// <summary>
/// The durability rule, per sector. A write is durable when it completed Ok and either it was FUA or a barrier
/// write (durable on completion; in ordered mode also a PREFLUSH write, run as a barrier), or a flush, barrier or
/// PREFLUSH write that completed Ok covers it: it completed before that flush was sent (REQ_PREFLUSH's promise),
/// or, in ordered mode, it was sent before that barrier (the barrier drains everything before it; a client flush,
/// an NBD FLUSH, is no barrier in either mode). A sector may then hold any value written to it that is not known to be older
/// than a durable write to it: the last durable value, any write that may have landed after it, and concurrent
/// writes whose order against it is unknown. Nothing else is promised (a write never acknowledged may be lost).
/// In ordered mode a barrier also holds everything sent after it until it completes: a write sent after a barrier
/// that was still unanswered at the cut cannot have reached the media. Nor can a write sent while a device was
/// suspended, when no resume was sent before the cut.
/// </summary>
public static class DurabilityOracle
{
    public sealed record Violation(long Sector, string Expected, string Found)
    {
        public override string ToString() => $"sector {Sector}: expected {Expected}, found {Found}";
    }

    /// <param name="Promised">Writes that were durable at the cut: the ones checked.</param>
    public sealed record Verdict(int Promised, IReadOnlyList<Violation> Violations, int BioErrors);

    private const int InitialOp = -1;

    public static Verdict Check(IReadOnlyList<CrashOp> ops, IoLedger ledger, BarrierMode mode, ReadOnlySpan<byte> image)
    {
        var ordered = mode == BarrierMode.Ordered;
        var flushes = Enumerable.Range(0, ops.Count).Where(i => ops[i].IsFlushing && ledger.WasSent(i)).ToList();
        // Ordered mode's barriers: every flushing bio but the client flush, which drains and holds nothing.
        var barriers = ordered ? flushes.Where(i => ops[i].IsBarrierWhenOrdered).ToList() : [];
        var barrierSent = barriers.Select(ledger.SentAt).Order().ToArray();

        // For each write: why it is durable (null when it is not).
        var why = new Dictionary<int, string?>();
        var byId = new Dictionary<int, int>();
        var sectors = image.Length / Bio.Sector512;
        var writers = new List<int>?[sectors];
        for (var i = 0; i < ops.Count; i++)
        {
            if (ops[i] is not CrashOp.Write w || !ledger.WasSent(i)) continue;
            byId[w.Id] = i;
            why[i] = Durability(ops, ledger, ordered, flushes, i, w);
            for (var s = w.Sector; s < w.Sector + w.Sectors; s++) (writers[s] ??= new()).Add(i);
        }

        // a is known to have reached the cache before b: it completed before b was sent, or (ordered mode) a
        // barrier separates them: the barrier drains a before it and holds b until it completes.
        bool Before(int a, int b)
        {
            if (a == InitialOp) return b != InitialOp;
            if (b == InitialOp) return false;
            if (ledger.DoneAt(a) < ledger.SentAt(b)) return true;
            if (!ordered) return false;
            long sa = ledger.SentAt(a), sb = ledger.SentAt(b);
            if (sa >= sb) return false;
            if (ops[a].IsBarrierWhenOrdered || ops[b].IsBarrierWhenOrdered) return true;
            var next = Array.BinarySearch(barrierSent, sa + 1);
            if (next < 0) next = ~next;
            return next < barrierSent.Length && barrierSent[next] < sb;
        }

        // The barrier still unanswered at the cut that was holding write c (ordered mode), or -1.
        int HeldBy(int c) => !ordered || c == InitialOp ? -1
            : barriers.FirstOrDefault(f => f != c && ledger.SentAt(f) < ledger.SentAt(c) && ledger.Status(f) == null, -1);

        bool Held(int c) => c != InitialOp && (HeldBy(c) >= 0 || ledger.HeldBySuspend(c));

        var violations = new List<Violation>();
        var candidates = new List<int>();
        for (var s = 0; s < sectors; s++)
        {
            candidates.Clear();
            candidates.Add(InitialOp);
            if (writers[s] is { } list) candidates.AddRange(list);
            var durable = candidates.Where(c => c == InitialOp || why[c] != null).ToList();
            var acceptable = candidates.Where(c => !durable.Any(d => d != c && Before(c, d)) && !Held(c)).ToList();
            var data = image.Slice(s * Bio.Sector512, Bio.Sector512);
            var found = SectorStamp.IdOf(data, s);
            var foundOp = found is { } id ? (id == SectorStamp.Initial ? InitialOp : byId.GetValueOrDefault(id, int.MinValue)) : int.MinValue;
            if (acceptable.Contains(foundOp)) continue;
            var expected = string.Join(" or ", acceptable.Select(c => c == InitialOp
                ? "zeros (nothing durable written)"
                : $"{ops[c]} ({why[c] ?? "may have landed"})"));
            var described = SectorStamp.Describe(data, s);
            if (foundOp >= 0 && HeldBy(foundOp) is var held and >= 0)
                described += $", which was held behind op {held} ({ops[held]}), unanswered at the cut";
            else if (foundOp >= 0 && ledger.HeldBySuspend(foundOp)) described += ", which was sent to a suspended device never resumed before the cut";
            else described = Explain(ops, foundOp, durable, Before, described);
            violations.Add(new Violation(s, expected, described));
        }
        // Errors answered while the power was still on (the cut itself fails what it catches in flight).
        var errors = Enumerable.Range(0, ops.Count).Count(i => ledger.Status(i) is { } st && st != BioStatus.Ok && ledger.DoneAt(i) < ledger.PowerFailedAt);
        return new Verdict(why.Values.Count(v => v != null), violations, errors);
    }

    private static string Explain(IReadOnlyList<CrashOp> ops, int foundOp, List<int> durable, Func<int, int, bool> before, string described)
    {
        if (foundOp == int.MinValue) return described;
        var newer = durable.FirstOrDefault(d => d != foundOp && before(foundOp, d), int.MinValue);
        if (newer == int.MinValue) return described;
        return $"{described}, older than durable {(newer == InitialOp ? "initial contents" : ops[newer].ToString())}";
    }

    private static string? Durability(IReadOnlyList<CrashOp> ops, IoLedger ledger, bool ordered, List<int> flushes, int i, CrashOp.Write w)
    {
        if (ledger.Status(i) != BioStatus.Ok) return null;
        if (w.Kind is WriteKind.Fua or WriteKind.PreflushFua) return "durable: FUA write completed";
        if (w.Kind == WriteKind.Barrier) return "durable: barrier write completed";
        // Ordered mode runs a PREFLUSH write as a barrier (flush, data, flush); flush mode promises only what was before it.
        if (w.Kind == WriteKind.Preflush && ordered) return "durable: preflush write completed (a barrier in ordered mode)";
        foreach (var f in flushes)
        {
            if (ledger.Status(f) != BioStatus.Ok) continue;
            if (ledger.DoneAt(i) < ledger.SentAt(f)) return $"durable: completed before op {f} ({ops[f]}) was sent, which completed";
            if (ordered && ops[f].IsBarrierWhenOrdered && ledger.SentAt(i) < ledger.SentAt(f)) return $"durable: sent before barrier op {f} ({ops[f]}), which completed";
        }
        return null;
    }
}
