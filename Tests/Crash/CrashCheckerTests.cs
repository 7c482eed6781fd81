using System.Text;
using DmActors.Host.Crash;
using Xunit;
using Xunit.Abstractions;

namespace DmActors.Tests.Crash;

/// <summary>
/// The crash-consistency checker, run in-process: power cuts across both barrier modes must never lose a durable
/// write; a disk whose flushes lie must be caught (with a shortest sequence that still reproduces); and a seed
/// must always give the same workload.
/// </summary>
public sealed class CrashCheckerTests(ITestOutputHelper output)
{
    private readonly TestLog _log = new(output);

    [Fact]
    public async Task A_thousand_power_cuts_in_both_barrier_modes_lose_no_durable_write()
    {
        var options = new CrashOptions(Seed: 20261124, Trials: 100, CutsPerTrial: 10, Modes: CrashModes.Both, Tear: true,
            OpsPerTrial: 24, Quiet: true);
        var report = await CrashChecker.RunAsync(options, _log);

        Assert.Equal(1000, report.Cuts);
        Assert.Equal(0, report.Violations);
        Assert.Equal(0, report.FailedCuts);
        Assert.Empty(report.Failures);
        Assert.True(report.WritesChecked > 1000, $"only {report.WritesChecked} durable writes were checked");
        var modes = CrashChecker.Plan(options).GroupBy(t => t.Mode).ToDictionary(g => g.Key, g => g.Sum(t => t.Cuts.Count));
        Assert.Equal(500, modes[BarrierMode.Ordered]);
        Assert.Equal(500, modes[BarrierMode.Flush]);
    }

    [Fact]
    public async Task Power_cuts_with_a_jittery_medium_lose_no_durable_write()
    {
        // The medium completes half its IO later on another thread: flushes overlap the IO above them in more ways.
        var options = new CrashOptions(Seed: 77, Trials: 20, CutsPerTrial: 10, Tear: true, Jitter: true, OpsPerTrial: 32, Quiet: true);
        var report = await CrashChecker.RunAsync(options, _log);

        Assert.Equal(200, report.Cuts);
        Assert.Equal(0, report.Violations);
        Assert.True(report.WritesChecked > 200, $"only {report.WritesChecked} durable writes were checked");
    }

    [Fact]
    public async Task Lying_flushes_are_caught_and_the_shortest_sequence_still_reproduces()
    {
        var options = new CrashOptions(Seed: 5, Trials: 4, CutsPerTrial: 4, LyingFlush: true, OpsPerTrial: 24);
        var report = await CrashChecker.RunAsync(options, _log);

        Assert.True(report.Violations > 0, "a disk whose flushes write nothing went unnoticed");
        Assert.InRange(report.FailedCuts, 1, report.Cuts);
        Assert.NotEmpty(report.Failures);
        var shortest = Assert.IsType<ShrunkCase>(report.Shortest);
        Assert.True(shortest.Ops.Count <= report.Failures[0].Ops.Count);
        Assert.Equal(shortest.Confirmations, shortest.Reproduced);
        Assert.Contains(shortest.Ops, op => op is CrashOp.Write);

        // Replayed on its own, in a fresh actor system, the reported sequence breaks the rule again.
        var system = CrashChecker.CreateSystem();
        try
        {
            var (verdict, error) = await CrashChecker.CutAsync(system, options, shortest.Mode, shortest.Stack, shortest.Ops, shortest.Plan);
            Assert.Null(error);
            Assert.NotEmpty(verdict!.Violations);
        }
        finally { await system.Terminate(); }

        // The same sequence on an honest disk keeps its promises.
        var honest = CrashChecker.CreateSystem();
        try
        {
            var (verdict, error) = await CrashChecker.CutAsync(honest, options with { LyingFlush = false }, shortest.Mode, shortest.Stack,
                shortest.Ops, shortest.Plan);
            Assert.Null(error);
            Assert.Empty(verdict!.Violations);
        }
        finally { await honest.Terminate(); }
    }

    [Fact]
    public async Task The_same_seed_gives_the_same_workload_and_result()
    {
        var options = new CrashOptions(Seed: 42, Trials: 6, CutsPerTrial: 5, OpsPerTrial: 24);
        Assert.Equal(Render(options), Render(options));
        Assert.NotEqual(Render(options), Render(options with { Seed = 43 }));
        // One trial alone is the same trial as within the whole run (how a report is reproduced).
        Assert.Equal(Render(options).Split('\n')[2], Render(options with { OnlyTrial = 3 }).Split('\n')[0]);

        var first = await CrashChecker.RunAsync(options, _log);
        var second = await CrashChecker.RunAsync(options, _log);
        Assert.Equal((first.Trials, first.Cuts, first.Violations), (second.Trials, second.Cuts, second.Violations));
        Assert.Equal(0, first.Violations);
    }

    [Fact]
    public void Command_line_options_are_parsed_and_bad_ones_named()
    {
        var o = CrashTestCommand.Parse(["--seed", "9", "--trials", "3", "--cuts-per-trial", "2", "--mode", "flush", "--lying-flush", "--tear", "--quiet"]);
        Assert.Equal(new CrashOptions(Seed: 9, Trials: 3, CutsPerTrial: 2, Modes: CrashModes.Flush, LyingFlush: true, Tear: true, Quiet: true), o);
        Assert.Contains("--mode", Assert.Throws<ArgumentException>(() => CrashTestCommand.Parse(["--mode", "sideways"])).Message);
        Assert.Contains("--trials", Assert.Throws<ArgumentException>(() => CrashTestCommand.Parse(["--trials", "0"])).Message);
        Assert.Contains("--bogus", Assert.Throws<ArgumentException>(() => CrashTestCommand.Parse(["--bogus"])).Message);

        // The reproduce line a report prints parses back to the same options.
        var full = o with { OpsPerTrial = 17, MaxBatch = 3, DiskSectors = 1024, OnlyTrial = 2, Jitter = true, Modes = CrashModes.Ordered };
        Assert.Equal(full with { Quiet = false }, CrashTestCommand.Parse(CrashChecker.Command(full).Split(' ').Skip(2).ToArray()));
    }

    private static string Render(CrashOptions o) => string.Join('\n', CrashChecker.Plan(o).Select(t =>
        $"{t.TrialSeed} {t.Mode} {t.Stack} {string.Join(',', t.Ops)} {string.Join(',', t.Cuts)}"));

    /// <summary>The checker's report, line by line, in the test output.</summary>
    private sealed class TestLog(ITestOutputHelper output) : TextWriter
    {
        private readonly StringBuilder _line = new();
        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            if (value != '\n') { _line.Append(value); return; }
            lock (output) output.WriteLine(_line.ToString().TrimEnd('\r'));
            _line.Clear();
        }
    }
}
