using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace DmActors;

/// <summary>
/// A disk backed by a file, like a loop device: positional reads and writes on one handle, flush = fdatasync.
/// Completed writes sit in the kernel's page cache until flushed, so the disk reports a volatile cache and a
/// barrier or FUA write makes it fdatasync. FUA writes and flushes that are in flight together share one
/// fdatasync. Discard and write-zeroes punch holes (reads return zeroes), falling back to writing zeroes; a
/// write-zeroes that must stay allocated (NoUnmap) zeroes the range in place; one that must be fast (NoFallback)
/// fails with NotSupported rather than write zeroes. A block-status bio maps the file's holes.
/// The file is locked as qemu locks images (<see cref="FileLock"/>), and a disk is dirty from its open until its
/// first successful flush: the page cache may hold writes that an earlier process acknowledged.
/// </summary>
public sealed class FileDisk : Disk
{
    private volatile SafeFileHandle? _handle; // null while closed (CloseWhenUnused)
    private readonly DiskIoPool _pool;
    private readonly FlushCoalescer _flusher;
    private readonly bool _readOnly;
    private bool _closeWhenUnused, _disposed;

    private FileDisk(string name, string path, SafeFileHandle handle, long sectors, string devNo, DiskIoPool pool, bool readOnly)
        : base(name, sectors, devNo)
    {
        Path = path; _handle = handle; _pool = pool; _readOnly = readOnly;
        _flusher = new FlushCoalescer(FlushNow);
    }

    public string Path { get; }
    public override bool HasVolatileCache => true;
    public long FlushesIssued => Interlocked.Read(ref _flusher.FlushesIssued);

