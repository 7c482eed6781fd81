namespace DmActors;

/// <summary>A table error, worded as dm or dmsetup word it ("Gap in table", "zero-length target", ...).</summary>
public sealed class TableException(string message) : Exception(message);

/// <summary>One line of table text: `start length type args...`.</summary>
public sealed record TableLine(long Start, long Length, string Type, string[] Args)
{
    public override string ToString() => $"{Start} {Length} {Type} {string.Join(' ', Args)}";
}

/// <summary>
/// A constructed table: the targets of a device in sector order. Immutable once built; loading fills a
/// device's inactive slot with one, resume makes it live.
/// </summary>
public sealed class Table
{
    /// <summary>
    /// The largest device, in sectors: its size in bytes must fit in a signed 64-bit integer (loff_t), as the
    /// kernel's dm_table_add_target requires (2^54 - 1 sectors, just under 8 EiB).
    /// </summary>
    public const long MaxSectors = long.MaxValue >> Bio.SectorShift;

    private readonly long[] _ends;

    private Table(IReadOnlyList<Target> targets, IReadOnlyList<TableLine> lines, bool readOnly)
    {
        Targets = targets; Lines = lines; ReadOnly = readOnly;
        _ends = targets.Select(t => t.Begin + t.Length).ToArray();
        Sectors = _ends.Length == 0 ? 0 : _ends[^1];
        Devices = targets.SelectMany(t => t.Devices).Distinct().ToArray();
        FlushBypassesMap = targets.Count > 0 && targets.All(t => t.FlushBypassesMap);
        Stateless = targets.Count > 0 && targets.All(t => t.Stateless);
        OnLanes = targets.Count > 0 && targets.All(t => t.Stateless || t.ReadsOnLanes);
    }

    public IReadOnlyList<Target> Targets { get; }
    /// <summary>The lines as loaded (device arguments as the user wrote them), for persistence and reload.</summary>
    public IReadOnlyList<TableLine> Lines { get; }
    public long Sectors { get; }
    public bool ReadOnly { get; }
    /// <summary>Every distinct device the table uses, opened once (dm's table device list).</summary>
    public IReadOnlyList<IBlockDevice> Devices { get; }
    public bool FlushBypassesMap { get; }
    /// <summary>Every target is <see cref="Target.Stateless"/>: the device's lanes may map its bios themselves.</summary>
    public bool Stateless { get; }
    /// <summary>The lanes may map some of its bios: all of them (<see cref="Stateless"/>) or its reads (<see cref="Target.ReadsOnLanes"/>).</summary>
    public bool OnLanes { get; }
    public bool HasVolatileCache => Devices.Any(d => d.HasVolatileCache);

    /// <summary>dm_table_find_target: the index of the target covering <paramref name="sector"/>, or -1.</summary>
    public int FindTarget(long sector)
    {
        if (sector < 0 || sector >= Sectors) return -1;
        int lo = 0, hi = _ends.Length - 1;
        while (lo < hi)
        {
            var mid = (lo + hi) >> 1;
            if (_ends[mid] > sector) hi = mid; else lo = mid + 1;
        }
        return lo;
    }

    /// <summary>`dmsetup table` lines: `start len type params` (a trailing space when params are empty, as dmsetup prints).</summary>
    public IEnumerable<string> TableText() => Targets.Select(t => $"{t.Begin} {t.Length} {t.TypeName} {t.TableParams()}");
    public IEnumerable<string> StatusText() => Targets.Select(t => $"{t.Begin} {t.Length} {t.TypeName} {t.StatusParams()}");

    /// <summary>Releases the devices of every target (dm_table_destroy).</summary>
    public void Destroy() { foreach (var t in Targets) t.Release(); }

    /// <summary>
    /// Parses dmsetup table text. Blank lines and '#' comments are skipped, as dmsetup does; a line that is not
    /// `start length type` is "Invalid format on line N of table". Checks the whole table before anything is built.
    /// </summary>
    public static IReadOnlyList<TableLine> Parse(string text)
    {
        var lines = new List<TableLine>();
        var n = 0;
        foreach (var raw in text.Replace("\\n", "\n").Split('\n'))
        {
            n++;
            var line = raw;
            var hash = line.IndexOf('#');
            if (hash >= 0) line = line[..hash];
            line = line.Trim();
            if (line.Length == 0) continue;
            var words = SplitArgs(line);
            if (words.Count < 3 || !long.TryParse(words[0], out var start) || !long.TryParse(words[1], out var len) || start < 0 || len < 0)
                throw new TableException($"Invalid format on line {n} of table");
            lines.Add(new TableLine(start, len, words[2], words.Skip(3).ToArray()));
        }
        return lines;
    }

    /// <summary>Checks the layout rules of dm_table_add_target: no targets, zero length, too large, unknown type, gaps.</summary>
    public static void CheckLayout(IReadOnlyList<TableLine> lines)
    {
        if (lines.Count == 0) throw new TableException("no targets specified");
        long next = 0;
        foreach (var l in lines)
        {
            if (l.Length == 0) throw new TableException("zero-length target");
            // Compared, not added: start + length may not fit in a long (both are at most long.MaxValue).
            if (l.Length > MaxSectors - l.Start)
                throw new TableException($"too large device: {(ulong)l.Start + (ulong)l.Length} sectors, at most {MaxSectors} " +
                                         "(the size in bytes must fit in a signed 64-bit integer)");
            if (!TargetTypes.Exists(l.Type)) throw new TableException($"{l.Type}: unknown target type");
            if (l.Start != next) throw new TableException("Gap in table");
            next = l.Start + l.Length;
        }
    }

    /// <summary>
    /// Builds the targets of <paramref name="lines"/>; a constructor error becomes "type: error" and every device
    /// already opened by earlier lines is released again, so a failed load leaves nothing behind.
    /// </summary>
    public static Table Build(IReadOnlyList<TableLine> lines, IDeviceLookup lookup, bool readOnly = false, IClock? clock = null)
    {
        CheckLayout(lines);
        var built = new List<Target>();
        try
        {
            foreach (var l in lines)
            {
                try
                {
                    built.Add(TargetTypes.Construct(l.Type, new TargetArgs
                    {
                        Begin = l.Start, Length = l.Length, Args = l.Args, Lookup = lookup, Clock = clock ?? WallClock.Instance,
                    }));
                }
                catch (TargetException e) { throw new TableException($"{l.Type}: {e.Message}"); }
            }
            return new Table(built, lines, readOnly);
        }
        catch
        {
            foreach (var t in built) t.Release();
            throw;
        }
    }

    /// <summary>dm_split_args: whitespace separates, a backslash escapes the next character.</summary>
    public static List<string> SplitArgs(string line)
    {
        var words = new List<string>();
        var cur = new System.Text.StringBuilder();
        var inWord = false;
        for (var i = 0; i < line.Length; i++)
        {
            var c = line[i];
            if (c == '\\' && i + 1 < line.Length) { cur.Append(line[++i]); inWord = true; }
            else if (char.IsWhiteSpace(c)) { if (inWord) { words.Add(cur.ToString()); cur.Clear(); inWord = false; } }
            else { cur.Append(c); inWord = true; }
        }
        if (inWord) words.Add(cur.ToString());
        return words;
    }
}
