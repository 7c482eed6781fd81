using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using System.CommandLine.Parsing;

namespace DmActors.Host.CommandLine;

/// <summary>
/// Runs a System.CommandLine tree the same way for every tool: -h/--help on every command, a usage error as one
/// line naming the problem ("dmactors crashtest: unknown option '--bogus'"), and exit status 0 on success, 1 on
/// failure, 2 on bad usage. A command that is <see cref="IReportsUsage"/> words its own (dmsetup).
/// </summary>
public static class CommandRunner
{
    public const int Success = 0, Failure = 1, BadUsage = 2;

    // Table lines, device names and paths are taken as written: no @response files.
    private static readonly ParserConfiguration Parsing = new() { ResponseFileTokenReplacer = null };

    /// <summary>Gives <paramref name="command"/> and everything under it -h/--help (written by <see cref="HelpText"/>).</summary>
    public static T WithHelp<T>(T command) where T : Command
    {
        command.Options.Add(new HelpOption("--help", "-h") { Description = "Show this help.", Action = new PrintHelp() });
        return command;
    }

    public static ParseResult Parse(Command command, IReadOnlyList<string> args) => command.Parse(args, Parsing);

    public static async Task<int> RunAsync(Command command, IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr)
    {
        var result = Parse(command, args);
        return Rejected(result, stderr) ?? await result.InvokeAsync(Streams(stdout, stderr));
    }

    /// <summary>For tools whose actions are synchronous (replay-log), so callers need not wait on a task.</summary>
    public static int Run(Command command, IReadOnlyList<string> args, TextWriter stdout, TextWriter stderr)
    {
        var result = Parse(command, args);
        return Rejected(result, stderr) ?? result.Invoke(Streams(stdout, stderr));
    }

    // No termination timeout: serve stops on SIGINT/SIGTERM itself, and takes as long as a clean stop takes.
    private static InvocationConfiguration Streams(TextWriter stdout, TextWriter stderr) =>
        new() { Output = stdout, Error = stderr, ProcessTerminationTimeout = null };

    /// <summary>The exit status of a usage error (reported on <paramref name="stderr"/>), or null for a good command line.</summary>
    private static int? Rejected(ParseResult result, TextWriter stderr) =>
        result.Action is not PrintHelp && UsageProblem.Of(result) is { } problem ? Report(problem, stderr) : null;

    /// <summary>
    /// The parsed values of <paramref name="command"/>'s command line, or <see cref="ArgumentException"/> with the
    /// usage error's text (for tools whose options are a record: bench, crashtest).
    /// </summary>
    public static ParseResult ParseOrThrow(Command command, IReadOnlyList<string> args)
    {
        var result = Parse(command, args);
        return UsageProblem.Of(result) is { } problem ? throw new ArgumentException(problem.Text) : result;
    }

    private static int Report(UsageProblem problem, TextWriter stderr)
    {
        for (SymbolResult? r = problem.Command; r != null; r = r.Parent)
            if (r is CommandResult { Command: IReportsUsage own }) return own.Report(problem, stderr);
        stderr.WriteLine($"{problem.Path}: {problem.Text}");
        // Without a (known) command, the list of commands is what helps.
        if (problem.Kind is UsageKind.UnknownCommand or UsageKind.MissingCommand) HelpText.Write(problem.Command, stderr);
        return BadUsage;
    }

    private sealed class PrintHelp : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult result)
        {
            HelpText.Write(result.CommandResult, result.InvocationConfiguration.Output);
            return Success;
        }
    }
}
