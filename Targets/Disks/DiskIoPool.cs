using System.Collections.Concurrent;
using System.Diagnostics;

namespace DmActors;

/// <summary>
/// Dedicated threads for blocking file IO (pread, pwrite, fdatasync), so that no actor dispatcher thread and
/// no thread-pool thread ever waits on a disk. One pool serves every file disk of a host. An idle thread watches
/// the queue for a few microseconds (yielding the core) before it sleeps, because the next bio of a busy client
/// usually comes that soon and a sleeping thread's wake-up costs more than the IO; a submitter wakes a sleeper
/// only when there is one. Flushes have a thread of their own: an fdatasync waits for the device, not a core,
/// and on a pool of two it would otherwise halve the writes that run meanwhile.
/// </summary>
public sealed class DiskIoPool : IDisposable
{
    private readonly ConcurrentQueue<(FileDisk Disk, Bio Bio, Action<Bio, BioStatus> Done)> _queue = new();
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread[] _threads;
    private readonly ConcurrentQueue<(FileDisk Disk, Bio Bio, Action<Bio, BioStatus> Done)> _flushes = new();
    private readonly SemaphoreSlim _flushWake = new(0);
    private readonly Thread _flusher;
    private int _sleeping;
    private int _watching;
    private volatile bool _disposed;
    private static readonly long SpinTicks = Stopwatch.Frequency * 30 / 1_000_000; // 30 µs
    private const int PlugRun = 8;

    public DiskIoPool(int threads = 2)
    {
        _threads = new Thread[Math.Max(1, threads)];
        for (var i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(Loop) { IsBackground = true, Name = $"dm-io-{i}" };
            _threads[i].Start();
        }
        _flusher = new Thread(FlushLoop) { IsBackground = true, Name = "dm-io-flush" };
        _flusher.Start();
    }

    /// <summary>
    /// The pool used when a disk is created without one: a thread per core, since more threads copying page-cache
    /// data only preempt one another (and writers of one file queue on its inode lock anyway).
    /// </summary>
    public static DiskIoPool Shared { get; } = new(DefaultThreads);

    public static int DefaultThreads => Math.Max(2, Environment.ProcessorCount);

    public int Threads => _threads.Length;

    [ThreadStatic] private static bool _onIoThread;

    /// <summary>True on a thread of any pool: it may block on file IO, so work it brings need not hop to another.</summary>
    public static bool OnIoThread => _onIoThread;

    public void Enqueue(FileDisk disk, Bio bio, Action<Bio, BioStatus> done)
    {
        _queue.Enqueue((disk, bio, done));
        Interlocked.MemoryBarrier(); // the enqueue is visible before _sleeping and _disposed are read
        if (_disposed)
        {
            // The threads may have ended: whatever is still queued is answered here, each bio once (TryDequeue).
            while (_queue.TryDequeue(out var late)) late.Done(late.Bio, BioStatus.IoError);
            return;
        }
        if (Volatile.Read(ref _sleeping) > 0) _wake.Release();
    }

    /// <summary>A flush (fdatasync): on the flush thread, so the IO threads go on writing meanwhile.</summary>
    public void EnqueueFlush(FileDisk disk, Bio bio, Action<Bio, BioStatus> done)
    {
        _flushes.Enqueue((disk, bio, done));
        if (_disposed)
        {
            while (_flushes.TryDequeue(out var late)) late.Done(late.Bio, BioStatus.IoError);
            return;
        }
        _flushWake.Release();
    }

    private void FlushLoop()
    {
        _onIoThread = true;
        while (true)
        {
            _flushWake.Wait(); // one release per flush queued (and one at Dispose)
            if (_flushes.TryDequeue(out var work)) { work.Disk.Execute(work.Bio, work.Done); continue; }
            if (_disposed) return;
        }
    }

    private void Loop()
    {
        _onIoThread = true;
        while (true)
        {
            if (_queue.TryDequeue(out var work))
            {
                // A run of queued bios is one burst: their replies leave together (IoPlug), a few at a time.
                IoPlug.Begin();
                try
                {
                    var n = 0;
                    do work.Disk.Execute(work.Bio, work.Done);
                    while (++n < PlugRun && _queue.TryDequeue(out work));
                }
                finally { IoPlug.End(); }
                continue;
            }
            if (_disposed) return; // only once the queue is empty: nothing queued before Dispose is dropped
            // One thread at a time watches; the others sleep at once, leaving the cores to the ones that work.
            if (Interlocked.CompareExchange(ref _watching, 1, 0) == 0)
            {
                var until = Stopwatch.GetTimestamp() + SpinTicks;
                while (_queue.IsEmpty && Stopwatch.GetTimestamp() < until) Thread.Yield();
                Volatile.Write(ref _watching, 0);
                if (!_queue.IsEmpty) continue;
            }
            Interlocked.Increment(ref _sleeping);
            // Re-checked after announcing the sleep: a submitter that missed the announcement left its work here.
            if (_queue.IsEmpty && !_disposed) _wake.Wait();
            Interlocked.Decrement(ref _sleeping);
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _wake.Release(_threads.Length);
        _flushWake.Release();
    }
}

/// <summary>
/// Group commit for one disk: every caller waits for a flush that started after it asked, and callers that
/// arrive while a flush runs share the next one. A flush with no write completed since the last one is skipped,
/// except that the disk starts dirty: until its first successful flush after an open, the page cache may still
/// hold writes another process (a host killed before it flushed) acknowledged, so that flush really syncs.
/// </summary>
public sealed class FlushCoalescer
{
    private readonly Func<BioStatus> _flush;
    private readonly object _gate = new();
    private List<(Bio, Action<Bio, BioStatus>)> _waiting = new();
    private List<(Bio, Action<Bio, BioStatus>)> _spare = new(); // the batch list of the last round, reused
    private bool _running;
    private long _writesCompleted;
    private long _writesFlushed = -1; // never equal to _writesCompleted: dirty until the first flush

    public FlushCoalescer(Func<BioStatus> flush) => _flush = flush;

    public long FlushesIssued;

    public void WriteCompleted() => Interlocked.Increment(ref _writesCompleted);

    /// <summary>The file was opened again: dirty until flushed, as after the first open.</summary>
    public void Reopened() => Interlocked.Exchange(ref _writesFlushed, -1);

    /// <summary>Adds a waiter; returns true when the caller must run <see cref="Drain"/> (on an IO thread).</summary>
    public bool Request(Bio bio, Action<Bio, BioStatus> done)
    {
        lock (_gate)
        {
            _waiting.Add((bio, done));
            if (_running) return false;
            _running = true;
            return true;
        }
    }

    /// <summary>Runs flushes until nobody waits. Only one thread drains at a time.</summary>
    public void Drain()
    {
        while (true)
        {
            List<(Bio, Action<Bio, BioStatus>)> batch;
            lock (_gate)
            {
                if (_waiting.Count == 0) { _running = false; return; }
                batch = _waiting;
                _waiting = _spare;
            }
            var upTo = Interlocked.Read(ref _writesCompleted);
            var status = BioStatus.Ok;
            if (upTo != Interlocked.Read(ref _writesFlushed))
            {
                Interlocked.Increment(ref FlushesIssued);
                status = _flush();
                if (status == BioStatus.Ok) Interlocked.Exchange(ref _writesFlushed, upTo);
            }
            foreach (var (b, done) in batch) done(b, status);
            batch.Clear();
            lock (_gate) _spare = batch; // only the draining thread takes it, at its next round
        }
    }
}
