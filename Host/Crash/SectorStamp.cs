using System.Buffers.Binary;

namespace DmActors.Host.Crash;

/// <summary>
/// Sector contents that name the write and the sector they were written for, so a sector read back after a cut
/// tells exactly which write it holds (or that it is stale, misplaced or corrupt).
/// </summary>
public static class SectorStamp
{
    private const ulong Magic = 0x48534152434d44; // "DMCRASH"
    /// <summary>The id of the disk's initial contents (zeros).</summary>
    public const int Initial = 0;

    public static byte[] Make(int id, long sector, int sectors)
    {
        var data = new byte[sectors * Bio.Sector512];
        for (var i = 0; i < sectors; i++) Fill(data.AsSpan(i * Bio.Sector512, Bio.Sector512), id, sector + i);
        return data;
    }

    private static void Fill(Span<byte> into, int id, long sector)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(into, Magic);
        BinaryPrimitives.WriteInt64LittleEndian(into[8..], id);
        BinaryPrimitives.WriteInt64LittleEndian(into[16..], sector);
        into[24..].Fill((byte)(id * 31 + sector));
    }

    /// <summary>True when <paramref name="data"/> is exactly what write <paramref name="id"/> put at <paramref name="sector"/>.</summary>
    public static bool Holds(ReadOnlySpan<byte> data, int id, long sector)
    {
        if (id == Initial) return !data.ContainsAnyExcept((byte)0);
        Span<byte> expected = stackalloc byte[Bio.Sector512];
        Fill(expected, id, sector);
        return data.SequenceEqual(expected);
    }

    /// <summary>The write id a sector holds, or null when it is neither zeros nor an intact stamp for this sector.</summary>
    public static int? IdOf(ReadOnlySpan<byte> data, long sector)
    {
        if (!data.ContainsAnyExcept((byte)0)) return Initial;
        if (BinaryPrimitives.ReadUInt64LittleEndian(data) != Magic) return null;
        var id = BinaryPrimitives.ReadInt64LittleEndian(data[8..]);
        return id is > 0 and <= int.MaxValue && Holds(data, (int)id, sector) ? (int)id : null;
    }

    public static string Describe(ReadOnlySpan<byte> data, long sector)
    {
        if (IdOf(data, sector) is { } id) return id == Initial ? "zeros (initial contents)" : $"write #{id}";
        if (BinaryPrimitives.ReadUInt64LittleEndian(data) != Magic) return $"garbage ({Convert.ToHexString(data[..16])}...)";
        var wid = BinaryPrimitives.ReadInt64LittleEndian(data[8..]);
        var at = BinaryPrimitives.ReadInt64LittleEndian(data[16..]);
        return at != sector ? $"write #{wid}'s data for sector {at} (misplaced)" : $"write #{wid}, corrupt";
    }
}
