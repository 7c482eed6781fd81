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
        string? log = null, device = null, endMark = null, find = null;
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
                var flags = find switch
                {
                    "fua" => LogFlags.Fua, "flush" => LogFlags.Flush, "mark" => LogFlags.Mark,
                    _ => throw new ArgumentException($"--find {find}: expected fua, flush or mark"),
                };
                foreach (var e in LogReplay.Find(log, flags)) stdout.WriteLine(e.FindText);
                return 0;
            }
            if (device == null) { stderr.WriteLine("replay-log: give --replay DEV or --find"); return 1; }
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
}
