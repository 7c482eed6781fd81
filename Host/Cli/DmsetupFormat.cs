namespace DmActors.Host.Cli;

/// <summary>
/// dmsetup's output, exactly (dmsetup(8), lvm2's tools/dmsetup.c and libdm): pure functions from the manager's replies
/// to the lines dmsetup prints.
/// </summary>
public static class DmsetupFormat
{
    public const string CommandFailed = "Command failed.";
    public const string NoDevices = "No devices found";
    public const string DeviceDoesNotExist = "Device does not exist.";
    /// <summary>dm's default read-ahead, in sectors.</summary>
    public const int ReadAhead = 256;

    /// <summary>The info block (_display_info_long), ending with its blank line.</summary>
    public static IEnumerable<string> InfoBlock(Dm.DeviceInfo i)
    {
        yield return $"Name:              {i.Name}";
        yield return $"State:             {(i.Suspended ? "SUSPENDED" : "ACTIVE")}{(i.ReadOnly ? " (READ-ONLY)" : "")}";
        yield return $"Read Ahead:        {ReadAhead}";
        yield return $"Tables present:    {TablesPresent(i)}";
        yield return $"Open count:        {i.OpenCount}";
        yield return $"Event number:      {i.EventNr}";
        yield return $"Major, minor:      {i.Major}, {i.Minor}";
        yield return $"Number of targets: {i.TargetCount}";
        if (!string.IsNullOrEmpty(i.Uuid)) yield return $"UUID: {i.Uuid}";
        // Our addition, after dmsetup's lines: why a recorded table is missing (the kernel would have logged it).
        if (!string.IsNullOrEmpty(i.ErrorState)) yield return $"Error:             {i.ErrorState}";
        if (!string.IsNullOrEmpty(i.Node)) yield return $"Node:              {i.Node}";
        yield return "";
    }

    public static string TablesPresent(Dm.DeviceInfo i) => (i.LiveTable, i.InactiveTable) switch
    {
        (false, false) => "None",
        (true, false) => "LIVE",
        (false, true) => "INACTIVE",
        _ => "LIVE & INACTIVE",
    };

    /// <summary>The 4-character attr field of `info -c`: [L-][I-][s-][rw].</summary>
    public static string Attr(Dm.DeviceInfo i) =>
        $"{(i.LiveTable ? 'L' : '-')}{(i.InactiveTable ? 'I' : '-')}{(i.Suspended ? 's' : '-')}{(i.ReadOnly ? 'r' : 'w')}";

    /// <summary>`info -c` with dmsetup's default fields (see <see cref="DmsetupReport"/>).</summary>
    public static IEnumerable<string> InfoColumns(IReadOnlyList<Dm.DeviceInfo> devices, bool headings = true) =>
        DmsetupReport.Lines(DmsetupReport.Parse(null, out _)!, devices, !headings, null);

    /// <summary>
    /// One `deps` line: `N dependencies\t:` and each device as ` (major, minor)` (or ` (name)` with -o devname or
    /// blkdevname), prefixed `name: ` when several devices are listed.
    /// </summary>
    public static string DepsLine(IReadOnlyList<Dm.Dependency> deps, string? prefixName, Func<Dm.Dependency, string> named) =>
        $"{(prefixName == null ? "" : prefixName + ": ")}{deps.Count} dependencies\t:{string.Concat(deps.Select(d => $" ({named(d)})"))}";

    /// <summary>The target type of a `table` or `status` line (`start len type params`).</summary>
    public static string? TargetType(string line) => line.Split(' ') is { Length: >= 3 } parts ? parts[2] : null;

    /// <summary>
    /// `table`/`status` lines of one device: prefixed `name: ` when several devices are listed; a device with no
    /// table prints an empty line (just the prefix).
    /// </summary>
    public static IEnumerable<string> TargetLines(IReadOnlyList<string> lines, string? prefixName = null)
    {
        var prefix = prefixName == null ? "" : $"{prefixName}: ";
        if (lines.Count == 0) { yield return prefix; yield break; }
        foreach (var l in lines) yield return prefix + l;
    }

    /// <summary>The lines a successful reply prints (null: not a reply that prints lines).</summary>
    public static IEnumerable<string>? Output(object reply) => reply switch
    {
        Dm.Done d => d.Lines,
        Dm.DeviceList l => Ls(l),
        Dm.TargetList t => Targets(t),
        Dm.HistoryList h => History(h),
        DmActors.Cluster.ClusterCmd.StatusReply c => ClusterStatus(c),
        _ => null,
    };

