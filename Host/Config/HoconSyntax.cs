using System.Text;

namespace DmActors.Host.Configuration;

/// <summary>A node of a parsed HOCON file, with where it starts (1-based line and column).</summary>
public abstract record HoconNode(int Line, int Column);

public sealed record HoconObject(int Line, int Column, IReadOnlyList<HoconField> Fields) : HoconNode(Line, Column);

public sealed record HoconArray(int Line, int Column, IReadOnlyList<HoconNode> Items) : HoconNode(Line, Column);

/// <summary>A simple value (string, number, boolean, null, substitution, or a concatenation of them) as written.</summary>
public sealed record HoconScalar(int Line, int Column, string Text) : HoconNode(Line, Column);

/// <summary>One element of a key's path (`a.b.c` has three).</summary>
public sealed record HoconKey(string Name, int Line, int Column);

public sealed record HoconField(IReadOnlyList<HoconKey> Path, HoconNode Value)
{
    public string Key => string.Join('.', Path.Select(k => k.Name));
}

/// <param name="Normalized">The same text for Akka's parser, which mishandles some valid separators: every comma
/// that separates fields or elements is a newline instead (one character for one, so positions stay the same).</param>
public sealed record HoconDocument(HoconObject Root, string Normalized);

public sealed class HoconSyntaxException(int line, int column, string message) : Exception(message)
{
    public int Line { get; } = line;
    public int Column { get; } = column;
}

/// <summary>
/// A HOCON parser for the structure of the host's configuration file, following the HOCON spec (lightbend/config
/// HOCON.md): fields and array elements are separated by a comma or a newline, one trailing comma is allowed, two in
/// a row or a leading one are errors; unquoted strings exclude the spec's forbidden characters. Akka's own parser is
/// lenient where this one is strict (an unclosed brace, `[ {a=1} {b=2} ]` merged into one object, `1 b = 2`
/// taken as a key) and rejects valid text (`a { }, b = 1`), so this one decides what is valid, reports the line and
/// column of a mistake, and gives Akka a <see cref="HoconDocument.Normalized"/> text it reads right. Values are still
/// Akka's to interpret (substitutions, durations, numbers).
/// </summary>
public static class HoconSyntax
{
    /// <summary>The file's structure; throws <see cref="HoconSyntaxException"/> at the first mistake.</summary>
    public static HoconDocument Parse(string text) => new Parser(text).Document();

    /// <summary>1-based line and column of <paramref name="position"/> in <paramref name="text"/>.</summary>
    public static (int Line, int Column) Where(string text, int position)
    {
        position = Math.Clamp(position, 0, text.Length);
        var line = 1 + text.AsSpan(0, position).Count('\n');
        var start = position == 0 ? -1 : text.LastIndexOf('\n', position - 1);
        return (line, position - start);
    }

    private sealed class Parser(string text)
    {
        private readonly char[] _normalized = text.ToCharArray();
        private int _pos;

        public HoconDocument Document()
        {
            SkipBlank(newlines: true);
            HoconObject root;
            if (Peek == '{')
            {
                root = Object();
                SkipBlank(newlines: true);
                if (!AtEnd) throw Error(_pos, $"unexpected {Describe(_pos)} after the closing '}}' of the file");
            }
            else root = Fields(-1);
            return new HoconDocument(root, new string(_normalized));
        }

        private bool AtEnd => _pos >= text.Length;
        private char Peek => _pos < text.Length ? text[_pos] : '\0';
        private bool At(string s) => string.CompareOrdinal(text, _pos, s, 0, s.Length) == 0;

        private HoconSyntaxException Error(int position, string message)
        {
            var (line, column) = HoconSyntax.Where(text, position);
            return new HoconSyntaxException(line, column, message);
        }

        private HoconObject Object()
        {
            var open = _pos++;
            return Fields(open);
        }

        /// <summary>Fields up to the '}' closing <paramref name="open"/> (or to the end of the file for the root, -1).</summary>
        private HoconObject Fields(int open)
        {
            var (line, column) = HoconSyntax.Where(text, Math.Max(open, 0));
            var fields = new List<HoconField>();
            while (true)
            {
                SkipBlank(newlines: true);
                if (AtEnd)
                {
                    if (open >= 0) throw Error(open, "'{' is never closed");
                    break;
                }
                if (Peek == '}')
                {
                    if (open < 0) throw Error(_pos, "unexpected '}'");
                    _pos++;
                    break;
                }
                if (Peek is ']' or ',') throw Error(_pos, $"unexpected '{Peek}'");
                var field = Field();
                fields.Add(field);
                if (!Separator(open < 0 ? '\0' : '}'))
                    throw Error(_pos, $"expected ',' or a newline after the value of '{field.Key}', found {Describe(_pos)}");
            }
            return new HoconObject(line, column, fields);
        }

