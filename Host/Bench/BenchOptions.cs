namespace DmActors.Host.Bench;

/// <summary>
/// `dmactors bench [--quick] [--json] [--dir DIR] [--seconds N] [--rounds N] [--size-mib N]`.
/// Seconds is the length of one timed slice (one workload on one path in one round). IoThreads sizes the
/// engine's DiskIoPool and the direct baseline's thread set alike (default: the host's shared pool size).
/// </summary>
public sealed record BenchOptions(bool Quick, bool Json, string? Dir, double Seconds, int Rounds, long FileBytes, string? Only, int IoThreads)
{
    public const string Usage = """
        usage: dmactors bench [--quick] [--json] [--dir DIR] [--seconds N] [--rounds N] [--size-mib N] [--only SUBSTRING] [--io-threads N]
          Direct file IO vs the same IO through mapped devices (linear, striped, 3-deep stack; both barrier modes),
          interleaved in rounds. --quick: 2 rounds of 0.25 s slices on 256 MiB files (under a minute).
          --seconds: one slice (default 1.25), --rounds (default 3), --size-mib: each backing file (default 1024),
          --dir: where the files go (default a temp dir), --only: workloads whose name contains it,
          --io-threads: DiskIoPool size and direct thread count (default the host's pool size), --json: machine output.
        """;

    /// <summary>Parses the arguments after `bench`; throws <see cref="ArgumentException"/> naming the bad one.</summary>
    public static BenchOptions Parse(IReadOnlyList<string> args)
    {
        bool quick = false, json = false;
        string? dir = null, only = null;
        double? seconds = null;
        int? rounds = null;
        long? sizeMib = null;
        int? ioThreads = null;
        var i = args.Count > 0 && args[0] == "bench" ? 1 : 0;
        for (; i < args.Count; i++)
        {
            switch (args[i])
            {
                case "--help" or "-h": throw new HelpRequested();
                case "--quick": quick = true; break;
                case "--json": json = true; break;
                case "--dir": dir = Value(args, ref i); break;
                case "--only": only = Value(args, ref i); break;
                case "--seconds":
                    seconds = double.TryParse(Value(args, ref i), System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0 && s <= 600
                        ? s : throw new ArgumentException($"--seconds: expected a number of seconds in (0, 600], got '{args[i]}'");
                    break;
                case "--rounds":
                    rounds = int.TryParse(Value(args, ref i), out var r) && r is > 0 and <= 100
                        ? r : throw new ArgumentException($"--rounds: expected a whole number in 1..100, got '{args[i]}'");
                    break;
                case "--size-mib":
                    sizeMib = long.TryParse(Value(args, ref i), out var m) && m is >= 16 and <= 1 << 20
                        ? m : throw new ArgumentException($"--size-mib: expected MiB in 16..1048576, got '{args[i]}'");
                    break;
                case "--io-threads":
                    ioThreads = int.TryParse(Value(args, ref i), out var t) && t is > 0 and <= 256
                        ? t : throw new ArgumentException($"--io-threads: expected a whole number in 1..256, got '{args[i]}'");
                    break;
                default: throw new ArgumentException($"unknown bench argument '{args[i]}'\n{Usage}");
            }
        }
        return new BenchOptions(quick, json, dir,
            seconds ?? (quick ? 0.25 : 1.25),
            rounds ?? (quick ? 2 : 3),
            (sizeMib ?? (quick ? 256 : 1024)) << 20,
            only,
            ioThreads ?? DefaultIoThreads);
    }

    /// <summary>The size of the host's shared DiskIoPool.</summary>
    public static readonly int DefaultIoThreads = DiskIoPool.DefaultThreads;

    /// <summary>`--help`: print <see cref="Usage"/> and succeed.</summary>
    public sealed class HelpRequested() : Exception(Usage);

    private static string Value(IReadOnlyList<string> args, ref int i) =>
        ++i < args.Count ? args[i] : throw new ArgumentException($"{args[i - 1]} needs a value\n{Usage}");
}
