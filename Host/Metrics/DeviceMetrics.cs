using System.Globalization;
using Prometheus;

namespace DmActors.Host.Metrics;

/// <summary>
/// Each running device's <see cref="IoCounters"/> as Prometheus series labelled by device name: the /proc/diskstats
/// fields (times in seconds), barriers, errors, and the latency histogram as cumulative counts per bound (`le`).
/// A device that is gone loses its series; one whose counts went back (removed and created again under the same
/// name) starts its series again, which Prometheus reads as a counter reset.
/// </summary>
public sealed class DeviceMetrics
{
    private sealed record Series(Counter Counter, Func<IoCounters, double> Value);

    private readonly IoStatsBoard _board;
    private readonly Series[] _counters;
    private readonly Gauge _inFlight;
    private readonly Counter _latency;
    private HashSet<string> _shown = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string[]> _bounds = new(StringComparer.Ordinal);

    public DeviceMetrics(MetricFactory factory, IoStatsBoard board)
    {
        _board = board;
        string[] device = ["device"];
        Series C(string name, string help, Func<IoCounters, double> value) =>
            new(factory.CreateCounter(name, help, device), value);
        const double Ms = 1000.0;
        _counters =
        [
            C("dmactors_device_reads_completed_total", "Reads completed (errors included).", c => c.Reads),
            C("dmactors_device_read_sectors_total", "Sectors read.", c => c.ReadSectors),
            C("dmactors_device_read_time_seconds_total", "Time spent reading.", c => c.ReadMs / Ms),
            C("dmactors_device_writes_completed_total", "Writes completed (write-zeroes included).", c => c.Writes),
            C("dmactors_device_written_sectors_total", "Sectors written.", c => c.WriteSectors),
            C("dmactors_device_write_time_seconds_total", "Time spent writing.", c => c.WriteMs / Ms),
            C("dmactors_device_discards_completed_total", "Discards completed.", c => c.Discards),
            C("dmactors_device_discarded_sectors_total", "Sectors discarded.", c => c.DiscardSectors),
            C("dmactors_device_discard_time_seconds_total", "Time spent discarding.", c => c.DiscardMs / Ms),
            C("dmactors_device_flush_requests_total", "Empty flushes completed.", c => c.Flushes),
            C("dmactors_device_flush_requests_time_seconds_total", "Time spent flushing.", c => c.FlushMs / Ms),
            C("dmactors_device_barriers_total", "Bios completed as barriers.", c => c.Barriers),
            C("dmactors_device_errors_total", "Bios answered with an error.", c => c.Errors),
            C("dmactors_device_io_time_seconds_total", "Time with at least one bio in flight (io_ticks).", c => c.IoMs / Ms),
            C("dmactors_device_io_time_weighted_seconds_total", "Sum of the time every bio took.", c => c.WeightedMs / Ms),
        ];
        _inFlight = factory.CreateGauge("dmactors_device_io_now", "Bios in flight.", device);
        _latency = factory.CreateCounter("dmactors_device_io_latency_le_total",
            "Bios completed within le seconds (cumulative; bounds from dmactors.stats.bounds).", ["device", "le"]);
    }

    /// <summary>Reads every device's counters into the series (before each scrape).</summary>
    public void Update()
    {
        var now = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (device, stats) in _board.Devices)
        {
            var name = device.Name;
            if (!now.Add(name)) continue; // one series per name (an internal export may repeat a volume's name)
            var c = stats.Read();
            foreach (var s in _counters) Set(s.Counter, s.Value(c), name);
            _inFlight.WithLabels(name).Set(c.Queued);
            var les = c.Bounds.Select(b => b.TotalSeconds.ToString("R", CultureInfo.InvariantCulture)).Append("+Inf").ToArray();
            if (_bounds.TryGetValue(name, out var old) && !old.SequenceEqual(les)) foreach (var le in old) _latency.RemoveLabelled(name, le);
            _bounds[name] = les;
            long sum = 0;
            for (var k = 0; k < les.Length; k++) Set(_latency, sum += c.Histogram[k], name, les[k]);
        }
        foreach (var gone in _shown.Where(n => !now.Contains(n)))
        {
            foreach (var s in _counters) s.Counter.RemoveLabelled(gone);
            _inFlight.RemoveLabelled(gone);
            if (_bounds.Remove(gone, out var les)) foreach (var le in les) _latency.RemoveLabelled(gone, le);
        }
        _shown = now;
    }

    private static void Set(Counter counter, double value, params string[] labels)
    {
        var child = counter.WithLabels(labels);
        if (value < child.Value) { child.Remove(); child = counter.WithLabels(labels); }
        child.IncTo(value);
    }
}
