using System.Diagnostics;
using Akka.Actor;

namespace DmActors.Host.Crash;

public enum CrashModes { Ordered, Flush, Both }

/// <param name="Modes">Both: odd trials run in ordered mode, even trials in flush mode.</param>
/// <param name="OnlyTrial">Run only this trial of the seed (to reproduce a report).</param>
public sealed record CrashOptions(int Seed = 1, int Trials = 100, int CutsPerTrial = 10, CrashModes Modes = CrashModes.Both,
    bool LyingFlush = false, bool Tear = false, bool Quiet = false, long DiskSectors = 512, int OpsPerTrial = 40,
    int? OnlyTrial = null, int ShrinkBudget = 300, int ReportedCuts = 3, TimeSpan? Timeout = null, TimeSpan? ShrinkTime = null, bool Jitter = false, int MaxBatch = 8)
{
    public TimeSpan IoTimeout => Timeout ?? TimeSpan.FromSeconds(30);
    /// <summary>Shrinking stops after this long (a hang costs a whole timeout per replay).</summary>
    public TimeSpan ShrinkTimeLimit => ShrinkTime ?? TimeSpan.FromSeconds(60);
}

/// <summary>One trial, fully determined by the seed: its mode, stack, workload and cut points.</summary>
public sealed record CrashTrial(int Number, int TrialSeed, BarrierMode Mode, CrashStack Stack, IReadOnlyList<CrashOp> Ops, IReadOnlyList<CutPlan> Cuts);

/// <summary>A cut that broke the rule (or the engine failed in it).</summary>
public sealed record FailedCut(CrashTrial Trial, int Cut, CutPlan Plan, IReadOnlyList<CrashOp> Ops, string? EngineError,
    IReadOnlyList<DurabilityOracle.Violation> Violations)
{
    public int Count => Violations.Count + (EngineError != null ? 1 : 0);
}

/// <summary>The shortest op sequence found that still breaks the rule, and how often it did on re-runs.</summary>
public sealed record ShrunkCase(BarrierMode Mode, CrashStack Stack, IReadOnlyList<CrashOp> Ops, CutPlan Plan, FailedCut From,
    int Replays, int Reproduced, int Confirmations);

/// <param name="Violations">Sectors that broke the rule, plus engine errors (a hang, a bio answered twice).</param>
public sealed record CrashReport(int Trials, int Cuts, long WritesChecked, long Violations, long BioErrors, int FailedCuts,
    IReadOnlyList<FailedCut> Failures, ShrunkCase? Shortest, TimeSpan Elapsed)
{
    public string Summary => $"trials={Trials}, cuts={Cuts}, writes checked={WritesChecked}, violations={Violations}";
}

/// <summary>
/// The crash-consistency checker: for each seeded trial, replays its workload against a fresh engine up to each
/// cut point, cuts the power, restarts over what survived and checks every sector against the durability rule
/// (<see cref="DurabilityOracle"/>). The first failing cut is shrunk to a shortest reproducing sequence.
/// </summary>
public static class CrashChecker
{
    public static IEnumerable<CrashTrial> Plan(CrashOptions o)
    {
        var master = new Random(o.Seed);
        for (var t = 1; t <= o.Trials; t++)
        {
            var trialSeed = master.Next();
            if (o.OnlyTrial is { } only && only != t) continue;
            var rnd = new Random(trialSeed);
            var mode = o.Modes switch
            {
                CrashModes.Ordered => BarrierMode.Ordered,
                CrashModes.Flush => BarrierMode.Flush,
                _ => t % 2 == 1 ? BarrierMode.Ordered : BarrierMode.Flush,
            };
            var stack = CrashStack.Pick(rnd, o.DiskSectors);
            var ops = CrashWorkload.Generate(rnd, stack.Sectors, o.OpsPerTrial, o.MaxBatch);
            var cuts = Enumerable.Range(0, o.CutsPerTrial).Select(_ => CrashWorkload.PlanCut(rnd, ops.Count)).ToList();
            yield return new CrashTrial(t, trialSeed, mode, stack, ops, cuts);
        }
    }

