namespace DmActors.Host.Crash;

/// <summary>
/// `dmactors crashtest [--seed N] [--trials N] [--cuts-per-trial N] [--mode ordered|flush|both] [--lying-flush]
/// [--tear] [--quiet] [--ops N] [--disk-sectors N] [--trial N] [--jitter] [--batch N]`: the crash-consistency checker. Exit code 0 when no
/// violation was found, 1 otherwise, 2 on bad arguments.
/// </summary>
public static class CrashTestCommand
{
    public const string Usage =
        "usage: dmactors crashtest [--seed N] [--trials N] [--cuts-per-trial N] [--mode ordered|flush|both]\n" +
        "                          [--lying-flush] [--tear] [--quiet] [--ops N] [--disk-sectors N] [--trial N] [--jitter] [--batch N]";

    public static async Task<int> RunAsync(string[] args)
    {
        CrashOptions options;
        try { options = Parse(args); }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine($"crashtest: {e.Message}");
            Console.Error.WriteLine(Usage);
            return 2;
        }
        var report = await CrashChecker.RunAsync(options, Console.Out);
        return report.Violations == 0 ? 0 : 1;
    }

    public static CrashOptions Parse(string[] args)
    {
        var o = new CrashOptions();
        for (var i = 0; i < args.Length; i++)
        {
            string Value() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            int Number(int min)
            {
                var name = args[i];
                var text = Value();
                return int.TryParse(text, out var n) && n >= min ? n : throw new ArgumentException($"{name}: '{text}' is not a number >= {min}");
            }
            o = args[i] switch
            {
                "--seed" => o with { Seed = Number(int.MinValue) },
                "--trials" => o with { Trials = Number(1) },
                "--cuts-per-trial" => o with { CutsPerTrial = Number(1) },
                "--ops" => o with { OpsPerTrial = Number(1) },
                "--disk-sectors" => o with { DiskSectors = Number(256) is var d && d % 256 == 0 ? d : throw new ArgumentException("--disk-sectors must be a multiple of 256") },
                "--trial" => o with { OnlyTrial = Number(1) },
                "--mode" => o with
                {
                    Modes = Value() switch
                    {
                        "ordered" => CrashModes.Ordered,
                        "flush" => CrashModes.Flush,
                        "both" => CrashModes.Both,
                        var m => throw new ArgumentException($"--mode: '{m}' is not ordered, flush or both"),
                    },
                },
                "--lying-flush" => o with { LyingFlush = true },
                "--tear" => o with { Tear = true },
                "--quiet" => o with { Quiet = true },
                "--jitter" => o with { Jitter = true },
                "--batch" => o with { MaxBatch = Number(1) },
                var a => throw new ArgumentException($"unknown argument '{a}'"),
            };
        }
        return o;
    }
}
