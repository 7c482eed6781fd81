using System.CommandLine;
using DmActors.Host.CommandLine;
using DmActors.Host.Configuration;

namespace DmActors.Host.Cli;

/// <summary>
/// `dmactors dmsetup ...`: finds the host from the same configuration the host reads (--config FILE, or the
/// built-in default; --control HOST:PORT overrides), connects over Akka.Remote and runs one dmsetup command.
/// Every problem of the connection is one line on stderr and exit status 1; so is a usage error, in dmsetup's words.
/// </summary>
public static class DmsetupCommand
{
    /// <summary>Seconds dmsetup waits for the host (each step: connecting, then each answer); --timeout wins.</summary>
    public const string TimeoutVariable = "DMACTORS_TIMEOUT";

    /// <summary>The commands: name, arguments, what it does, and the options it uses.</summary>
    private static IEnumerable<(string Name, string Args, string Description, Option[] Uses)> Commands(DmsetupOptions o) =>
    [
        ("create", "NAME [FILE]", "Creates a device with the table from --table, FILE or stdin (no table with --notable); " +
            "with --concise, the devices of a concise specification (the argument, or stdin).",
            [o.Table, o.NoTable, o.ReadOnly, o.Uuid, o.Mode, o.Node, o.Concise]),
        ("remove", "NAME...", "Removes devices (refused while open).", [o.Force]),
        ("remove_all", "", "Removes every device that is not open, stacked ones first; -f first replaces the tables of open ones with error.", [o.Force]),
        ("suspend", "NAME...", "Suspends devices: new IO waits, IO in flight completes and is flushed (unless --noflush).", [o.NoFlush]),
        ("resume", "NAME...", "Resumes devices, swapping in the inactive table if one was loaded.", []),
        ("load", "NAME [FILE]", "Loads a table from --table, FILE or stdin into the inactive slot; resume swaps it in.", [o.Table, o.ReadOnly]),
        ("clear", "NAME...", "Drops the inactive table.", []),
        ("table", "[NAME...]", "Prints the tables (of every device without NAME).", [o.Inactive, o.Concise, o.Target]),
        ("status", "[NAME...]", "Prints the targets' status lines (of every device without NAME).", [o.Target]),
        ("info", "[NAME...]", "Prints the devices' state (of every device without NAME); -c: in columns, -o FIELDS, -O KEYS.",
            [o.Columns, o.NoHeadings, o.Options, o.Sort, o.Separator]),
        ("deps", "[NAME...]", "Lists the devices each device's live table uses (-o devno, devname or blkdevname).", [o.Options, o.Verbose]),
        ("ls", "", "Lists the devices with their device numbers (--target TYPE: those with a TYPE target; --tree: as a tree).",
            [o.Target, o.Tree, o.Options]),
        ("wait", "NAME [EVENT_NR]", "Waits until the device's event number is no longer EVENT_NR (default 0), e.g. after a target event or a rename.", [o.Verbose]),
        ("message", "NAME SECTOR MSG...", "Sends MSG to the target at SECTOR (put -- before a MSG that starts with -).", []),
        ("rename", "NAME NEW", "Renames a device, or with --setuuid gives it the uuid NEW.", [o.SetUuid]),
        ("targets", "", "Lists the target types and their versions.", []),
        ("version", "", "Prints the library and driver versions.", []),
        ("history", "NAME...", "Lists the devices' recorded events (our addition).", []),
        ("powercut", "[DISK...]", Powercut, [o.Tear]),
    ];

    private const string Powercut = "Power loss on write-back-cache disks (every one without DISK): what was never flushed is lost.";

    /// <summary>`dmsetup` and its commands. Every option belongs to `dmsetup` itself and reaches below it, as getopt takes them anywhere.</summary>
    public static Command Build() => Build(new DmsetupOptions());

    private static Command Build(DmsetupOptions o)
    {
        var dmsetup = new DmsetupNode(
            "Controls the running host like dmsetup(8): output, errors and exit status 1 on failure follow dmsetup's. " +
            "Options may come before or after the command; --nolockfs, --noudevsync, --noudevrules, --verifyudev and -y " +
            "are taken and ignored.");
        foreach (var option in o.Global) dmsetup.Options.Add(Everywhere(option, hidden: false));
        foreach (var option in o.Specific) dmsetup.Options.Add(Everywhere(option, hidden: true));
        foreach (var (name, args, description, uses) in Commands(o))
        {
            var command = new ToolCommand(name, description);
            if (args.Length > 0) command.Arguments.Add(ToolOption.Words(args));
            if (name == "load") command.Aliases.Add("reload");
            command.Uses.AddRange(uses);
            dmsetup.Subcommands.Add(Runs(command, o));
        }
        return dmsetup;
    }

