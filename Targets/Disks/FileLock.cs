using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace DmActors;

/// <summary>A disk file is held by another process (a DmActors host, qemu, qemu-nbd, qemu-img).</summary>
public sealed class DiskInUseException(string path) : IOException($"{path} is in use by another process (locked)")
{
    public string DiskPath { get; } = path;
}

/// <summary>
/// Image locking the way qemu does it for files (qemu's file-posix "locking"), so that a DmActors host and qemu
/// refuse each other's files: open file description (OFD) read locks on single bytes, byte 100+p meaning "I use
/// permission p" and byte 200+p "nobody else may use p" (p: 0 consistent read, 1 write, 3 resize). A read-write
/// disk uses consistent read and write, and shares neither write nor resize; a read-only disk uses consistent
/// read and shares neither either. The locks are set first and checked after, as qemu does, so two openers that
/// race cannot both win. They belong to the open file description: closing the handle releases them.
/// </summary>
internal static class FileLock
{
    private const int PermBase = 100, SharedBase = 200;
    private const int ConsistentRead = 0, Write = 1, Resize = 3;
    private const int FOfdGetLk = 36, FOfdSetLk = 37;
    private const short FRdLck = 0, FWrLck = 1, FUnLck = 2;

    /// <summary>Locks <paramref name="handle"/>'s file; throws <see cref="DiskInUseException"/> on a conflict.</summary>
    public static void Acquire(SafeFileHandle handle, string path, bool readOnly)
    {
        int[] uses = readOnly ? [ConsistentRead] : [ConsistentRead, Write];
        int[] unshares = [Write, Resize];
        foreach (var p in uses)
            if (!Lock(handle, PermBase + p, path)) return;
        foreach (var p in unshares)
            if (!Lock(handle, SharedBase + p, path)) return;
        // Someone else unshares what we use, or uses what we unshare (F_OFD_GETLK ignores our own locks).
        if (uses.Any(p => HeldByOthers(handle, SharedBase + p)) || unshares.Any(p => HeldByOthers(handle, PermBase + p)))
        {
            Unlock(handle);
            throw new DiskInUseException(path);
        }
    }

    /// <summary>Sets a read lock on one byte; false when the file system has no OFD locks (then nothing is locked, as qemu does).</summary>
    private static bool Lock(SafeFileHandle handle, int offset, string path)
    {
        var l = new Flock { Type = FRdLck, Start = offset, Length = 1 };
        if (fcntl(handle, FOfdSetLk, ref l) == 0) return true;
        var errno = Marshal.GetLastPInvokeError();
        Unlock(handle);
        if (errno is 11 or 13) throw new DiskInUseException(path); // EAGAIN, EACCES: someone holds a write lock there
        return false; // EINVAL, ENOLCK, EOPNOTSUPP: no OFD locks here
    }

    private static bool HeldByOthers(SafeFileHandle handle, int offset)
    {
        var l = new Flock { Type = FWrLck, Start = offset, Length = 1 };
        return fcntl(handle, FOfdGetLk, ref l) == 0 && l.Type != FUnLck;
    }

    private static void Unlock(SafeFileHandle handle)
    {
        var l = new Flock { Type = FUnLck, Start = PermBase, Length = SharedBase + Resize + 1 - PermBase };
        fcntl(handle, FOfdSetLk, ref l);
    }

    /// <summary>struct flock (Linux, 64-bit off_t).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct Flock
    {
        public short Type;
        public short Whence; // SEEK_SET
        public long Start;
        public long Length;
        public int Pid;      // 0 for OFD locks
        private readonly int _pad;
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int fcntl(SafeFileHandle fd, int cmd, ref Flock lk);
}
