using System.Globalization;

namespace DmActors.Host.Cli;

/// <summary>
/// `dmstats report`: dmstats(8)'s default report (name, region, area, then iostat's derived metrics), one line per
/// region over an interval: each device's whole-device region 0, then the regions `dmstats create` made, each
/// with one area 0. With --histogram, dmstats' histogram fields instead (bins and counts with their lower bounds).
/// `dmstats list`: the regions. Aligned as libdm's reports are (see <see cref="DmsetupReport"/>).
/// </summary>
public static class DmstatsFormat
{
    /// <summary>A region's counts over one interval: the difference of two readings, or a reading since the region started.</summary>
    /// <param name="Sectors">The region's (its one area's) size; <paramref name="Start"/> its first sector.</param>
    public sealed record Interval(string Name, long Sectors, IoCounters Counts, TimeSpan Length, long RegionId = 0, long Start = 0)
    {
        /// <param name="length">The interval asked for (as dmstats divides by its --interval), not the time measured between the readings.</param>
        public static Interval Since(DeviceIoStats before, DeviceIoStats now, TimeSpan length) =>
            new(now.Name, now.Sectors, Difference(before.Counters, now.Counters), length);

        /// <summary>Every region of a device: over the interval from <paramref name="before"/> (null: since each began).</summary>
        public static IEnumerable<Interval> Regions(DeviceIoStats? before, DeviceIoStats now, TimeSpan? length)
        {
            yield return before != null && length is { } l ? Since(before, now, l) : FromStart(now);
            foreach (var r in now.Regions ?? [])
            {
                // A region made between the readings (or deleted and made again) counts since it began.
                var then = before?.Regions?.FirstOrDefault(p => p.Id == r.Id && p.Start == r.Start && p.Length == r.Length && p.Counters.Elapsed < r.Counters.Elapsed);
                yield return then != null && length is { } w
                    ? new(now.Name, r.Length, Difference(then.Counters, r.Counters), w, r.Id, r.Start)
                    : new(now.Name, r.Length, r.Counters, r.Counters.Elapsed, r.Id, r.Start);
            }
        }

        private static IoCounters Difference(IoCounters a, IoCounters b)
        {
            var c = b with
            {
                Reads = b.Reads - a.Reads, ReadSectors = b.ReadSectors - a.ReadSectors, ReadMs = b.ReadMs - a.ReadMs,
                Writes = b.Writes - a.Writes, WriteSectors = b.WriteSectors - a.WriteSectors, WriteMs = b.WriteMs - a.WriteMs,
                IoMs = b.IoMs - a.IoMs, WeightedMs = b.WeightedMs - a.WeightedMs,
                Discards = b.Discards - a.Discards, DiscardSectors = b.DiscardSectors - a.DiscardSectors, DiscardMs = b.DiscardMs - a.DiscardMs,
                Flushes = b.Flushes - a.Flushes, FlushMs = b.FlushMs - a.FlushMs, Barriers = b.Barriers - a.Barriers, Errors = b.Errors - a.Errors,
                Histogram = b.Histogram.Zip(a.Histogram.Length == b.Histogram.Length ? a.Histogram : new long[b.Histogram.Length], (x, y) => x - y).ToArray(),
            };
            return c;
        }

        public static Interval FromStart(DeviceIoStats now) => new(now.Name, now.Sectors, now.Counters, now.Counters.Elapsed);
    }

    private sealed record Field<T>(string Heading, int Width, bool Numeric, Func<T, string> Value);

    private static readonly Field<Interval>[] Meta =
    [
        new("Name", 16, false, i => i.Name),
        new("RgID", 4, true, i => i.RegionId.ToString(CultureInfo.InvariantCulture)),
        new("ArID", 4, true, _ => "0"),
        new("AStart", 6, true, i => Size(i.Start)),
        new("ASize", 5, true, i => Size(i.Sectors)),
    ];

