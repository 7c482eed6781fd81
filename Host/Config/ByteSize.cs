using System.Globalization;
using System.Text.RegularExpressions;

namespace DmActors.Host.Configuration;

/// <summary>Disk sizes as people write them in the config: "1G", "64MiB", "512K", "2048s" (sectors), "1048576" (bytes).</summary>
public static partial class ByteSize
{
    [GeneratedRegex(@"^(\d+)\s*(?:([KMGTP])(?:i?B)?|(s)|B)?$", RegexOptions.IgnoreCase)]
    private static partial Regex Pattern();

    /// <summary>Bytes in <paramref name="text"/>: powers of 2 for suffixes; a whole number of 512-byte sectors, above zero.</summary>
    public static long Parse(string? text)
    {
        var m = Pattern().Match((text ?? "").Trim());
        if (!m.Success || !long.TryParse(m.Groups[1].Value, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n <= 0)
            throw new FormatException($"bad size '{text}' (expected a positive number with an optional K, M, G or T suffix, e.g. 1G)");
        var shift = m.Groups[3].Success ? Bio.SectorShift : m.Groups[2].Success
            ? 10 * ("KMGTP".IndexOf(char.ToUpperInvariant(m.Groups[2].Value[0])) + 1)
            : 0;
        if (n > long.MaxValue >> shift) throw new FormatException($"bad size '{text}': too large");
        var bytes = n << shift;
        if (bytes % 512 != 0) throw new FormatException($"bad size '{text}': not a multiple of 512 bytes");
        return bytes;
    }

    public static long ParseSectors(string? text) => Parse(text) >> Bio.SectorShift;

    /// <summary>"131072 sectors (64 MiB)": the exact sector count, with the largest binary unit that divides it.</summary>
    public static string DescribeSectors(long sectors)
    {
        var bytes = sectors << Bio.SectorShift;
        var unit = 0;
        while (unit < 5 && bytes != 0 && bytes % 1024 == 0) { bytes /= 1024; unit++; }
        return $"{sectors} sectors ({bytes} {(unit == 0 ? "bytes" : "KMGTP"[unit - 1] + "iB")})";
    }
}
