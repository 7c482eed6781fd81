namespace DmActors;

/// <summary>What the ordered barrier asks of its device (<see cref="MappedDevice"/>; a fake in unit tests).</summary>
public interface IBarrierDevice
{
    /// <summary>IO issued and not yet completed (dm's pending count), a device's lanes not yet drained included.</summary>
    int Pending { get; }
    /// <summary>IO issued before the barrier was pushed back by a noflush suspend and has not completed.</summary>
    bool HasRequeued { get; }
    bool NoflushSuspending { get; }
    bool HasLiveTable { get; }
    /// <summary>False when a flush would reach only disks without a cache (then it is skipped).</summary>
    bool NeedsFlush { get; }
    /// <summary>Flush every cache below once; the result comes back through <see cref="OrderedBarrier.FlushDone"/>, maybe at once.</summary>
    void IssueFlush(Bio barrier);
    /// <summary>Issue the barrier's data with the barrier flag cleared, counted as pending; its result comes back
    /// through <see cref="OrderedBarrier.DataDone"/>, then <see cref="OrderedBarrier.PendingIsZero"/>.</summary>
    void IssueData(Bio barrier);
    /// <summary>Push the barrier back to the deferred bios at its arrival order <paramref name="seq"/>, then check for suspended.</summary>
    void Requeue(Bio barrier, long seq);
    /// <summary>The barrier was answered: release the deferred bios, then check for suspended.</summary>
    void Completed();
    void StartTimeout(Bio barrier, TimeSpan after);
    void CancelTimeout();
}

/// <summary>
/// The founding patch's barrier (BarrierMode.Ordered), one at a time: a barrier waits until all IO issued before
/// it has completed (drain; the device defers every later bio meanwhile), flushes the caches below (pre-flush),
/// issues its data with the barrier flag cleared (data), flushes again (post-flush) and completes with the
/// per-device barrier error (md->barrier_error): the first error of its data or either flush, EIO with no live
/// table. A barrier that has not completed within the timeout fails with TimedOut; a noflush suspend that pushed
/// back earlier IO or the barrier's data pushes the barrier back too. Runs on the device actor's thread.
/// </summary>
public sealed class OrderedBarrier(IBarrierDevice device, TimeSpan? timeout = null, IoStats? stats = null)
{
    public enum Phase { Idle, Drain, PreFlush, Data, PostFlush }

    private Bio? _barrier;
    private long _seq;
    private BioStatus _error;
    private bool _awaitingFlush;
    private long _started;
    private StatsRegion[] _regions = [];

    public Phase Current { get; private set; }
    /// <summary>While true the device defers every bio (and does not complete a suspend).</summary>
    public bool InFlight => _barrier != null;
    public bool IsCurrent(Bio bio) => ReferenceEquals(bio, _barrier);

    /// <summary>
    /// In ordered mode an empty flush is an empty barrier and a PREFLUSH bio is a barrier; a NoDrain flush is not
    /// (it promises only the writes completed before it, so it needs no drain).
    /// </summary>
    public static bool IsBarrier(Bio bio) => bio.IsBarrier || (bio.Flags & BioFlags.Preflush) != 0
        || (bio.Op == BioOp.Flush && (bio.Flags & BioFlags.NoDrain) == 0);

    /// <summary>Starts <paramref name="barrier"/> (none may be in flight); <paramref name="seq"/> is its arrival order.</summary>
    public void Start(Bio barrier, long seq)
    {
        _barrier = barrier;
        _seq = seq;
        _error = BioStatus.Ok;
        _started = stats?.Start(barrier, out _regions) ?? 0;
        Current = Phase.Drain;
        if (timeout is { } after) device.StartTimeout(barrier, after);
        if (device.Pending == 0) AfterDrain();
    }

    /// <summary>The device's pending count reached 0; true when that moved the barrier on (drain or data done).</summary>
    public bool PendingIsZero()
    {
        switch (Current)
        {
            case Phase.Drain: AfterDrain(); return true;
            case Phase.Data: AfterData(); return true;
            default: return false;
        }
    }

    /// <summary>A flush issued for <paramref name="barrier"/> completed (ignored if that barrier timed out meanwhile).</summary>
    public void FlushDone(Bio barrier, BioStatus status)
    {
        if (!IsCurrent(barrier) || !_awaitingFlush) return;
        _awaitingFlush = false;
        Flushed(status);
    }

    /// <summary>The barrier's data completed (before the device's pending count drops); a timed-out one is ignored.</summary>
    public void DataDone(Bio barrier, BioStatus status)
    {
        if (IsCurrent(barrier))
            _error = status == BioStatus.Requeue && !device.NoflushSuspending ? BioStatus.IoError : status;
    }

    public void TimedOut(Bio barrier)
    {
        if (!IsCurrent(barrier)) return;
        barrier.Abandon(); // its data may still wait below, and the bios held behind it now go on
        Finish(BioStatus.TimedOut);
    }

    /// <summary>The device stops: nothing hangs, the barrier in flight gets EIO.</summary>
    public void Abort()
    {
        if (_barrier is not { } barrier) return;
        Clear();
        stats?.Done(barrier, BioStatus.IoError, _started, barrier: true, _regions);
        barrier.Abandon();
        barrier.Complete(BioStatus.IoError);
    }

    /// <summary>All IO issued before the barrier has completed: flush the caches, then issue the data.</summary>
    private void AfterDrain()
    {
        // Earlier IO was pushed back (noflush suspend): it has not completed, so the barrier cannot go on; it is
        // pushed back too and, by its arrival order, replays after that IO.
        if (device.HasRequeued) { Requeue(); return; }
        Current = Phase.PreFlush;
        FlushCaches();
    }

    /// <summary>The barrier's data has completed: flush again so it is durable, then report the barrier error.</summary>
    private void AfterData()
    {
        Current = Phase.PostFlush;
        // Pushed back during a noflush suspend: the barrier goes back to the deferred bios, in arrival order.
        if (_error == BioStatus.Requeue) { Requeue(); return; }
        FlushCaches();
    }

    private void FlushCaches()
    {
        if (!device.NeedsFlush) { Flushed(BioStatus.Ok); return; }
        _awaitingFlush = true;
        device.IssueFlush(_barrier!);
    }

    private void Flushed(BioStatus status)
    {
        if (Current == Phase.PostFlush) { Finish(_error != BioStatus.Ok ? _error : status); return; }
        if (status != BioStatus.Ok) { Finish(status); return; }
        // No table: EIO, an empty barrier too (the patch let that one succeed; dm since answers any IO so).
        if (!device.HasLiveTable) { Finish(BioStatus.IoError); return; }
        if (_barrier!.IsEmptyBarrier) { Finish(BioStatus.Ok); return; }
        Current = Phase.Data;
        device.IssueData(_barrier);
    }

    private void Requeue()
    {
        var barrier = _barrier!;
        Clear();
        stats?.Abandon(barrier, _regions); // started again when it replays
        device.Requeue(barrier, _seq);
    }

    private void Finish(BioStatus status)
    {
        if (status == BioStatus.Requeue) status = BioStatus.IoError; // a push-back never reaches the submitter
        var barrier = _barrier!;
        Clear();
        stats?.Done(barrier, status, _started, barrier: true, _regions);
        barrier.Complete(status);
        device.Completed();
    }

    private void Clear()
    {
        device.CancelTimeout();
        _barrier = null;
        _awaitingFlush = false;
        Current = Phase.Idle;
    }
}
