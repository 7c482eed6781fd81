namespace DmActors.Host.Configuration;

/// <summary>
/// The syntax mistakes Akka's lenient HOCON parser lets through silently (an unclosed brace or bracket, a stray
/// closing one, an unterminated string, `key = = value`): found here so a broken file stops the host with its line
/// number instead of starting it with half the file ignored.
/// </summary>
public static class HoconSyntax
{
    /// <summary>Null if no problem was found, else "line N: what".</summary>
    public static string? Check(string text)
    {
        var open = new Stack<(char Bracket, int Line)>();
        var line = 1;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            switch (c)
            {
                case '\n': line++; break;
                case '#': i = EndOfLine(text, i); i--; break;
                case '/' when At(text, i, "//"): i = EndOfLine(text, i); i--; break;
                case '"' when At(text, i, "\"\"\""):
                    var end = text.IndexOf("\"\"\"", i + 3, StringComparison.Ordinal);
                    if (end < 0) return $"line {line}: unterminated \"\"\" string";
                    line += text.AsSpan(i, end - i).Count('\n');
                    i = end + 2;
                    break;
                case '"':
                    var start = line;
                    for (i++; i < text.Length && text[i] != '"'; i++)
                    {
                        if (text[i] == '\\') i++;
                        else if (text[i] == '\n') return $"line {start}: unterminated string";
                    }
                    if (i >= text.Length) return $"line {start}: unterminated string";
                    break;
                case '{' or '[': open.Push((c, line)); break;
                case '}' or ']':
                    var want = c == '}' ? '{' : '[';
                    if (open.Count == 0 || open.Peek().Bracket != want) return $"line {line}: unexpected '{c}'";
                    open.Pop();
                    break;
                case '=':
                    var next = i + 1;
                    while (next < text.Length && text[next] is ' ' or '\t') next++;
                    if (next >= text.Length || text[next] is '=' or '}' or ']' or ',')
                        return $"line {line}: missing value after '='";
                    break;
            }
        }
        return open.Count > 0 ? $"line {open.Peek().Line}: '{open.Peek().Bracket}' is never closed" : null;
    }

    private static bool At(string text, int i, string what) => string.CompareOrdinal(text, i, what, 0, what.Length) == 0;

    private static int EndOfLine(string text, int i)
    {
        var nl = text.IndexOf('\n', i);
        return nl < 0 ? text.Length : nl;
    }
}