    public static async Task<CrashReport> RunAsync(CrashOptions o, TextWriter log, ActorSystem? system = null)
    {
        if (o.DiskSectors < 256 || o.DiskSectors % 256 != 0) throw new ArgumentException("disk size must be a multiple of 256 sectors");
        var own = system == null;
        system ??= CreateSystem();
        var clock = Stopwatch.StartNew();
        int trials = 0, cuts = 0, failedCuts = 0;
        long checkedWrites = 0, violations = 0, bioErrors = 0;
        var failures = new List<FailedCut>();
        try
        {
            log.WriteLine($"crashtest: seed={o.Seed} trials={o.Trials} cuts-per-trial={o.CutsPerTrial} mode={o.Modes.ToString().ToLowerInvariant()}" +
                          $" lying-flush={(o.LyingFlush ? "yes" : "no")} tear={(o.Tear ? "yes" : "no")}{(o.Jitter ? " jitter=yes" : "")}");
            foreach (var trial in Plan(o))
            {
                trials++;
                int trialChecked = 0, trialViolations = 0;
                for (var c = 0; c < trial.Cuts.Count; c++)
                {
                    var plan = trial.Cuts[c];
                    var prefix = trial.Ops.Take(plan.After).ToList();
                    var (verdict, error) = await CutAsync(system, o, trial.Mode, trial.Stack, prefix, plan);
                    cuts++;
                    trialChecked += verdict?.Promised ?? 0;
                    bioErrors += verdict?.BioErrors ?? 0;
                    var failed = new FailedCut(trial, c + 1, plan, prefix, error, verdict?.Violations ?? []);
                    if (failed.Count == 0) continue;
                    trialViolations += failed.Count;
                    failedCuts++;
                    if (failures.Count < o.ReportedCuts) failures.Add(failed);
                }
                checkedWrites += trialChecked;
                violations += trialViolations;
                // A line per trial for short runs (and for any trial that failed), else progress every 5%.
                var every = Math.Max(1, o.Trials / 20);
                if (!o.Quiet && o.Trials > 50 && trialViolations == 0 && trials % every == 0)
                    log.WriteLine($"progress: {trials} trials, {cuts} cuts, {checkedWrites} writes checked, {violations} violations");
                else if (!o.Quiet && (o.Trials <= 50 || trialViolations > 0))
                    log.WriteLine($"trial {trial.Number}/{o.Trials} (trial seed {trial.TrialSeed}) {Mode(trial.Mode)}, {trial.Stack.Describe()}, " +
                                  $"{trial.Ops.Count} ops: {trial.Cuts.Count} cuts, {trialChecked} writes checked, {trialViolations} violations");
            }
            foreach (var f in failures) Print(log, o, f);
            ShrunkCase? shortest = null;
            if (failures.Count > 0)
            {
                shortest = await ShrinkAsync(system, o, failures[0]);
                Print(log, shortest);
            }
            var report = new CrashReport(trials, cuts, checkedWrites, violations, bioErrors, failedCuts, failures, shortest, clock.Elapsed);
            if (bioErrors > 0) log.WriteLine($"note: {bioErrors} bio(s) failed before a cut (no durability promise was made for them)");
            log.WriteLine($"{report.Summary} ({(violations > 0 ? $"sectors or engine errors, in {failedCuts} failed cuts; " : "")}{clock.Elapsed.TotalSeconds:0.0}s)");
            return report;
        }
        finally
        {
            if (own) await system.Terminate();
        }
    }

    public static ActorSystem CreateSystem() => ActorSystem.Create("crashtest", Akka.Configuration.ConfigurationFactory.ParseString(
        "akka.loglevel = WARNING\nakka.log-dead-letters = off\nakka.log-dead-letters-during-shutdown = off")
        .WithFallback(Configuration.HostConfig.IoDispatcherSection()));

    /// <summary>Runs one cut and checks it: the verdict, or the engine error that prevented a check.</summary>
    public static async Task<(DurabilityOracle.Verdict? Verdict, string? Error)> CutAsync(ActorSystem system, CrashOptions o,
        BarrierMode mode, CrashStack stack, IReadOnlyList<CrashOp> ops, CutPlan plan)
    {
        var settings = new CrashEngine.Settings(system, mode, o.LyingFlush, o.Tear, o.IoTimeout, o.Jitter);
        var outcome = await CrashEngine.RunAsync(settings, stack, ops, plan);
        if (outcome.Image == null) return (null, outcome.EngineError);
        return (DurabilityOracle.Check(ops, outcome.Ledger, mode, outcome.Image), null);
    }

    /// <summary>Fails the same way: a violation stays a violation, an engine error stays an engine error.</summary>
    private static bool FailsLike(FailedCut failed, (DurabilityOracle.Verdict? Verdict, string? Error) r) =>
        failed.EngineError != null ? r.Error != null : r.Error == null && r.Verdict!.Violations.Count > 0;

