using System.CommandLine;
using DmActors.Host.CommandLine;

namespace DmActors.Host.Cli;

/// <summary>
/// A parsed `dmactors dmsetup` command line: the command, its arguments and every option. Options may come anywhere
/// (dmsetup uses getopt with permutation); `--` ends them, so `message dev 0 -- msg` works as DMTS writes it.
/// </summary>
public sealed class DmsetupArgs
{
    public string Command { get; internal set; } = "";
    public List<string> Args { get; } = new();
    public string? ConfigFile { get; private set; }
    public string? Control { get; private set; }
    /// <summary>--timeout SECONDS: how long to wait for the host to answer (null: DMACTORS_TIMEOUT or the config's ask-timeout).</summary>
    public TimeSpan? Timeout { get; private set; }
    public string? Table { get; private set; }
    public bool NoTable { get; private set; }
    public bool ReadOnly { get; private set; }
    public string? Uuid { get; private set; }
    public BarrierMode Mode { get; private set; } = BarrierMode.Ordered;
    public bool Force { get; private set; }
    public bool NoFlush { get; private set; }
    public bool Inactive { get; private set; }
    public bool Columns { get; private set; }
    public bool NoHeadings { get; private set; }
    public bool SetUuid { get; private set; }
    /// <summary>-o: the fields of `info -c`, the name style of `deps` and `ls`, the options of `ls --tree`.</summary>
    public string? Options { get; private set; }
    /// <summary>-O/--sort: `info -c`'s sort keys (a `-` prefix sorts descending).</summary>
    public string? Sort { get; private set; }
    public bool Tree { get; private set; }
    /// <summary>--target TYPE: `ls`, `table` and `status` keep only devices (lines) of that target type.</summary>
    public string? Target { get; private set; }
    public bool Concise { get; private set; }
    /// <summary>-v: `wait` and `deps` print the device's info block too (what DMTS parses the event number from).</summary>
    public bool Verbose { get; private set; }
    public string? Separator { get; private set; }
    public bool Tear { get; private set; }
    /// <summary>--node NODE: in a cluster, the node a created volume is placed on.</summary>
    public string? Node { get; private set; }
    /// <summary>dmstats report --interval SECONDS: report the IO of that interval (null: since each device started).</summary>
    public TimeSpan? Interval { get; private set; }
    /// <summary>dmstats report --histogram: the latency histogram instead of the default fields.</summary>
    public bool Histogram { get; private set; }
    /// <summary>dmstats create/delete: the region's range (sizes as dmstats takes them), --segments, --bounds, --programid; --regionid, --allregions.</summary>
    public string? Start { get; private set; }
    public string? Length { get; private set; }
    public bool Segments { get; private set; }
    public string? Bounds { get; private set; }
    public string? ProgramId { get; private set; }
    public string? RegionId { get; private set; }
    public bool AllRegions { get; private set; }

    /// <summary>Parses <paramref name="argv"/> (what follows `dmsetup`); on a bad option returns null and the error line in <paramref name="error"/>.</summary>
    public static DmsetupArgs? Parse(IReadOnlyList<string> argv, out string? error) => DmsetupCommand.Parse(argv, out error);

    /// <summary>An unknown command, for <see cref="Dmsetup"/> to refuse in dmsetup's words.</summary>
    internal static DmsetupArgs Unknown(string command) => new() { Command = command };

