namespace DmActors;

/// <summary>
/// One dmstats region other than the whole-device region 0 (Documentation/admin-guide/device-mapper/statistics.rst):
/// a sector range of the device with its own counters and histogram bounds, one area. Immutable but for its
/// counters; a bio counts in it the part of it inside [Start, Start + Length).
/// </summary>
public sealed class StatsRegion(long id, long start, long length, string programId, IoStats stats)
{
    public long Id { get; } = id;
    public long Start { get; } = start;
    public long Length { get; } = length;
    public string ProgramId { get; } = programId;
    public IoStats Stats { get; } = stats;

    /// <summary>The sectors of <paramref name="bio"/> inside the region (0: none; a bio without sectors, a flush, is in none).</summary>
    public long Overlap(Bio bio)
    {
        var from = Math.Max(bio.Sector, Start);
        var to = Math.Min(bio.Sector + bio.Sectors, Start + Length);
        return to > from ? to - from : 0;
    }
}

/// <summary>The dmstats commands, routed to the device as <see cref="GetIoStats"/> is (they name the device).</summary>
public interface IStatsCommand : IControlMessage
{
    string Name { get; }
}

/// <summary>
/// `dmstats create`: a region over <paramref name="Start"/>..+<paramref name="Length"/> (default: from 0, to the
/// device's end), or with <paramref name="Segments"/> one region per live table line. Answered with
/// <see cref="StatsRegionsCreated"/> or <see cref="Dm.Failed"/>.
/// </summary>
/// <param name="Bounds">The regions' histogram bounds (dmstats --bounds; none: no histogram).</param>
public sealed record CreateStatsRegion(string Name, long? Start, long? Length, bool Segments, TimeSpan[] Bounds, string ProgramId) : IStatsCommand;
/// <summary>The created regions, each as (id, start, length).</summary>
public sealed record StatsRegionsCreated(string Name, StatsRegionInfo[] Regions) : IControlMessage;
public sealed record StatsRegionInfo(long Id, long Start, long Length);
/// <summary>`dmstats delete --regionid N` or, with a null id, `--allregions` (region 0, the device's own, stays). Answered with Dm.Done.</summary>
public sealed record DeleteStatsRegion(string Name, long? RegionId) : IStatsCommand;
/// <summary>A region's counters in a <see cref="DeviceIoStats"/>.</summary>
public sealed record RegionIoStats(long Id, long Start, long Length, string ProgramId, IoCounters Counters);

/// <summary>The device's side of the dmstats commands: checks, region ids, and the swap of <see cref="IoStats.Regions"/>.</summary>
public static class StatsRegionCommands
{
    /// <summary>Region 0's program id: the device made it, not dmstats.</summary>
    public const string DeviceProgramId = "dmactors";
    private const string Op = "message"; // dm's statistics are `@stats_*` messages to the device

    /// <summary>Creates the regions asked for (all or none) and answers what the device should reply.</summary>
    public static object Create(CreateStatsRegion c, IoStats device, Table? live)
    {
        var sectors = live?.Sectors ?? 0;
        if (live == null) return Fail(c.Name, "device has no live table");
        List<(long Start, long Length)> ranges;
        if (c.Segments) ranges = live.Targets.Select(t => (t.Begin, t.Length)).ToList();
        else
        {
            var start = c.Start ?? 0;
            var length = c.Length ?? sectors - start;
            if (start < 0 || start >= sectors || length <= 0 || length > sectors - start)
                return Fail(c.Name, $"region {start}+{c.Length?.ToString() ?? "-"} is outside the device ({sectors} sectors)");
            ranges = [(start, length)];
        }
        var regions = device.Regions.ToList();
        var created = new List<StatsRegionInfo>();
        foreach (var (start, length) in ranges)
        {
            var id = FreeId(regions);
            regions.Add(new StatsRegion(id, start, length, c.ProgramId, new IoStats(c.Bounds)));
            created.Add(new StatsRegionInfo(id, start, length));
        }
        device.Regions = regions.OrderBy(r => r.Id).ToArray();
        return new StatsRegionsCreated(c.Name, created.ToArray());
    }

    public static object Delete(DeleteStatsRegion d, IoStats device)
    {
        var regions = device.Regions;
        switch (d.RegionId)
        {
            case null: device.Regions = []; break;
            case 0: return Fail(d.Name, "region 0 is the device's own statistics and cannot be deleted");
            case { } id when regions.All(r => r.Id != id): return new Dm.Failed(Op, d.Name, "No such file or directory", $"No such region: {id}.");
            case { } id: device.Regions = regions.Where(r => r.Id != id).ToArray(); break;
        }
        return Dm.Done.Empty;
    }

    public static RegionIoStats[] Read(IoStats device) =>
        device.Regions.Select(r => new RegionIoStats(r.Id, r.Start, r.Length, r.ProgramId, r.Stats.Read())).ToArray();

    /// <summary>As dm_stats_create: the lowest id not in use (0 is the device's region).</summary>
    private static long FreeId(List<StatsRegion> regions)
    {
        var id = 1L;
        while (regions.Any(r => r.Id == id)) id++;
        return id;
    }

    private static Dm.Failed Fail(string name, string reason) => new(Op, name, Dm.Failed.Invalid, reason);
}