    /// <summary>`dmactors powercut`: dmsetup's powercut as a command of its own.</summary>
    public static Command BuildPowercut()
    {
        var o = new DmsetupOptions();
        var command = new Command("powercut", Powercut + " (--tear: a random part of it lands first.)")
        {
            ToolOption.Words("[DISK...]"), o.Tear, o.Config, o.Control, o.Timeout,
        };
        return Runs(command, o);
    }

    /// <summary>`dmactors cluster status|move`: the cluster's commands, reaching a node as dmsetup does.</summary>
    public static Command BuildCluster()
    {
        var o = new DmsetupOptions();
        var status = new Command("status", "Lists the members, their state and the volumes each one owns.") { o.Config, o.Control, o.Timeout };
        var move = new Command("move", "Hands a volume (with the volumes stacked with it) over to NODE: suspend, stop, start there, resume.")
        {
            ToolOption.Words("VOLUME NODE"), o.Config, o.Control, o.Timeout,
        };
        var cluster = new Command("cluster", "Cluster-hosted volumes: members and placement (docs/cluster.md).") { status, move };
        foreach (var c in new[] { status, move })
            c.SetAction(r =>
            {
                var a = DmsetupArgs.From(r, o);
                a.Command = "cluster-" + a.Command;
                return RunAsync(a, r.InvocationConfiguration.Output, r.InvocationConfiguration.Error);
            });
        return cluster;
    }

    /// <summary>`dmactors dmstats report|create|list|delete`: dmstats(8)'s statistics regions, reaching the host as dmsetup does.</summary>
    public static Command BuildDmstats() => Dmstats(new DmsetupOptions(), run: true);

    /// <summary>`dmstats COMMAND ...` parsed (for running it in-process).</summary>
    public static DmsetupArgs ParseDmstats(IReadOnlyList<string> argv)
    {
        var o = new DmsetupOptions();
        var a = DmsetupArgs.From(CommandRunner.Parse(Dmstats(o, run: false), argv), o);
        a.Command = "dmstats-" + a.Command;
        return a;
    }

    private static Command Dmstats(DmsetupOptions o, bool run)
    {
        Command[] commands =
        [
            new("report", "Prints dmstats' default report per region (each device's whole-device region 0, then those " +
                "dmstats create made), over --interval SECONDS or since each region began.")
            {
                ToolOption.Words("[NAME...]"), o.Interval, o.Histogram,
            },
            new("create", "Creates a statistics region of the device: --start/--length (default the whole device), " +
                "or --segments (one per table line). Regions are not kept across a restart of the host or the device.")
            {
                ToolOption.Words("NAME"), o.Start, o.Length, o.Segments, o.Bounds, o.ProgramId,
            },
            new("list", "Lists the statistics regions (of every device without NAME).") { ToolOption.Words("[NAME...]") },
            new("delete", "Deletes a statistics region (--regionid ID), or all but region 0 (--allregions).")
            {
                ToolOption.Words("NAME"), o.RegionId, o.AllRegions,
            },
        ];
        var dmstats = new Command("dmstats", "IO statistics of the devices, like dmstats(8).");
        foreach (var option in o.Global)
        {
            option.Recursive = true;
            dmstats.Options.Add(option);
        }
        foreach (var c in commands)
        {
            if (run)
                c.SetAction(r =>
                {
                    var a = DmsetupArgs.From(r, o);
                    a.Command = "dmstats-" + a.Command;
                    return RunAsync(a, r.InvocationConfiguration.Output, r.InvocationConfiguration.Error);
                });
            dmstats.Subcommands.Add(c);
        }
        return dmstats;
    }

    private static Command Runs(Command command, DmsetupOptions o)
    {
        command.SetAction(r => RunAsync(DmsetupArgs.From(r, o), r.InvocationConfiguration.Output, r.InvocationConfiguration.Error));
        return command;
    }

    private static Option Everywhere(Option option, bool hidden)
    {
        option.Recursive = true;
        option.Hidden = hidden;
        return option;
    }

    /// <summary>What follows `dmsetup`, parsed (for running it in-process); null and dmsetup's error line for a bad one.</summary>
    internal static DmsetupArgs? Parse(IReadOnlyList<string> argv, out string? error)
    {
        error = null;
        var o = new DmsetupOptions();
        var result = CommandRunner.Parse(Build(o), argv);
        switch (UsageProblem.Of(result))
        {
            case { Kind: UsageKind.UnknownCommand } p: return DmsetupArgs.Unknown(p.Token);
            case { } p: error = DmsetupNode.Wording(p); return null;
        }
        return DmsetupArgs.From(result, o);
    }

