namespace DmActors.Host.Bench;

/// <summary>
/// One IO pattern: block size, random or sequential, queue depth, and for barrier workloads how often a write
/// carries a barrier (direct baseline: fdatasync after that write; direct-ordered: the ordered barrier's steps).
/// </summary>
public sealed record Workload(string Name, bool Write, int BlockBytes, bool Sequential, int QueueDepth, int BarrierEvery = 0)
{
    public bool IsBarrier => BarrierEvery > 0;
    /// <summary>Large-block workloads are reported in MB/s, small ones in IOPS.</summary>
    public bool ReportsBandwidth => BlockBytes >= 64 << 10;

    public static IReadOnlyList<Workload> All { get; } =
    [
        new("randread-4k-qd1", false, 4096, false, 1),
        new("randread-4k-qd32", false, 4096, false, 32),
        new("randwrite-4k-qd1", true, 4096, false, 1),
        new("randwrite-4k-qd32", true, 4096, false, 32),
        new("seqread-1m-qd4", false, 1 << 20, true, 4),
        new("seqwrite-1m-qd4", true, 1 << 20, true, 4),
        new("write-4k-barrier-every", true, 4096, false, 1, 1),
        new("write-4k-barrier-per64", true, 4096, false, 1, 64),
        new("write-4k-barrier-per64-qd32", true, 4096, false, 32, 64),
    ];
}

/// <summary>What one timed slice measured; Syncs = fdatasync calls that reached the files.</summary>
public sealed record RunSample(long Ops, long Bytes, double Seconds, long AllocatedBytes, LatencyHistogram Latency, int Errors, long Syncs = 0)
{
    public double SyncsPerIo => Ops > 0 ? (double)Syncs / Ops : 0;
    public double Iops => Seconds > 0 ? Ops / Seconds : 0;
    public double MBps => Seconds > 0 ? Bytes / Seconds / 1e6 : 0;
    public double AllocPerIo => Ops > 0 ? (double)AllocatedBytes / Ops : 0;
}
