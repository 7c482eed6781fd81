using DmActors.Targets;

namespace DmActors.Host;

/// <summary>
/// `dmactors replay-log`: xfstests' replay-log for logs written by the log-writes target. Replays entries onto a
/// disk file in order (data at its sector, discards zero-filled) and stops after the entry that matches the limits;
/// or, with --find, lists the entries with a flag as `entry@offset`.
/// </summary>
public static class ReplayLogCommand
{
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        string? log = null, device = null, endMark = null, find = null, check = null, fsck = null;
        long? limit = null;
        var discard = true;
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            try
            {
                switch (args[i])
                {
                    case "--log": log = Value(); break;
                    case "--replay": device = Value(); break;
                    case "--end-mark": endMark = Value(); break;
                    case "--limit": limit = long.TryParse(Value(), out var n) && n > 0 ? n : throw new ArgumentException("--limit takes a positive number"); break;
                    case "--find": find = Value(); break;
                    case "--no-discard": discard = false; break;
                    case "--check": check = Value(); break;
                    case "--fsck": fsck = Value(); break;
                    default: throw new ArgumentException($"unknown option '{args[i]}'");
                }
            }
            catch (ArgumentException e) { stderr.WriteLine($"replay-log: {e.Message}"); return 1; }
        }
        if (log == null) { stderr.WriteLine("replay-log: --log FILE is required"); return 1; }
        try
        {
            if (find != null)
            {
                foreach (var e in LogReplay.Find(log, Flags(find, "--find"))) stdout.WriteLine(e.FindText);
                return 0;
            }
            if (device == null) { stderr.WriteLine("replay-log: give --replay DEV or --find"); return 1; }
            if (check != null) return CheckEachPoint(log, device, Flags(check, "--check"), fsck, discard, stdout, stderr);
            var result = LogReplay.Replay(log, device, endMark, limit, discard);
            if (endMark != null && !result.Stopped) { stderr.WriteLine($"replay-log: mark '{endMark}' not found; replayed the whole log"); return 1; }
            stdout.WriteLine($"replayed {result.Replayed} entries{(result.Last is { } last ? $", last entry {last.Index} ({last.Flags})" : "")}");
            return 0;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or ArgumentException)
        {
            stderr.WriteLine($"replay-log: {e.Message}");
            return 1;
        }
    }

    private static LogFlags Flags(string name, string option) => name switch
    {
        "fua" => LogFlags.Fua, "flush" => LogFlags.Flush, "mark" => LogFlags.Mark,
        _ => throw new ArgumentException($"{option} {name}: expected fua, flush or mark"),
    };

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
