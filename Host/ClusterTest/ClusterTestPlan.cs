using DmActors.Host.Crash;

namespace DmActors.Host.ClusterTest;

/// <summary>The faults a trial draws from.</summary>
public enum FaultKind
{
    /// <summary>kill -9 of the volume's owner (which also holds the second leg at first), then a restart.</summary>
    KillOwner,
    /// <summary>kill -9 of a node holding a leg but not owning the volume (the owner if there is none), then a restart.</summary>
    KillLeg,
    /// <summary>kill -9 of the node holding the mirror's disk log (unless it owns the volume).</summary>
    KillLog,
    /// <summary>kill -9 of the owner, restart, resync, then kill -9 of a leg holder, restart: two in turn.</summary>
    KillTwo,
    /// <summary>SIGSTOP of the owner for a while (long enough to be downed, or not), SIGCONT; restart if it shut down.</summary>
    StopOwner,
    /// <summary>`dmactors cluster move` of the volume to another node, under IO.</summary>
    Move,
    /// <summary>`dmsetup load` of the same table and `resume`: the mirror is rebuilt over its log, under IO.</summary>
    Reload,
}

public static class FaultKinds
{
    public static readonly FaultKind[] All = Enum.GetValues<FaultKind>();
    public static readonly FaultKind[] Default = [FaultKind.KillOwner, FaultKind.KillLeg, FaultKind.KillLog, FaultKind.KillTwo, FaultKind.StopOwner, FaultKind.Move];

    public static string Name(FaultKind k) => k switch
    {
        FaultKind.KillOwner => "kill-owner", FaultKind.KillLeg => "kill-leg", FaultKind.KillLog => "kill-log",
        FaultKind.KillTwo => "kill-two", FaultKind.StopOwner => "stop-owner", FaultKind.Move => "move", _ => "reload",
    };

    public static FaultKind? Parse(string name) => All.Cast<FaultKind?>().FirstOrDefault(k => Name(k!.Value) == name);

    /// <summary>Kinds that kill a node (counted as node kills in the summary: KillTwo counts two).</summary>
    public static int Kills(FaultKind k) => k switch { FaultKind.KillTwo => 2, FaultKind.KillOwner or FaultKind.KillLeg or FaultKind.KillLog => 1, _ => 0 };
}

/// <param name="JournalServer">A PostgreSQL server (Npgsql connection string) on which a fresh database is made.</param>
/// <param name="OnlyTrial">Run only this trial of the seed (to reproduce a report).</param>
/// <param name="Steps">Run only these faults (1-based) of each trial, with their phases' IO (to reproduce a report).</param>
public sealed record ClusterTestOptions(int Seed = 1, int Trials = 2, int FaultsPerTrial = 3, int Nodes = 3,
    string? JournalServer = null, bool AckAfterFirstLeg = false, IReadOnlyList<FaultKind>? Faults = null,
    int OpsPerFault = 48, int VolumeSectors = 8192, int LegDelayMs = 100, int? OnlyTrial = null,
    IReadOnlyList<int>? Steps = null, bool Shrink = true, bool Quiet = false, string? Dir = null, bool Keep = false,
    TimeSpan? RecoverTimeout = null)
{
    public const string JournalVariable = "DMACTORS_CLUSTERTEST_PG";
    public const int RegionSectors = 512;
    /// <summary>The start of each disk: the mirror's disk log (whichever trial's), before the trials' slots.</summary>
    public const int LogSectors = 2048;

    public IReadOnlyList<FaultKind> FaultKindsUsed => Faults ?? FaultKinds.Default;
    public TimeSpan Recover => RecoverTimeout ?? TimeSpan.FromSeconds(180);
    /// <summary>Each run of a trial (and each shrink replay) gets a fresh slot of every disk, all zeros.</summary>
    public int Slots => Math.Max(Trials, OnlyTrial ?? 0) + (Shrink ? 2 : 0);
    public long DiskMiB => ((long)LogSectors + (long)Slots * VolumeSectors + 2047) / 2048 + 1;
}

