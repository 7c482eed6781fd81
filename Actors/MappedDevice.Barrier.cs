using Akka.Actor;

namespace DmActors;

/// <summary>How <see cref="OrderedBarrier"/> (the founding patch's barrier) drives this device.</summary>
public sealed partial class MappedDevice : IBarrierDevice
{
    private sealed record BarrierTimedOut(Bio Barrier);

    private ICancelable? _barrierTimer;

    int IBarrierDevice.Pending => Outstanding;
    bool IBarrierDevice.HasRequeued => _requeued.Count > 0;
    bool IBarrierDevice.NoflushSuspending => _noflushSuspending;
    bool IBarrierDevice.HasLiveTable => _live != null;
    bool IBarrierDevice.NeedsFlush => _live != null && !_flushes.NothingToFlush(_live);

    void IBarrierDevice.IssueFlush(Bio barrier)
    {
        var io = new DmIo(barrier, DmIo.Kinds.BarrierFlush, 0);
        IssueFlush(io);
        PutRef(io);
    }

    void IBarrierDevice.IssueData(Bio barrier)
    {
        var io = Track(new DmIo(barrier, DmIo.Kinds.BarrierData, ++_seq));
        MapBio(io, barrier.Flags & ~BioFlags.Barrier);
        PutRef(io);
    }

    void IBarrierDevice.Requeue(Bio barrier, long seq)
    {
        _requeued.Add(new DmIo(barrier, DmIo.Kinds.BarrierData, seq));
        CheckSuspended();
    }

    void IBarrierDevice.Completed()
    {
        ReleaseDeferred();
        CheckSuspended();
        ReleaseLanes();
    }

    void IBarrierDevice.StartTimeout(Bio barrier, TimeSpan after) =>
        _barrierTimer = Context.System.Scheduler.ScheduleTellOnceCancelable(after, Self, new BarrierTimedOut(barrier), Self);

    void IBarrierDevice.CancelTimeout() => _barrierTimer?.Cancel();
}
