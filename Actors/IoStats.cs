using System.Diagnostics;

namespace DmActors;

/// <summary>
/// One device's IO counters, as /proc/diskstats keeps them (Documentation/admin-guide/iostats.rst), plus barriers,
/// errors and a latency histogram (dmstats --bounds). The device counts a bio when it starts it and when it answers
/// it to its submitter; anyone may read the counters at any time from any thread (a scrape, a report), so every
/// field is updated with Interlocked: no lock and no allocation per bio, in per-processor cells (below).
/// Times are kept in Stopwatch ticks and shown in milliseconds, as diskstats does.
/// </summary>
public sealed class IoStats
{
    /// <summary>The diskstats groups (op_stat_group): a write-zeroes is a write, an empty flush a flush.</summary>
    public enum Group { Read, Write, Discard, Flush }

    // The counters live in per-processor cells, as the kernel's per-cpu part_stat: the lanes of one device count on
    // several cores at once, and shared counters would bounce their cache line between the cores on every bio.
    // A cell is a run of longs in one array, each on its own cache lines; a reader sums the cells.
    private const int Ios = 0, Sectors = 4, Ticks = 8, InFlightAt = 12, BarriersAt = 13, ErrorsAt = 14, BucketsAt = 15;
    private const int Line = 8; // longs in a cache line: a cell is whole lines, plus one of gap (the array need not be aligned)
    private static readonly int CellMask = CellsFor(Math.Max(Environment.ProcessorCount, HighestCpu() + 1)) - 1;
    private readonly long[] _cells;
    private readonly int _stride;
    private readonly long[] _boundTicks;
    private readonly long _since;
    private long _ioJiffies, _stamp; // io_ticks in jiffies, as the kernel keeps it; the jiffy of the last update
    private readonly object _ticksGate = new();

    /// <summary>The clock io_ticks counts in (HZ = 1000): the busy time is updated at most once a jiffy, not per bio.</summary>
    private static readonly long Jiffy = Math.Max(1, Stopwatch.Frequency / 1000);

    /// <param name="bounds">Upper bounds of the histogram bins, ascending; one more bin holds everything above the last.</param>
    public IoStats(IReadOnlyList<TimeSpan>? bounds = null)
    {
        Bounds = bounds?.ToArray() ?? [];
        _boundTicks = Bounds.Select(b => (long)(b.Ticks * (double)Stopwatch.Frequency / TimeSpan.TicksPerSecond)).ToArray();
        _stride = (BucketsAt + Bounds.Count + 1 + Line - 1) / Line * Line + Line;
        _cells = new long[(CellMask + 2) * _stride]; // one stride before the first cell: padding from the array's header
        _since = Stopwatch.GetTimestamp();
        _stamp = _since / Jiffy;
    }

    /// <summary>Cells for <paramref name="cpus"/> processors: a power of two, at most 8 (memory per device stays small).</summary>
    private static int CellsFor(int cpus)
    {
        var n = 1;
        while (n < cpus && n < 8) n <<= 1;
        return n;
    }

    /// <summary>
    /// The highest processor number the OS may run a thread on (the end of /sys/devices/system/cpu/online, e.g.
    /// "0,2-5"): under a cpuset, ProcessorCount counts fewer processors than their numbers reach, and cells by that
    /// count would put processors 0 and 2 of a two-processor set in one cell. -1 where the file does not exist.
    /// </summary>
    private static int HighestCpu()
    {
        try
        {
            var last = File.ReadAllText("/sys/devices/system/cpu/online").Trim().Split(',', '-')[^1];
            return int.TryParse(last, out var n) ? n : -1;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return -1; }
    }

    /// <summary>This thread's cell (its processor's; two threads that share one still count right: Interlocked).</summary>
    private int Cell() => ((Thread.GetCurrentProcessorId() & CellMask) + 1) * _stride;

    private long Sum(int field)
    {
        long sum = 0;
        for (var c = _stride; c < _cells.Length; c += _stride) sum += Interlocked.Read(ref _cells[c + field]);
        return sum;
    }

    public IReadOnlyList<TimeSpan> Bounds { get; }

    /// <summary>
    /// Which group a bio counts in, or null for one that diskstats does not count: a block-status query moves
    /// no data.
    /// </summary>
    public static Group? GroupOf(Bio bio) => bio.Op switch
    {
        BioOp.Read => Group.Read,
        BioOp.Write or BioOp.WriteZeroes => Group.Write,
        BioOp.Discard => Group.Discard,
        BioOp.Flush => Group.Flush,
        _ => null,
    };

