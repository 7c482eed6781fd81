using System.CommandLine;

namespace DmActors.Host.CommandLine;

/// <summary>Options as every dmactors tool takes them.</summary>
public static class ToolOption
{
    /// <summary>A switch: it takes no value, so `-r true` is a switch and an argument, as with getopt.</summary>
    public static Option<bool> Flag(string name, string description, params string[] aliases) =>
        new(name, aliases) { Description = description, Arity = ArgumentArity.Zero };

    /// <summary>A text value, shown as <paramref name="helpName"/>; given twice, the last one counts (getopt's rule).</summary>
    public static Option<string?> Text(string name, string helpName, string description, params string[] aliases) =>
        new(name, aliases)
        {
            Description = description, HelpName = helpName, Arity = ArgumentArity.OneOrMore,
            CustomParser = r => r.Tokens.Count == 0 ? null : r.Tokens[^1].Value,
        };

    /// <summary>
    /// A value that <paramref name="parse"/> turns into a <typeparamref name="T"/> (null: not a valid one; the error
    /// is <paramref name="complaint"/> of the text, naming the option). Null when the option is not given.
    /// </summary>
    public static Option<T?> Value<T>(string name, string helpName, string description, Func<string, T?> parse,
        Func<string, string> complaint, params string[] aliases) where T : struct =>
        new(name, aliases)
        {
            Description = description, HelpName = helpName, Arity = ArgumentArity.OneOrMore,
            CustomParser = r =>
            {
                if (r.Tokens.Count == 0) return null;
                var text = r.Tokens[^1].Value;
                var value = parse(text);
                if (value == null) r.AddError(complaint(text));
                return value;
            },
        };

    /// <summary>A whole number in [<paramref name="min"/>, <paramref name="max"/>].</summary>
    public static Option<int?> Int(string name, string helpName, string description, int min, int max, Func<string, string> complaint) =>
        Value<int>(name, helpName, description,
            t => int.TryParse(t, System.Globalization.NumberStyles.AllowLeadingSign, System.Globalization.CultureInfo.InvariantCulture, out var n) && n >= min && n <= max ? n : null,
            complaint);

    /// <summary>A number of seconds in (0, <paramref name="max"/>], fractions allowed.</summary>
    public static Option<double?> Seconds(string name, string helpName, string description, double max, Func<string, string> complaint) =>
        Value<double>(name, helpName, description,
            t => double.TryParse(t, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var s) && s > 0 && s <= max ? s : null,
            complaint);

    /// <summary>The arguments of a command, for a command that checks their number itself (dmsetup's wording).</summary>
    public static Argument<string[]> Words(string helpName) => new("args") { HelpName = helpName, Arity = ArgumentArity.ZeroOrMore };
}
