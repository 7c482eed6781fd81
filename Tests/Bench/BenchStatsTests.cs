using DmActors.Host.Bench;
using DmActors.Host.CommandLine;
using Xunit;

namespace DmActors.Tests.Bench;

/// <summary>The bench's statistics and report code (no timing here: the bench itself prints figures).</summary>
public class BenchStatsTests
{
    [Fact]
    public void Histogram_percentiles_are_within_bucket_precision()
    {
        var h = new LatencyHistogram();
        for (var us = 1; us <= 1000; us++) h.Record(us * 1000L);
        Assert.Equal(1000, h.Count);
        Assert.InRange(h.Percentile(50), 500_000 * 0.94, 500_000 * 1.06);
        Assert.InRange(h.Percentile(99), 990_000 * 0.94, 990_000 * 1.06);
        Assert.InRange(h.Percentile(100), 1_000_000 * 0.94, 1_000_000 * 1.06);
        Assert.InRange(h.Percentile(0), 1000 * 0.94, 1000 * 1.06);
    }

    [Fact]
    public void Histogram_small_values_are_exact_and_empty_is_zero()
    {
        var h = new LatencyHistogram();
        Assert.Equal(0, h.Percentile(50));
        h.Record(3); h.Record(3); h.Record(7);
        Assert.Equal(3, h.Percentile(50));
        Assert.Equal(7, h.Percentile(99));
    }

    [Fact]
    public void Histogram_buckets_are_contiguous_and_ordered()
    {
        var last = -1;
        for (long v = 0; v < 1 << 20; v += 1 + v / 64)
        {
            var i = LatencyHistogram.Index(v);
            Assert.True(i >= last, $"index of {v} went backwards");
            Assert.True(i - last <= 1 || last < 0, $"index of {v} skipped buckets");
            Assert.InRange(LatencyHistogram.Midpoint(i), v * 0.94 - 1, v * 1.07 + 1);
            last = i;
        }
        Assert.InRange(LatencyHistogram.Index(long.MaxValue), 0, 64 * 16);
    }

    [Fact]
    public void Histogram_add_merges_counts()
    {
        var a = new LatencyHistogram();
        var b = new LatencyHistogram();
        for (var i = 0; i < 90; i++) a.Record(1000);
        for (var i = 0; i < 10; i++) b.Record(1_000_000);
        a.Add(b);
        Assert.Equal(100, a.Count);
        Assert.InRange(a.Percentile(50), 940, 1060);
        Assert.InRange(a.Percentile(95), 940_000, 1_060_000);
    }

    [Fact]
    public void Median_of_odd_even_and_empty()
    {
        Assert.Equal(3, BenchResults.Median([5, 1, 3]));
        Assert.Equal(2.5, BenchResults.Median([4, 1, 3, 2]));
        Assert.Null(BenchResults.MedianOrNull([]));
    }

    [Fact]
    public void Ratio_is_the_median_of_per_round_ratios()
    {
        var w = Workload.All[0];
        var r = new BenchResults();
        // Round 1: the machine is slow for both paths; the paired ratio stays 0.5.
        r.Add(w, "direct", 0, Sample(1000));
        r.Add(w, "linear", 0, Sample(500));
        r.Add(w, "direct", 1, Sample(100));
        r.Add(w, "linear", 1, Sample(50));
        r.Add(w, "direct", 2, Sample(1000));
        r.Add(w, "linear", 2, Sample(600));
        var rows = r.Summaries();
        var linear = rows.Single(x => x.Path == "linear");
        var direct = rows.Single(x => x.Path == "direct");
        Assert.Equal(0.5, linear.Ratio);
        Assert.Null(direct.Ratio);
        Assert.Equal(1000, direct.Iops);
        Assert.Equal(500, linear.Iops);
        Assert.Equal(3, linear.Rounds);
        Assert.Equal(1150, linear.Ops);
        Assert.Equal(8, linear.AllocBytesPerIo);
        Assert.Equal(0.5, linear.SyncsPerIo, 3);
    }

