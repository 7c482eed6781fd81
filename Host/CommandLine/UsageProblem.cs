using System.CommandLine;
using System.CommandLine.Parsing;

namespace DmActors.Host.CommandLine;

public enum UsageKind { UnknownOption, MissingValue, BadValue, UnknownCommand, MissingCommand, UnexpectedArgument, MissingArgument, Invalid }

/// <summary>
/// The first thing wrong with a command line, sorted into the kinds a tool words differently: the offending
/// <paramref name="Token"/> (option, command or argument as typed) and our default one-line <paramref name="Text"/>.
/// <paramref name="Command"/> is the command the parse reached, <paramref name="Path"/> its name from the root
/// ("dmactors dmsetup create").
/// </summary>
public sealed record UsageProblem(UsageKind Kind, string Token, string Text, CommandResult Command, string Path)
{
    /// <summary>Null when the command line is fine.</summary>
    public static UsageProblem? Of(ParseResult result)
    {
        var at = result.CommandResult;
        UsageProblem Problem(UsageKind kind, string token, string text) => new(kind, token, text, at, PathOf(at));

        if (SwallowedOption(result) is { } option) return Problem(UsageKind.UnknownOption, option, $"unknown option '{option}'");
        if (result.UnmatchedTokens is [var first, ..])
        {
            if (first.Length > 1 && first[0] == '-') return Problem(UsageKind.UnknownOption, first, $"unknown option '{first}'");
            return HasCommands(at.Command) && !at.Children.OfType<CommandResult>().Any()
                ? Problem(UsageKind.UnknownCommand, first, $"unknown command '{first}'")
                : Problem(UsageKind.UnexpectedArgument, first, $"unexpected argument '{first}'");
        }
        foreach (var error in result.Errors)
        {
            switch (error.SymbolResult)
            {
                case OptionResult o:
                    return OptionProblem(o, error.Message);
                case ArgumentResult { Parent: OptionResult o }:
                    return OptionProblem(o, error.Message);
                case ArgumentResult a when a.Tokens.Count == 0:
                    var name = a.Argument.HelpName ?? a.Argument.Name;
                    return Problem(UsageKind.MissingArgument, name, $"missing {name}");
                case CommandResult c when HasCommands(c.Command) && !c.Children.OfType<CommandResult>().Any():
                    return Problem(UsageKind.MissingCommand, "", "no command given");
            }
            return Problem(error.SymbolResult is ArgumentResult ? UsageKind.BadValue : UsageKind.Invalid, "", error.Message);
        }
        return null;

        UsageProblem OptionProblem(OptionResult o, string message)
        {
            var name = o.IdentifierToken?.Value ?? o.Option.Name;
            return o.Tokens.Count == 0
                ? Problem(UsageKind.MissingValue, name, $"{name} needs a value")
                : Problem(UsageKind.BadValue, name, message);
        }
    }

    public static string PathOf(CommandResult command)
    {
        var names = new List<string>();
        for (SymbolResult? r = command; r != null; r = r.Parent)
            if (r is CommandResult c) names.Add(c.Command.Name);
        names.Reverse();
        return string.Join(' ', names);
    }

    private static bool HasCommands(Command c) => c.Subcommands.Any(s => !s.Hidden);

    /// <summary>
    /// An argument that looks like an option (`--bogus`) but is no option's value: System.CommandLine hands it to a
    /// command's list of arguments, getopt calls it unrecognized. After `--` everything is an argument.
    /// </summary>
    private static string? SwallowedOption(ParseResult result)
    {
        var values = new HashSet<Token>(ReferenceEqualityComparer.Instance);
        CollectOptionValues(result.RootCommandResult, values);
        foreach (var t in result.Tokens)
        {
            if (t.Type == TokenType.DoubleDash) break;
            if (t.Type == TokenType.Argument && t.Value.Length > 1 && t.Value[0] == '-' && !values.Contains(t)) return t.Value;
        }
        return null;
    }

    private static void CollectOptionValues(SymbolResult r, HashSet<Token> values)
    {
        if (r is OptionResult o) values.UnionWith(o.Tokens);
        if (r is CommandResult c)
            foreach (var child in c.Children) CollectOptionValues(child, values);
    }
}