    private StatsRegion[] _regions = [];

    /// <summary>
    /// The device's other statistics regions (dmstats create), not this whole-device one: an immutable array that
    /// only the device actor replaces, whole, so a bio reads it once without a lock.
    /// </summary>
    public StatsRegion[] Regions { get => Volatile.Read(ref _regions); set => Volatile.Write(ref _regions, value); }

    /// <summary>A bio starts (bio_start_io_acct): returns its start time, to give back to <see cref="Done"/>.</summary>
    public long Start()
    {
        var now = Stopwatch.GetTimestamp();
        StartAt(now);
        return now;
    }

    /// <summary>
    /// A bio starts, in this region and in each other region it overlaps; <paramref name="regions"/> is the set it
    /// started in, to give back to <see cref="Done"/> (its end counts where its start did, whatever changed since).
    /// </summary>
    public long Start(Bio bio, out StatsRegion[] regions)
    {
        var now = Start();
        regions = Regions;
        for (var k = 0; k < regions.Length; k++)
            if (regions[k].Overlap(bio) > 0) regions[k].Stats.StartAt(now);
        return now;
    }

    private void StartAt(long now)
    {
        UpdateIoTicks(now, end: false);
        Interlocked.Increment(ref _cells[Cell() + InFlightAt]);
    }

    /// <summary>A started bio is answered to its submitter (bio_end_io_acct), errors included.</summary>
    /// <param name="barrier">It ran as a barrier (ordered mode), whatever its flags.</param>
    /// <param name="regions">The other regions it started in: each counts the part of it inside the region.</param>
    public void Done(Bio bio, BioStatus status, long started, bool barrier = false, StatsRegion[]? regions = null)
    {
        var now = Stopwatch.GetTimestamp();
        barrier |= bio.IsBarrier;
        var group = GroupOf(bio);
        Count(now, started, status, barrier, group, bio.Sectors);
        if (regions == null) return;
        for (var k = 0; k < regions.Length; k++)
            if (regions[k].Overlap(bio) is var part and > 0) regions[k].Stats.Count(now, started, status, barrier, group, part);
    }

    private void Count(long now, long started, BioStatus status, bool barrier, Group? group, long sectors)
    {
        var took = Math.Max(0, now - started);
        UpdateIoTicks(now, end: true);
        var c = Cell();
        Interlocked.Decrement(ref _cells[c + InFlightAt]);
        if (status != BioStatus.Ok) Interlocked.Increment(ref _cells[c + ErrorsAt]);
        if (barrier) Interlocked.Increment(ref _cells[c + BarriersAt]);
        if (group is not { } g) return;
        var i = (int)g;
        Interlocked.Increment(ref _cells[c + Ios + i]);
        if (g != Group.Flush) Interlocked.Add(ref _cells[c + Sectors + i], sectors);
        Interlocked.Add(ref _cells[c + Ticks + i], took);
        var bin = 0;
        while (bin < _boundTicks.Length && took >= _boundTicks[bin]) bin++;
        Interlocked.Increment(ref _cells[c + BucketsAt + bin]);
    }

    /// <summary>A started bio goes back to wait (pushed back by a noflush suspend): it is started again later.</summary>
    public void Abandon(Bio? bio = null, StatsRegion[]? regions = null)
    {
        var now = Stopwatch.GetTimestamp();
        AbandonAt(now);
        if (bio == null || regions == null) return;
        for (var k = 0; k < regions.Length; k++)
            if (regions[k].Overlap(bio) > 0) regions[k].Stats.AbandonAt(now);
    }

    private void AbandonAt(long now)
    {
        UpdateIoTicks(now, end: true);
        Interlocked.Decrement(ref _cells[Cell() + InFlightAt]);
    }

    /// <summary>
    /// update_io_ticks: the jiffies since the last update count as busy when IO was in flight during them. Once a
    /// jiffy at most, by whichever bio comes first in it, so the lanes do not contend for the stamp on every bio.
    /// </summary>
    private void UpdateIoTicks(long now, bool end)
    {
        var jiffies = now / Jiffy;
        if (jiffies <= Volatile.Read(ref _stamp)) return;
        // The stamp and the busy time change together, under a lock that is taken once a jiffy at most, so a
        // reader never sees the one moved without the other (which counted busy time twice for a moment).
        lock (_ticksGate)
        {
            var stamp = _stamp;
            if (jiffies <= stamp) return;
            if (end || Sum(InFlightAt) > 0) _ioJiffies += jiffies - stamp;
            Volatile.Write(ref _stamp, jiffies);
        }
    }

