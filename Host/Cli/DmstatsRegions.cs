using System.Globalization;

namespace DmActors.Host.Cli;

/// <summary>`dmstats create`, `list` and `delete`: the statistics regions of a device, in dmstats' words.</summary>
public sealed partial class Dmsetup
{
    /// <summary>dmstats' program id for the regions it creates.</summary>
    private const string DmstatsProgramId = "dmstats";

    private async Task<bool> DmstatsCreate(DmsetupArgs a)
    {
        if (a.Args.Count != 1) return Error("Please specify a device.");
        var name = a.Args[0];
        if (a.Segments && (a.Start != null || a.Length != null)) return Error("--segments is incompatible with --start and --length.");
        long? start = null, length = null;
        if (a.Start != null && (start = SectorsOf(a.Start)) == null) return Error($"Invalid start argument: \"{a.Start}\"");
        if (a.Length != null && (length = SectorsOf(a.Length)) is null or 0) return Error($"Invalid length argument: \"{a.Length}\"");
        if (!HistogramBounds.TryParse(a.Bounds, out var bounds, out var problem)) return Error(problem);
        var programId = a.ProgramId ?? DmstatsProgramId;
        var reply = await channel.AskAsync(new CreateStatsRegion(name, start, length, a.Segments, bounds, programId));
        if (reply is StatsRegionsCreated created)
        {
            foreach (var r in created.Regions) stdout.WriteLine($"{name}: Created new region with 1 area(s) as region ID {r.Id}");
            return true;
        }
        Report(reply);
        return Error($"{name}: Could not create statistics region.");
    }

    private async Task<bool> DmstatsList(DmsetupArgs a)
    {
        var names = await Names(a);
        if (names == null) return true;
        var devices = new List<DeviceIoStats>();
        foreach (var name in names)
        {
            var reply = await channel.AskAsync(new GetIoStats(name));
            if (reply is DeviceIoStats s) devices.Add(s); else Report(reply);
        }
        if (devices.Count > 0)
            foreach (var line in DmstatsFormat.List(devices)) stdout.WriteLine(line);
        return true;
    }

    private async Task<bool> DmstatsDelete(DmsetupArgs a)
    {
        if (a.Args.Count != 1) return Error("Please specify a device.");
        if (a.AllRegions && a.RegionId != null) return Error("Please supply one of --allregions and --regionid");
        if (!a.AllRegions && a.RegionId == null) return Error("Please specify a --regionid or use --allregions.");
        long? id = null;
        if (a.RegionId != null)
        {
            if (!long.TryParse(a.RegionId, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return Error($"Invalid regionid argument: \"{a.RegionId}\"");
            id = n;
        }
        var reply = await channel.AskAsync(new DeleteStatsRegion(a.Args[0], id));
        if (reply is Dm.Done) return true;
        Report(reply);
        return Error("Could not delete statistics region.");
    }

    /// <summary>A size as dmstats' --start and --length take it: sectors, or with a unit suffix (b, s, k, m, g, t; powers of 1024); null if bad.</summary>
    internal static long? SectorsOf(string text)
    {
        var t = text.Trim();
        if (t.Length == 0) return null;
        var unit = char.ToLowerInvariant(t[^1]);
        long bytesPer = unit switch
        {
            'b' => 1, 's' => Bio.Sector512, 'k' => 1L << 10, 'm' => 1L << 20, 'g' => 1L << 30, 't' => 1L << 40,
            _ => 0,
        };
        var digits = bytesPer == 0 ? t : t[..^1];
        if (bytesPer == 0) bytesPer = Bio.Sector512;
        if (!long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) return null;
        try
        {
            var bytes = checked(n * bytesPer);
            return bytes % Bio.Sector512 == 0 ? bytes / Bio.Sector512 : null;
        }
        catch (OverflowException) { return null; }
    }
}
