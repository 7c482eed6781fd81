using System.Buffers;

namespace DmActors.Host.Bench;

/// <summary>
/// One way of doing IO that a workload runs over: the file directly, or a mapped device. A run keeps
/// <see cref="Workload.QueueDepth"/> requests outstanding for a time slice and reports what it measured.
/// </summary>
public abstract class BenchPath(string name, long bytes)
{
    public string Name { get; } = name;
    /// <summary>Usable size: offsets are drawn from [0, Bytes).</summary>
    public long Bytes { get; } = bytes;
    public abstract bool IsDirect { get; }

    public abstract Task<RunSample> RunAsync(Workload w, double seconds, int seed);

    /// <summary>One buffer per slot from the shared pool, write buffers filled with non-zero data.</summary>
    protected static byte[][] RentBuffers(Workload w, int seed)
    {
        var rng = new Random(seed);
        var buffers = new byte[w.QueueDepth][];
        for (var i = 0; i < buffers.Length; i++)
        {
            buffers[i] = ArrayPool<byte>.Shared.Rent(w.BlockBytes);
            if (w.Write) rng.NextBytes(buffers[i].AsSpan(0, w.BlockBytes));
        }
        return buffers;
    }

    protected static void ReturnBuffers(byte[][] buffers)
    {
        foreach (var b in buffers) ArrayPool<byte>.Shared.Return(b);
    }

    protected static long Deadline(double seconds) =>
        System.Diagnostics.Stopwatch.GetTimestamp() + (long)(seconds * System.Diagnostics.Stopwatch.Frequency);

    protected static long ToNanos(long ticks) => (long)(ticks * (1e9 / System.Diagnostics.Stopwatch.Frequency));
}

/// <summary>
/// Where each request of a run goes: per-slot xorshift offsets for random IO, one shared cursor for sequential
/// IO, and a shared write counter that marks every n-th write as a barrier. Thread-safe, allocation-free.
/// </summary>
public sealed class IoPattern
{
    private readonly Workload _w;
    private readonly long _blocks;
    private readonly ulong[] _rng;
    private long _cursor = -1;
    private long _writes;

    public IoPattern(Workload w, long bytes, int seed)
    {
        _w = w;
        _blocks = Math.Max(1, bytes / w.BlockBytes);
        _rng = new ulong[w.QueueDepth * 8]; // 64 bytes apart: no false sharing between slots
        for (var i = 0; i < w.QueueDepth; i++) _rng[i * 8] = (ulong)(seed * 7919 + i) * 0x9E3779B97F4A7C15UL | 1;
    }

    public long NextOffset(int slot)
    {
        if (_w.Sequential) return Interlocked.Increment(ref _cursor) % _blocks * _w.BlockBytes;
        ref var x = ref _rng[slot * 8];
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        return (long)(x % (ulong)_blocks) * _w.BlockBytes;
    }

    /// <summary>True for the write that must carry a barrier (every BarrierEvery-th write of the run).</summary>
    public bool NextIsBarrier() => _w.BarrierEvery > 0 && Interlocked.Increment(ref _writes) % _w.BarrierEvery == 0;
}
