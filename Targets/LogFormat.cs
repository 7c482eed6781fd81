using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace DmActors.Targets;

/// <summary>Entry flags of the log-writes format (dm-log-writes.c LOG_*_FLAG).</summary>
[Flags]
public enum LogFlags : ulong
{
    None = 0,
    Flush = 1,
    Fua = 2,
    Discard = 4,
    Mark = 8,
    Metadata = 16,
}

/// <summary>
/// The on-disk format of dm-log-writes, byte for byte, so logs can be read by xfstests' replay-log and ours can
/// read theirs. Block 0: super {le64 magic, le64 version, le64 nr_entries, le32 sectorsize}. Then per entry one
/// block {le64 sector, le64 nr_sectors, le64 flags, le64 data_len} (+ the mark text for marks), followed by
/// nr_sectors blocks of data (none for discards). Sectors and lengths are in sectorsize units.
/// </summary>
public static class LogFormat
{
    public const ulong Magic = 0x6a736677736872;
    public const ulong Version = 1;
    public const int EntryHeaderSize = 32;
    public const int SuperSize = 28;
    public const string EndMark = "dm-log-writes-end";

    public static void WriteSuper(Span<byte> block, ulong nrEntries, uint sectorSize)
    {
        block.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(block, Magic);
        BinaryPrimitives.WriteUInt64LittleEndian(block[8..], Version);
        BinaryPrimitives.WriteUInt64LittleEndian(block[16..], nrEntries);
        BinaryPrimitives.WriteUInt32LittleEndian(block[24..], sectorSize);
    }

    /// <summary>An entry block: header, then the mark text for a mark (data_len = its length), zero padded.</summary>
    public static void WriteEntry(Span<byte> block, ulong sector, ulong nrSectors, LogFlags flags, ReadOnlySpan<byte> mark)
    {
        block.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(block, sector);
        BinaryPrimitives.WriteUInt64LittleEndian(block[8..], nrSectors);
        BinaryPrimitives.WriteUInt64LittleEndian(block[16..], (ulong)flags);
        BinaryPrimitives.WriteUInt64LittleEndian(block[24..], (ulong)mark.Length);
        mark.CopyTo(block[EntryHeaderSize..]);
    }

    /// <summary>Mark text as dm stores it: at most sectorsize - 33 bytes (kstrndup(maxsize - 1)).</summary>
    public static byte[] MarkBytes(string label, int sectorSize)
    {
        var bytes = Encoding.UTF8.GetBytes(label);
        return bytes.Length <= sectorSize - EntryHeaderSize - 1 ? bytes : bytes[..(sectorSize - EntryHeaderSize - 1)];
    }
}

/// <summary>One entry of a log: its number, what it records, and where it sits in the log (in log blocks).</summary>
public sealed record LogEntry(long Index, ulong Sector, ulong NrSectors, LogFlags Flags, string? Mark, long Position, long Next)
{
    public bool Has(LogFlags f) => (Flags & f) != 0;

    /// <summary>replay-log --find prints `entry@position-after-entry`.</summary>
    public string FindText => $"{Index}@{Next}";

    public override string ToString() => $"{Index}@{Position}: sector {Sector}, size {NrSectors}, flags {Flags}{(Mark != null ? " " + Mark : "")}";
}

/// <summary>Random-access bytes: a log or a replay target (a file, a memory disk).</summary>
public interface IByteStore
{
    long Length { get; }
    void Read(long offset, Span<byte> into);
    void Write(long offset, ReadOnlySpan<byte> from);
}

/// <summary>A file as a byte store (positional IO, no shared file pointer).</summary>
public sealed class FileStore(SafeFileHandle handle) : IByteStore, IDisposable
{
    public static FileStore Open(string path, bool write) =>
        new(File.OpenHandle(path, FileMode.Open, write ? FileAccess.ReadWrite : FileAccess.Read, FileShare.ReadWrite));

