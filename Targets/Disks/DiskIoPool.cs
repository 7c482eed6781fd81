using System.Collections.Concurrent;

namespace DmActors;

/// <summary>
/// Dedicated threads for blocking file IO (pread, pwrite, fdatasync), so that no actor dispatcher thread and
/// no thread-pool thread ever waits on a disk. One pool serves every file disk of a host.
/// </summary>
public sealed class DiskIoPool : IDisposable
{
    private readonly BlockingCollection<(FileDisk Disk, Bio Bio, Action<Bio, BioStatus> Done)> _queue = new();
    private readonly Thread[] _threads;

    public DiskIoPool(int threads = 4)
    {
        _threads = new Thread[Math.Max(1, threads)];
        for (var i = 0; i < _threads.Length; i++)
        {
            _threads[i] = new Thread(Loop) { IsBackground = true, Name = $"dm-io-{i}" };
            _threads[i].Start();
        }
    }

    /// <summary>The pool used when a disk is created without one.</summary>
    public static DiskIoPool Shared { get; } = new(int.TryParse(Environment.GetEnvironmentVariable("DMX_IOT"), out var n) ? n : Math.Max(4, Environment.ProcessorCount * 2));

    public void Enqueue(FileDisk disk, Bio bio, Action<Bio, BioStatus> done) => _queue.Add((disk, bio, done));

    private void Loop()
    {
        foreach (var (disk, bio, done) in _queue.GetConsumingEnumerable())
            disk.Execute(bio, done);
    }

    public void Dispose() => _queue.CompleteAdding();
}

/// <summary>
/// Group commit for one disk: every caller waits for a flush that started after it asked, and callers that
/// arrive while a flush runs share the next one. A flush with no write completed since the last one is skipped.
/// </summary>
public sealed class FlushCoalescer
{
    private readonly Func<BioStatus> _flush;
    private readonly object _gate = new();
    private List<(Bio, Action<Bio, BioStatus>)> _waiting = new();
    private bool _running;
    private long _writesCompleted;
    private long _writesFlushed;

    public FlushCoalescer(Func<BioStatus> flush) => _flush = flush;

    public long FlushesIssued;

    public void WriteCompleted() => Interlocked.Increment(ref _writesCompleted);

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
                _waiting = new List<(Bio, Action<Bio, BioStatus>)>();
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
        }
    }
}
