using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace DmActors;

/// <summary>
/// Holes in a file (or a block device): where it is allocated (SEEK_DATA / SEEK_HOLE) and how a range is zeroed
/// without writing zeroes (fallocate). Blocking calls: only for a disk's IO threads.
/// </summary>
internal static class FileHoles
{
    private const int SeekData = 3, SeekHole = 4;
    private const int Enxio = 6;
    private const int KeepSize = 0x01, PunchHole = 0x02, ZeroRange = 0x10;

    /// <summary>
    /// Fills <paramref name="map"/> (one <see cref="BlockState"/> byte per sector from byte <paramref name="offset"/>):
    /// a sector wholly inside a hole (or past the end of the file) reads as zeroes and is HoleZero, every other one
    /// is Data. A filesystem that cannot tell reports all of it as data, which is always true.
    /// </summary>
    public static void Map(SafeFileHandle fd, long offset, Span<byte> map)
    {
        map.Clear();
        var end = offset + ((long)map.Length << Bio.SectorShift);
        for (var pos = offset; pos < end;)
        {
            var data = Native.lseek(fd, pos, SeekData);
            if (data < 0)
            {
                if (Marshal.GetLastPInvokeError() != Enxio) return; // cannot tell: data
                data = end; // no data after pos: the rest is a hole
            }
            MarkHole(map, offset, pos, Math.Min(data, end));
            if (data >= end) return;
            var hole = Native.lseek(fd, data, SeekHole);
            if (hole < 0) return;
            pos = hole;
        }
    }

    /// <summary>Marks the sectors wholly inside [from, to) as a hole; a sector with any data in it stays data.</summary>
    private static void MarkHole(Span<byte> map, long offset, long from, long to)
    {
        var first = (from - offset + Bio.Sector512 - 1) >> Bio.SectorShift;
        var last = (to - offset) >> Bio.SectorShift; // exclusive
        if (last > first) map[(int)first..(int)last].Fill(BlockState.HoleZero);
    }

    /// <summary>Punches a hole: the range reads as zeroes and takes no space. False where the filesystem cannot.</summary>
    public static bool Punch(SafeFileHandle fd, long offset, long length) =>
        Native.fallocate(fd, PunchHole | KeepSize, offset, length) == 0;

    /// <summary>Zeroes the range and keeps it allocated, without writing the zeroes. False where the filesystem cannot.</summary>
    public static bool ZeroAllocated(SafeFileHandle fd, long offset, long length) =>
        Native.fallocate(fd, ZeroRange | KeepSize, offset, length) == 0;

    private static class Native
    {
        [DllImport("libc", SetLastError = true)] public static extern long lseek(SafeFileHandle fd, long offset, int whence);
        [DllImport("libc", SetLastError = true)] public static extern int fallocate(SafeFileHandle fd, int mode, long offset, long len);
    }
}