    public long Length => BlockDevice.DeviceSize(handle); // a block device's size, not its (zero) file length
    public void Read(long offset, Span<byte> into)
    {
        var n = RandomAccess.Read(handle, into, offset);
        if (n != into.Length) throw new InvalidDataException($"short read at byte {offset}: {n} of {into.Length}");
    }
    public void Write(long offset, ReadOnlySpan<byte> from) => RandomAccess.Write(handle, from, offset);
    public void Flush() => RandomAccess.FlushToDisk(handle);
    public void Dispose() => handle.Dispose();
}

/// <summary>A memory disk as a byte store (tests, and replaying onto an in-memory device).</summary>
public sealed class MemoryDiskStore(MemoryDisk disk) : IByteStore
{
    public long Length => disk.Sectors << Bio.SectorShift;
    public void Read(long offset, Span<byte> into) => disk.ReadAt(offset, into);
    public void Write(long offset, ReadOnlySpan<byte> from) => disk.WriteAt(offset, from);
}

/// <summary>Reads a log-writes log: the super, then its entries in order (xfstests src/log-writes/log-writes.c).</summary>
public sealed class LogReader
{
    private readonly IByteStore _log;

    public LogReader(IByteStore log)
    {
        _log = log;
        Span<byte> super = stackalloc byte[LogFormat.SuperSize];
        if (log.Length < LogFormat.SuperSize) throw new InvalidDataException("Error reading super: log too small");
        log.Read(0, super);
        if (BinaryPrimitives.ReadUInt64LittleEndian(super) != LogFormat.Magic) throw new InvalidDataException("Magic doesn't match");
        var version = BinaryPrimitives.ReadUInt64LittleEndian(super[8..]);
        if (version != LogFormat.Version) throw new InvalidDataException($"Version mismatch, wanted {LogFormat.Version}, have {version}");
        NrEntries = BinaryPrimitives.ReadUInt64LittleEndian(super[16..]);
        SectorSize = BinaryPrimitives.ReadUInt32LittleEndian(super[24..]);
        if (SectorSize < LogFormat.EntryHeaderSize + 1 || SectorSize > 1 << 20) throw new InvalidDataException($"Invalid sectorsize {SectorSize}");
    }

    public ulong NrEntries { get; }
    public uint SectorSize { get; }

    /// <summary>The entries the super counts, in log order; a malformed entry throws, as replay-log stops on one.</summary>
    public IEnumerable<LogEntry> Entries()
    {
        var block = new byte[SectorSize];
        long pos = 1;
        for (long i = 0; (ulong)i < NrEntries; i++)
        {
            _log.Read(pos * SectorSize, block);
            var sector = BinaryPrimitives.ReadUInt64LittleEndian(block);
            var nr = BinaryPrimitives.ReadUInt64LittleEndian(block.AsSpan(8));
            var flags = (LogFlags)BinaryPrimitives.ReadUInt64LittleEndian(block.AsSpan(16));
            var dataLen = BinaryPrimitives.ReadUInt64LittleEndian(block.AsSpan(24));
            // log_entry_valid: not all zero, and zero padded unless it is a mark.
            if ((flags == 0 && nr == 0) || (flags != LogFlags.Mark && block[LogFormat.EntryHeaderSize] != 0))
                throw new InvalidDataException($"Malformed entry @{pos}");
            // A corrupt entry must not wrap an offset: its sector and its data must fit the log's own units.
            var blocks = (ulong)(_log.Length / SectorSize);
            if (sector > (ulong)long.MaxValue / SectorSize || nr > (ulong)long.MaxValue / SectorSize)
                throw new InvalidDataException($"Malformed entry @{pos}: sector {sector} or size {nr} out of range");
            if ((flags & LogFlags.Discard) == 0 && nr > blocks - (ulong)pos - 1)
                throw new InvalidDataException($"Malformed entry @{pos}: {nr} block(s) of data run past the end of the log ({blocks} blocks)");
            string? mark = null;
            if ((flags & LogFlags.Mark) != 0)
                mark = Encoding.UTF8.GetString(block, LogFormat.EntryHeaderSize, (int)Math.Min(dataLen, SectorSize - (ulong)LogFormat.EntryHeaderSize));
            var next = pos + 1 + ((flags & LogFlags.Discard) != 0 ? 0 : (long)nr);
            yield return new LogEntry(i, sector, nr, flags, mark, pos, next);
            pos = next;
        }
    }

