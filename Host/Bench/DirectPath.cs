using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace DmActors.Host.Bench;

/// <summary>
/// The baseline: pread/pwrite (RandomAccess) on one file handle from a fixed set of dedicated threads, as many
/// as the engine's DiskIoPool has. QD slots are spread over min(QD, threads) threads; each thread serves its
/// slots round robin, so a slot's latency runs from its previous completion (= resubmission) to its completion,
/// the same as a queue of QD requests with no queueing cost at all. Barrier workloads: fdatasync after every
/// n-th write, on the thread that wrote it. With <paramref name="ordered"/> (the ordered barrier's baseline) the
/// n-th write does what an ordered barrier does, with no engine around it: it waits for the writes before it (a
/// lock that every other write holds shared), fdatasyncs, writes, fdatasyncs, and holds later writes meanwhile.
/// </summary>
public sealed class DirectPath(string name, SafeFileHandle handle, long bytes, int threads, bool ordered = false) : BenchPath(name, bytes)
{
    public override bool IsDirect => true;

    public override async Task<RunSample> RunAsync(Workload w, double seconds, int seed)
    {
        var hist = new LatencyHistogram();
        var pattern = new IoPattern(w, Bytes, seed);
        var buffers = RentBuffers(w, seed);
        var n = Math.Min(w.QueueDepth, threads);
        var go = new ManualResetEventSlim();
        using var drain = new ReaderWriterLockSlim();
        var finished = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        long ops = 0, errors = 0, syncs = 0, running = n, deadline = 0, start = 0;
        void Sync()
        {
            if (fdatasync((int)handle.DangerousGetHandle()) != 0)
                throw new IOException($"fdatasync failed: errno {Marshal.GetLastPInvokeError()}");
            Interlocked.Increment(ref syncs);
        }
        var workers = new Thread[n];
        for (var t = 0; t < n; t++)
        {
            var slots = Enumerable.Range(0, w.QueueDepth).Where(s => s % n == t).ToArray();
            var submitted = new long[slots.Length];
            workers[t] = new Thread(() =>
            {
                go.Wait();
                Array.Fill(submitted, start);
                long mine = 0;
                try
                {
                    while (true)
                    {
                        for (var i = 0; i < slots.Length; i++)
                        {
                            if (Stopwatch.GetTimestamp() >= deadline || Volatile.Read(ref errors) > 0) goto done;
                            var buf = buffers[slots[i]].AsSpan(0, w.BlockBytes);
                            var offset = pattern.NextOffset(slots[i]);
                            if (w.Write && ordered)
                            {
                                if (pattern.NextIsBarrier())
                                {
                                    drain.EnterWriteLock(); // the writes before it have completed; later ones wait
                                    try
                                    {
                                        Sync();
                                        RandomAccess.Write(handle, buf, offset);
                                        Sync();
                                    }
                                    finally { drain.ExitWriteLock(); }
                                }
                                else
                                {
                                    drain.EnterReadLock();
                                    try { RandomAccess.Write(handle, buf, offset); }
                                    finally { drain.ExitReadLock(); }
                                }
                            }
                            else if (w.Write)
                            {
                                RandomAccess.Write(handle, buf, offset);
                                if (pattern.NextIsBarrier()) Sync();
                            }
                            else if (RandomAccess.Read(handle, buf, offset) != buf.Length)
                                throw new IOException($"short read at {offset}");
                            var now = Stopwatch.GetTimestamp();
                            hist.Record(ToNanos(now - submitted[i]));
                            submitted[i] = now;
                            mine++;
                        }
                    }
                }
                catch (Exception e)
                {
                    Console.Error.WriteLine($"bench: {Name}: {e.Message}");
                    Interlocked.Increment(ref errors);
                }
                done:
                Interlocked.Add(ref ops, mine);
                if (Interlocked.Decrement(ref running) == 0) finished.SetResult();
            }) { IsBackground = true, Name = $"bench-direct-{t}" };
            workers[t].Start();
        }
        var alloc0 = GC.GetTotalAllocatedBytes(true);
        start = Stopwatch.GetTimestamp();
        deadline = Deadline(seconds);
        go.Set();
        await finished.Task.WaitAsync(TimeSpan.FromSeconds(seconds + 120));
        var elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
        var alloc = GC.GetTotalAllocatedBytes(true) - alloc0;
        ReturnBuffers(buffers);
        go.Dispose();
        return new RunSample(ops, ops * w.BlockBytes, elapsed, alloc, hist, (int)errors, syncs);
    }

    [DllImport("libc", SetLastError = true)] private static extern int fdatasync(int fd);
}
