namespace DmActors.Host.Bench;

/// <summary>
/// Every timed slice of a bench, by workload and path and round. Summaries use medians over rounds; the
/// device/direct ratio is the median of the per-round ratios, so drift between rounds cancels out.
/// </summary>
public sealed class BenchResults
{
    private readonly List<(Workload Workload, string Path, int Round, RunSample Sample)> _samples = new();

    public void Add(Workload w, string path, int round, RunSample sample) => _samples.Add((w, path, round, sample));

    public sealed record PathSummary(string Workload, string Path, int QueueDepth, int BlockBytes, int Rounds,
        double Iops, double MBps, double? Ratio, double P50Us, double P99Us, double AllocBytesPerIo, long Ops, int Errors, double SyncsPerIo = 0,
        double? OrderedRatio = null);

    /// <param name="orderedPath">The second baseline of barrier workloads (the ordered barrier's steps, direct).</param>
    public IReadOnlyList<PathSummary> Summaries(string directPath = "direct", string orderedPath = "direct-ordered")
    {
        var result = new List<PathSummary>();
        foreach (var byWorkload in _samples.GroupBy(s => s.Workload))
        {
            var w = byWorkload.Key;
            var direct = byWorkload.Where(s => s.Path == directPath).ToDictionary(s => s.Round, s => s.Sample);
            var ordered = byWorkload.Where(s => s.Path == orderedPath).ToDictionary(s => s.Round, s => s.Sample);
            double? RatioTo(IGrouping<string, (Workload, string, int Round, RunSample Sample)> path, Dictionary<int, RunSample> baseline) =>
                MedianOrNull(path.Where(s => baseline.TryGetValue(s.Round, out var d) && d.Iops > 0)
                    .Select(s => s.Sample.Iops / baseline[s.Round].Iops));
            foreach (var byPath in byWorkload.GroupBy(s => s.Path))
            {
                var samples = byPath.Select(s => s.Sample).ToList();
                var hist = new LatencyHistogram();
                foreach (var s in samples) hist.Add(s.Latency);
                double? ratio = byPath.Key == directPath ? null : RatioTo(byPath, direct);
                double? orderedRatio = byPath.Key is var k && (k == directPath || k == orderedPath) ? null : RatioTo(byPath, ordered);
                var ops = samples.Sum(s => s.Ops);
                result.Add(new PathSummary(w.Name, byPath.Key, w.QueueDepth, w.BlockBytes, samples.Count,
                    Median(samples.Select(s => s.Iops)), Median(samples.Select(s => s.MBps)), ratio,
                    hist.Percentile(50) / 1000, hist.Percentile(99) / 1000,
                    ops > 0 ? (double)samples.Sum(s => s.AllocatedBytes) / ops : 0, ops, samples.Sum(s => s.Errors),
                    ops > 0 ? (double)samples.Sum(s => s.Syncs) / ops : 0, orderedRatio));
            }
        }
        return result;
    }

    public static double Median(IEnumerable<double> values) => MedianOrNull(values) ?? 0;

    public static double? MedianOrNull(IEnumerable<double> values)
    {
        var v = values.OrderBy(x => x).ToArray();
        if (v.Length == 0) return null;
        return v.Length % 2 == 1 ? v[v.Length / 2] : (v[v.Length / 2 - 1] + v[v.Length / 2]) / 2;
    }
}
