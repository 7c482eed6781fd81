using System.CommandLine;
using DmActors.Host.CommandLine;

namespace DmActors.Host.Bench;

/// <summary>
/// `dmactors bench [--quick] [--json] [--dir DIR] [--seconds N] [--rounds N] [--size-mib N] [--only SUBSTRING] [--io-threads N] [--mirror]`.
/// Seconds is the length of one timed slice (one workload on one path in one round). IoThreads sizes the
/// engine's DiskIoPool and the direct baseline's thread set alike (default: the host's shared pool size).
/// </summary>
public sealed record BenchOptions(bool Quick, bool Json, string? Dir, double Seconds, int Rounds, long FileBytes, string? Only, int IoThreads,
    bool Mirror = false)
{
    /// <summary>The size of the host's shared DiskIoPool.</summary>
    public static readonly int DefaultIoThreads = DiskIoPool.DefaultThreads;

    /// <summary>Parses the arguments after `bench`; throws <see cref="ArgumentException"/> naming the bad one.</summary>
    public static BenchOptions Parse(IReadOnlyList<string> args)
    {
        var o = new Definition();
        return o.From(CommandRunner.ParseOrThrow(o.Command(), args));
    }

    /// <summary>The options of one command line, and the command that reads them.</summary>
    internal sealed class Definition
    {
        private readonly Option<bool> _quick = ToolOption.Flag("--quick", "2 rounds of 0.25 s slices on 256 MiB files (under a minute).");
        private readonly Option<bool> _json = ToolOption.Flag("--json", "Machine-readable output.");
        private readonly Option<string?> _dir = ToolOption.Text("--dir", "DIR", "Where the backing files go (default a temporary directory).");
        private readonly Option<double?> _seconds = ToolOption.Seconds("--seconds", "N", "One timed slice (default 1.25).", 600,
            t => $"--seconds: expected a number of seconds in (0, 600], got '{t}'");
        private readonly Option<int?> _rounds = ToolOption.Int("--rounds", "N", "Rounds (default 3).", 1, 100,
            t => $"--rounds: expected a whole number in 1..100, got '{t}'");
        private readonly Option<int?> _sizeMib = ToolOption.Int("--size-mib", "N", "Each backing file, in MiB (default 1024).", 16, 1 << 20,
            t => $"--size-mib: expected MiB in 16..1048576, got '{t}'");
        private readonly Option<string?> _only = ToolOption.Text("--only", "SUBSTRING", "Only the workloads whose name contains it.");
        private readonly Option<int?> _ioThreads = ToolOption.Int("--io-threads", "N",
            $"DiskIoPool size and direct thread count (default the host's pool size, {DefaultIoThreads}).", 1, 256,
            t => $"--io-threads: expected a whole number in 1..256, got '{t}'");

        private readonly Option<bool> _mirror = ToolOption.Flag("--mirror",
            "Also a two-leg mirror (core log, two files) beside linear, for the workloads without barriers.");

        public Command Command() =>
            new("bench",
                "Direct file IO vs the same IO through mapped devices (linear, striped, 3-deep stack; both barrier modes), " +
                "interleaved in rounds. Progress goes to stderr; the table (or --json) to stdout.")
            { _quick, _json, _dir, _seconds, _rounds, _sizeMib, _only, _ioThreads, _mirror };

        public BenchOptions From(ParseResult r)
        {
            var quick = r.GetValue(_quick);
            return new BenchOptions(quick, r.GetValue(_json), r.GetValue(_dir),
                r.GetValue(_seconds) ?? (quick ? 0.25 : 1.25),
                r.GetValue(_rounds) ?? (quick ? 2 : 3),
                (long)(r.GetValue(_sizeMib) ?? (quick ? 256 : 1024)) << 20,
                r.GetValue(_only),
                r.GetValue(_ioThreads) ?? DefaultIoThreads,
                r.GetValue(_mirror));
        }
    }
}
