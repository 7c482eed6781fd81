using System.Text.RegularExpressions;

namespace DmActors.Host.Cli;

/// <summary>
/// The dmsetup commands over a control channel: builds the manager's messages from the command line and prints
/// the replies as dmsetup does (output on stdout; failures on stderr, then "Command failed.", exit 1).
/// </summary>
public sealed partial class Dmsetup(IControlChannel channel, TextReader stdin, TextWriter stdout, TextWriter stderr)
{
    private bool _failed;

    public async Task<int> RunAsync(DmsetupArgs a)
    {
        var ok = a.Command switch
        {
            "create" when a.Concise => await CreateConcise(a),
            "create" => await Create(a),
            "remove" => await ForEach(a, n => new Dm.Remove(n, a.Force)),
            "suspend" => await ForEach(a, n => new Dm.Suspend(n, a.NoFlush)),
            "resume" => await ForEach(a, n => new Dm.Resume(n)),
            "load" or "reload" => await Load(a),
            "clear" => await ForEach(a, n => new Dm.Clear(n)),
            "table" when a.Concise => await TableConcise(a),
            "table" => await Targets(a, n => new Dm.GetTable(n, a.Inactive)),
            "status" => await Targets(a, n => new Dm.GetStatus(n)),
            "info" when a.Columns => await InfoColumns(a),
            "info" => await Info(a),
            "deps" => await Deps(a),
            "ls" => await Ls(a),
            "wait" => await Wait(a),
            "remove_all" => await RemoveAll(a),
            "message" => await Message(a),
            "rename" => await Rename(a),
            "targets" => await Print(Dm.ListTargets.Instance),
            "history" => await ForEach(a, n => new Dm.History(n)),
            "powercut" => await Print(new Crash.PowerCut(a.Args.ToArray(), a.Tear)),
            "version" => await Version(),
            "dmstats-report" => await DmstatsReport(a),
            "dmstats-create" => await DmstatsCreate(a),
            "dmstats-list" => await DmstatsList(a),
            "dmstats-delete" => await DmstatsDelete(a),
            "cluster-status" => await Print(DmActors.Cluster.ClusterCmd.Status.Instance),
            "cluster-move" => a.Args.Count == 2 ? await Move(a.Args[0], a.Args[1])
                : Error("cluster move needs VOLUME NODE."),
            _ => Error($"Unrecognised command '{a.Command}'."),
        };
        if (_usage) return 1;
        if (!ok || _failed) { stderr.WriteLine(DmsetupFormat.CommandFailed); return 1; }
        return 0;
    }

    private bool Error(string line)
    {
        stderr.WriteLine(line);
        return false;
    }

    /// <summary>Prints a reply: output lines of a success, or the failure lines (and marks the command failed).</summary>
    private bool Report(object reply, string? uuid = null, Func<Dm.Failed, Dm.Failed>? adjust = null)
    {
        switch (reply)
        {
            case var _ when DmsetupFormat.Output(reply) is { } lines:
                foreach (var l in lines) stdout.WriteLine(l);
                return true;
            case Dm.Failed f:
                foreach (var l in DmsetupFormat.Failure(adjust?.Invoke(f) ?? f, uuid)) stderr.WriteLine(l);
                _failed = true;
                return false;
            case Dm.Unavailable u:
                _failed = true;
                return Error($"dmactors: the host cannot serve devices: {u.Reason}");
            default:
                return Error($"dmsetup: unexpected reply {reply.GetType().Name}");
        }
    }

    private async Task<bool> Print(IControlMessage m) => Report(await channel.AskAsync(m));

    /// <summary>How long a move waits for the volume to serve on its new node (the CLI's timeout); null: the host's default.</summary>
    public TimeSpan? MoveWithin { get; init; }

    /// <summary>The move's own bound goes to the manager, and its answer (done, or "does not serve yet") is waited for a little longer.</summary>
    private static readonly TimeSpan MoveAnswerMargin = TimeSpan.FromSeconds(10);

    private async Task<bool> Move(string volume, string node) =>
        Report(await channel.AskAsync(new DmActors.Cluster.ClusterCmd.Move(volume, node, MoveWithin), MoveWithin == null ? TimeSpan.Zero : MoveAnswerMargin));

    private async Task<bool> ForEach(DmsetupArgs a, Func<string, IControlMessage> message)
    {
        if (a.Args.Count == 0) return Error("Please specify device.");
        foreach (var name in a.Args) Report(await channel.AskAsync(message(name)));
        return true;
    }

    private async Task<bool> Create(DmsetupArgs a)
    {
        if (a.Args.Count == 0) return Error("Please specify device.");
        if (a.Args.Count > 2) return Error("Too many command line arguments.");
        var name = a.Args[0];
        string? table = null;
        if (!a.NoTable)
        {
            if (!ReadTable(a, a.Args.ElementAtOrDefault(1), out table, out var targets)) return false;
            if (targets == 0) table = null; // empty input: a device without a table
        }
        var reply = await channel.AskAsync(new Dm.Create(name, table, a.ReadOnly, a.Uuid, a.Mode, a.Node));
        // dmsetup creates, then loads: a table the kernel refuses fails in the reload ioctl.
        return Report(reply, a.Uuid, f => f.Op == "create" && table != null && f.Error == Dm.Failed.Invalid && (DeviceCommands.CheckName(name) ?? DeviceCommands.CheckUuid(a.Uuid)) == null
            ? f with { Op = "reload" } : f);
    }