    /// <summary>Reads the data an entry recorded (empty for flushes, marks and discards).</summary>
    public byte[] Data(LogEntry e)
    {
        if (e.Has(LogFlags.Discard) || e.NrSectors == 0) return [];
        var data = new byte[(long)e.NrSectors * SectorSize];
        _log.Read((e.Position + 1) * SectorSize, data);
        return data;
    }
}

/// <summary>Where replay stops (inclusive): after an entry number, at a mark, or at the next FUA / flush.</summary>
public sealed record ReplayLimits(string? EndMark = null, long? Limit = null, bool NextFua = false, bool NextFlush = false, bool Discard = true)
{
    public bool StopsAt(LogEntry e, long replayed) =>
        (Limit is { } n && replayed >= n) ||
        (EndMark != null && e.Has(LogFlags.Mark) && e.Mark == EndMark) ||
        (NextFua && e.Has(LogFlags.Fua)) ||
        (NextFlush && e.Has(LogFlags.Flush));
}

public sealed record ReplayResult(long Replayed, LogEntry? Last, bool Stopped);

/// <summary>
/// Replays a log-writes log onto a device, like xfstests' replay-log: every entry in order, data written at its
/// sector, discards zero-filled, stopping (inclusively) at the first entry that meets the limits.
/// </summary>
public static class LogReplay
{
    /// <summary>The entry point for `dmactors replay-log`: files in, replays up to a mark and/or a number of entries.</summary>
    public static ReplayResult Replay(string logPath, string devicePath, string? endMark = null, long? limit = null, bool discard = true)
    {
        using var log = FileStore.Open(logPath, write: false);
        using var dev = FileStore.Open(devicePath, write: true);
        var result = Replay(new LogReader(log), dev, new ReplayLimits(endMark, limit, Discard: discard));
        dev.Flush();
        return result;
    }

    public static ReplayResult Replay(LogReader log, IByteStore device, ReplayLimits limits)
    {
        long replayed = 0;
        LogEntry? last = null;
        foreach (var e in log.Entries())
        {
            Apply(log, e, device, limits.Discard);
            replayed++;
            last = e;
            if (limits.StopsAt(e, replayed)) return new ReplayResult(replayed, e, true);
        }
        // Like replay-log: no matching entry means the whole log was replayed; Stopped tells the caller.
        return new ReplayResult(replayed, last, false);
    }

    private static void Apply(LogReader log, LogEntry e, IByteStore device, bool discard)
    {
        var at = (long)e.Sector * log.SectorSize;
        var length = (long)e.NrSectors * log.SectorSize;
        if (at > long.MaxValue - length) // a file grows on replay, but an offset must not wrap to the start
            throw new InvalidDataException($"entry {e.Index}@{e.Position} (sector {e.Sector}, size {e.NrSectors}) ends past any device");
        if (e.Has(LogFlags.Discard))
        {
            if (!discard) return;
            var zeros = new byte[Math.Min(1 << 20, (long)e.NrSectors * log.SectorSize)];
            for (long done = 0, len = (long)e.NrSectors * log.SectorSize; done < len; done += zeros.Length)
                device.Write(at + done, zeros.AsSpan(0, (int)Math.Min(zeros.Length, len - done)));
            return;
        }
        if (e.NrSectors > 0) device.Write(at, log.Data(e));
    }

    /// <summary>Entries of the log file with any of <paramref name="flags"/> (replay-log --find --next-fua etc.).</summary>
    public static IReadOnlyList<LogEntry> Find(string logPath, LogFlags flags)
    {
        using var log = FileStore.Open(logPath, write: false);
        return Find(new LogReader(log), flags);
    }

    /// <summary>Entries with any of <paramref name="flags"/> (e.g. every FUA point), as replay-log --find finds them.</summary>
    public static IReadOnlyList<LogEntry> Find(LogReader log, LogFlags flags) => log.Entries().Where(e => (e.Flags & flags) != 0).ToList();
}
