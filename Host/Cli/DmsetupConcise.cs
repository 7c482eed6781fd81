using System.Text;

namespace DmActors.Host.Cli;

/// <summary>
/// dmsetup's concise format (dmsetup(8) CONCISE FORMAT): `name,uuid,minor,flags,table[,table]...` per device,
/// devices separated by ';', and a backslash before any ',', ';' or '\' inside a name, uuid or table line.
/// </summary>
public static class DmsetupConcise
{
    /// <summary>One device of a concise specification; Uuid, Minor and Flags may be empty.</summary>
    public sealed record Spec(string Name, string Uuid, string Minor, string Flags, string Table);

    /// <summary>_print_string_quoted.</summary>
    public static string Quote(string s)
    {
        var b = new StringBuilder(s.Length);
        foreach (var c in s)
        {
            if (c is ',' or ';' or '\\') b.Append('\\');
            b.Append(c);
        }
        return b.ToString();
    }

    /// <summary>
    /// One device as `table --concise` prints it: name, uuid, minor, ro|rw, then each table line (`start len type `
    /// and its quoted params), each after a comma. <paramref name="lines"/> are `dmsetup table` lines.
    /// </summary>
    public static string Device(Dm.DeviceInfo info, IEnumerable<string> lines)
    {
        var b = new StringBuilder($"{Quote(info.Name)},{Quote(info.Uuid ?? "")},{info.Minor},{(info.ReadOnly ? "ro" : "rw")}");
        foreach (var line in lines)
        {
            // `start len type ` unquoted as dmsetup prints it, then the params quoted.
            var head = NthSpace(line, 3);
            b.Append(',').Append(head < 0 ? line : line[..(head + 1)] + Quote(line[(head + 1)..]));
        }
        return b.ToString();
    }

    private static int NthSpace(string s, int n)
    {
        var at = -1;
        for (var k = 0; k < n; k++) if ((at = s.IndexOf(' ', at + 1)) < 0) return -1;
        return at;
    }

    /// <summary>
    /// _create_concise's parser: a backslash keeps the next character; the first four commas end fields (blanks after
    /// them skipped), later ones end table lines; ';' or the end of the text ends a device. dmsetup creates each device
    /// as it is parsed, so the devices before a bad one are returned with the error lines of that one.
    /// </summary>
    public static IReadOnlyList<Spec> Parse(string text, out IReadOnlyList<string> errors)
    {
        errors = [];
        var specs = new List<Spec>();
        var fields = new List<StringBuilder> { new() };
        string Parsed() => $"Parsed {fields.Count} fields: " + string.Join(" ", new[] { "name", "uuid", "minor", "flags", "table" }
            .Select((n, k) => $"{n}: {(k < fields.Count ? fields[k].ToString() : "(null)")}"));
        var c = 0;
        while (c < text.Length)
        {
            var ch = text[c];
            if (ch == '\\')
            {
                if (++c == text.Length)
                {
                    errors = ["Backslash must be followed by another character at end of string.", Parsed()];
                    return specs;
                }
                fields[^1].Append(text[c++]);
                continue;
            }
            if (ch == ',' && fields.Count < 5)
            {
                fields.Add(new StringBuilder());
                c++;
                while (c < text.Length && char.IsWhiteSpace(text[c])) c++;
                continue;
            }
            if (ch == ',') { fields[^1].Append('\n'); c++; continue; }
            if (ch == ';' || c + 1 == text.Length)
            {
                if (ch != ';') fields[^1].Append(ch);
                c++;
                if (fields.Count != 5)
                {
                    errors = ["Five comma-separated fields are required for each device", Parsed()];
                    return specs;
                }
                var flags = fields[3].ToString();
                if (flags is not ("" or "ro" or "rw"))
                {
                    errors = [$"Invalid flags parameter '{flags}' must be 'ro' or 'rw' or empty."];
                    return specs;
                }
                specs.Add(new Spec(fields[0].ToString(), fields[1].ToString(), fields[2].ToString(), flags, fields[4].ToString()));
                fields = [new StringBuilder()];
                while (c < text.Length && char.IsWhiteSpace(text[c])) c++;
                continue;
            }
            fields[^1].Append(ch);
            c++;
        }
        if (fields.Count > 1 || fields[0].Length > 0)
        {
            errors = ["Incomplete entry: five comma-separated fields are required for each device", Parsed()];
            return specs;
        }
        return specs;
    }
}
