using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace DmActors;

/// <summary>
/// Block devices (a /dev/loopN, a partition) where a file path is expected. Their size is not a file length
/// (fstat reports 0): the kernel tells it (ioctl BLKGETSIZE64), and they can never be created, truncated or grown.
/// </summary>
public static class BlockDevice
{
    /// <summary>True if <paramref name="path"/> is a block device (following symlinks, as /dev/disk/by-id/... are).</summary>
    public static unsafe bool Is(string path)
    {
        var buf = stackalloc byte[StatxSize];
        return Native.statx(AtFdCwd, path, 0, StatxType, buf) == 0 && IsBlock(buf);
    }

    /// <summary>True if <paramref name="handle"/> is open on a block device.</summary>
    public static unsafe bool Is(SafeFileHandle handle)
    {
        var buf = stackalloc byte[StatxSize];
        var fd = (int)handle.DangerousGetHandle();
        return Native.statx(fd, "", AtEmptyPath, StatxType, buf) == 0 && IsBlock(buf);
    }

    /// <summary>The size in bytes of what <paramref name="handle"/> is open on: a block device's size, else the file's length.</summary>
    public static unsafe long DeviceSize(SafeFileHandle handle)
    {
        if (!Is(handle)) return RandomAccess.GetLength(handle);
        ulong size;
        if (Native.ioctl((int)handle.DangerousGetHandle(), BlkGetSize64, &size) != 0)
            throw new IOException($"BLKGETSIZE64 failed: errno {Marshal.GetLastPInvokeError()}");
        return (long)size;
    }

    // struct statx is the same on every architecture (unlike struct stat): stx_mode is a u16 at byte 28.
    private const int StatxSize = 256, StatxModeOffset = 28;
    private const int AtFdCwd = -100, AtEmptyPath = 0x1000;
    private const uint StatxType = 0x1;
    private const int SIfMt = 0xF000, SIfBlk = 0x6000;
    private const ulong BlkGetSize64 = 0x80081272; // _IOR(0x12, 114, size_t)

    private static unsafe bool IsBlock(byte* statx) => (*(ushort*)(statx + StatxModeOffset) & SIfMt) == SIfBlk;

    private static class Native
    {
        [DllImport("libc", SetLastError = true)]
        public static extern unsafe int statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, byte* buf);

        [DllImport("libc", SetLastError = true)]
        public static extern unsafe int ioctl(int fd, ulong request, ulong* arg);
    }
}
