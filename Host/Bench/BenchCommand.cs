using System.CommandLine;
using System.Diagnostics;
using DmActors.Host.CommandLine;

namespace DmActors.Host.Bench;

/// <summary>
/// `dmactors bench`: the same workloads on the file directly and through mapped devices, interleaved in short
/// rounds (direct, linear, striped, stack3, then again, with the order rotated each round) so that drift of a
/// shared machine hits every path alike. Progress goes to stderr; the table (or --json) to stdout.
/// </summary>
public static class BenchCommand
{
    public static Command Build()
    {
        var definition = new BenchOptions.Definition();
        var command = definition.Command();
        command.SetAction(r => RunAsync(definition.From(r), r.InvocationConfiguration.Output, r.InvocationConfiguration.Error));
        return command;
    }

    private static async Task<int> RunAsync(BenchOptions options, TextWriter stdout, TextWriter stderr)
    {
        var workloads = Workload.All.Where(w => options.Only == null || w.Name.Contains(options.Only, StringComparison.Ordinal)).ToList();
        if (workloads.Count == 0) { stderr.WriteLine($"dmactors bench: --only: no workload matches '{options.Only}'"); return CommandRunner.BadUsage; }
        var clock = Stopwatch.StartNew();
        void Progress(string line) => stderr.WriteLine($"[{clock.Elapsed.TotalSeconds,6:F1}s] {line}");

        var results = new BenchResults();
        IReadOnlyList<ResyncBench.Result>? resync = null;
        await using (var rig = await BenchRig.StartAsync(options.Dir, options.FileBytes, options.IoThreads, Progress, options.Mirror))
        {
            Progress($"{workloads.Count} workloads x {options.Rounds} rounds x {options.Seconds:0.##} s slices, {rig.IoThreads} IO threads per path");
            await WarmUpAsync(rig, Math.Min(0.3, options.Seconds));
            for (var round = 0; round < options.Rounds; round++)
            {
                foreach (var w in workloads)
                {
                    var paths = rig.PathsFor(w).ToList();
                    for (var k = 0; k < paths.Count; k++)
                    {
                        var path = paths[(k + round) % paths.Count];
                        rig.SyncFiles();
                        var sample = await path.RunAsync(w, options.Seconds, round * 1000 + k);
                        results.Add(w, path.Name, round, sample);
                        Progress($"round {round + 1}/{options.Rounds} {w.Name,-28} {path.Name,-14} " +
                                 (w.ReportsBandwidth ? $"{sample.MBps,8:F1} MB/s" : $"{BenchReport.Si(sample.Iops),8} IOPS") +
                                 $"  p50 {sample.Latency.Percentile(50) / 1000,7:F1} us" + (sample.Errors > 0 ? $"  ERRORS {sample.Errors}" : ""));
                    }
                }
            }
            if (options.Mirror) resync = await ResyncBench.RunAsync(rig, options.FileBytes, Progress);
        }

        var rows = results.Summaries();
        var peak = Process.GetCurrentProcess().PeakWorkingSet64;
        if (options.Json) stdout.WriteLine(BenchReport.Json(rows, options, peak, clock.Elapsed.TotalSeconds, resync));
        else
        {
            stdout.Write(BenchReport.Table(rows, workloads));
            if (resync != null) stdout.Write(ResyncBench.Table(resync));
            stdout.WriteLine($"peak working set {peak >> 20} MiB, total {clock.Elapsed.TotalSeconds:F0} s, {Environment.ProcessorCount} cores");
        }
        return rows.Any(r => r.Errors > 0) ? CommandRunner.Failure : CommandRunner.Success;
    }

    /// <summary>JIT and first-touch costs out of the timed slices.</summary>
    private static async Task WarmUpAsync(BenchRig rig, double seconds)
    {
        foreach (var w in new[] { Workload.All[1], Workload.All[3] })
            foreach (var p in rig.PathsFor(w))
                await p.RunAsync(w, seconds, -1);
    }
}
