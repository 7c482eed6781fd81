using System.CommandLine;
using DmActors.Host.CommandLine;

namespace DmActors.Host.Crash;

/// <summary>
/// `dmactors crashtest`: the crash-consistency checker. Exit status 0 when no violation was found, 1 otherwise,
/// 2 on bad arguments.
/// </summary>
public static class CrashTestCommand
{
    /// <summary>The options of one command line, and the command that reads them.</summary>
    private sealed class Options
    {
        public readonly Option<int?> Seed = Number("--seed", "The seed every trial's workload and cuts derive from (default 1).", int.MinValue);
        public readonly Option<int?> Trials = Number("--trials", "Trials to run (default 100).", 1);
        public readonly Option<int?> CutsPerTrial = Number("--cuts-per-trial", "Power cuts per trial (default 10).", 1);
        public readonly Option<CrashModes?> Mode = ToolOption.Value<CrashModes>("--mode", "ordered|flush|both",
            "Barrier mode of the devices under test (default both).",
            t => t switch { "ordered" => CrashModes.Ordered, "flush" => CrashModes.Flush, "both" => CrashModes.Both, _ => null },
            t => $"--mode: '{t}' is not ordered, flush or both");
        public readonly Option<bool> LyingFlush = ToolOption.Flag("--lying-flush", "The disks' caches acknowledge flushes without writing anything (shows the checker failing).");
        public readonly Option<bool> Tear = ToolOption.Flag("--tear", "A cut lets a random part of the unflushed writes land first.");
        public readonly Option<bool> Quiet = ToolOption.Flag("--quiet", "No line per trial or progress: the summary and failures only.");
        public readonly Option<int?> Ops = Number("--ops", "Operations per trial (default 40).", 1);
        public readonly Option<int?> DiskSectors = ToolOption.Value<int>("--disk-sectors", "N", "Sectors per disk, a multiple of 256 (default 512).",
            t => int.TryParse(t, out var n) && n >= 256 && n % 256 == 0 ? n : null,
            t => $"--disk-sectors: '{t}' is not a multiple of 256 (at least 256)");
        public readonly Option<int?> Trial = Number("--trial", "Run only trial N of the seed (to reproduce a report).", 1);
        public readonly Option<bool> Jitter = ToolOption.Flag("--jitter", "About half the IO to the disks completes later, on a pool thread, so flushes overlap the IO above them in more ways.");
        public readonly Option<int?> Batch = Number("--batch", "Most bios in one batch of the workload (default 8); the batches are waited for in turn.", 1);

        public Command Command() =>
            new("crashtest",
                "Crash-consistency checker: seeded workloads on write-back-cache disks, power cuts, restart, and a check " +
                "that every write promised durable reads back. A failure prints the command line that reproduces it.")
            { Seed, Trials, CutsPerTrial, Mode, LyingFlush, Tear, Quiet, Ops, DiskSectors, Trial, Jitter, Batch };

        public CrashOptions From(ParseResult r)
        {
            var d = new CrashOptions();
            return d with
            {
                Seed = r.GetValue(Seed) ?? d.Seed, Trials = r.GetValue(Trials) ?? d.Trials,
                CutsPerTrial = r.GetValue(CutsPerTrial) ?? d.CutsPerTrial, Modes = r.GetValue(Mode) ?? d.Modes,
                LyingFlush = r.GetValue(LyingFlush), Tear = r.GetValue(Tear), Quiet = r.GetValue(Quiet),
                OpsPerTrial = r.GetValue(Ops) ?? d.OpsPerTrial, DiskSectors = r.GetValue(DiskSectors) ?? d.DiskSectors,
                OnlyTrial = r.GetValue(Trial), Jitter = r.GetValue(Jitter), MaxBatch = r.GetValue(Batch) ?? d.MaxBatch,
            };
        }

        private static Option<int?> Number(string name, string description, int min) =>
            ToolOption.Int(name, "N", description, min, int.MaxValue, t => $"{name}: '{t}' is not a number >= {min}");
    }

    public static Command Build()
    {
        var o = new Options();
        var command = o.Command();
        command.SetAction(async r =>
        {
            var report = await CrashChecker.RunAsync(o.From(r), r.InvocationConfiguration.Output);
            return report.Violations == 0 ? CommandRunner.Success : CommandRunner.Failure;
        });
        return command;
    }

    /// <summary>The options of a command line (the arguments after `crashtest`); a bad one is an <see cref="ArgumentException"/> naming it.</summary>
    public static CrashOptions Parse(string[] args)
    {
        var o = new Options();
        return o.From(CommandRunner.ParseOrThrow(o.Command(), args));
    }
}