/// <summary>One fault of a trial, with its IO phase: how many ops of the phase go out before the fault strikes.</summary>
public sealed record ClusterFault(int Step, FaultKind Kind, int FaultAfter, int Target, bool LongStop)
{
    public override string ToString() => $"{FaultKinds.Name(Kind)}{(Kind == FaultKind.StopOwner ? LongStop ? " (long)" : " (short)" : "")} after op {FaultAfter}";
}

/// <summary>
/// A trial, fully determined by the seed: which node owns the volume (and holds its second leg), which holds the
/// first leg (behind a `delay` of writes, a slow link), which holds the disk log; the faults and each fault's IO.
/// </summary>
public sealed record ClusterTrial(int Number, int TrialSeed, string Owner, string Leg1Node, string LogNode,
    IReadOnlyList<ClusterFault> Faults, IReadOnlyList<CrashOp> Ops, IReadOnlyList<int> PhaseStarts)
{
    /// <summary>The ops of fault <paramref name="step"/>'s phase (1-based): [start, end).</summary>
    public (int Start, int End) Phase(int step) => (PhaseStarts[step - 1], step < PhaseStarts.Count ? PhaseStarts[step] : Ops.Count);

    public string Describe(int legDelayMs) =>
        $"owner {Owner} (leg 2), leg 1 on {Leg1Node}{(legDelayMs > 0 ? $" behind a {legDelayMs} ms write delay" : "")}, disk log on {LogNode}";
}

public static class ClusterTestPlan
{
    public static IEnumerable<ClusterTrial> Plan(ClusterTestOptions o, IReadOnlyList<string> nodes)
    {
        var master = new Random(o.Seed);
        for (var t = 1; t <= o.Trials || (o.OnlyTrial is { } only && t <= only); t++)
        {
            var trialSeed = master.Next();
            if (o.OnlyTrial is { } wanted && wanted != t) continue;
            var rnd = new Random(trialSeed);
            var roles = nodes.OrderBy(_ => rnd.Next()).ToArray();
            var ops = new List<CrashOp>();
            var starts = new List<int>();
            var faults = new List<ClusterFault>();
            var nextId = 1;
            for (var f = 1; f <= o.FaultsPerTrial; f++)
            {
                starts.Add(ops.Count);
                var phase = Phase(rnd, o.VolumeSectors, o.OpsPerFault, ref nextId);
                var kinds = o.FaultKindsUsed;
                // The fault strikes in the second half of its phase's IO, right after an op was sent.
                faults.Add(new ClusterFault(f, kinds[rnd.Next(kinds.Count)], rnd.Next(phase.Count / 2, phase.Count), rnd.Next(), rnd.Next(2) == 0));
                ops.AddRange(phase);
            }
            yield return new ClusterTrial(t, trialSeed, roles[0], roles[1], roles[2 % roles.Length], faults, ops, starts);
        }
    }

    /// <summary>Batches of writes (many sizes, a quarter FUA) and NBD flushes, each batch waited for.</summary>
    private static List<CrashOp> Phase(Random rnd, long sectors, int length, ref int nextId)
    {
        var ops = new List<CrashOp>();
        while (ops.Count < length)
        {
            for (var i = rnd.Next(1, 9); i > 0; i--)
            {
                if (rnd.Next(100) < 10) { ops.Add(new CrashOp.ClientFlush()); continue; }
                var len = rnd.Next(4) == 0 ? rnd.Next(1, 257) : rnd.Next(1, 17);
                var kind = rnd.Next(4) == 0 ? WriteKind.Fua : WriteKind.Plain;
                ops.Add(new CrashOp.Write(nextId++, rnd.NextInt64(0, sectors - len + 1), len, kind));
            }
            ops.Add(new CrashOp.Wait());
        }
        return ops;
    }
}