        /// <summary>
        /// After a field or element: true if a separator (a newline, or a comma with any blank around it) or the
        /// closer follows. A separating comma becomes a newline in the normalized text.
        /// </summary>
        private bool Separator(char closer)
        {
            var newline = SkipBlank(newlines: true);
            if (Peek == ',')
            {
                _normalized[_pos++] = '\n';
                return true;
            }
            if (AtEnd || Peek == closer) return true;
            if (Peek is '}' or ']') throw Error(_pos, $"unexpected '{Peek}'");
            return newline;
        }

        private HoconField Field()
        {
            var path = Key();
            SkipBlank(newlines: true);
            var key = string.Join('.', path.Select(k => k.Name));
            if (Peek == '{') return new HoconField(path, Object());
            if (At("+=")) throw Error(_pos, $"'+=' is not supported (in '{key}'): write the whole value");
            if (Peek is not ('=' or ':')) throw Error(_pos, $"expected '=', ':' or '{{' after the key '{key}', found {Describe(_pos)}");
            var separator = text[_pos++];
            SkipBlank(newlines: true);
            if (AtEnd || Peek is '=' or ':' or ',' or '}' or ']') throw Error(_pos, $"missing value after '{separator}'");
            return new HoconField(path, Value());
        }

        /// <summary>A path expression: unquoted parts split at '.', quoted parts taken whole, on one line.</summary>
        private List<HoconKey> Key()
        {
            var keys = new List<HoconKey>();
            var name = new StringBuilder();
            var start = _pos;
            var quoted = false; // the current element has a quoted part (so "" is a valid empty element)
            var any = false;
            var first = true;
            while (!AtEnd)
            {
                var c = Peek;
                if (c == '"')
                {
                    if (At("\"\"\"")) throw Error(_pos, "a key cannot be a \"\"\" string");
                    name.Append(QuotedString());
                    quoted = any = true;
                }
                else if (IsSpace(c))
                {
                    var blank = _pos;
                    while (!AtEnd && IsSpace(Peek)) _pos++;
                    if (!AtEnd && (Peek == '"' || IsUnquoted(Peek) || Peek == '.') && !At("//"))
                        name.Append(text, blank, _pos - blank); // whitespace inside a key is kept
                }
                else if (c == '.')
                {
                    if (name.Length == 0 && !quoted) throw Error(_pos, $"empty element in the key '{KeyText(keys, name)}.'");
                    var (l, col) = HoconSyntax.Where(text, start);
                    keys.Add(new HoconKey(name.ToString(), l, col));
                    name.Clear();
                    quoted = false;
                    _pos++;
                    start = _pos;
                }
                else if (IsUnquoted(c) && !At("//"))
                {
                    var from = _pos;
                    while (!AtEnd && IsUnquoted(Peek) && Peek != '.' && !At("//")) _pos++;
                    var part = text[from.._pos];
                    if (first && part == "include" && IncludeFollows())
                        throw Error(from, "include is not supported in the host configuration");
                    name.Append(part);
                    any = true;
                }
                else break;
                first = false;
            }
            if (!any && keys.Count == 0) throw Error(_pos, $"expected a key, found {Describe(_pos)}");
            if (name.Length == 0 && !quoted) throw Error(_pos, $"empty element in the key '{KeyText(keys, name)}'");
            var (line, column) = HoconSyntax.Where(text, start);
            keys.Add(new HoconKey(name.ToString(), line, column));
            return keys;
        }

        /// <summary>After `include`: a quoted name or file(...) etc., not a separator (`include = 1` is a key).</summary>
        private bool IncludeFollows()
        {
            var i = _pos;
            while (i < text.Length && IsSpace(text[i])) i++;
            return i > _pos && i < text.Length && (text[i] == '"' || IsUnquoted(text[i]));
        }

        private static string KeyText(List<HoconKey> keys, StringBuilder name) => string.Join('.', keys.Select(k => k.Name).Append(name.ToString()));

        /// <summary>A field value or array element: an object, an array, or simple values concatenated on one line.</summary>
        private HoconNode Value()
        {
            var (line, column) = HoconSyntax.Where(text, _pos);
            if (Peek == '{') return Object();
            if (Peek == '[') return Array();
            var value = new StringBuilder();
            while (true)
            {
                var c = Peek;
                if (At("\"\"\"")) value.Append(TripleQuotedString());
                else if (c == '"') value.Append(QuotedString());
                else if (At("${")) value.Append(Substitution());
                else if (IsUnquoted(c) && !At("//"))
                {
                    var from = _pos;
                    while (!AtEnd && IsUnquoted(Peek) && !At("//")) _pos++;
                    value.Append(text, from, _pos - from);
                    if (IsReserved()) throw Error(_pos, $"'{Peek}' is not allowed in an unquoted value; put the value in double quotes");
                }
                else if (IsReserved()) throw Error(_pos, $"'{c}' is not allowed in an unquoted value; put the value in double quotes");
                else break;
                // Simple values separated by spaces (not newlines) concatenate, the spaces kept. After a space, '='
                // or ':' ends the value: more likely a missing separator (`a = 1 b = 2`) than part of it.
                var blank = _pos;
                while (!AtEnd && IsSpace(Peek)) _pos++;
                if (AtEnd || At("//") || !(Peek == '"' || At("${") || IsUnquoted(Peek) || (IsReserved() && Peek is not ('=' or ':')))) break;
                value.Append(text, blank, _pos - blank);
            }
            return new HoconScalar(line, column, value.ToString());
        }