    private static readonly Field<Interval>[] Metrics =
    [
        new("RRqM/s", 5, true, i => Rate(i, i.Counts.ReadsMerged)),
        new("WRqM/s", 5, true, i => Rate(i, i.Counts.WritesMerged)),
        new("R/s", 5, true, i => Rate(i, i.Counts.Reads)),
        new("W/s", 5, true, i => Rate(i, i.Counts.Writes)),
        new("RSz/s", 5, true, i => Size(PerSecond(i, i.Counts.ReadSectors))),
        new("WSz/s", 5, true, i => Size(PerSecond(i, i.Counts.WriteSectors))),
        new("AvRqSz", 5, true, i => Size(Ratio(i.Counts.ReadSectors + i.Counts.WriteSectors, i.Counts.Reads + i.Counts.Writes))),
        new("QSize", 5, true, i => Fixed(Ratio(i.Counts.WeightedMs, i.Length.TotalMilliseconds))),
        new("Util%", 10, true, i => Fixed(Math.Min(100, 100 * Ratio(i.Counts.IoMs, i.Length.TotalMilliseconds)))),
        new("AWait", 5, true, i => Fixed(Ratio(i.Counts.ReadMs + i.Counts.WriteMs, i.Counts.Reads + i.Counts.Writes))),
        new("RdAWait", 5, true, i => Fixed(Ratio(i.Counts.ReadMs, i.Counts.Reads))),
        new("WrAWait", 5, true, i => Fixed(Ratio(i.Counts.WriteMs, i.Counts.Writes))),
    ];

    private static readonly Field<Interval>[] Histogram =
    [
        new("#Bins", 5, true, i => i.Counts.Histogram.Length.ToString(CultureInfo.InvariantCulture)),
        new("Histogram Counts", 16, false, i => string.Join(',', i.Counts.Histogram.Select((n, k) =>
            $"{(k == 0 ? "0" : HistogramBounds.Format(i.Counts.Bounds[k - 1]))}:{n}"))),
    ];

    public static IEnumerable<string> Report(IReadOnlyList<Interval> devices, bool histogram = false) =>
        Render<Interval>([.. Meta, .. histogram ? Histogram : Metrics], devices);

    /// <summary>A region in `dmstats list`.</summary>
    public sealed record Region(string Name, long Id, long Start, long Length, string ProgramId);

    private static readonly Field<Region>[] ListFields =
    [
        new("Name", 16, false, r => r.Name),
        new("RgID", 4, true, r => r.Id.ToString(CultureInfo.InvariantCulture)),
        new("RStart", 5, true, r => Size(r.Start)),
        new("RSize", 5, true, r => Size(r.Length)),
        new("#Areas", 3, true, _ => "1"),
        new("ArSize", 5, true, r => Size(r.Length)),
        new("ProgID", 6, false, r => r.ProgramId),
    ];

    /// <summary>`dmstats list`: each region of each device (region 0, the whole device, first).</summary>
    public static IEnumerable<string> List(IEnumerable<DeviceIoStats> devices) => Render(ListFields, devices.SelectMany(d =>
        (d.Regions ?? []).Select(r => new Region(d.Name, r.Id, r.Start, r.Length, r.ProgramId))
            .Prepend(new Region(d.Name, 0, 0, d.Sectors, StatsRegionCommands.DeviceProgramId))).ToList());

    private static IEnumerable<string> Render<T>(Field<T>[] fields, IReadOnlyList<T> items)
    {
        var rows = items.Select(d => fields.Select(f => f.Value(d)).ToArray()).ToList();
        // Unlike libdm, a column is never narrower than its heading: no heading is cut.
        var widths = fields.Select((f, k) => rows.Select(r => r[k].Length).Append(f.Width).Append(f.Heading.Length).Max()).ToArray();
        yield return string.Join(' ', fields.Select((f, k) => f.Heading.PadRight(widths[k]))).TrimEnd();
        foreach (var r in rows)
            yield return string.Join(' ', r.Select((v, k) => fields[k].Numeric ? v.PadLeft(widths[k]) : v.PadRight(widths[k]))).TrimEnd();
    }

    private static double Ratio(double a, double b) => b > 0 ? a / b : 0;
    private static double PerSecond(Interval i, long n) => Ratio(n, i.Length.TotalSeconds);
    private static string Rate(Interval i, long n) => Fixed(PerSecond(i, n));
    private static string Fixed(double v) => v.ToString("0.00", CultureInfo.InvariantCulture);

    /// <summary>A size in sectors as libdm shows sizes by default (units "h": powers of 1024, two decimals, k/m/g/t/p).</summary>
    public static string Size(double sectors)
    {
        var bytes = sectors * Bio.Sector512;
        if (bytes < 1) return "0";
        const string units = "Bkmgtpe";
        var u = 0;
        while (bytes >= 1024 && u < units.Length - 1) { bytes /= 1024; u++; }
        return bytes.ToString("0.00", CultureInfo.InvariantCulture) + units[u];
    }
}