    /// <summary>The command as typed (`reload` stays `reload`), its arguments and the options.</summary>
    internal static DmsetupArgs From(ParseResult r, DmsetupOptions o) => new(o.Words(r))
    {
        Command = r.CommandResult.IdentifierToken?.Value ?? r.CommandResult.Command.Name,
        ConfigFile = r.GetValue(o.Config), Control = r.GetValue(o.Control), Timeout = r.GetValue(o.Timeout),
        Table = r.GetValue(o.Table), NoTable = r.GetValue(o.NoTable), ReadOnly = r.GetValue(o.ReadOnly), Uuid = r.GetValue(o.Uuid),
        Mode = r.GetValue(o.Mode) ?? BarrierMode.Ordered, Force = r.GetValue(o.Force), NoFlush = r.GetValue(o.NoFlush),
        Inactive = r.GetValue(o.Inactive), Columns = r.GetValue(o.Columns), NoHeadings = r.GetValue(o.NoHeadings),
        SetUuid = r.GetValue(o.SetUuid), Tear = r.GetValue(o.Tear), Node = r.GetValue(o.Node),
        Options = r.GetValue(o.Options), Sort = r.GetValue(o.Sort), Tree = r.GetValue(o.Tree), Target = r.GetValue(o.Target), Concise = r.GetValue(o.Concise),
        Separator = r.GetValue(o.Separator), Verbose = r.GetValue(o.Verbose),
        Interval = r.GetValue(o.Interval), Histogram = r.GetValue(o.Histogram),
        Start = r.GetValue(o.Start), Length = r.GetValue(o.Length), Segments = r.GetValue(o.Segments), Bounds = r.GetValue(o.Bounds),
        ProgramId = r.GetValue(o.ProgramId), RegionId = r.GetValue(o.RegionId), AllRegions = r.GetValue(o.AllRegions),
    };

    private DmsetupArgs() { }

    private DmsetupArgs(IEnumerable<string> args) => Args.AddRange(args);

    /// <summary>A positive number of seconds (fractions allowed), or null.</summary>
    public static TimeSpan? ParseSeconds(string text) =>
        double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s)
        && s > 0 && s <= int.MaxValue / 1000 ? TimeSpan.FromSeconds(s) : null;
}

/// <summary>Every option `dmactors dmsetup` takes, as one command line's instances.</summary>
public sealed class DmsetupOptions
{
    // Reaching the host: for every command.
    public readonly Option<string?> Config = ToolOption.Text("--config", "FILE", "The host's configuration, to find its control port (default the built-in one).");
    public readonly Option<string?> Control = ToolOption.Text("--control", "HOST:PORT", "The host's control address (overrides the configuration's; IPv6 as [::1]:10810).");
    public readonly Option<TimeSpan?> Timeout = ToolOption.Value<TimeSpan>("--timeout", "SECONDS",
        $"How long to wait for the host, each step (default ${DmsetupCommand.TimeoutVariable}, else dmactors.control.ask-timeout).",
        DmsetupArgs.ParseSeconds, t => $"--timeout: '{t}' is not a number of seconds");

    public readonly Option<string?> Table = ToolOption.Text("--table", "TEXT", "The table (lines may be separated by \\n); without it or FILE, it is read from stdin.");
    public readonly Option<bool> NoTable = ToolOption.Flag("--notable", "Create the device without a table.", "-n");
    public readonly Option<bool> ReadOnly = ToolOption.Flag("--readonly", "The device (or table) is read-only.", "-r");
    public readonly Option<string?> Uuid = ToolOption.Text("--uuid", "UUID", "The device's uuid.", "-u");
    public readonly Option<BarrierMode?> Mode = ToolOption.Value<BarrierMode>("--barrier-mode", "ordered|flush",
        "ordered: the founding barrier patch's ordering (default); flush: barriers as flush + FUA, as dm does today.",
        t => Enum.TryParse<BarrierMode>(t, true, out var m) && Enum.IsDefined(m) ? m : null,
        t => $"Invalid barrier mode '{t}' (ordered or flush).");
    public readonly Option<bool> Force = ToolOption.Flag("--force", "An open device's table is replaced by error first (the remove still fails while it is open).", "-f");
    public readonly Option<bool> NoFlush = ToolOption.Flag("--noflush", "Do not flush what is in flight before suspending.");
    public readonly Option<bool> Inactive = ToolOption.Flag("--inactive", "The inactive table (loaded, not yet resumed).");
    public readonly Option<bool> Columns = ToolOption.Flag("--columns", "One line per device, in columns.", "-c", "-C");
    public readonly Option<bool> NoHeadings = ToolOption.Flag("--noheadings", "Columns without the heading line.");
    public readonly Option<string?> Options = ToolOption.Text("--options", "FIELDS", "info -c: the fields; deps, ls: devno, devname or blkdevname; ls --tree: the tree's options.", "-o");
    public readonly Option<string?> Sort = ToolOption.Text("--sort", "KEYS", "info -c: the fields to sort by (-FIELD: descending).", "-O");
    public readonly Option<bool> Tree = ToolOption.Flag("--tree", "ls: the devices as a tree of what uses what.");
    public readonly Option<string?> Target = ToolOption.Text("--target", "TYPE", "Only devices (or table lines) of target type TYPE.");
    public readonly Option<bool> Concise = ToolOption.Flag("--concise", "table, create: dmsetup's one-line format (name,uuid,minor,flags,table[,table];...).");
    public readonly Option<bool> Verbose = ToolOption.Flag("--verbose", "wait, deps: print the device's info block too.", "-v");
    public readonly Option<string?> Separator = ToolOption.Text("--separator", "TEXT", "info -c: the text between columns (turns alignment off).");
    public readonly Option<bool> SetUuid = ToolOption.Flag("--setuuid", "Rename sets the uuid (to NEW) instead of the name.");
    public readonly Option<bool> Tear = ToolOption.Flag("--tear", "A random part of the unflushed writes lands first.");
    public readonly Option<string?> Node = ToolOption.Text("--node", "NODE", "In a cluster: the node the volume is placed on (default the node the command reaches).");

