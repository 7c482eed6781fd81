using System.Diagnostics;

namespace DmActors.Host.ClusterTest;

/// <summary>A fault step that broke a rule.</summary>
public sealed record ClusterFailure(ClusterTrial Trial, StepOutcome Outcome, IReadOnlyList<int> Steps);

/// <param name="Violations">Sectors and leg differences that broke the rule, plus recoveries that never finished.</param>
public sealed record ClusterReport(int Trials, int Faults, int Kills, long WritesChecked, long Violations, long BioErrors,
    IReadOnlyList<ClusterFailure> Failures, IReadOnlyList<int>? Shortest, string? Error)
{
    public string Summary(int seed) => $"clustertest: {Trials} trials, {Faults} faults ({Kills} node kills), {WritesChecked} writes checked, {Violations} violations (seed {seed})";
}

/// <summary>
/// `dmactors clustertest`: starts the cluster, runs each seeded trial (<see cref="TrialRun"/>), prints a line per
/// fault, the failures with the command line that reproduces them, the shortest fault sequence found that still
/// fails, and the summary.
/// </summary>
public static class ClusterTester
{
    public static async Task<ClusterReport> RunAsync(ClusterTestOptions o, TextWriter log)
    {
        if (o.JournalServer is not { Length: > 0 })
            throw new ClusterTestException($"a PostgreSQL server is needed: --journal-pg CONNSTR or ${ClusterTestOptions.JournalVariable}");
        var root = o.Dir ?? Path.Combine(Path.GetTempPath(), $"dmactors-clustertest-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}");
        Directory.CreateDirectory(root);
        var clock = Stopwatch.StartNew();
        int trials = 0, faults = 0, kills = 0;
        long written = 0, violations = 0, bioErrors = 0;
        var failures = new List<ClusterFailure>();
        IReadOnlyList<int>? shortest = null;
        string? error = null;
        log.WriteLine($"clustertest: seed={o.Seed} trials={o.Trials} faults-per-trial={o.FaultsPerTrial} nodes={o.Nodes} " +
                      $"faults={string.Join(',', o.FaultKindsUsed.Select(FaultKinds.Name))}{(o.AckAfterFirstLeg ? " ack-after-first-leg=yes (broken on purpose)" : "")}");
        var slot = 0;
        try
        {
            await using var rig = await ClusterRig.StartAsync(o, root, log);
            var names = rig.Nodes.Select(n => n.Name).ToList();
            foreach (var trial in ClusterTestPlan.Plan(o, names))
            {
                trials++;
                log.WriteLine($"trial {trial.Number}/{o.Trials} (trial seed {trial.TrialSeed}): {trial.Describe(o.LegDelayMs)}");
                var steps = o.Steps ?? Enumerable.Range(1, trial.Faults.Count).ToList();
                var (outcomes, failed) = await RunTrialAsync(rig, o, trial, slot++, $"ct{trial.Number}", steps, log);
                foreach (var s in outcomes)
                {
                    faults++;
                    kills += s.Kills;
                    written += s.Checked;
                    violations += s.Violations.Count;
                }
                bioErrors += outcomes.LastOrDefault()?.BioErrors ?? 0; // counted over the trial so far
                if (failed is { } f) failures.Add(new ClusterFailure(trial, f, steps.TakeWhile(x => x <= f.Fault.Step).ToList()));
                if (!o.Quiet) log.WriteLine($"progress: {trials} trials, {faults} faults ({kills} node kills), {written} writes checked, {violations} violations, {clock.Elapsed.TotalSeconds:0}s");
                if (failed != null) break; // the cluster may be in any state now: report this one
            }
            foreach (var f in failures) Print(log, o, f);
            if (failures.Count > 0 && o.Shrink) shortest = await ShrinkAsync(rig, o, failures[0], slot, log);
        }
        catch (ClusterTestException e)
        {
            error = e.Message;
            log.WriteLine($"clustertest: error: {e.Message}");
        }
        catch (Exception e)
        {
            error = e.ToString();
            log.WriteLine($"clustertest: internal error: {e}");
        }
        finally
        {
            if (!o.Keep && error == null && failures.Count == 0) TryDelete(root);
            else log.WriteLine($"clustertest: node directories and their serve.log kept in {root}");
        }
        var report = new ClusterReport(trials, faults, kills, written, violations, bioErrors, failures, shortest, error);
        if (bioErrors > 0) log.WriteLine($"note: {bioErrors} bio answers were errors (during faults; no durability promise was made for them)");
        log.WriteLine($"{report.Summary(o.Seed)} in {clock.Elapsed.TotalSeconds:0}s");
        return report;
    }

