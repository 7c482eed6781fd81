namespace DmActors.Host.Bench;

/// <summary>
/// A lock-free log-linear latency histogram in nanoseconds: 16 buckets per power of two (at most about 6% error),
/// so recording from several IO threads costs one Interlocked increment and never allocates.
/// </summary>
public sealed class LatencyHistogram
{
    private const int SubBits = 4;
    private const int Sub = 1 << SubBits;
    private readonly long[] _counts = new long[(64 - SubBits + 1) * Sub];
    private long _total;

    public long Count => Interlocked.Read(ref _total);

    public void Record(long nanos)
    {
        if (nanos < 0) nanos = 0;
        Interlocked.Increment(ref _counts[Index(nanos)]);
        Interlocked.Increment(ref _total);
    }

    public void Add(LatencyHistogram other)
    {
        for (var i = 0; i < _counts.Length; i++) _counts[i] += other._counts[i];
        _total += other._total;
    }

    /// <summary>The value at percentile <paramref name="p"/> (0..100), as its bucket's midpoint; 0 when empty.</summary>
    public double Percentile(double p)
    {
        var total = Count;
        if (total == 0) return 0;
        var rank = Math.Max(1, (long)Math.Ceiling(p / 100.0 * total));
        long seen = 0;
        for (var i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank) return Midpoint(i);
        }
        return Midpoint(_counts.Length - 1);
    }

    public static int Index(long v)
    {
        if (v < Sub) return (int)v;
        var e = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)v);
        return (e - SubBits + 1) * Sub + (int)((v >> (e - SubBits)) & (Sub - 1));
    }

    public static double Midpoint(int i)
    {
        if (i < Sub) return i;
        var e = i / Sub + SubBits - 1;
        var width = 1L << (e - SubBits);
        return ((long)(Sub + i % Sub) << (e - SubBits)) + width / 2.0;
    }
}