    public readonly Option<TimeSpan?> Interval = ToolOption.Value<TimeSpan>("--interval", "SECONDS",
        "dmstats report: the IO of the next SECONDS (default: since each device started).",
        DmsetupArgs.ParseSeconds, t => $"--interval: '{t}' is not a number of seconds");
    public readonly Option<bool> Histogram = ToolOption.Flag("--histogram", "dmstats report: the latency histogram (bounds: dmactors.stats.bounds).");
    public readonly Option<string?> Start = ToolOption.Text("--start", "START", "dmstats create: the region's first sector (suffix b, s, k, m, g, t for other units).");
    public readonly Option<string?> Length = ToolOption.Text("--length", "LENGTH", "dmstats create: the region's length (default: to the device's end).");
    public readonly Option<bool> Segments = ToolOption.Flag("--segments", "dmstats create: one region per table line.");
    public readonly Option<string?> Bounds = ToolOption.Text("--bounds", "LIST", "dmstats create: histogram bounds, e.g. 1ms,5ms,10ms (plain numbers are ns).");
    public readonly Option<string?> ProgramId = ToolOption.Text("--programid", "ID", "dmstats create: the regions' program id (default dmstats).");
    public readonly Option<string?> RegionId = ToolOption.Text("--regionid", "ID", "dmstats delete: the region to delete.");
    public readonly Option<bool> AllRegions = ToolOption.Flag("--allregions", "dmstats delete: every region but the device's region 0.");

    /// <summary>Options dmsetup has that change nothing here (udev and filesystem freezing); taken and ignored.</summary>
    public readonly Option<bool>[] Ignored =
    [
        ToolOption.Flag("--nolockfs", "Ignored."), ToolOption.Flag("--noudevsync", "Ignored."), ToolOption.Flag("--noudevrules", "Ignored."),
        ToolOption.Flag("--verifyudev", "Ignored."), ToolOption.Flag("--yes", "Ignored.", "-y"),
    ];

    public IEnumerable<Option> Global => [Config, Control, Timeout];

    /// <summary>Those a command uses (listed in its --help); all are taken anywhere on the line.</summary>
    public IEnumerable<Option> Specific => [Table, NoTable, ReadOnly, Uuid, Mode, Force, NoFlush, Inactive, Columns, NoHeadings, SetUuid, Options, Sort, Tree, Target, Concise, Separator, Verbose, Tear, Node, .. Ignored];

    /// <summary>The arguments of the command the line names.</summary>
    public IEnumerable<string> Words(ParseResult r) =>
        r.CommandResult.Command.Arguments.OfType<Argument<string[]>>().SingleOrDefault() is { } words ? r.GetValue(words) ?? [] : [];
}
