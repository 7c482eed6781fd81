using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace DmActors.Host;

/// <summary>
/// One host per data directory: an exclusive advisory lock (flock) on <c>dmactors.lock</c> in it, held while the
/// host runs, with the holder's PID in the file so that a second host can say who has it. The kernel drops the
/// lock when the process ends, however it ends, so a killed host leaves no stale lock behind.
/// </summary>
public sealed class DataDirLock : IDisposable
{
    public const string FileName = "dmactors.lock";
    private readonly SafeFileHandle _handle;

    private DataDirLock(SafeFileHandle handle) => _handle = handle;

    /// <summary>Takes the lock of <paramref name="dataDir"/> (which exists); an IOException naming the holder if another process has it.</summary>
    public static DataDirLock Acquire(string dataDir)
    {
        const int ORdWr = 0x2, OCreat = 0x40, OCloExec = 0x80000, LockEx = 2, LockNb = 4, EWouldBlock = 11;
        var dir = Path.GetFullPath(dataDir);
        var path = Path.Combine(dir, FileName);
        // libc's open, not File.OpenHandle: .NET takes a flock of its own on open, which would make the file
        // unreadable for the message below.
        var fd = open(path, ORdWr | OCreat | OCloExec, 0x1a4 /* 0644 */);
        if (fd < 0) throw new IOException($"cannot open {path}: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}");
        var handle = new SafeFileHandle(fd, ownsHandle: true);
        if (flock(handle, LockEx | LockNb) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            var holder = errno == EWouldBlock ? Holder(handle) : null;
            handle.Dispose();
            if (errno != EWouldBlock) throw new IOException($"cannot lock {path}: {Marshal.GetPInvokeErrorMessage(errno)}");
            throw new IOException($"data directory {dir} is in use by another dmactors host ({holder ?? "pid unknown"}; lock {path})");
        }
        var pid = Encoding.ASCII.GetBytes($"{Environment.ProcessId}\n");
        RandomAccess.SetLength(handle, 0);
        RandomAccess.Write(handle, pid, 0);
        return new DataDirLock(handle);
    }

    private static string? Holder(SafeFileHandle handle)
    {
        var buffer = new byte[32];
        var n = RandomAccess.Read(handle, buffer, 0);
        return int.TryParse(Encoding.ASCII.GetString(buffer, 0, n).Trim(), out var pid) ? $"pid {pid}" : null;
    }

    /// <summary>Releases the lock (closing the file does); the file stays, a later host reuses it.</summary>
    public void Dispose() => _handle.Dispose();

    [DllImport("libc", SetLastError = true)] private static extern int open(string path, int flags, int mode);
    [DllImport("libc", SetLastError = true)] private static extern int flock(SafeFileHandle fd, int operation);
}