    /// <summary>Runs the given steps of a trial; stops at the first step that broke a rule and returns it.</summary>
    private static async Task<(List<StepOutcome>, StepOutcome?)> RunTrialAsync(ClusterRig rig, ClusterTestOptions o, ClusterTrial trial,
        int slot, string volume, IReadOnlyList<int> steps, TextWriter log)
    {
        var run = new TrialRun(rig, o, trial, slot, volume);
        var outcomes = new List<StepOutcome>();
        await run.CreateAsync();
        foreach (var step in steps)
        {
            var f = trial.Faults[step - 1];
            var s = await run.StepAsync(f);
            outcomes.Add(s);
            if (!o.Quiet || s.Violations.Count > 0)
                log.WriteLine($"  fault {step}/{trial.Faults.Count}: {s.Action} ({f}): {s.Checked} writes checked, {s.Violations.Count} violations, " +
                              $"{s.BioErrors} bio errors so far, {s.Took.TotalSeconds:0.0}s");
            if (s.Violations.Count > 0) return (outcomes, s);
        }
        await run.RemoveAsync();
        return (outcomes, null);
    }

    /// <summary>
    /// Replays the failing trial with fewer faults on fresh volumes: the failing fault alone first. The shortest
    /// sequence that fails again is reported (else the recorded one).
    /// </summary>
    private static async Task<IReadOnlyList<int>> ShrinkAsync(ClusterRig rig, ClusterTestOptions o, ClusterFailure failure, int slot, TextWriter log)
    {
        var recorded = failure.Steps;
        var shortest = recorded;
        if (recorded.Count > 1)
        {
            var alone = new[] { recorded[^1] };
            log.WriteLine($"shrinking: trial {failure.Trial.Number} with fault {alone[0]} alone");
            try
            {
                var (_, failed) = await RunTrialAsync(rig, o, failure.Trial, slot, $"ct{failure.Trial.Number}r", alone, log);
                if (failed != null)
                {
                    shortest = alone;
                    foreach (var v in failed.Violations.Take(3)) log.WriteLine($"  {v}");
                }
            }
            catch (ClusterTestException e) { log.WriteLine($"shrinking stopped: {e.Message}"); }
        }
        log.WriteLine($"shortest reproducing sequence ({shortest.Count} of {recorded.Count} faults{(shortest == recorded ? ", as recorded" : ", reproduced")}), " +
                      $"trial {failure.Trial.Number}, {failure.Trial.Describe(o.LegDelayMs)}:");
        foreach (var step in shortest) log.WriteLine($"  fault {step}: {failure.Trial.Faults[step - 1]}, with phase {step}'s IO ({PhaseLength(failure.Trial, step)} ops)");
        log.WriteLine($"  reproduce: {Command(o with { OnlyTrial = failure.Trial.Number, Steps = shortest, Trials = Math.Max(o.Trials, failure.Trial.Number) })}");
        return shortest;
    }

    private static int PhaseLength(ClusterTrial t, int step) { var (a, b) = t.Phase(step); return b - a; }

    private static void Print(TextWriter log, ClusterTestOptions o, ClusterFailure f)
    {
        log.WriteLine($"VIOLATION seed={o.Seed} trial={f.Trial.Number} (trial seed {f.Trial.TrialSeed}) after fault {f.Outcome.Fault.Step}: " +
                      $"{f.Outcome.Action} ({f.Outcome.Fault}); {f.Trial.Describe(o.LegDelayMs)}");
        log.WriteLine($"  faults run: {string.Join("; ", f.Steps.Select(s => $"{s}: {f.Trial.Faults[s - 1]}"))}");
        log.WriteLine($"  reproduce: {Command(o with { OnlyTrial = f.Trial.Number, Steps = f.Steps })}");
        foreach (var v in f.Outcome.Violations.Take(8)) log.WriteLine($"  {v}");
        if (f.Outcome.Violations.Count > 8) log.WriteLine($"  ... {f.Outcome.Violations.Count - 8} more");
    }

    /// <summary>The command line that runs <paramref name="o"/> again (the journal server aside).</summary>
    public static string Command(ClusterTestOptions o)
    {
        var d = new ClusterTestOptions();
        var args = new List<string> { "dmactors clustertest", $"--seed {o.Seed}", $"--trials {o.Trials}", $"--faults-per-trial {o.FaultsPerTrial}" };
        if (o.Nodes != d.Nodes) args.Add($"--nodes {o.Nodes}");
        if (o.Faults != null) args.Add($"--faults {string.Join(',', o.Faults.Select(FaultKinds.Name))}");
        if (o.OpsPerFault != d.OpsPerFault) args.Add($"--ops {o.OpsPerFault}");
        if (o.VolumeSectors != d.VolumeSectors) args.Add($"--volume-sectors {o.VolumeSectors}");
        if (o.LegDelayMs != d.LegDelayMs) args.Add($"--leg-delay-ms {o.LegDelayMs}");
        if (o.OnlyTrial is { } t) args.Add($"--trial {t}");
        if (o.Steps is { } s) args.Add($"--steps {string.Join(',', s)}");
        if (o.AckAfterFirstLeg) args.Add("--ack-after-first-leg");
        return string.Join(' ', args);
    }

    private static void TryDelete(string root)
    {
        try { Directory.Delete(root, recursive: true); }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
