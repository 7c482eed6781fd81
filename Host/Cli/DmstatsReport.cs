namespace DmActors.Host.Cli;

/// <summary>`dmstats report`: each device's regions' counters, read once (since each began) or twice, --interval apart.</summary>
public sealed partial class Dmsetup
{
    /// <summary>How the report waits out --interval (a test's clock may differ).</summary>
    public Func<TimeSpan, Task> Delay { get; init; } = t => Task.Delay(t);

    private async Task<bool> DmstatsReport(DmsetupArgs a)
    {
        var names = await Names(a);
        if (names == null) return true;
        var first = new List<DeviceIoStats>();
        foreach (var name in names)
        {
            var reply = await channel.AskAsync(new GetIoStats(name));
            if (reply is DeviceIoStats s) first.Add(s); else Report(reply);
        }
        var intervals = new List<DmstatsFormat.Interval>();
        if (a.Interval is { } wait)
        {
            await Delay(wait);
            foreach (var before in first)
            {
                var reply = await channel.AskAsync(new GetIoStats(before.Name));
                if (reply is DeviceIoStats now) intervals.AddRange(DmstatsFormat.Interval.Regions(before, now, wait)); else Report(reply);
            }
        }
        else intervals.AddRange(first.SelectMany(s => DmstatsFormat.Interval.Regions(null, s, null)));
        if (intervals.Count > 0)
            foreach (var line in DmstatsFormat.Report(intervals, a.Histogram)) stdout.WriteLine(line);
        return true;
    }
}
