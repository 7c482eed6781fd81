namespace DmActors;

/// <summary>
/// dm's struct dm_io: one original bio in flight through a device. It starts with one reference for the
/// submission, takes one per clone, and completes when the count returns to zero, with the merged status.
/// </summary>
public sealed class DmIo
{
    public enum Kinds : byte
    {
        /// <summary>An ordinary bio (or the data of a flush-mode preflush bio).</summary>
        Normal,
        /// <summary>The payload of an ordered-mode barrier, sent with the barrier flag cleared.</summary>
        BarrierData,
        /// <summary>A cache flush fanned out to every device around an ordered-mode barrier.</summary>
        BarrierFlush,
    }

    public DmIo(Bio original, Kinds kind, long seq)
    {
        Original = original; Kind = kind; Seq = seq;
    }

    public readonly Bio Original;
    public readonly Kinds Kind;
    /// <summary>Arrival order, so requeued bios go back in the order they came.</summary>
    public readonly long Seq;
    public int Refs = 1;
    /// <summary>When the device started it (<see cref="IoStats.Start"/>), for its latency.</summary>
    public long Started;
    /// <summary>The device's other statistics regions when it started (<see cref="IoStats.Start(Bio, out StatsRegion[])"/>).</summary>
    public StatsRegion[] Regions = [];
    public BioStatus Status;
    /// <summary>A lane's read that a target's end_io handed back (<see cref="Target.EndReadOnLane"/>): the device maps it again.</summary>
    public bool Reissue;
    /// <summary>Flush mode: the preflush part is running; the data goes out when it completes.</summary>
    public bool Preflushing;
    /// <summary>For an io that flushed caches: the device's count of completed writes when the flush went out.</summary>
    public long FlushUpTo = -1;
    /// <summary>Devices of swapped-out tables this flush also covered.</summary>
    public IBlockDevice[]? FlushedStale;

    /// <summary>dm_io_set_error: the last error wins, but a push-back during a noflush suspend is never overwritten.</summary>
    public void SetError(BioStatus status, bool noflushSuspending)
    {
        if (status == BioStatus.Ok) return;
        if (Status == BioStatus.Requeue && noflushSuspending) return;
        Status = status;
    }
}
