using System.CommandLine;
using DmActors.Host.CommandLine;

namespace DmActors.Host.ClusterTest;

/// <summary>
/// `dmactors clustertest`: the cluster sibling of crashtest. Exit status 0 when no violation was found, 1 on a
/// violation or when the test could not run, 2 on bad arguments.
/// </summary>
public static class ClusterTestCommand
{
    private sealed class Options
    {
        public readonly Option<int?> Seed = Number("--seed", "The seed every trial's roles, workload and faults derive from (default 1).", int.MinValue);
        public readonly Option<int?> Trials = Number("--trials", "Trials to run, each on a fresh mirrored volume (default 2).", 1);
        public readonly Option<int?> FaultsPerTrial = Number("--faults-per-trial", "Faults per trial, each with its IO phase and checks (default 3).", 1);
        public readonly Option<int?> Nodes = Number("--nodes", "Host processes in the cluster (default 3, at least 3).", 3);
        public readonly Option<string?> Journal = ToolOption.Text("--journal-pg", "CONNSTR",
            $"A PostgreSQL server (Npgsql connection string) for the shared journal; a fresh database is made on it (default ${ClusterTestOptions.JournalVariable}, else $DMACTORS_TEST_PG).");
        public readonly Option<string?> Faults = ToolOption.Text("--faults", "LIST",
            $"Fault kinds to draw from, comma-separated: {string.Join(", ", FaultKinds.All.Select(FaultKinds.Name))} (default all but reload).");
        public readonly Option<int?> Ops = Number("--ops", "Ops (writes of 1-256 sectors, a quarter FUA; NBD flushes; waits) per fault's IO phase (default 48).", 4);
        public readonly Option<int?> VolumeSectors = ToolOption.Value<int>("--volume-sectors", "N", "Sectors of each trial's mirrored volume, a multiple of 512 (default 8192).",
            t => int.TryParse(t, out var n) && n >= 512 && n % 512 == 0 ? n : null, t => $"--volume-sectors: '{t}' is not a multiple of 512 (at least 512)");
        public readonly Option<int?> LegDelay = Number("--leg-delay-ms", "Write delay in front of the first leg, a slow link (default 100).", 0);
        public readonly Option<int?> Trial = Number("--trial", "Run only trial N of the seed (to reproduce a report).", 1);
        public readonly Option<string?> Steps = ToolOption.Text("--steps", "LIST", "Run only these faults (1-based, comma-separated) of each trial, with their IO phases (to reproduce a report).");
        public readonly Option<bool> AckAfterFirstLeg = ToolOption.Flag("--ack-after-first-leg",
            "Broken on purpose: the hosts' mirrors acknowledge a write once the first leg to answer has it (shows the checker failing).");
        public readonly Option<bool> NoShrink = ToolOption.Flag("--no-shrink", "Do not replay a failure with fewer faults.");
        public readonly Option<bool> Quiet = ToolOption.Flag("--quiet", "No line per fault: trials, failures and the summary only.");
        public readonly Option<string?> Dir = ToolOption.Text("--dir", "DIR", "Where the nodes' directories go (default a new temp directory, deleted after a clean run).");
        public readonly Option<bool> Keep = ToolOption.Flag("--keep", "Keep the nodes' directories (data, disks, serve.log) after a clean run too.");

        public Command Command() =>
            new("clustertest",
                "Cluster fault checker: seeded workloads over NBD on mirrored volumes of a cluster of host processes; kill -9, SIGSTOP " +
                "and moves of nodes; restart; checks that every write promised durable reads back and every leg holds the same bytes.")
            { Seed, Trials, FaultsPerTrial, Nodes, Journal, Faults, Ops, VolumeSectors, LegDelay, Trial, Steps, AckAfterFirstLeg, NoShrink, Quiet, Dir, Keep };

        public ClusterTestOptions From(ParseResult r)
        {
            var d = new ClusterTestOptions();
            return d with
            {
                Seed = r.GetValue(Seed) ?? d.Seed, Trials = r.GetValue(Trials) ?? d.Trials,
                FaultsPerTrial = r.GetValue(FaultsPerTrial) ?? d.FaultsPerTrial, Nodes = r.GetValue(Nodes) ?? d.Nodes,
                JournalServer = r.GetValue(Journal) ?? Env(ClusterTestOptions.JournalVariable) ?? Env("DMACTORS_TEST_PG"),
                Faults = r.GetValue(Faults) is { } f ? ParseFaults(f) : null,
                OpsPerFault = r.GetValue(Ops) ?? d.OpsPerFault, VolumeSectors = r.GetValue(VolumeSectors) ?? d.VolumeSectors,
                LegDelayMs = r.GetValue(LegDelay) ?? d.LegDelayMs, OnlyTrial = r.GetValue(Trial),
                Steps = r.GetValue(Steps) is { } s ? ParseSteps(s) : null,
                AckAfterFirstLeg = r.GetValue(AckAfterFirstLeg), Shrink = !r.GetValue(NoShrink), Quiet = r.GetValue(Quiet),
                Dir = r.GetValue(Dir), Keep = r.GetValue(Keep),
            };
        }

        private static string? Env(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } v ? v : null;

        private static IReadOnlyList<FaultKind> ParseFaults(string text) =>
            text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => FaultKinds.Parse(t) ?? throw new ArgumentException($"--faults: '{t}' is not one of {string.Join(", ", FaultKinds.All.Select(FaultKinds.Name))}"))
                .Distinct().ToList() is { Count: > 0 } list ? list : throw new ArgumentException("--faults: no fault kind given");

        private static IReadOnlyList<int> ParseSteps(string text) =>
            text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(t => int.TryParse(t, out var n) && n >= 1 ? n : throw new ArgumentException($"--steps: '{t}' is not a fault number >= 1"))
                .Distinct().Order().ToList() is { Count: > 0 } list ? list : throw new ArgumentException("--steps: no fault number given");

        private static Option<int?> Number(string name, string description, int min) =>
            ToolOption.Int(name, "N", description, min, int.MaxValue, t => $"{name}: '{t}' is not a number >= {min}");
    }

    public static Command Build()
    {
        var o = new Options();
        var command = o.Command();
        command.SetAction(async r =>
        {
            var output = r.InvocationConfiguration.Output;
            ClusterTestOptions options;
            try { options = Check(o.From(r)); }
            catch (ArgumentException e)
            {
                r.InvocationConfiguration.Error.WriteLine($"dmactors clustertest: {e.Message}");
                return CommandRunner.BadUsage;
            }
            try
            {
                var report = await ClusterTester.RunAsync(options, output);
                return report.Violations == 0 && report.Error == null ? CommandRunner.Success : CommandRunner.Failure;
            }
            catch (ClusterTestException e)
            {
                r.InvocationConfiguration.Error.WriteLine($"dmactors clustertest: {e.Message}");
                return CommandRunner.Failure;
            }
        });
        return command;
    }

    private static ClusterTestOptions Check(ClusterTestOptions o)
    {
        if (o.Steps is { } s && s.Any(x => x > o.FaultsPerTrial)) throw new ArgumentException($"--steps: a trial has {o.FaultsPerTrial} faults");
        return o;
    }
}
