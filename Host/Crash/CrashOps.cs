namespace DmActors.Host.Crash;

/// <summary>Plain, FUA, barrier (the founding patch), PREFLUSH, or PREFLUSH+FUA (a modern journal commit).</summary>
public enum WriteKind { Plain, Fua, Barrier, Preflush, PreflushFua }

/// <summary>The two devices of the stack under test: the top one takes the workload, the lower one maps the disks.</summary>
public enum Layer { Top, Lower }

/// <summary>
/// One step of a crash workload. Writes carry an id fixed at generation, so a shrunk sequence still writes (and
/// names) the same data and a sector read back after the cut tells which write it holds.
/// </summary>
public abstract record CrashOp
{
    public sealed record Write(int Id, long Sector, int Sectors, WriteKind Kind) : CrashOp
    {
        public BioFlags Flags => Kind switch
        {
            WriteKind.Fua => BioFlags.Fua,
            WriteKind.Barrier => BioFlags.Barrier,
            WriteKind.Preflush => BioFlags.Preflush,
            WriteKind.PreflushFua => BioFlags.Preflush | BioFlags.Fua,
            _ => BioFlags.None,
        };

        public override string ToString() => Kind switch
        {
            WriteKind.Fua => "fua-write",
            WriteKind.Barrier => "barrier-write",
            WriteKind.Preflush => "preflush-write",
            WriteKind.PreflushFua => "preflush-fua-write",
            _ => "write",
        } + $" #{Id} {Sector}+{Sectors}";
    }

    /// <summary>An empty flush (an empty barrier in ordered mode).</summary>
    public sealed record Flush : CrashOp { public override string ToString() => "flush"; }

    /// <summary>An NBD FLUSH (a NoDrain flush): covers the writes completed before it, in both modes; never a barrier.</summary>
    public sealed record ClientFlush : CrashOp { public override string ToString() => "client-flush"; }

    public sealed record Suspend(Layer Layer, bool NoFlush) : CrashOp
    {
        public override string ToString() => $"suspend {CrashStack.NameOf(Layer)}{(NoFlush ? " --noflush" : "")}";
    }

    /// <summary>Resumes whichever device is suspended.</summary>
    public sealed record Resume : CrashOp { public override string ToString() => "resume"; }

    /// <summary>Loads an equivalent table (variant n of the layer's mapping) and resumes, swapping it in.</summary>
    public sealed record Reload(Layer Layer, int Variant) : CrashOp
    {
        public override string ToString() => $"reload {CrashStack.NameOf(Layer)} (variant {Variant})";
    }

    /// <summary>Waits until every bio sent so far is answered: bounds the IO in flight.</summary>
    public sealed record Wait : CrashOp { public override string ToString() => "wait"; }

    /// <summary>True for the bios that make earlier writes durable (and in ordered mode are barriers): empty flushes,
    /// barrier writes and PREFLUSH writes.</summary>
    public bool IsFlushing => this is ClientFlush || IsBarrierWhenOrdered;

    /// <summary>The flushing bios that ordered mode runs as barriers (all of them but the client flush).</summary>
    public bool IsBarrierWhenOrdered => this is Flush || this is Write { Kind: WriteKind.Barrier or WriteKind.Preflush or WriteKind.PreflushFua };
}

/// <summary>
/// Where the power goes: after the first <paramref name="After"/> ops were sent, either once all IO settled, or
/// abruptly: as soon as <paramref name="Answers"/> more completions arrived (0: at once), so cuts fall at
/// different depths of the IO in flight.
/// </summary>
public sealed record CutPlan(int After, bool Settle, int TearSeed, int Answers = 0)
{
    public override string ToString() =>
        $"{(Settle ? "settled" : Answers == 0 ? "abrupt" : $"abrupt (after {Answers} more completions)")} cut after op {After - 1}, tear seed {TearSeed}";
}

/// <summary>The seeded workload: short batches of bios with a wait between them, so the IO in flight is bounded.</summary>
public static class CrashWorkload
{
    public static List<CrashOp> Generate(Random rnd, long deviceSectors, int length, int maxBatch = 8)
    {
        var ops = new List<CrashOp>();
        var nextId = 1;
        while (ops.Count < length)
        {
            for (var i = rnd.Next(1, maxBatch + 1); i > 0; i--) ops.Add(Next(rnd, deviceSectors, ref nextId));
            ops.Add(new CrashOp.Wait());
        }
        return ops;
    }

    private static CrashOp Next(Random rnd, long deviceSectors, ref int nextId)
    {
        var r = rnd.Next(100);
        if (r < 5) return new CrashOp.Flush();
        if (r < 10) return new CrashOp.ClientFlush();
        if (r < 14) return new CrashOp.Suspend(rnd.Next(2) == 0 ? Layer.Top : Layer.Lower, rnd.Next(3) == 0);
        if (r < 18) return new CrashOp.Resume();
        if (r < 22) return new CrashOp.Reload(rnd.Next(2) == 0 ? Layer.Top : Layer.Lower, rnd.Next(1, 1000));
        var kind = r < 78 ? WriteKind.Plain : r < 86 ? WriteKind.Fua : r < 92 ? WriteKind.Barrier : r < 96 ? WriteKind.Preflush : WriteKind.PreflushFua;
        // Mostly small writes, now and then a large one (up to 256 sectors, 128 KiB).
        var len = rnd.Next(4) == 0 ? rnd.Next(1, 257) : rnd.Next(1, 17);
        len = (int)Math.Min(len, deviceSectors);
        return new CrashOp.Write(nextId++, rnd.NextInt64(0, deviceSectors - len + 1), len, kind);
    }

    public static CutPlan PlanCut(Random rnd, int opCount)
    {
        var settle = rnd.Next(3) == 0;
        return new(rnd.Next(1, opCount + 1), settle, rnd.Next(), settle ? 0 : rnd.Next(0, 4));
    }
}
