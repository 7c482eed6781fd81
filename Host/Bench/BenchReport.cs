using System.Globalization;
using System.Text;
using System.Text.Json;

namespace DmActors.Host.Bench;

/// <summary>The bench's output: a table for people, JSON for machines.</summary>
public static class BenchReport
{
    public static string Table(IReadOnlyList<BenchResults.PathSummary> rows, IReadOnlyList<Workload> workloads)
    {
        var sb = new StringBuilder();
        sb.AppendLine($"{"workload",-28} {"path",-14} {"IOPS",9} {"MB/s",8} {"dev/dir",8} {"p50 us",9} {"p99 us",9} {"B/io",8} {"sync/io",8} {"dev/ord",8}");
        foreach (var w in workloads)
        {
            var first = true;
            foreach (var r in rows.Where(r => r.Workload == w.Name))
            {
                sb.Append(Inv($"{(first ? w.Name : ""),-28} {r.Path,-14} {Si(r.Iops),9} {r.MBps,8:F1} "));
                sb.Append(Inv($"{(r.Ratio is { } x ? x.ToString("F2", CultureInfo.InvariantCulture) : "-"),8} {r.P50Us,9:F1} {r.P99Us,9:F1} {r.AllocBytesPerIo,8:F0} {r.SyncsPerIo,8:F3} {(r.OrderedRatio is { } o ? o.ToString("F2", CultureInfo.InvariantCulture) : "-"),8}"));
                if (r.Errors > 0) sb.Append($"  ERRORS {r.Errors}");
                sb.AppendLine();
                first = false;
            }
        }
        sb.AppendLine("dev/dir = median over rounds of (device IOPS / direct IOPS in the same round); B/io = managed bytes allocated per IO, all threads;\nsync/io = fdatasync calls that reached the files per IO (direct: its own; devices: FileDisk.FlushesIssued);\n" +
            "dev/ord = the same against direct-ordered (barrier workloads: wait for the writes before, fdatasync, write, fdatasync).");
        return sb.ToString();
    }

    public static string Json(IReadOnlyList<BenchResults.PathSummary> rows, BenchOptions options, long peakWorkingSet, double totalSeconds,
        IReadOnlyList<ResyncBench.Result>? resync = null) =>
        JsonSerializer.Serialize(new
        {
            tool = "dmactors bench",
            cores = Environment.ProcessorCount,
            ioThreads = options.IoThreads,
            sliceSeconds = options.Seconds,
            rounds = options.Rounds,
            fileBytes = options.FileBytes,
            totalSeconds = Math.Round(totalSeconds, 1),
            peakWorkingSetBytes = peakWorkingSet,
            results = rows.Select(r => new
            {
                workload = r.Workload, path = r.Path, queueDepth = r.QueueDepth, blockBytes = r.BlockBytes, rounds = r.Rounds,
                iops = Math.Round(r.Iops, 1), mbps = Math.Round(r.MBps, 2), ratio = r.Ratio is { } x ? Math.Round(x, 3) : (double?)null,
                orderedRatio = r.OrderedRatio is { } o ? Math.Round(o, 3) : (double?)null,
                p50us = Math.Round(r.P50Us, 1), p99us = Math.Round(r.P99Us, 1), allocBytesPerIo = Math.Round(r.AllocBytesPerIo, 1),
                ops = r.Ops, errors = r.Errors, syncsPerIo = Math.Round(r.SyncsPerIo, 4),
            }),
            resync = resync?.Select(r => new
            {
                @case = r.Case, writtenBytes = r.WrittenBytes, copiedBytes = r.CopiedBytes, volumeBytes = r.VolumeBytes,
                seconds = Math.Round(r.Seconds, 3), mbps = Math.Round(r.MBps, 1),
            }),
        }, new JsonSerializerOptions { WriteIndented = true });

    /// <summary>12345 -> "12.3k".</summary>
    public static string Si(double v) => v switch
    {
        >= 1e6 => Inv($"{v / 1e6:F2}M"),
        >= 1e4 => Inv($"{v / 1e3:F1}k"),
        _ => Inv($"{v:F0}"),
    };

    private static string Inv(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