    /// <summary>The counters now, in diskstats' units (sectors, milliseconds).</summary>
    public IoCounters Read()
    {
        var now = Stopwatch.GetTimestamp();
        var inFlight = Sum(InFlightAt); // exact at rest; see IoCounters.InFlight
        // io_ticks as the kernel shows it: the busy time up to now, if IO is in flight.
        long stamp, ioJiffies;
        lock (_ticksGate) (stamp, ioJiffies) = (_stamp, _ioJiffies);
        var jiffies = now / Jiffy;
        var busy = (ioJiffies + (inFlight > 0 && jiffies > stamp ? jiffies - stamp : 0)) * Jiffy;
        long Get(int field, Group g) => Sum(field + (int)g);
        var ticks = new[] { Get(Ticks, Group.Read), Get(Ticks, Group.Write), Get(Ticks, Group.Discard), Get(Ticks, Group.Flush) };
        var buckets = new long[Bounds.Count + 1];
        for (var i = 0; i < buckets.Length; i++) buckets[i] = Sum(BucketsAt + i);
        return new IoCounters(
            Get(Ios, Group.Read), 0, Get(Sectors, Group.Read), Ms(ticks[0]),
            Get(Ios, Group.Write), 0, Get(Sectors, Group.Write), Ms(ticks[1]),
            inFlight, Ms(busy), Ms(ticks.Sum()),
            Get(Ios, Group.Discard), 0, Get(Sectors, Group.Discard), Ms(ticks[2]),
            Get(Ios, Group.Flush), Ms(ticks[3]),
            Sum(BarriersAt), Sum(ErrorsAt),
            Bounds.ToArray(), buckets, TicksToTimeSpan(now - _since));
    }

    /// <summary>Ticks in whole milliseconds; whole seconds first, so a sum of years of latency does not overflow.</summary>
    private static long Ms(long ticks) => ticks / Stopwatch.Frequency * 1000 + ticks % Stopwatch.Frequency * 1000 / Stopwatch.Frequency;
    private static TimeSpan TicksToTimeSpan(long ticks) => TimeSpan.FromSeconds(ticks / (double)Stopwatch.Frequency);
}

/// <summary>
/// A device's counters at one moment, in /proc/diskstats' order and units (sectors; milliseconds), then barriers,
/// errors (bios answered with any error; they count in their group too), the histogram and the time counted over.
/// </summary>
/// <param name="Bounds">The histogram's bin upper bounds; <paramref name="Histogram"/> has one more bin, for the rest.</param>
/// <param name="Elapsed">Time since the device began counting (its start).</param>
public sealed record IoCounters(
    long Reads, long ReadsMerged, long ReadSectors, long ReadMs,
    long Writes, long WritesMerged, long WriteSectors, long WriteMs,
    long InFlight, long IoMs, long WeightedMs,
    long Discards, long DiscardsMerged, long DiscardSectors, long DiscardMs,
    long Flushes, long FlushMs,
    long Barriers, long Errors,
    TimeSpan[] Bounds, long[] Histogram, TimeSpan Elapsed) : IControlMessage
{
    /// <summary>
    /// Bios in flight. The cells are read one after another, so while IO runs a bio that started on one core and
    /// ended on another may make this -1 for a moment; at rest it is exact (a negative count there is a bio
    /// answered twice). <see cref="Queued"/> is what to show.
    /// </summary>
    public long InFlight { get; init; } = InFlight;

    /// <summary>Bios in flight as shown (diskstats, metrics): never below zero, as the kernel's part_in_flight.</summary>
    public long Queued => Math.Max(0, InFlight);

    /// <summary>The /proc/diskstats line's 17 fields after major, minor and name.</summary>
    public string DiskstatsFields => string.Join(' ', new[] { Reads, ReadsMerged, ReadSectors, ReadMs, Writes, WritesMerged,
        WriteSectors, WriteMs, Queued, IoMs, WeightedMs, Discards, DiscardsMerged, DiscardSectors, DiscardMs, Flushes, FlushMs });
}

/// <summary>`dmstats report`: a device's IO counters, answered with <see cref="DeviceIoStats"/>.</summary>
public sealed record GetIoStats(string Name) : IStatsCommand;
/// <param name="Counters">The whole-device region 0.</param>
/// <param name="Regions">The other regions (dmstats create), by id.</param>
public sealed record DeviceIoStats(string Name, int Major, int Minor, long Sectors, IoCounters Counters,
    RegionIoStats[]? Regions = null) : IControlMessage;
