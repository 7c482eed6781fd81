using System.CommandLine;
using DmActors.Host.CommandLine;
using DmActors.Targets;

namespace DmActors.Host;

/// <summary>
/// `dmactors replay-log`: xfstests' replay-log for logs written by the log-writes target. Replays entries onto a
/// disk file in order (data at its sector, discards zero-filled) and stops after the entry that matches the limits;
/// or, with --find, lists the entries with a flag as `entry@offset`.
/// </summary>
public static class ReplayLogCommand
{
    /// <summary>Runs `replay-log ARGS` alone (as xfstests' tool: its messages start with "replay-log:").</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr) =>
        CommandRunner.Run(CommandRunner.WithHelp(Build()), args, stdout, stderr);

    public static Command Build()
    {
        var log = ToolOption.Text("--log", "FILE", "The log device or file (written by the log-writes target). Required.");
        var replay = ToolOption.Text("--replay", "DEV", "The disk file or block device to replay onto.");
        var endMark = ToolOption.Text("--end-mark", "NAME", "Stop after the mark NAME (`dmsetup message ... mark NAME`).");
        var limit = ToolOption.Value<long>("--limit", "N", "Stop after N entries.",
            t => long.TryParse(t, out var n) && n > 0 ? n : null, _ => "--limit takes a positive number");
        var find = Kind("--find", "List the entries that are FUA writes, flushes or marks, as entry@offset.");
        var discard = ToolOption.Flag("--no-discard", "Skip discard entries (by default they zero-fill their range).");
        var check = Kind("--check", "Replay to each such point in turn and run --fsck after each; every point must pass.");
        var fsck = ToolOption.Text("--fsck", "CMD", "The check for --check, run by /bin/sh with $REPLAY_DEV = the device.");
        var command = new Command("replay-log",
            "Replays a log-writes log onto a disk file up to a mark or entry (like xfstests' replay-log), or lists its " +
            "FUA / flush / mark points, or replays to each such point in turn and checks the device after each.")
        { log, replay, endMark, limit, find, discard, check, fsck };
        command.Validators.Add(c =>
        {
            if (c.GetResult(log) == null) c.AddError("--log FILE is required");
            else if (c.GetResult(find) == null && c.GetResult(replay) == null) c.AddError("give --replay DEV or --find");
        });
        command.SetAction(r =>
        {
            var (stdout, stderr) = (r.InvocationConfiguration.Output, r.InvocationConfiguration.Error);
            try
            {
                if (r.GetValue(find) is { } flags)
                {
                    foreach (var e in LogReplay.Find(r.GetValue(log)!, flags)) stdout.WriteLine(e.FindText);
                    return CommandRunner.Success;
                }
                var (file, device, mark) = (r.GetValue(log)!, r.GetValue(replay)!, r.GetValue(endMark));
                if (r.GetValue(check) is { } points)
                    return CheckEachPoint(file, device, points, r.GetValue(fsck), !r.GetValue(discard), stdout, stderr);
                var result = LogReplay.Replay(file, device, mark, r.GetValue(limit), !r.GetValue(discard));
                if (mark != null && !result.Stopped)
                {
                    stderr.WriteLine($"replay-log: mark '{mark}' not found; replayed the whole log");
                    return CommandRunner.Failure;
                }
                stdout.WriteLine($"replayed {result.Replayed} entries{(result.Last is { } last ? $", last entry {last.Index} ({last.Flags})" : "")}");
                return CommandRunner.Success;
            }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException)
            {
                stderr.WriteLine($"replay-log: {e.Message}");
                return CommandRunner.Failure;
            }
        });
        return command;
    }

    /// <summary>--find / --check: fua, flush or mark.</summary>
    private static Option<LogFlags?> Kind(string name, string description) =>
        ToolOption.Value<LogFlags>(name, "fua|flush|mark", description,
            t => Kinds.FirstOrDefault(k => k.Option == t) is { Option: not null } k ? k.Flag : null,
            t => $"{name} {t}: expected fua, flush or mark");

    /// <summary>What --check and the messages call each kind of point.</summary>
    private static readonly (LogFlags Flag, string Option, string One, string Plural)[] Kinds =
        [(LogFlags.Flush, "flush", "flush point", "flush points"), (LogFlags.Fua, "fua", "FUA entry", "FUA entries"), (LogFlags.Mark, "mark", "mark", "marks")];

    /// <summary>
    /// replay-log --check: replays up to each FUA (or flush, or mark) point in turn and runs the check command on the
    /// device after each (e.g. a fsck); every point must pass. A log without such points fails: nothing checked
    /// is no pass.
    /// </summary>
    private static int CheckEachPoint(string log, string device, LogFlags flags, string? fsck, bool discard, TextWriter stdout, TextWriter stderr)
    {
        var failures = 0;
        var all = LogReplay.Find(log, LogFlags.Flush | LogFlags.Fua | LogFlags.Mark);
        var points = all.Where(e => e.Has(flags)).ToList();
        if (points.Count == 0)
        {
            stderr.WriteLine($"replay-log: {NothingToCheck(all, flags)}");
            return 1;
        }
        foreach (var point in points)
        {
            LogReplay.Replay(log, device, limit: point.Index + 1, discard: discard);
            var ok = fsck == null || RunCheck(fsck, device);
            if (!ok) failures++;
            stdout.WriteLine($"entry {point.FindText}: {(fsck == null ? "replayed" : ok ? "check passed" : "CHECK FAILED")}");
        }
        stdout.WriteLine($"{points.Count} point(s), {failures} failed");
        return failures == 0 ? 0 : 1;
    }

    /// <summary>"no FUA entries; the log has 762 flush points: try --check flush", naming what the log does have.</summary>
    private static string NothingToCheck(IReadOnlyList<LogEntry> entries, LogFlags wanted)
    {
        var missing = Kinds.Single(k => k.Flag == wanted).Plural;
        var found = Kinds.Where(k => k.Flag != wanted).Select(k => (Kind: k, Count: entries.Count(e => e.Has(k.Flag))))
            .Where(x => x.Count > 0).OrderByDescending(x => x.Count).ToList();
        if (found.Count == 0)
            return $"no {missing}; the log has no {string.Join(" or ", Kinds.Where(k => k.Flag != wanted).Select(k => k.Plural))} either: nothing to check";
        var has = string.Join(" and ", found.Select(x => $"{x.Count} {(x.Count == 1 ? x.Kind.One : x.Kind.Plural)}"));
        return $"no {missing}; the log has {has}: try --check {found[0].Kind.Option}";
    }

    private static bool RunCheck(string command, string device)
    {
        var psi = new System.Diagnostics.ProcessStartInfo("/bin/sh") { UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add(command);
        psi.Environment["REPLAY_DEV"] = device;
        using var p = System.Diagnostics.Process.Start(psi)!;
        p.WaitForExit();
        return p.ExitCode == 0;
    }
}
