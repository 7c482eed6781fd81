using System.CommandLine;
using System.CommandLine.Parsing;

namespace DmActors.Host.CommandLine;

/// <summary>
/// A command's --help, written from its definition so it cannot drift: the usage line first (as Unix tools do), the
/// description, then its arguments, every option it takes (its own, what it uses of its parent's, and the parent's
/// that apply everywhere) and its subcommands.
/// </summary>
public static class HelpText
{
    private const int Width = 100, MaxLabel = 30;

    public static void Write(CommandResult at, TextWriter w)
    {
        var command = at.Command;
        var commands = command.Subcommands.Where(c => !c.Hidden).ToList();
        var synopsis = Synopsis(command);
        w.WriteLine($"Usage: {UsageProblem.PathOf(at)}{(commands.Count > 0 ? " <command>" : "")}{(synopsis.Length > 0 ? " " + synopsis : "")} [options]");
        if (!string.IsNullOrEmpty(command.Description))
        {
            w.WriteLine();
            foreach (var paragraph in command.Description.Split('\n')) foreach (var line in Wrap(paragraph, Width)) w.WriteLine(line);
        }
        Section(w, "Arguments:", command.Arguments.Where(a => !a.Hidden && a.Description != null).Select(a => (a.HelpName ?? a.Name, a.Description!)));
        Section(w, "Options:", OptionsOf(at).Select(o => (Label(o), o.Description ?? "")));
        Section(w, "Commands:", commands.Select(c => (Label(c), c.Description ?? "")));
    }

    /// <summary>Options shown for the command: its own, those it lists of its parent's, and its ancestors' recursive ones.</summary>
    public static IEnumerable<Option> OptionsOf(CommandResult at)
    {
        var shown = new List<Option>();
        shown.AddRange(at.Command.Options.Where(o => !o.Hidden));
        if (at.Command is ToolCommand tool) shown.AddRange(tool.Uses);
        for (var r = at.Parent; r != null; r = r.Parent)
            if (r is CommandResult c) shown.AddRange(c.Command.Options.Where(o => o.Recursive && !o.Hidden));
        // The help option last, once (a root and a tool run alone both carry one).
        return shown.Distinct().OrderBy(o => o is System.CommandLine.Help.HelpOption);
    }

    private static string Synopsis(Command c) => string.Join(' ', c.Arguments.Where(a => !a.Hidden).Select(a => a.HelpName ?? a.Name));

    private static string Label(Command c)
    {
        var synopsis = Synopsis(c);
        return string.Join(", ", c.Aliases.Prepend(c.Name)) + (synopsis.Length > 0 ? " " + synopsis : "");
    }

    private static string Label(Option o)
    {
        var names = string.Join(", ", o.Aliases.Prepend(o.Name).OrderBy(n => n.StartsWith("--")).ThenBy(n => n.Length));
        return o.Arity.MaximumNumberOfValues > 0 ? $"{names} {o.HelpName ?? "VALUE"}" : names;
    }

    private static void Section(TextWriter w, string title, IEnumerable<(string Label, string Text)> rows)
    {
        var list = rows.ToList();
        if (list.Count == 0) return;
        w.WriteLine();
        w.WriteLine(title);
        var column = Math.Min(MaxLabel, list.Max(r => r.Label.Length)) + 4;
        foreach (var (label, text) in list)
        {
            var lines = text.Split('\n').SelectMany(p => Wrap(p, Width - column)).ToList();
            var indent = new string(' ', column);
            // A label too long for the column gets a line of its own.
            if (label.Length + 4 > column) w.WriteLine($"  {label}");
            else { w.WriteLine($"  {label.PadRight(column - 2)}{lines[0]}".TrimEnd()); lines.RemoveAt(0); }
            foreach (var more in lines) w.WriteLine($"{indent}{more}".TrimEnd());
        }
    }

    private static IEnumerable<string> Wrap(string text, int width)
    {
        var line = "";
        foreach (var word in text.Split(' ', StringSplitOptions.RemoveEmptyEntries))
        {
            if (line.Length > 0 && line.Length + 1 + word.Length > width) { yield return line; line = ""; }
            line = line.Length == 0 ? word : $"{line} {word}";
        }
        yield return line;
    }
}