    private async Task<bool> Load(DmsetupArgs a)
    {
        if (a.NoTable) return Error("--notable only available when creating new device.");
        if (a.Args.Count == 0) return Error("Please specify device.");
        if (a.Args.Count > 2) return Error("Too many command line arguments.");
        if (!ReadTable(a, a.Args.ElementAtOrDefault(1), out var table, out _)) return false;
        return Report(await channel.AskAsync(new Dm.Load(a.Args[0], table!, a.ReadOnly)));
    }

    /// <summary>The table from --table, FILE or stdin, checked line by line as dmsetup's parser does; with its number of targets.</summary>
    private bool ReadTable(DmsetupArgs a, string? file, out string? table, out int targets)
    {
        targets = 0;
        string source;
        if (a.Table != null) { table = a.Table; source = ""; } // dmsetup names no file: "of table ."
        else if (file != null && file != "-")
        {
            try { table = File.ReadAllText(file); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                table = null;
                return Error($"Couldn't open '{file}' for reading");
            }
            source = file;
        }
        else { table = stdin.ReadToEnd(); source = "on stdin"; }
        try { targets = Table.Parse(table).Count; }
        catch (TableException e) when (InvalidLine().Match(e.Message) is { Success: true } m)
        {
            return Error(DmsetupFormat.InvalidFormat(int.Parse(m.Groups[1].Value), source));
        }
        return true;
    }

    [GeneratedRegex(@"^Invalid format on line (\d+)")]
    private static partial Regex InvalidLine();

    /// <summary>The names a query covers: the ones given, or every device (null when there are none).</summary>
    private async Task<IReadOnlyList<string>?> Names(DmsetupArgs a)
    {
        if (a.Args.Count > 0) return a.Args;
        var reply = await channel.AskAsync(Dm.List.Instance);
        var names = reply is Dm.DeviceList l ? l.Devices.Select(d => d.Name).ToList() : [];
        if (names.Count == 0) { stdout.WriteLine(DmsetupFormat.NoDevices); return null; }
        return names;
    }

    private async Task<bool> Targets(DmsetupArgs a, Func<string, IControlMessage> query)
    {
        var names = await Names(a);
        if (names == null) return true;
        var prefixed = a.Args.Count != 1;
        foreach (var name in names)
        {
            var reply = await channel.AskAsync(query(name));
            if (reply is Dm.Done { Lines: var lines })
            {
                // --target: only that type's lines; a device with none prints nothing (not even its empty line).
                if (a.Target != null && (lines = lines.Where(l => DmsetupFormat.TargetType(l) == a.Target).ToList()).Count == 0) continue;
                foreach (var l in DmsetupFormat.TargetLines(lines, prefixed ? name : null)) stdout.WriteLine(l);
            }
            else Report(reply);
        }
        return true;
    }

    private async Task<bool> Info(DmsetupArgs a)
    {
        var names = await Names(a);
        if (names == null) return true;
        foreach (var name in names)
        {
            var reply = await channel.AskAsync(new Dm.GetInfo(name));
            if (reply is not Dm.DeviceInfo info) { Report(reply); continue; }
            foreach (var l in DmsetupFormat.InfoBlock(info)) stdout.WriteLine(l);
        }
        return true;
    }

    private async Task<bool> Message(DmsetupArgs a)
    {
        if (a.Args.Count == 0) return Error("Please specify device.");
        if (a.Args.Count < 2 || !long.TryParse(a.Args[1], out var sector) || sector < 0) return Error("Invalid sector.");
        if (a.Args.Count < 3) return Error("No message supplied.");
        var reply = await channel.AskAsync(new Dm.Message(a.Args[0], sector, a.Args.Skip(2).ToArray()));
        if (reply is not Dm.Done d) return Report(reply);
        foreach (var response in d.Lines) stdout.Write(DmsetupFormat.MessageResponse(response));
        return true;
    }

    private async Task<bool> Rename(DmsetupArgs a)
    {
        if (a.Args.Count != 2) return Error(a.SetUuid ? "Usage: rename <device> --setuuid <uuid>" : "Usage: rename <device> <new_name>");
        return Report(await channel.AskAsync(new Dm.Rename(a.Args[0], a.Args[1], a.SetUuid)));
    }

    private async Task<bool> Version()
    {
        var reply = await channel.AskAsync(Dm.ListTargets.Instance);
        foreach (var l in DmsetupFormat.Version(reply is Dm.TargetList)) stdout.WriteLine(l);
        return reply is Dm.TargetList;
    }
}
