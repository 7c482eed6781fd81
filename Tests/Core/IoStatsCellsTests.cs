using System.Diagnostics;
using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>
/// IoStats keeps its counters in per-processor cells: bios counted on many threads at once (lanes on several
/// cores) sum to exactly what was counted, in every field and histogram bin, and busy time stays within wall time.
/// </summary>
public sealed class IoStatsCellsTests
{
    private static Bio Bio(BioOp op, long sectors) => new(op, 0, sectors, op == BioOp.Flush ? Memory<byte>.Empty : new byte[sectors << DmActors.Bio.SectorShift], ActorRefs.Nobody);

    [Fact]
    public void Counts_from_many_threads_at_once_sum_exactly()
    {
        var stats = new IoStats([TimeSpan.FromMilliseconds(500), TimeSpan.FromDays(1)]); // bin 0: reads and flushes; 1: the writes (said to take 1 s); 2: none
        const int Threads = 4, PerThread = 8_000; // short: other tests run beside it on two cores
        var read = Bio(BioOp.Read, 8);
        var write = Bio(BioOp.Write, 2);
        var flush = Bio(BioOp.Flush, 0);
        var wall = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            for (var i = 0; i < PerThread; i++)
            {
                var (bio, status) = (i % 4) switch { 0 or 1 => (read, BioStatus.Ok), 2 => (write, BioStatus.Ok), _ => (flush, BioStatus.IoError) };
                var started = stats.Start(bio, out var regions);
                if (i % 64 == 0) Thread.Yield(); // move between cores mid-bio now and then
                stats.Done(bio, status, bio == write ? started - Stopwatch.Frequency : started, barrier: i % 8 == 3, regions: regions);
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        wall.Stop();

        var c = stats.Read();
        const long N = Threads * PerThread;
        Assert.Equal((N / 2, N / 2 * 8), (c.Reads, c.ReadSectors));
        Assert.Equal((N / 4, N / 4 * 2), (c.Writes, c.WriteSectors));
        Assert.Equal(N / 4, c.Flushes);
        Assert.Equal(N / 4, c.Errors);
        Assert.Equal(N / 8, c.Barriers);
        Assert.Equal(0L, c.InFlight);
        Assert.Equal(new[] { N / 4 * 3, N / 4, 0L }, c.Histogram);
        Assert.InRange(c.WriteMs, N / 4 * 1000, N / 4 * 1000 + 60_000);
        Assert.InRange(c.IoMs, 0, (long)wall.Elapsed.TotalMilliseconds + 1);
    }

    [Fact]
    public void Busy_time_counts_while_a_bio_is_in_flight_and_not_after()
    {
        var stats = new IoStats();
        var bio = Bio(BioOp.Read, 8);
        var started = stats.Start(bio, out var regions);
        Thread.Sleep(60);
        var during = stats.Read();
        Assert.Equal(1L, during.InFlight);
        Assert.InRange(during.IoMs, 50, 1000); // in flight: counted up to now
        stats.Done(bio, BioStatus.Ok, started, regions: regions);
        var after = stats.Read().IoMs;
        Thread.Sleep(30);
        Assert.Equal(after, stats.Read().IoMs); // idle: no more busy time
        Assert.InRange(after, 50, 1000);
    }

    [Fact]
    public void Latency_summed_over_years_shows_in_milliseconds_without_overflow()
    {
        var stats = new IoStats();
        var bio = Bio(BioOp.Read, 8);
        const long Seconds = 20_000_000; // 231 days for one bio: ticks * 1000 passes long.MaxValue at 1 GHz
        var started = stats.Start(bio, out var regions);
        stats.Done(bio, BioStatus.Ok, started - Seconds * Stopwatch.Frequency, regions: regions);
        var c = stats.Read();
        Assert.InRange(c.ReadMs, Seconds * 1000, Seconds * 1000 + 1000);
        Assert.Equal(c.ReadMs, c.WeightedMs);
    }
}