        private HoconArray Array()
        {
            var open = _pos++;
            var (line, column) = HoconSyntax.Where(text, open);
            var items = new List<HoconNode>();
            while (true)
            {
                SkipBlank(newlines: true);
                if (AtEnd) throw Error(open, "'[' is never closed");
                if (Peek == ']')
                {
                    // Akka reads `[ ]` (blank or a comment inside) as a list of one empty string: give it `[]`.
                    if (items.Count == 0)
                        for (var k = open + 1; k <= _pos; k++) _normalized[k] = k == open + 1 ? ']' : text[k] == '\n' ? '\n' : ' ';
                    _pos++;
                    break;
                }
                if (Peek is '}' or ',') throw Error(_pos, $"unexpected '{Peek}'");
                items.Add(Value());
                if (!Separator(']')) throw Error(_pos, $"expected ',' or a newline between list elements, found {Describe(_pos)}");
            }
            return new HoconArray(line, column, items);
        }

        private string QuotedString()
        {
            var open = _pos++;
            var s = new StringBuilder();
            while (true)
            {
                if (AtEnd || Peek == '\n') throw Error(open, "unterminated string");
                var c = text[_pos++];
                if (c == '"') return s.ToString();
                if (c != '\\') { s.Append(c); continue; }
                if (AtEnd) throw Error(open, "unterminated string");
                var e = text[_pos++];
                switch (e)
                {
                    case '"' or '\\' or '/': s.Append(e); break;
                    case 'b': s.Append('\b'); break;
                    case 'f': s.Append('\f'); break;
                    case 'n': s.Append('\n'); break;
                    case 'r': s.Append('\r'); break;
                    case 't': s.Append('\t'); break;
                    case 'u' when _pos + 4 <= text.Length && int.TryParse(text.AsSpan(_pos, 4), System.Globalization.NumberStyles.HexNumber, null, out var u):
                        s.Append((char)u);
                        _pos += 4;
                        break;
                    default: throw Error(_pos - 2, $"bad escape '\\{e}' in a string (a backslash is written \\\\)");
                }
            }
        }

        private string TripleQuotedString()
        {
            var open = _pos;
            var end = text.IndexOf("\"\"\"", open + 3, StringComparison.Ordinal);
            if (end < 0) throw Error(open, "unterminated \"\"\" string");
            while (end + 3 < text.Length && text[end + 3] == '"') end++; // extra quotes belong to the string
            _pos = end + 3;
            return text[(open + 3)..end];
        }

        private string Substitution()
        {
            var open = _pos;
            var close = text.IndexOf('}', open);
            var newline = text.IndexOf('\n', open);
            if (close < 0 || (newline >= 0 && newline < close)) throw Error(open, "unterminated substitution '${'");
            _pos = close + 1;
            return text[open.._pos];
        }

        /// <summary>Skips spaces and comments (and newlines if asked); true if a newline was skipped.</summary>
        private bool SkipBlank(bool newlines)
        {
            var newline = false;
            while (!AtEnd)
            {
                var c = Peek;
                if (c == '\n' && newlines) { newline = true; _pos++; }
                else if (IsSpace(c)) _pos++;
                else if (c == '#' || At("//")) { while (!AtEnd && Peek != '\n') _pos++; }
                else break;
            }
            return newline;
        }

        private string Describe(int position) => position >= text.Length ? "the end of the file"
            : text[position] == '\n' ? "a newline" : $"'{text[position]}'";

        /// <summary>A forbidden character with no meaning here: reserved by the spec, or ':' and '=' inside a value.</summary>
        private bool IsReserved() => !AtEnd && (Peek is ':' or '=' or '+' or '`' or '^' or '?' or '!' or '@' or '*' or '&' or '\\'
            || (Peek == '$' && !At("${")));

        private static bool IsSpace(char c) => c != '\n' && (char.IsWhiteSpace(c) || c == '\uFEFF' || c is >= '\u001C' and <= '\u001F');

        private static bool IsForbidden(char c) => c is '$' or '"' or '{' or '}' or '[' or ']' or ':' or '=' or ',' or '+' or '#' or '`'
            or '^' or '?' or '!' or '@' or '*' or '&' or '\\';

        /// <summary>A character an unquoted string may hold (the spec's forbidden ones and whitespace excluded).</summary>
        private static bool IsUnquoted(char c) => c != '\n' && !IsSpace(c) && !IsForbidden(c) && c != '\0';
    }
}