    /// <summary>
    /// Greedy shrinking: remove chunks of ops (halving the chunk size down to single ops) while the cut still breaks
    /// the rule, within a budget of replays. Write ids stay, so the shrunk sequence writes the same data.
    /// </summary>
    public static async Task<ShrunkCase> ShrinkAsync(ActorSystem system, CrashOptions o, FailedCut failed)
    {
        var mode = failed.Trial.Mode;
        var stack = failed.Trial.Stack;
        var current = failed.Ops.ToList();
        // A settled cut does not depend on how far the IO in flight got: prefer it when it fails too.
        var plan = failed.Plan;
        var replays = 1;
        var clock = Stopwatch.StartNew();
        bool More() => replays < o.ShrinkBudget && clock.Elapsed < o.ShrinkTimeLimit;
        if (!plan.Settle && FailsLike(failed, await CutAsync(system, o, mode, stack, current, plan with { Settle = true, Answers = 0 })))
            plan = plan with { Settle = true, Answers = 0 };
        for (var chunk = Math.Max(1, current.Count / 2); chunk >= 1 && More(); chunk /= 2)
        {
            for (var start = 0; start < current.Count && More();)
            {
                var candidate = current.Take(start).Concat(current.Skip(start + chunk)).ToList();
                replays++;
                if (candidate.Count > 0 && FailsLike(failed, await CutAsync(system, o, mode, stack, candidate, plan with { After = candidate.Count })))
                    current = candidate;
                else start += chunk;
            }
        }
        plan = plan with { After = current.Count };
        const int confirmations = 3;
        var reproduced = 0;
        (DurabilityOracle.Verdict? Verdict, string? Error) last = default;
        for (var i = 0; i < confirmations; i++)
        {
            var r = await CutAsync(system, o, mode, stack, current, plan);
            if (FailsLike(failed, r)) { reproduced++; last = r; }
        }
        var replay = new FailedCut(failed.Trial, failed.Cut, plan, current, last.Error, last.Verdict?.Violations ?? []);
        return new ShrunkCase(mode, stack, current, plan, replay, replays, reproduced, confirmations);
    }

    private static string Mode(BarrierMode m) => m == BarrierMode.Ordered ? "ordered" : "flush";

    private static void Print(TextWriter log, CrashOptions o, FailedCut f)
    {
        log.WriteLine($"VIOLATION seed={o.Seed} trial={f.Trial.Number} (trial seed {f.Trial.TrialSeed}) cut={f.Cut}: {f.Plan}" +
                      $"{(o.Tear ? "" : " (no tear)")}, {Mode(f.Trial.Mode)} mode, {f.Trial.Stack.Describe()}");
        log.WriteLine($"  reproduce: {Command(o with { OnlyTrial = f.Trial.Number })}");
        if (f.EngineError != null) log.WriteLine($"  engine error: {f.EngineError}");
        foreach (var v in f.Violations.Take(5)) log.WriteLine($"  {v}");
        if (f.Violations.Count > 5) log.WriteLine($"  ... {f.Violations.Count - 5} more sector(s)");
    }

    /// <summary>The command line that runs <paramref name="o"/> again.</summary>
    public static string Command(CrashOptions o)
    {
        var d = new CrashOptions();
        var args = new List<string> { "dmactors crashtest", $"--seed {o.Seed}", $"--trials {o.Trials}", $"--cuts-per-trial {o.CutsPerTrial}" };
        if (o.Modes != d.Modes) args.Add($"--mode {o.Modes.ToString().ToLowerInvariant()}");
        if (o.OpsPerTrial != d.OpsPerTrial) args.Add($"--ops {o.OpsPerTrial}");
        if (o.MaxBatch != d.MaxBatch) args.Add($"--batch {o.MaxBatch}");
        if (o.DiskSectors != d.DiskSectors) args.Add($"--disk-sectors {o.DiskSectors}");
        if (o.OnlyTrial is { } t) args.Add($"--trial {t}");
        if (o.LyingFlush) args.Add("--lying-flush");
        if (o.Tear) args.Add("--tear");
        if (o.Jitter) args.Add("--jitter");
        return string.Join(' ', args);
    }

    private static void Print(TextWriter log, ShrunkCase s)
    {
        log.WriteLine($"shortest reproducing sequence ({s.Ops.Count} of {s.From.Trial.Ops.Count} ops, {s.Replays} shrink replays; " +
                      $"reproduced {s.Reproduced}/{s.Confirmations} re-runs), {Mode(s.Mode)} mode, {s.Stack.Describe()}:");
        log.WriteLine($"  table lower: {s.Stack.Table(Layer.Lower, 0).Replace("\n", " | ")}");
        log.WriteLine($"  table top:   {s.Stack.Table(Layer.Top, 0).Replace("\n", " | ")}");
        for (var i = 0; i < s.Ops.Count; i++) log.WriteLine($"  {i,3}: {s.Ops[i]}");
        log.WriteLine($"  then: power cut ({s.Plan})");
        if (s.From.EngineError != null) log.WriteLine($"  engine error: {s.From.EngineError}");
        foreach (var v in s.From.Violations.Take(3)) log.WriteLine($"  {v}");
        if (s.From.Violations.Count > 3) log.WriteLine($"  ... {s.From.Violations.Count - 3} more sector(s)");
    }
}