    [Fact]
    public void Report_table_and_json_carry_every_row()
    {
        var r = new BenchResults();
        r.Add(Workload.All[4], "direct", 0, Sample(2000, block: 1 << 20));
        r.Add(Workload.All[4], "stack3", 0, Sample(1500, block: 1 << 20));
        var rows = r.Summaries();
        var table = BenchReport.Table(rows, [Workload.All[4]]);
        Assert.Contains("seqread-1m-qd4", table);
        Assert.Contains("stack3", table);
        Assert.Contains("0.75", table);
        var options = BenchOptions.Parse(["--quick", "--json"]);
        using var json = System.Text.Json.JsonDocument.Parse(BenchReport.Json(rows, options, 123, 4.5));
        var results = json.RootElement.GetProperty("results");
        Assert.Equal(2, results.GetArrayLength());
        Assert.Equal(0.75, results[1].GetProperty("ratio").GetDouble());
        Assert.Equal(2097.15, results[0].GetProperty("mbps").GetDouble());
        Assert.Equal(123, json.RootElement.GetProperty("peakWorkingSetBytes").GetInt64());
    }

    [Fact]
    public void Options_parse_defaults_quick_and_values()
    {
        var d = BenchOptions.Parse([]);
        Assert.False(d.Quick);
        Assert.Equal(1024L << 20, d.FileBytes);
        var q = BenchOptions.Parse(["bench", "--quick", "--json", "--dir", "/tmp/x", "--seconds", "0.5", "--rounds", "5"]);
        Assert.True(q.Quick);
        Assert.True(q.Json);
        Assert.Equal("/tmp/x", q.Dir);
        Assert.Equal(0.5, q.Seconds);
        Assert.Equal(5, q.Rounds);
        Assert.Equal(256L << 20, q.FileBytes);
        Assert.Equal(BenchOptions.DefaultIoThreads, q.IoThreads);
        Assert.Equal(2, BenchOptions.Parse(["--io-threads", "2"]).IoThreads);
    }

    [Fact]
    public async Task Options_help_is_its_own_outcome()
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        Assert.Equal(0, await CommandRunner.RunAsync(CommandRunner.WithHelp(BenchCommand.Build()), ["--help"], stdout, stderr));
        Assert.Contains("--quick", stdout.ToString());
    }

    [Theory]
    [InlineData("--seconds", "abc", "--seconds")]
    [InlineData("--seconds", "0", "--seconds")]
    [InlineData("--rounds", "0", "--rounds")]
    [InlineData("--size-mib", "1", "--size-mib")]
    [InlineData("--io-threads", "0", "--io-threads")]
    [InlineData("--frobnicate", null, "--frobnicate")]
    [InlineData("--dir", null, "--dir needs a value")]
    public void Options_reject_bad_input_naming_it(string arg, string? value, string expected)
    {
        var args = value == null ? new[] { arg } : new[] { arg, value };
        var e = Assert.Throws<ArgumentException>(() => BenchOptions.Parse(args));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void Io_pattern_stays_in_range_aligned_and_marks_every_nth_write()
    {
        var w = new Workload("t", true, 4096, false, 4, BarrierEvery: 8);
        var p = new IoPattern(w, 1 << 20, 1);
        var seen = new HashSet<long>();
        for (var i = 0; i < 1000; i++)
        {
            var off = p.NextOffset(i % 4);
            Assert.InRange(off, 0, (1 << 20) - 4096);
            Assert.Equal(0, off % 4096);
            seen.Add(off);
        }
        Assert.True(seen.Count > 100, "random offsets should spread over the file");
        var barriers = Enumerable.Range(0, 64).Count(_ => p.NextIsBarrier());
        Assert.Equal(8, barriers);
        var seq = new IoPattern(new Workload("s", false, 1 << 20, true, 4), 4 << 20, 1);
        Assert.Equal(new long[] { 0, 1 << 20, 2 << 20, 3 << 20, 0 }, Enumerable.Range(0, 5).Select(_ => seq.NextOffset(0)).ToArray());
    }

    private static RunSample Sample(long ops, int block = 4096) =>
        new(ops, ops * block, 1.0, ops * 8, new LatencyHistogram(), 0, Syncs: ops / 2);
}
