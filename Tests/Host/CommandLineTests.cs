using System.Text.RegularExpressions;
using DmActors.Host;
using DmActors.Host.Cli;
using DmActors.Host.CommandLine;
using DmActors.Host.Crash;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// The `dmactors` command line as one tree: --help on every command, exit status 0 / 1 / 2, usage errors as one
/// line naming the problem (dmsetup's in dmsetup's words, status 1), and getopt's habits where tools rely on them.
/// In-process: the same <see cref="Program.Root"/> the program runs, nothing started.
/// </summary>
public sealed class CommandLineTests
{
    private static async Task<(int Code, string Out, string Err)> Run(params string[] args)
    {
        var (stdout, stderr) = (new StringWriter { NewLine = "\n" }, new StringWriter { NewLine = "\n" });
        var code = await CommandRunner.RunAsync(Program.Root(), args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Each tool and every option it has (its --help must list them all).</summary>
    public static TheoryData<string, string[]> Tools => new()
    {
        { "serve", ["--config"] },
        { "dmsetup", ["--config", "--control", "--timeout"] },
        { "powercut", ["--tear", "--config", "--control", "--timeout"] },
        { "replay-log", ["--log", "--replay", "--end-mark", "--limit", "--find", "--no-discard", "--check", "--fsck"] },
        { "crashtest", ["--seed", "--trials", "--cuts-per-trial", "--mode", "--lying-flush", "--tear", "--quiet", "--ops", "--disk-sectors", "--trial", "--jitter", "--batch"] },
        { "bench", ["--quick", "--json", "--dir", "--seconds", "--rounds", "--size-mib", "--only", "--io-threads"] },
        { "bench-scale", ["--devices", "--busy", "--seconds"] },
    };

    /// <summary>The dmsetup commands and the options each lists beyond dmsetup's own (--config, --control, --timeout).</summary>
    public static TheoryData<string, string[]> DmsetupCommands => new()
    {
        { "create", ["--table", "-n, --notable", "-r, --readonly", "-u, --uuid", "--barrier-mode"] },
        { "remove", ["-f, --force"] }, { "suspend", ["--noflush"] }, { "resume", [] },
        { "load", ["--table", "-r, --readonly"] }, { "reload", ["--table", "-r, --readonly"] }, { "clear", [] },
        { "table", ["--inactive"] }, { "status", [] }, { "info", ["-c, -C, --columns", "--noheadings"] }, { "ls", [] },
        { "message", [] }, { "rename", ["--setuuid"] }, { "targets", [] }, { "version", [] }, { "history", [] },
        { "powercut", ["--tear"] },
    };

    private static void ListsOptions(string help, IEnumerable<string> options)
    {
        foreach (var o in options.Append("-h, --help"))
            Assert.Matches(new Regex($@"^  (-\w, )*{Regex.Escape(o)}( |$)", RegexOptions.Multiline), help);
    }

    [Theory, MemberData(nameof(Tools))]
    public async Task Help_of_every_tool_exits_0_and_lists_every_option(string tool, string[] options)
    {
        var (code, stdout, stderr) = await Run(tool, "--help");
        Assert.Equal((0, ""), (code, stderr));
        Assert.StartsWith($"Usage: dmactors {tool} ", stdout);
        ListsOptions(stdout, options);
        Assert.Equal(stdout, (await Run(tool, "-h")).Out);
    }

    [Theory, MemberData(nameof(DmsetupCommands))]
    public async Task Help_of_every_dmsetup_command_lists_its_options_and_dmsetups(string command, string[] options)
    {
        var (code, stdout, stderr) = await Run("dmsetup", command, "--help");
        Assert.Equal((0, ""), (code, stderr));
        Assert.StartsWith($"Usage: dmactors dmsetup {(command == "reload" ? "load" : command)} ", stdout);
        ListsOptions(stdout, [.. options, "--config FILE", "--control HOST:PORT", "--timeout SECONDS"]);
    }

    [Fact]
    public async Task The_dmsetup_help_lists_every_command()
    {
        var (_, stdout, _) = await Run("dmsetup", "--help");
        foreach (var command in DmsetupCommands.Select(row => (string)row[0]).Where(c => c != "reload"))
            Assert.Matches(new Regex($@"^  {command}\b", RegexOptions.Multiline), stdout);
        Assert.Contains("  load, reload NAME [FILE]", stdout);
    }

    [Theory, MemberData(nameof(Tools))]
    public async Task An_unknown_option_is_a_usage_error_that_names_it(string tool, string[] _)
    {
        var r = await Run(tool, "--frobnicate");
        // dmsetup keeps getopt's words and dmsetup's status; our own tools say "usage" with 2.
        Assert.Equal(tool == "dmsetup" ? (1, "dmsetup: unrecognized option '--frobnicate'\n") : (2, $"dmactors {tool}: unknown option '--frobnicate'\n"),
            (r.Code, r.Err));
        Assert.Equal("", r.Out);
    }

    [Theory]
    [InlineData("dmactors crashtest: --trials: '0' is not a number >= 1", "crashtest", "--trials", "0")]
    [InlineData("dmactors crashtest: --mode: 'sideways' is not ordered, flush or both", "crashtest", "--mode", "sideways")]
    [InlineData("dmactors bench: --dir needs a value", "bench", "--dir")]
    [InlineData("dmactors bench-scale: --busy: expected a positive number, got 'many'", "bench-scale", "--busy", "many")]
    [InlineData("dmactors serve: unexpected argument 'extra'", "serve", "extra")]
    [InlineData("dmactors replay-log: --log FILE is required", "replay-log", "--replay", "dev")]
    [InlineData("dmactors replay-log: give --replay DEV or --find", "replay-log", "--log", "log")]
    [InlineData("dmactors replay-log: --find frob: expected fua, flush or mark", "replay-log", "--log", "log", "--find", "frob")]
    [InlineData("dmactors powercut: --timeout: 'soon' is not a number of seconds", "powercut", "--timeout", "soon")]
    [InlineData("dmactors: unknown option '--frobnicate'", "--frobnicate")]
    public async Task Bad_usage_exits_2_with_one_line_naming_the_problem(string expected, params string[] args)
    {
        var r = await Run(args);
        Assert.Equal((2, expected + "\n", ""), (r.Code, r.Err, r.Out));
    }

    [Fact]
    public async Task An_unknown_command_lists_the_commands()
    {
        var r = await Run("frob");
        Assert.Equal(2, r.Code);
        Assert.StartsWith("dmactors: unknown command 'frob'\nUsage: dmactors <command> [options]\n", r.Err);
        Assert.Contains("\n  crashtest ", r.Err);
    }

    [Theory]
    [InlineData("Unrecognised command 'frob'.\nCommand failed.\n", "frob")]
    [InlineData("dmsetup: no command given (try 'dmactors dmsetup --help')\n")]
    [InlineData("dmsetup: option '--table' requires an argument\n", "create", "x", "--table")]
    [InlineData("dmsetup: option requires an argument -- 'u'\n", "create", "x", "-u")]
    [InlineData("dmsetup: invalid option -- 'z'\n", "ls", "-z")]
    [InlineData("Too many command line arguments.\nCommand failed.\n", "ls", "extra")]
    [InlineData("Invalid barrier mode 'never' (ordered or flush).\n", "create", "x", "--barrier-mode", "never")]
    public async Task Dmsetup_usage_errors_are_dmsetups_and_reach_no_host(string expected, params string[] args)
    {
        // No host runs: each of these is refused before connecting.
        var r = await Run(["dmsetup", "--control", "127.0.0.1:1", .. args]);
        Assert.Equal((1, expected, ""), (r.Code, r.Err, r.Out));
    }

    [Fact]
    public async Task Dash_c_is_only_dmsetups_columns()
    {
        Assert.Equal((2, "dmactors serve: unknown option '-c'\n"), await Run("serve", "-c", "x") is var r ? (r.Code, r.Err) : default);
        Assert.True(DmsetupArgs.Parse(["info", "-c"], out _)!.Columns);
        Assert.True(DmsetupArgs.Parse(["info", "-C", "--noheadings"], out _)!.Columns);
    }

    [Fact]
    public void Dmsetup_options_come_anywhere_and_the_last_of_a_repeated_one_counts()
    {
        var a = DmsetupArgs.Parse(["-r", "--table", "0 1 zero", "-u", "U", "create", "x"], out var error)!;
        Assert.True(a != null, error);
        Assert.Equal(("create", "x", "0 1 zero", true, "U"), (a.Command, a.Args.Single(), a.Table, a.ReadOnly, a.Uuid));
        var b = DmsetupArgs.Parse(["reload", "x", "--table", "0 1 zero", "--table", "0 2 zero", "--noudevsync", "-y"], out _)!;
        Assert.Equal(("reload", "0 2 zero"), (b.Command, b.Table));
        // A switch takes no value: `-f false` removes the device named false.
        var c = DmsetupArgs.Parse(["remove", "-f", "false", "-"], out _)!;
        Assert.True(c.Force);
        Assert.Equal(["false", "-"], c.Args);
        Assert.Equal(["dev", "0", "--table", "-r"], DmsetupArgs.Parse(["message", "dev", "0", "--", "--table", "-r"], out _)!.Args);
        Assert.Equal("@table", DmsetupArgs.Parse(["create", "x", "--table", "@table"], out _)!.Table); // no response files
    }

    [Fact]
    public void A_value_may_start_with_a_dash()
    {
        Assert.Equal(-5, CrashTestCommand.Parse(["--seed", "-5"]).Seed);
        Assert.Equal("-x", DmsetupArgs.Parse(["create", "x", "-u", "-x"], out _)!.Uuid);
    }
}
