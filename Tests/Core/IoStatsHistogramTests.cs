using System.Diagnostics;
using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>The latency histogram (dmstats --bounds) and its bounds' syntax.</summary>
public sealed class IoStatsHistogramTests
{
    private static long Ago(TimeSpan t) => Stopwatch.GetTimestamp() - (long)(t.TotalSeconds * Stopwatch.Frequency);

    [Fact]
    public void Each_latency_lands_in_the_bin_its_bounds_say()
    {
        Assert.True(HistogramBounds.TryParse("1ms,5ms,1s", out var bounds, out _));
        var stats = new IoStats(bounds);
        var read = new Bio(BioOp.Read, 0, 8, new byte[4096], ActorRefs.Nobody);
        var warm = new IoStats(bounds); // compiled before the timed calls: the 0 ms one must not take the JIT's time
        warm.Done(read, BioStatus.Ok, warm.Start());
        // Starts set in the past: each took at least that long, and far less than the next bound more.
        foreach (var took in new[] { 0.0, 2, 3, 7, 20, 2500 })
        {
            stats.Start();
            stats.Done(read, BioStatus.Ok, Ago(TimeSpan.FromMilliseconds(took)));
        }
        var c = stats.Read();
        Assert.Equal(bounds, c.Bounds);
        Assert.Equal(new long[] { 1, 2, 2, 1 }, c.Histogram); // <1ms, 1-5ms, 5ms-1s, >=1s
        Assert.Equal(6L, c.Reads);
        Assert.True(c.ReadMs >= 2532, $"read time {c.ReadMs} ms covers the latencies");
    }

    [Theory]
    [InlineData("1ms,5ms,10ms", new[] { 10_000L, 50_000, 100_000 })]
    [InlineData("500us,1s", new[] { 5_000L, 10_000_000 })]
    [InlineData("100,2000ns", new[] { 1L, 20 })]   // plain numbers are nanoseconds, as in dmstats
    [InlineData("", new long[0])]
    public void Bounds_parse_as_dmstats_reads_them(string text, long[] ticks)
    {
        Assert.True(HistogramBounds.TryParse(text, out var bounds, out var error), error);
        Assert.Equal(ticks, bounds.Select(b => b.Ticks));
    }

    [Theory]
    [InlineData("1ms,x", "Invalid histogram bound: \"x\"")]
    [InlineData("5ms,1ms", "Histogram bounds must be in increasing order: \"5ms,1ms\"")]
    [InlineData("0ms", "Invalid histogram bound: \"0ms\"")]
    [InlineData("1ms,-5ms", "Invalid histogram bound: \"-5ms\"")]
    public void Bad_bounds_are_refused_naming_the_problem(string text, string error)
    {
        Assert.False(HistogramBounds.TryParse(text, out _, out var why));
        Assert.Equal(error, why);
    }

    [Theory]
    [InlineData(10_000L, "1ms")]
    [InlineData(5_000L, "500us")]
    [InlineData(10_000_000L, "1s")]
    [InlineData(1L, "100ns")]
    public void Bounds_print_in_whole_units(long ticks, string shown) =>
        Assert.Equal(shown, HistogramBounds.Format(TimeSpan.FromTicks(ticks)));

    [Fact]
    public void Devices_take_their_bounds_from_the_configuration()
    {
        using var system = ActorSystem.Create("bounds", Support.Engine.AkkaConfig("dmactors.stats.bounds = \"1ms,10ms\""));
        Assert.Equal(new[] { TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(10) }, IoStatsBoard.Get(system).Bounds);
    }
}
