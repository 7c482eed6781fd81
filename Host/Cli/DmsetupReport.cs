namespace DmActors.Host.Cli;

/// <summary>
/// `info -c` (`--columns`): libdm's report of the device fields dmsetup defines (dmsetup.c _report_fields), chosen
/// with `-o FIELDS` (`+FIELDS` adds to the default), aligned or with `--separator`, with or without headings.
/// </summary>
public static class DmsetupReport
{
    public const string DefaultFields = "name,major,minor,attr,open,segments,events,uuid";

    /// <param name="Width">The field's initial width; the column grows to its widest value (not to its heading).</param>
    public sealed record Field(string Id, string Heading, int Width, bool Numeric, Func<Dm.DeviceInfo, string> Value);

    public static readonly IReadOnlyList<Field> Fields =
    [
        new("name", "Name", 16, false, i => i.Name),
        new("uuid", "UUID", 32, false, i => i.Uuid ?? ""),
        new("read_ahead", "RAhead", 6, true, _ => DmsetupFormat.ReadAhead.ToString()),
        new("blkdevname", "BlkDevName", 16, false, i => BlkDevName(i.Minor)),
        new("attr", "Stat", 4, false, DmsetupFormat.Attr),
        new("tables_loaded", "Tables", 6, false, i => (i.LiveTable, i.InactiveTable) switch
        {
            (true, true) => "Both", (true, false) => "Live", (false, true) => "Inactive", _ => "None",
        }),
        new("suspended", "Suspended", 9, false, i => i.Suspended ? "Suspended" : "Active"),
        new("readonly", "Read-only", 9, false, i => i.ReadOnly ? "Read-only" : "Writeable"),
        new("devno", "DevNo", 5, false, i => $"{i.Major}:{i.Minor}"),
        new("major", "Maj", 3, true, i => i.Major.ToString()),
        new("minor", "Min", 3, true, i => i.Minor.ToString()),
        new("open", "Open", 4, true, i => i.OpenCount.ToString()),
        new("segments", "Targ", 4, true, i => i.TargetCount.ToString()),
        new("events", "Event", 6, true, i => i.EventNr.ToString()),
        new("device_count", "#Devs", 5, true, i => (i.Deps?.Count ?? 0).ToString()),
        new("devs_used", "DevNamesUsed", 16, false, i => string.Join(',', (i.Deps ?? []).Where(d => d.Mapped).Select(d => d.Name))),
        new("devnos_used", "DevNosUsed", 16, false, i => string.Join(',', (i.Deps ?? []).Select(d => $"{d.Major}:{d.Minor}"))),
        new("blkdevs_used", "BlkDevNamesUsed", 16, false, i => string.Join(',', (i.Deps ?? []).Select(BlkDevName))),
    ];

    /// <summary>The kernel's name of a mapped device's block device.</summary>
    public static string BlkDevName(int minor) => $"dm-{minor}";

    /// <summary>The kernel's name of a device a table uses: dm-N for a mapped device, the disk's own name for a disk.</summary>
    public static string BlkDevName(Dm.Dependency d) => d.Mapped ? BlkDevName(d.Minor) : d.Name;

    /// <summary>The fields `-o` names (null: the default), or the error line naming the one not known.</summary>
    public static IReadOnlyList<Field>? Parse(string? options, out string? error)
    {
        error = null;
        var text = options == null ? DefaultFields : options.StartsWith('+') ? $"{DefaultFields},{options[1..]}" : options;
        var chosen = new List<Field>();
        // libdm allows empty items (consecutive commas).
        foreach (var id in text.Split(',').Where(s => s.Length > 0))
        {
            if (Fields.FirstOrDefault(f => string.Equals(f.Id, id, StringComparison.OrdinalIgnoreCase)) is not { } f)
            {
                error = $"Unrecognised field: {id}";
                return null;
            }
            chosen.Add(f);
        }
        return chosen;
    }

    /// <summary>
    /// `-O/--sort KEYS`: the fields to sort by, in order, each ascending or with a `-` prefix descending (`+` is
    /// ascending too); any field may be a key, shown or not. Null and the error line for a field not known.
    /// </summary>
    public static IReadOnlyList<(Field Field, bool Descending)>? ParseSort(string keys, out string? error)
    {
        error = null;
        var chosen = new List<(Field, bool)>();
        foreach (var key in keys.Split(',').Where(s => s.Length > 0))
        {
            var descending = key[0] == '-';
            var id = key[0] is '-' or '+' ? key[1..] : key;
            if (Fields.FirstOrDefault(f => string.Equals(f.Id, id, StringComparison.OrdinalIgnoreCase)) is not { } f)
            {
                error = $"Unrecognised field: {id}";
                return null;
            }
            chosen.Add((f, descending));
        }
        return chosen;
    }

    /// <summary>The devices in the order of <paramref name="keys"/>, as libdm sorts: numbers by value, text bytewise.</summary>
    public static IReadOnlyList<Dm.DeviceInfo> Sort(IReadOnlyList<Dm.DeviceInfo> devices, IReadOnlyList<(Field Field, bool Descending)> keys)
    {
        if (keys.Count == 0) return devices;
        IOrderedEnumerable<Dm.DeviceInfo>? sorted = null;
        foreach (var (field, descending) in keys)
        {
            var comparer = Comparer<string>.Create(field.Numeric
                ? (x, y) => (long.TryParse(x, out var a) ? a : 0).CompareTo(long.TryParse(y, out var b) ? b : 0)
                : string.CompareOrdinal);
            sorted = sorted == null
                ? descending ? devices.OrderByDescending(field.Value, comparer) : devices.OrderBy(field.Value, comparer)
                : descending ? sorted.ThenByDescending(field.Value, comparer) : sorted.ThenBy(field.Value, comparer);
        }
        return sorted!.ToList();
    }

    /// <summary>
    /// The report's lines. Aligned (the default): each column as wide as its widest value or its initial width,
    /// every value padded (text left, numbers right, the last column too), headings cut to the width, one space
    /// between. `--noheadings` is dmsetup's old format: no headings, no alignment, ':' between; `--separator`
    /// sets the separator and turns alignment off.
    /// </summary>
    public static IEnumerable<string> Lines(IReadOnlyList<Field> fields, IReadOnlyList<Dm.DeviceInfo> devices, bool noHeadings, string? separator)
    {
        var aligned = !noHeadings && separator == null;
        var sep = separator ?? (noHeadings ? ":" : " ");
        var rows = devices.Select(d => fields.Select(f => f.Value(d)).ToArray()).ToList();
        var widths = fields.Select((f, k) => rows.Select(r => r[k].Length).Append(f.Width).Max()).ToArray();
        if (!noHeadings)
            yield return string.Join(sep, fields.Select((f, k) => aligned ? Cut(f.Heading, widths[k]).PadRight(widths[k]) : f.Heading));
        foreach (var r in rows)
            yield return string.Join(sep, r.Select((v, k) => !aligned ? v : fields[k].Numeric ? v.PadLeft(widths[k]) : v.PadRight(widths[k])));
    }

    private static string Cut(string s, int width) => s.Length > width ? s[..width] : s;
}
