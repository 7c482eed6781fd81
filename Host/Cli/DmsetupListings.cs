namespace DmActors.Host.Cli;

/// <summary>
/// The dmsetup commands scripts lean on besides the basic ones: deps, ls --tree and --target, info -c -o, table and
/// create --concise, wait and remove_all. They are built from the manager's info (which carries each device's
/// dependencies), table and remove replies, so a cluster's manager answers them as a host's does.
/// </summary>
public sealed partial class Dmsetup
{
    /// <summary>How long one `wait` request may wait in the device before it is asked again; under any Ask's timeout.</summary>
    public TimeSpan WaitPatience { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Where the locale (for `ls --tree`'s drawing characters) is read from.</summary>
    public Func<string, string?> Environment { get; init; } = System.Environment.GetEnvironmentVariable;

    /// <summary>The terminal's width, when stdout is one (`ls --tree` cuts lines at it less 3; else at 80).</summary>
    public int? TerminalWidth { get; init; }

    /// <summary>Set by a usage error dmsetup reports before it runs the command: no "Command failed." then.</summary>
    private bool _usage;

    private bool UsageError(params string[] lines)
    {
        foreach (var l in lines) stderr.WriteLine(l);
        _usage = true;
        return false;
    }

    /// <summary>The info of each named device (every device without names); failures reported with <paramref name="op"/>.</summary>
    private async Task<List<Dm.DeviceInfo>?> Infos(DmsetupArgs a, string op)
    {
        var names = await Names(a);
        if (names == null) return null;
        var infos = new List<Dm.DeviceInfo>();
        foreach (var name in names)
        {
            var reply = await channel.AskAsync(new Dm.GetInfo(name));
            if (reply is Dm.DeviceInfo info) infos.Add(info);
            else Report(reply, adjust: f => f with { Op = op });
        }
        return infos;
    }

    private enum DevName { DevNo, Blk, Map }

    /// <summary>_process_options: each item of -o is a prefix of devno, blkdevname or devname; the last one counts.</summary>
    private bool NameStyle(DmsetupArgs a, out DevName style)
    {
        style = DevName.DevNo;
        var rest = a.Options ?? "";
        while (rest.Length > 0)
        {
            var item = rest.Split(',')[0];
            if ("devno".StartsWith(item, StringComparison.Ordinal)) style = DevName.DevNo;
            else if ("blkdevname".StartsWith(item, StringComparison.Ordinal)) style = DevName.Blk;
            else if ("devname".StartsWith(item, StringComparison.Ordinal)) style = DevName.Map;
            else return UsageError($"Option not recognised: {rest}.", "Couldn't process command line.");
            rest = rest.Length > item.Length ? rest[(item.Length + 1)..] : "";
        }
        return true;
    }

    private static string Named(Dm.Dependency d, DevName style) => style switch
    {
        DevName.Blk => DmsetupReport.BlkDevName(d),
        DevName.Map => d.Name,
        _ => $"{d.Major}, {d.Minor}",
    };

    private async Task<bool> Deps(DmsetupArgs a)
    {
        if (!NameStyle(a, out var style)) return false;
        var infos = await Infos(a, "deps");
        if (infos == null) return true;
        foreach (var i in infos)
        {
            // _deps: -v prints the info block first and no name prefix; with several devices a blank line follows.
            if (a.Verbose) foreach (var l in DmsetupFormat.InfoBlock(i)) stdout.WriteLine(l);
            stdout.WriteLine(DmsetupFormat.DepsLine(i.Deps ?? [], a.Args.Count != 1 && !a.Verbose ? i.Name : null, d => Named(d, style)));
            if (a.Verbose && a.Args.Count != 1) stdout.WriteLine();
        }
        return true;
    }

    private async Task<bool> Ls(DmsetupArgs a)
    {
        if (a.Target != null) return await LsTarget(a.Target);
        if (a.Tree) return await LsTree(a);
        if (!NameStyle(a, out var style)) return false;
        if (style == DevName.DevNo) return await Print(Dm.List.Instance);
        var infos = await Infos(a, "info");
        if (infos == null) return true;
        foreach (var i in infos)
            stdout.WriteLine($"{i.Name}\t({(style == DevName.Blk ? DmsetupReport.BlkDevName(i.Minor) : i.Name)})");
        return true;
    }

    /// <summary>`ls --target TYPE`: the devices with at least one TYPE target, as `name\t(major, minor)`.</summary>
    private async Task<bool> LsTarget(string type)
    {
        var reply = await channel.AskAsync(Dm.List.Instance);
        if (reply is not Dm.DeviceList list) return Report(reply);
        if (list.Devices.Count == 0) { stdout.WriteLine(DmsetupFormat.NoDevices); return true; }
        foreach (var d in list.Devices)
        {
            var table = await channel.AskAsync(new Dm.GetStatus(d.Name));
            if (table is Dm.Done t && t.Lines.Any(l => DmsetupFormat.TargetType(l) == type))
                stdout.WriteLine($"{d.Name}\t({d.Major}, {d.Minor})");
        }
        return true;
    }

    private async Task<bool> LsTree(DmsetupArgs a)
    {
        var tree = DmsetupTree.Parse(a.Options, DmsetupTree.LocaleSymbols(Environment), out var error);
        if (tree == null) return UsageError(error!, "Couldn't process command line.");
        if (tree.Sym != DmsetupTree.Symbols.Vt100 && TerminalWidth is > 3 and var w) tree.Width = w - 3;
        var infos = await Infos(a, "info");
        if (infos == null) return true;
        foreach (var l in tree.Draw(infos)) stdout.WriteLine(l);
        return true;
    }

    private async Task<bool> InfoColumns(DmsetupArgs a)
    {
        var fields = DmsetupReport.Parse(a.Options, out var error);
        if (fields == null) return UsageError(error!);
        var keys = DmsetupReport.ParseSort(a.Sort ?? "", out error);
        if (keys == null) return UsageError(error!);
        var infos = await Infos(a, "info");
        if (infos == null || infos.Count == 0) return true;
        foreach (var l in DmsetupReport.Lines(fields, DmsetupReport.Sort(infos, keys), a.NoHeadings, a.Separator)) stdout.WriteLine(l);
        return true;
    }

    /// <summary>`table --concise`: every device (or those named) on one line, separated by ';'.</summary>
    private async Task<bool> TableConcise(DmsetupArgs a)
    {
        var names = await Names(a);
        if (names == null) return true;
        var devices = new List<string>();
        foreach (var name in names)
        {
            var info = await channel.AskAsync(new Dm.GetInfo(name));
            if (info is not Dm.DeviceInfo i) { Report(info); continue; }
            var table = await channel.AskAsync(new Dm.GetTable(name, a.Inactive));
            if (table is not Dm.Done t) { Report(table); continue; }
            var lines = a.Target == null ? t.Lines : t.Lines.Where(l => DmsetupFormat.TargetType(l) == a.Target).ToList();
            if (a.Target != null && lines.Count == 0) continue;
            devices.Add(DmsetupConcise.Device(i, lines));
        }
        if (devices.Count > 0) stdout.WriteLine(string.Join(';', devices));
        return true;
    }

    /// <summary>`create --concise`: creates each device of the specification in turn, as dmsetup does, stopping at the first failure.</summary>
    private async Task<bool> CreateConcise(DmsetupArgs a)
    {
        if (a.Args.Count > 1) return Error("dmsetup create --concise takes at most one argument");
        if (a.Table != null || a.NoTable || a.Uuid != null || a.Inactive)
            return Error("--concise is incompatible with --[no]table, --minor, --uuid and --inactive.");
        var specs = DmsetupConcise.Parse(a.Args.Count == 1 ? a.Args[0] : stdin.ReadToEnd(), out var errors);
        foreach (var s in specs)
        {
            int? minor = null;
            if (s.Minor.Length > 0)
            {
                if (!int.TryParse(s.Minor, out var m) || m < 0) return Error($"Invalid minor number '{s.Minor}'.");
                minor = m;
            }
            var table = string.IsNullOrWhiteSpace(s.Table) ? null : s.Table;
            if (table != null)
            {
                try { Table.Parse(table); }
                catch (TableException e) when (InvalidLine().Match(e.Message) is { Success: true } bad)
                {
                    return Error(DmsetupFormat.InvalidFormat(int.Parse(bad.Groups[1].Value), ""));
                }
            }
            var uuid = s.Uuid.Length > 0 ? s.Uuid : null;
            var reply = await channel.AskAsync(new Dm.Create(s.Name, table, s.Flags == "ro", uuid, a.Mode, a.Node, minor));
            if (!Report(reply, uuid, f => f.Op == "create" && table != null && f.Error == Dm.Failed.Invalid &&
                    (DeviceCommands.CheckName(s.Name) ?? DeviceCommands.CheckUuid(uuid)) == null ? f with { Op = "reload" } : f))
                return false;
        }
        foreach (var e in errors) stderr.WriteLine(e);
        return errors.Count == 0;
    }

    /// <summary>
    /// `wait NAME [EVENT_NR]`: DM_DEV_WAIT returns once the device's event number differs from EVENT_NR (0 when not
    /// given, as dmsetup passes it). Each request waits in the device for at most <see cref="WaitPatience"/>; an
    /// answer with the number unchanged is asked again. Prints nothing, as dmsetup without -v; with -v the info block.
    /// </summary>
    private async Task<bool> Wait(DmsetupArgs a)
    {
        if (a.Args.Count == 0) return Error("No device specified.");
        if (a.Args.Count > 2) return UsageError("Incorrect number of arguments.");
        // dmsetup takes the number with atoi: what is not a number is 0.
        var after = a.Args.Count == 2 && uint.TryParse(a.Args[1], out var n) ? n : 0L;
        while (true)
        {
            var reply = await channel.AskAsync(new Dm.GetInfo(a.Args[0], after, WaitPatience));
            if (reply is not Dm.DeviceInfo info) return Report(reply, adjust: f => f with { Op = "waitevent" });
            if (info.EventNr == after) continue;
            // -v: the status dev_wait returns, as `info` prints it.
            if (a.Verbose) foreach (var l in DmsetupFormat.InfoBlock(info)) stdout.WriteLine(l);
            return true;
        }
    }

    /// <summary>
    /// `remove_all`: dm_hash_remove_all removes every device that is not open and starts over after each removal,
    /// so stacked devices go top-down; open ones stay (not an error). With -f, dmsetup then replaces the tables of
    /// those left with error, removes again, and fails naming how many it could not remove.
    /// </summary>
    private async Task<bool> RemoveAll(DmsetupArgs a)
    {
        var left = await RemoveUnopened();
        if (!a.Force || left.Count == 0) return true;
        // _error_device: an open device's table becomes error (remove --force wipes it, or removes one no longer open).
        foreach (var name in left) await channel.AskAsync(new Dm.Remove(name, Force: true));
        // A resume is answered once the wipe's table swap is done and the old table has closed what it used, so the
        // devices below are no longer open by it when they are removed next.
        foreach (var name in left) await channel.AskAsync(new Dm.Resume(name));
        left = await RemoveUnopened();
        return left.Count == 0 || Error($"Unable to remove {left.Count} device(s).");
    }

    /// <summary>Removes devices that are not open until none more can go; returns the names of those left.</summary>
    private async Task<List<string>> RemoveUnopened()
    {
        while (true)
        {
            var list = await channel.AskAsync(Dm.List.Instance) as Dm.DeviceList;
            var names = list?.Devices.Select(d => d.Name).ToList() ?? [];
            var removed = false;
            foreach (var name in names)
            {
                if (await channel.AskAsync(new Dm.GetInfo(name)) is not Dm.DeviceInfo { OpenCount: 0 }) continue;
                if (await channel.AskAsync(new Dm.Remove(name)) is Dm.Done) { removed = true; break; }
            }
            if (!removed) return names;
        }
    }
}