    /// <summary>`dmactors cluster status`: a heading line, then one line per member.</summary>
    public static IEnumerable<string> ClusterStatus(DmActors.Cluster.ClusterCmd.StatusReply c)
    {
        yield return $"Cluster {c.ClusterName}, seen from {c.Self}; leader {c.Leader ?? "(none)"}";
        var rows = c.Members.OrderBy(m => m.Node, StringComparer.Ordinal).Select(m => new[] { m.Node, m.State, m.Address, m.Volumes.Count == 0 ? "-" : string.Join(",", m.Volumes) })
            .Prepend(["NODE", "STATE", "ADDRESS", "VOLUMES"]).ToList();
        var widths = Enumerable.Range(0, 4).Select(k => rows.Max(r => r[k].Length)).ToArray();
        foreach (var r in rows) yield return string.Join("  ", r.Select((v, k) => k == 3 ? v : v.PadRight(widths[k]))).TrimEnd();
    }

    /// <summary>`ls`: a line per device, or "No devices found".</summary>
    public static IEnumerable<string> Ls(Dm.DeviceList list) =>
        list.Devices.Count == 0 ? [NoDevices] : list.Devices.Select(d => LsLine(d.Name, d.Major, d.Minor));

    /// <summary>One `ls` line: `name\t(253:0)`.</summary>
    public static string LsLine(string name, int major, int minor) => $"{name}\t({major}:{minor})";

    /// <summary>`targets`: the name padded to 16, then the version (dmsetup's `%-16s v%u.%u.%u`).</summary>
    public static IEnumerable<string> Targets(Dm.TargetList list) =>
        list.Targets.OrderBy(t => Array.IndexOf(BuiltIn, t.Name)).Select(t => $"{t.Name,-16} {t.Version}");

    /// <summary>
    /// dm lists target types newest first (dm_register_target adds at the head): the modules loaded later above the
    /// ones built into dm, striped, linear and error, which register last to first.
    /// </summary>
    private static readonly string[] BuiltIn = ["striped", "linear", "error"];

    /// <summary>`history` (our addition): a line per recorded event, UTC with milliseconds, two spaces, what happened.</summary>
    public static IEnumerable<string> History(Dm.HistoryList list) =>
        list.Entries.Select(e => $"{e.At.ToString("yyyy-MM-dd HH:mm:ss.fff", System.Globalization.CultureInfo.InvariantCulture)}  {e.What}");

    /// <summary>libdm's ioctl failure line; two spaces before "failed" when there is no uuid.</summary>
    public static string IoctlFailure(string op, string name, string? uuid, string error) =>
        $"device-mapper: {op} ioctl on {name} {uuid} failed: {error}";

    /// <summary>Queries (info, table, status) on a missing device say so; other commands fail in the ioctl.</summary>
    private static readonly HashSet<string> Queries = ["info", "table", "status"];

    /// <summary>The stderr lines of a failed command for one device (without the final "Command failed.").</summary>
    public static IEnumerable<string> Failure(Dm.Failed f, string? uuid = null)
    {
        var missing = f.Error == Dm.Failed.NoDevice && f.Reason == DeviceDoesNotExist;
        if (missing && Queries.Contains(f.Op)) { yield return DeviceDoesNotExist; yield break; }
        yield return IoctlFailure(f.Op, f.Name, uuid, f.Error);
        // The reason is what the kernel would have logged (dmesg); dmsetup users need it here.
        if (!missing && f.Reason.Length > 0) yield return f.Reason;
    }

    /// <summary>`message`: the target's response as it came, with a newline added if it has none.</summary>
    public static string MessageResponse(string response) => response.EndsWith('\n') ? response : response + "\n";

    /// <summary>dmsetup's table line parse error.</summary>
    public static string InvalidFormat(int line, string source) => $"Invalid format on line {line} of table {source}.";

    /// <summary>`version` (the driver line only when the host answered).</summary>
    public static IEnumerable<string> Version(bool driverReached)
    {
        yield return $"Library version:   {LibraryVersion}";
        if (driverReached) yield return $"Driver version:    {DriverVersion}";
    }

    public const string LibraryVersion = "1.02.199 (dmactors)";
    public const string DriverVersion = "4.48.0";
}