    /// <summary>`dmsetup` itself: reports usage errors as dmsetup (and getopt) word them, with exit status 1.</summary>
    private sealed class DmsetupNode(string description) : Command("dmsetup", description), IReportsUsage
    {
        public int Report(UsageProblem problem, TextWriter stderr)
        {
            stderr.WriteLine(Wording(problem));
            return CommandRunner.Failure;
        }

        public static string Wording(UsageProblem p) => p.Kind switch
        {
            UsageKind.UnknownOption when p.Token.StartsWith("--") => $"dmsetup: unrecognized option '{p.Token}'",
            UsageKind.UnknownOption => $"dmsetup: invalid option -- '{p.Token[1]}'",
            UsageKind.MissingValue when p.Token.StartsWith("--") => $"dmsetup: option '{p.Token}' requires an argument",
            UsageKind.MissingValue => $"dmsetup: option requires an argument -- '{p.Token[1..]}'",
            // Our options' complaints name the option first and get the program's name, as getopt's do; dmsetup's own stand alone.
            UsageKind.BadValue when p.Text.StartsWith('-') => $"dmsetup: {p.Text}",
            UsageKind.UnknownCommand => $"Unrecognised command '{p.Token}'.\n{DmsetupFormat.CommandFailed}",
            UsageKind.UnexpectedArgument => $"Too many command line arguments.\n{DmsetupFormat.CommandFailed}",
            UsageKind.MissingCommand => "dmsetup: no command given (try 'dmactors dmsetup --help')",
            _ => p.Text,
        };
    }

    private static async Task<int> RunAsync(DmsetupArgs a, TextWriter stdout, TextWriter stderr)
    {
        HostSettings settings;
        TimeSpan timeout;
        try
        {
            settings = HostConfig.Load(a.ConfigFile);
            if (a.Control != null)
            {
                if (!TryParseHostPort(a.Control, out var host, out var port))
                    throw new ConfigException($"--control: bad address '{a.Control}' (expected HOST:PORT)");
                settings = settings with { ControlHost = host, ControlPort = port };
            }
            timeout = a.Timeout ?? TimeoutFromEnvironment() ?? settings.AskTimeout;
        }
        catch (ConfigException e) { stderr.WriteLine($"dmactors: {e.Message}"); return CommandRunner.Failure; }

        try
        {
            await using var control = await RemoteControl.ConnectAsync(settings, timeout);
            return await new Dmsetup(control.Channel, Console.In, stdout, stderr)
            {
                // A wait asks again well within each answer's timeout.
                WaitPatience = TimeSpan.FromTicks(Math.Min(TimeSpan.FromSeconds(30).Ticks, timeout.Ticks / 2)),
                MoveWithin = timeout,
                TerminalWidth = Console.IsOutputRedirected ? null : TerminalColumns(),
            }.RunAsync(a);
        }
        catch (ControlUnreachableException e)
        {
            // Like dmsetup without the driver: the library version still prints.
            if (a.Command == "version") stdout.WriteLine(DmsetupFormat.Version(false).Single());
            stderr.WriteLine($"dmactors: {e.Message}");
            return CommandRunner.Failure;
        }
        catch (ControlMessageTooLargeException e)
        {
            stderr.WriteLine($"dmactors: {a.Command}: {e.Message}");
            return CommandRunner.Failure;
        }
        catch (ControlException e)
        {
            stderr.WriteLine($"dmactors: {e.Message}");
            return CommandRunner.Failure;
        }
    }

    private static int? TerminalColumns()
    {
        try { return Console.WindowWidth; }
        catch (IOException) { return null; }
    }

    private static TimeSpan? TimeoutFromEnvironment()
    {
        var text = Environment.GetEnvironmentVariable(TimeoutVariable);
        if (string.IsNullOrWhiteSpace(text)) return null;
        return DmsetupArgs.ParseSeconds(text) ?? throw new ConfigException($"{TimeoutVariable}: '{text}' is not a number of seconds");
    }

    /// <summary>HOST:PORT, where HOST is a name, an IPv4 address or a bracketed IPv6 address ([::1]:10810).</summary>
    public static bool TryParseHostPort(string text, out string host, out int port)
    {
        host = "";
        port = 0;
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), System.Globalization.NumberStyles.None, null, out port) || port is < 1 or > 65535)
            return false;
        host = text[..colon];
        if (host.StartsWith('[') && host.EndsWith(']')) host = host[1..^1];
        else if (host.Contains(':')) return false; // an IPv6 address needs its brackets
        return host.Length > 0 && (System.Net.IPAddress.TryParse(host, out _) || Uri.CheckHostName(host) == UriHostNameType.Dns);
    }
}
