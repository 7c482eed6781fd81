using System.Collections.Concurrent;
using System.Globalization;
using Akka.Actor;

namespace DmActors;

/// <summary>
/// Every running device's <see cref="IoStats"/> on this actor system, so that a metrics scrape reads the counters
/// without asking any actor (nothing on the IO path waits for a scrape). Devices add themselves when they start
/// and leave when they stop. It also holds the histogram bounds every device uses (`dmactors.stats.bounds`).
/// </summary>
public sealed class IoStatsBoard : IExtension
{
    private readonly ConcurrentDictionary<IoStats, DeviceShared> _devices = new(ReferenceEqualityComparer.Instance);

    public IoStatsBoard(IReadOnlyList<TimeSpan> bounds) { Bounds = bounds; }

    public IReadOnlyList<TimeSpan> Bounds { get; }

    public static IoStatsBoard Get(ActorSystem system) => system.WithExtension<IoStatsBoard, IoStatsBoardProvider>();

    public void Add(DeviceShared device, IoStats stats) => _devices[stats] = device;
    public void Remove(IoStats stats) => _devices.TryRemove(stats, out _);

    /// <summary>The running devices, by name.</summary>
    public IReadOnlyList<(DeviceShared Device, IoStats Stats)> Devices =>
        _devices.Select(d => (d.Value, d.Key)).OrderBy(d => d.Value.Name, StringComparer.Ordinal).ThenBy(d => d.Value.Minor).ToArray();
}

public sealed class IoStatsBoardProvider : ExtensionIdProvider<IoStatsBoard>
{
    public override IoStatsBoard CreateExtension(ExtendedActorSystem system)
    {
        var text = system.Settings.Config.GetString("dmactors.stats.bounds", "");
        // A bad value is refused when the host reads its configuration; here it only means no histogram.
        return new IoStatsBoard(HistogramBounds.TryParse(text, out var bounds, out _) ? bounds : []);
    }
}

/// <summary>dmstats' --bounds: a comma-separated list of latencies, in nanoseconds unless suffixed ns, us, ms or s.</summary>
public static class HistogramBounds
{
    public static bool TryParse(string? text, out TimeSpan[] bounds, out string error)
    {
        bounds = [];
        error = "";
        if (string.IsNullOrWhiteSpace(text)) return true;
        var list = new List<TimeSpan>();
        foreach (var raw in text.Split(','))
        {
            var item = raw.Trim();
            var (digits, perUnit) = item switch
            {
                _ when item.EndsWith("ns") => (item[..^2], 0.01),
                _ when item.EndsWith("us") => (item[..^2], 10.0),
                _ when item.EndsWith("ms") => (item[..^2], 10_000.0),
                _ when item.EndsWith('s') => (item[..^1], (double)TimeSpan.TicksPerSecond),
                _ => (item, 0.01),
            };
            if (!ulong.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n == 0)
            {
                error = $"Invalid histogram bound: \"{item}\"";
                return false;
            }
            var bound = TimeSpan.FromTicks((long)Math.Ceiling(n * perUnit));
            if (list.Count > 0 && bound <= list[^1])
            {
                error = $"Histogram bounds must be in increasing order: \"{text}\"";
                return false;
            }
            list.Add(bound);
        }
        bounds = list.ToArray();
        return true;
    }

    /// <summary>A bound as dmstats shows it: whole units of s, ms, us or ns.</summary>
    public static string Format(TimeSpan bound)
    {
        var ns = bound.Ticks * 100;
        return ns % 1_000_000_000 == 0 ? $"{ns / 1_000_000_000}s"
            : ns % 1_000_000 == 0 ? $"{ns / 1_000_000}ms"
            : ns % 1_000 == 0 ? $"{ns / 1_000}us" : $"{ns}ns";
    }
}
