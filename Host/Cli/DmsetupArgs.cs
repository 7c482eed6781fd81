namespace DmActors.Host.Cli;

/// <summary>
/// A parsed `dmactors dmsetup` command line. Options may come anywhere (dmsetup uses getopt with permutation);
/// `--` ends them, so `message dev 0 -- msg` works as DMTS writes it.
/// </summary>
public sealed class DmsetupArgs
{
    public string Command { get; private set; } = "";
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
    public bool Tear { get; private set; }

    /// <summary>Parses <paramref name="argv"/>; on a bad option returns null and the error line in <paramref name="error"/>.</summary>
    public static DmsetupArgs? Parse(IReadOnlyList<string> argv, out string? error)
    {
        var a = new DmsetupArgs();
        error = null;
        var positional = new List<string>();
        var optionsDone = false;
        for (var i = 0; i < argv.Count; i++)
        {
            var arg = argv[i];
            if (optionsDone || arg == "-" || !arg.StartsWith('-')) { positional.Add(arg); continue; }
            if (arg == "--") { optionsDone = true; continue; }
            var eq = arg.StartsWith("--") ? arg.IndexOf('=') : -1;
            var name = eq > 0 ? arg[..eq] : arg;
            string? inline = eq > 0 ? arg[(eq + 1)..] : null;
            string? Value()
            {
                if (inline != null) return inline;
                if (i + 1 < argv.Count) return argv[++i];
                return null;
            }
            string? v;
            switch (name)
            {
                case "--config": a.ConfigFile = v = Value(); break;
                case "--control": a.Control = v = Value(); break;
                case "--timeout":
                    v = Value();
                    if (v != null)
                    {
                        if (ParseSeconds(v) is not { } t) { error = $"dmsetup: --timeout: '{v}' is not a number of seconds"; return null; }
                        a.Timeout = t;
                    }
                    break;
                case "--table": a.Table = v = Value(); break;
                case "-u" or "--uuid": a.Uuid = v = Value(); break;
                case "--barrier-mode":
                    v = Value();
                    if (v != null && (!Enum.TryParse<BarrierMode>(v, true, out var mode) || !Enum.IsDefined(mode)))
                    {
                        error = $"Invalid barrier mode '{v}' (ordered or flush).";
                        return null;
                    }
                    if (v != null) a.Mode = Enum.Parse<BarrierMode>(v, true);
                    break;
                case "-n" or "--notable": a.NoTable = true; v = ""; break;
                case "-r" or "--readonly": a.ReadOnly = true; v = ""; break;
                case "-f" or "--force": a.Force = true; v = ""; break;
                case "--noflush": a.NoFlush = true; v = ""; break;
                case "--nolockfs" or "--noudevsync" or "--noudevrules" or "-y" or "--yes" or "--verifyudev": v = ""; break; // nothing to do here
                case "--inactive": a.Inactive = true; v = ""; break;
                case "-c" or "-C" or "--columns": a.Columns = true; v = ""; break;
                case "--noheadings": a.NoHeadings = true; v = ""; break;
                case "--setuuid": a.SetUuid = true; v = ""; break;
                case "--tear": a.Tear = true; v = ""; break;
                default:
                    error = $"dmsetup: unrecognized option '{arg}'";
                    return null;
            }
            if (v == null) { error = $"dmsetup: option '{name}' requires an argument"; return null; }
        }
        if (positional.Count == 0) { error = "dmsetup: no command given (try dmactors --help)"; return null; }
        a.Command = positional[0];
        a.Args.AddRange(positional.Skip(1));
        return a;
    }

    /// <summary>A positive number of seconds (fractions allowed), or null.</summary>
    public static TimeSpan? ParseSeconds(string text) =>
        double.TryParse(text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s)
        && s > 0 && s <= int.MaxValue / 1000 ? TimeSpan.FromSeconds(s) : null;
}