    /// <summary>Opens <paramref name="path"/>; creates it sparse with <paramref name="createSectors"/> if missing.</summary>
    public static FileDisk Open(string name, string path, string devNo, long createSectors = 0, DiskIoPool? pool = null, bool readOnly = false)
    {
        if (!File.Exists(path))
        {
            if (createSectors <= 0) throw new FileNotFoundException($"disk {name}: file {path} does not exist", path);
            var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path));
            if (!string.IsNullOrEmpty(dir)) Directory.CreateDirectory(dir);
        }
        var handle = File.OpenHandle(path, File.Exists(path) ? FileMode.Open : FileMode.CreateNew,
            readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        LockOrClose(handle, path, readOnly);
        long length;
        try
        {
            // A block device has the size the kernel gives it and is never resized: only a new file gets createSectors.
            length = BlockDevice.DeviceSize(handle);
            if (length == 0 && createSectors > 0 && !BlockDevice.Is(handle))
            {
                RandomAccess.SetLength(handle, createSectors << Bio.SectorShift);
                length = createSectors << Bio.SectorShift;
            }
        }
        catch { handle.Dispose(); throw; } // the lock goes with the handle: a failed open must not keep the file locked
        return new FileDisk(name, path, handle, length >> Bio.SectorShift, devNo, pool ?? DiskIoPool.Shared, readOnly);
    }

    private static void LockOrClose(SafeFileHandle handle, string path, bool readOnly)
    {
        try { FileLock.Acquire(handle, path, readOnly); }
        catch { handle.Dispose(); throw; }
    }

    /// <summary>
    /// Keeps the file, and its lock, open only while the disk is open (like a loop device with autoclear), for files
    /// a table names by path: once no table uses it, another process may have it. Closes it now if nobody has it open.
    /// </summary>
    public void CloseWhenUnused()
    {
        lock (OpenGate)
        {
            _closeWhenUnused = true;
            if (OpenCount == 0) CloseHandle();
        }
    }

    protected override void FirstOpen()
    {
        if (_handle != null) return;
        ObjectDisposedException.ThrowIf(_disposed, this);
        // Opened again: locked again, and dirty again (what was written meanwhile is not known to be durable).
        var handle = File.OpenHandle(Path, FileMode.Open, _readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.ReadWrite);
        LockOrClose(handle, Path, _readOnly);
        _flusher.Reopened();
        _handle = handle;
    }

    protected override void LastClose()
    {
        if (_closeWhenUnused) CloseHandle();
    }

    private void CloseHandle()
    {
        var h = _handle;
        _handle = null;
        h?.Dispose(); // also releases the lock; a native call still running keeps the fd until it returns (SafeHandle)
    }

    /// <summary>The open file; a closed disk fails the bio (Execute and Start turn the exception into an error).</summary>
    private SafeFileHandle Handle => _handle ?? throw new ObjectDisposedException(Name);

    protected override void Run(Bio bio, Action<Bio, BioStatus> done)
    {
        // A read the page cache can answer at once is done here: preadv2(RWF_NOWAIT) fails with EAGAIN rather
        // than wait for the disk, so the caller's thread never blocks; anything else goes to the IO threads.
        // This saves the two thread wake-ups that dominate a cached 4 KiB read.
        // Likewise a plain write that fits in the page cache without waiting (pwritev2(RWF_NOWAIT), where the
        // filesystem supports it for buffered IO).
        // Only small bios: a large copy would hold the caller's thread, and several go faster in parallel on the IO
        // threads.
        if (bio.Data.Length > InlineMax) { _pool.Enqueue(this, bio, done); return; }
        switch (bio.Op)
        {
            case BioOp.Read when _nowaitReads && TryNoWait(bio, write: false):
                done(bio, BioStatus.Ok);
                return;
            case BioOp.Write when _nowaitWrites && (bio.Flags & BioFlags.Fua) == 0 && TryNoWait(bio, write: true):
                _flusher.WriteCompleted();
                done(bio, BioStatus.Ok);
                return;
            case BioOp.Flush when DiskIoPool.OnIoThread:
                // Brought by a completion on a disk thread (an ordered barrier's post-flush after its data): that
                // thread may block, so it syncs here rather than queue it and wake another.
                Execute(bio, done);
                return;
            case BioOp.Flush:
                _pool.EnqueueFlush(this, bio, done);
                return;
        }
        _pool.Enqueue(this, bio, done);
    }

    private const int InlineMax = 16 << 10;
    private volatile bool _nowaitReads = true;
    private volatile bool _nowaitWrites = true;

    private unsafe bool TryNoWait(Bio bio, bool write)
    {
        const int RwfNowait = 0x8;
        using var pin = bio.Data.Pin();
        var iov = new Native.IoVec { Base = pin.Pointer, Length = (nuint)bio.Data.Length };
        var fd = Handle;
        var offset = bio.Sector << Bio.SectorShift;
        var n = write ? Native.pwritev2(fd, &iov, 1, offset, RwfNowait) : Native.preadv2(fd, &iov, 1, offset, RwfNowait);
        if (n == bio.Data.Length) return true;
        if (n < 0 && Marshal.GetLastPInvokeError() is 95 or 22)
        {
            // EOPNOTSUPP, EINVAL: this kernel or filesystem cannot; never try again.
            if (write) _nowaitWrites = false; else _nowaitReads = false;
        }
        // EAGAIN, or a short transfer (part not cached, a hole at EOF): the IO threads do the whole bio again,
        // which is harmless for a partial write (the same bytes land at the same place).
        return false;
    }

    /// <summary>Runs on a <see cref="DiskIoPool"/> thread: may block.</summary>
    internal void Execute(Bio bio, Action<Bio, BioStatus> done)
    {
        // Answered above while it waited in the queue (Bio.Abandon): it must not land after what was written since.
        if (bio.IsAbandoned) { done(bio, BioStatus.IoError); return; }
        BioStatus status;
        try
        {
            switch (bio.Op)
            {
                case BioOp.Read:
                    ReadFully(bio.Data.Span, bio.Sector << Bio.SectorShift);
                    status = BioStatus.Ok;
                    break;
                case BioOp.Write:
                    RandomAccess.Write(Handle, bio.Data.Span, bio.Sector << Bio.SectorShift);
                    _flusher.WriteCompleted();
                    if ((bio.Flags & BioFlags.Fua) != 0) { RequestFlush(bio, done); return; }
                    status = BioStatus.Ok;
                    break;
                case BioOp.Discard:
                case BioOp.WriteZeroes:
                    if (!Zero(bio.Sector << Bio.SectorShift, bio.Sectors << Bio.SectorShift, bio.Op == BioOp.WriteZeroes ? bio.Flags : BioFlags.None))
                    {
                        status = BioStatus.NotSupported; // a fast zero that would have to write: nothing changed
                        break;
                    }
                    _flusher.WriteCompleted();
                    if ((bio.Flags & BioFlags.Fua) != 0) { RequestFlush(bio, done); return; }
                    status = BioStatus.Ok;
                    break;
                case BioOp.Flush:
                    RequestFlush(bio, done);
                    return;
                case BioOp.BlockStatus:
                    FileHoles.Map(Handle, bio.Sector << Bio.SectorShift, bio.Data.Span);
                    status = BioStatus.Ok;
                    break;
                default:
                    status = BioStatus.NotSupported;
                    break;
            }
        }
        catch (IOException e) when ((e.HResult & 0xffff) == 28) { status = BioStatus.NoSpace; }
        catch (Exception) { status = BioStatus.IoError; }
        done(bio, status);
    }

    private void RequestFlush(Bio bio, Action<Bio, BioStatus> done)
    {
        if (_flusher.Request(bio, done)) _flusher.Drain();
    }

    private void ReadFully(Span<byte> buffer, long offset)
    {
        while (buffer.Length > 0)
        {
            var n = RandomAccess.Read(Handle, buffer, offset);
            if (n <= 0) { buffer.Clear(); return; } // past EOF of a file shorter than the disk: zeroes
            buffer = buffer[n..];
            offset += n;
        }
    }

    private BioStatus FlushNow()
    {
        try { return Native.fdatasync(Handle) == 0 ? BioStatus.Ok : BioStatus.IoError; }
        catch (ObjectDisposedException) { return BioStatus.IoError; }
    }

    private static readonly byte[] Zeroes = new byte[1 << 20];

    /// <summary>Zeroes the range: a hole unless it must stay allocated; written zeroes only when allowed to fall back.</summary>
    private bool Zero(long offset, long length, BioFlags flags)
    {
        var fd = Handle;
        var done = (flags & BioFlags.NoUnmap) != 0 ? FileHoles.ZeroAllocated(fd, offset, length) : FileHoles.Punch(fd, offset, length);
        if (done) return true;
        if ((flags & BioFlags.NoFallback) != 0) return false;
        while (length > 0)
        {
            var n = (int)Math.Min(length, Zeroes.Length);
            RandomAccess.Write(fd, Zeroes.AsSpan(0, n), offset);
            offset += n; length -= n;
        }
        return true;
    }


    public override void Dispose()
    {
        lock (OpenGate)
        {
            _disposed = true;
            CloseHandle();
        }
    }

    private static class Native
    {
        // SafeFileHandle, not the raw fd: a call racing a close fails instead of using a reused descriptor.
        [DllImport("libc", SetLastError = true)] public static extern int fdatasync(SafeFileHandle fd);
        [DllImport("libc", SetLastError = true)] public static extern unsafe long preadv2(SafeFileHandle fd, IoVec* iov, int iovcnt, long offset, int flags);
        [DllImport("libc", SetLastError = true)] public static extern unsafe long pwritev2(SafeFileHandle fd, IoVec* iov, int iovcnt, long offset, int flags);

        [StructLayout(LayoutKind.Sequential)]
        public unsafe struct IoVec
        {
            public void* Base;
            public nuint Length;
        }
    }
}
