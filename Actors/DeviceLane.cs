using Akka.Actor;

namespace DmActors;

/// <summary>
/// One open of a mapped device (an NBD connection, a bench submitter): a child `lane-K` of the device, on the IO
/// dispatcher, so it runs on the opener's thread. While the device has released it (its live table is
/// <see cref="Table.OnLanes"/>, no barrier or suspend active), the lane splits and maps plain bios itself against
/// the table it was handed and submits the clones straight to the devices below, counting its own pending IO:
/// several openers of one device map on several cores. A table with a target that keeps state but reads on lanes
/// (<see cref="Target.ReadsOnLanes"/>, mirror) has only its reads mapped here; the rest go to the device. Otherwise (held) it forwards every bio to the device, in
/// arrival order, and the device runs them as it always did.
///
/// The device takes the lanes back for barriers and suspends (docs/threading.md): it sends <see cref="Msg.Quiesce"/>,
/// the lane stops mapping and reports <see cref="Msg.Drained"/> once its pending IO has completed, so "all IO issued
/// before" includes what every lane issued. A barrier or control message that reaches a lane holds the lane at
/// once (its later bios follow it through the device's mailbox), and the lane tells the device which hold that was
/// (<see cref="Msg.Held"/>), so a release the device sent before it had seen the hold is ignored.
/// </summary>
public sealed class DeviceLane : UntypedActor, ITargetContext
{
    public static class Msg
    {
        /// <summary>Device to lane: stop mapping; report Drained once the lane's own IO has completed.</summary>
        public sealed record Quiesce { public static readonly Quiesce Instance = new(); }
        /// <summary>Device to lane: map against <paramref name="Table"/> again, if the device has seen the lane's last hold (<paramref name="Holds"/>).</summary>
        public sealed record Release(Table Table, bool ReadOnly, long Holds);
        /// <summary>Device to lane: the open was closed; stop mapping, report Drained (retired) once idle, then be stopped.</summary>
        public sealed record Retire { public static readonly Retire Instance = new(); }
        /// <summary>Lane to device, after the message it forwarded: the lane holds since its hold number <paramref name="Hold"/>.</summary>
        public sealed record Held(long Hold);
        /// <summary>Lane to device: no IO of the lane is in flight, and it is not mapping.</summary>
        public sealed record Drained(bool Retired);
        /// <summary>Lane to device: a bio the lane took was pushed back (DM_ENDIO_REQUEUE); <paramref name="Seq"/> is its order on the lane.</summary>
        public sealed record PushedBack(Bio Original, long Seq);
        /// <summary>Lane to device: a read whose target's end_io handed it back (<see cref="Target.EndReadOnLane"/>); the device maps it again, at once.</summary>
        public sealed record Reissue(Bio Original);
        /// <summary>Lane to device: the lane restarted after a crash and holds, with no IO of its own.</summary>
        public sealed record Restarted { public static readonly Restarted Instance = new(); }
    }

    public static Props Props(BarrierMode mode, CompletedWrites writes, IoStats stats, IClock clock, string dispatcher) =>
        Akka.Actor.Props.Create(() => new DeviceLane(mode, writes, stats, clock)).WithDispatcher(dispatcher);

    /// <summary>A clone whose target has an end_io: the lane runs it on completion.</summary>
    private sealed record WithEndIo(DmIo Io, Target Target);

    private readonly BarrierMode _mode;
    private readonly CompletedWrites _writes;
    private readonly IoStats _stats; // the device's: its counters are thread-safe, a lane counts what it maps
    private readonly IActorRef _device;
    private readonly HashSet<DmIo> _inflight = new(ReferenceEqualityComparer.Instance);
    private Table? _table; // null: held, every bio goes to the device
    private bool _readOnly;
    private long _holds;
    private long _seq;
    private bool _drainWanted;
    private bool _retiring;

    public DeviceLane(BarrierMode mode, CompletedWrites writes, IoStats stats, IClock clock)
    {
        _mode = mode; _writes = writes; _stats = stats; Clock = clock; _device = Context.Parent;
        var self = Self;
        _handle = Handle;
        _takeIn = a => CloneDone(a.Clone, a.Status);
        _sendAnswer = a => self.Tell(new BioDone(a.Clone, a.Status));
        _cloneReply = CallbackRef.ForBios((clone, status) =>
        {
            if (!_answers.Keep((clone, status))) _sendAnswer((clone, status));
        }, self.Path.Parent / (self.Path.Name + "-answers"));
    }

    public IClock Clock { get; }

    /// <summary>The clones' ReplyTo: an answer on the lane's thread inside its message is kept (<see cref="InlineAnswers{T}"/>), any other comes as a BioDone.</summary>
    private readonly CallbackRef _cloneReply;
    private readonly InlineAnswers<(Bio Clone, BioStatus Status)> _answers = new();
    private readonly Action<(Bio Clone, BioStatus Status)> _sendAnswer, _takeIn;
    private readonly Action<object> _handle;

    protected override void OnReceive(object message)
    {
        _answers.Handle(message, _handle, _takeIn, _sendAnswer);
    }

    private void Handle(object message)
    {
        switch (message)
        {
            case Bio bio: Submit(bio); break;
            case BioDone done: CloneDone(done.Bio, done.Status); break;
            case Msg.Quiesce:
                _table = null;
                _drainWanted = true;
                CheckDrained();
                break;
            case Msg.Release r:
                if (!_retiring && r.Holds == _holds) { _table = r.Table; _readOnly = r.ReadOnly; }
                break;
            case Msg.Retire:
                _retiring = true;
                _table = null;
                _drainWanted = true;
                CheckDrained();
                break;
            default: Hold(message); break; // dmsetup-style control messages: after everything the lane took before
        }
    }

    private void Submit(Bio bio)
    {
        if (_table is { } table && IsPlain(bio) && (table.Stateless || bio.Op == BioOp.Read)) { Map(bio, table); return; }
        if (_mode == BarrierMode.Ordered && OrderedBarrier.IsBarrier(bio)) { Hold(bio); return; }
        _device.Tell(bio, Self); // a NoDrain flush, a flush-mode preflush: the device orders nothing against lanes for them
    }

    /// <summary>Reads, writes (FUA too), discards, write-zeroes: nothing the device must order.</summary>
    private static bool IsPlain(Bio bio) =>
        bio.Op != BioOp.Flush && (bio.Flags & (BioFlags.Barrier | BioFlags.Preflush)) == 0;

    /// <summary>
    /// Sends <paramref name="message"/> to the device and holds: the lane's later bios follow it through the device's
    /// mailbox (a barrier's later IO waits behind it; a suspend defers them), until the device releases the lane.
    /// </summary>
    private void Hold(object message)
    {
        _table = null;
        _device.Forward(message);
        _device.Tell(new Msg.Held(++_holds), Self);
    }

    /// <summary>dm's __split_and_process_bio and map, on this thread, against the released table.</summary>
    private void Map(Bio bio, Table table)
    {
        var io = new DmIo(bio, DmIo.Kinds.Normal, ++_seq);
        io.Started = _stats.Start(bio, out io.Regions);
        _inflight.Add(io);
        var status = BioSplit.Check(bio, table, _readOnly);
        if (status != BioStatus.Ok) io.SetError(status, false);
        else
            foreach (var piece in BioSplit.Split(bio, table))
            {
                var target = table.Targets[piece.Target];
                var clone = BioSplit.CloneOf(bio, piece, bio.Flags, _cloneReply, target.HasEndIo ? new WithEndIo(io, target) : io);
                io.Refs++;
                MapClone(clone, target);
            }
        PutRef(io);
    }

    private void MapClone(Bio clone, Target target)
    {
        MapResult r;
        try
        {
            if (target.Stateless) r = target.Map(clone, clone.Index, this);
            else if (target.MapReadOnLane(clone) is { } dev) r = MapResult.Remapped(dev);
            else { Reissue(clone); return; }
        }
        catch (Exception)
        {
            // As a crashing target actor: the clone fails, the device raises an event; the lane lives on.
            _device.Tell(MappedDevice.TargetEvent.Instance);
            Finish(clone, BioStatus.IoError);
            return;
        }
        switch (r.Kind)
        {
            case MapKind.Remapped:
                clone.Device = r.Device;
                r.Device!.Submit(clone);
                break;
            case MapKind.Kill: Finish(clone, BioStatus.IoError); break;
            case MapKind.Requeue: Finish(clone, BioStatus.Requeue); break;
            // Submitted: a stateless target completes it through Complete (zero does so inside map).
        }
    }

    /// <summary>A clone came back from below: end_io, then the original's count.</summary>
    private void CloneDone(Bio clone, BioStatus status)
    {
        if (clone.Tag is WithEndIo e)
        {
            if (e.Io.Refs <= 0) return;
            var stateless = e.Target.Stateless;
            try { status = stateless ? e.Target.EndIo(clone, status, this) : e.Target.EndReadOnLane(clone, status, this); }
            catch (Exception) { status = BioStatus.IoError; _device.Tell(MappedDevice.TargetEvent.Instance); }
            if (status == BioStatus.Incomplete)
            {
                if (!stateless) { Reissue(clone); return; }
                status = BioStatus.IoError; // a stateless target cannot complete it later
            }
        }
        Finish(clone, status);
    }

    /// <summary>The device maps the clone's original again once every clone of it is back (a read: reading twice is harmless).</summary>
    private void Reissue(Bio clone)
    {
        if (IoOf(clone) is { } io) io.Reissue = true;
        Finish(clone, BioStatus.Ok);
    }

    /// <summary>Counts one clone of its io as done (a second answer for a clone already counted is ignored).</summary>
    private void Finish(Bio clone, BioStatus status)
    {
        var io = IoOf(clone);
        if (io == null || io.Refs <= 0) return;
        io.SetError(status, noflushSuspending: true); // a push-back is kept; the device decides what it becomes
        PutRef(io);
    }

    private static DmIo? IoOf(Bio clone) => clone.Tag switch { DmIo d => d, WithEndIo e => e.Io, _ => null };

    private void PutRef(DmIo io)
    {
        if (--io.Refs > 0) return;
        _inflight.Remove(io);
        if (io.Reissue)
        {
            _stats.Abandon(io.Original, io.Regions); // the device starts (and counts) it again
            _device.Tell(new Msg.Reissue(io.Original), Self);
        }
        else if (io.Status == BioStatus.Requeue)
        {
            _stats.Abandon(io.Original, io.Regions); // the device starts (and counts) it again
            _device.Tell(new Msg.PushedBack(io.Original, io.Seq), Self);
        }
        else
        {
            _writes.Record(io.Original); // before the answer: a flush sent after the answer covers it
            _stats.Done(io.Original, io.Status, io.Started, regions: io.Regions);
            io.Original.Complete(io.Status);
        }
        CheckDrained();
    }

    private void CheckDrained()
    {
        if (!_drainWanted || _inflight.Count != 0) return;
        _drainWanted = false;
        _device.Tell(new Msg.Drained(_retiring), Self);
    }

    // ---- ITargetContext: what a stateless target may use --------------------------------------------------------

    /// <summary>A clone the target completed itself (zero, striped's empty stripe piece): end_io, then counted.</summary>
    public void Complete(Bio clone, BioStatus status) => CloneDone(clone, status);

    public void Submit(IBlockDevice device, Bio bio, Action<BioStatus> done) =>
        throw new NotSupportedException("a stateless target issues no IO of its own");

    public ICancelable Schedule(TimeSpan delay, Action action) =>
        throw new NotSupportedException("a stateless target schedules nothing");

    public void RaiseEvent() => _device.Tell(MappedDevice.TargetEvent.Instance);

    public Action<Action> Inbox =>
        throw new NotSupportedException("a stateless target runs nothing later inside its actor");

    // ---- Nothing hangs ------------------------------------------------------------------------------------------

    /// <summary>The device stops (or gave up waiting on a remove): every bio this lane still holds gets EIO.</summary>
    protected override void PostStop() => FailInflight();

    protected override void PreRestart(Exception reason, object message)
    {
        FailInflight(); // not base.PreRestart: the children are the device's, not ours
    }

    protected override void PostRestart(Exception reason) => _device.Tell(Msg.Restarted.Instance);

    private void FailInflight()
    {
        foreach (var io in _inflight)
        {
            io.Refs = 0; // a completion that still comes is ignored
            io.Original.Abandon(); // its clones that have not started yet never will
            io.Original.Complete(BioStatus.IoError);
        }
        _inflight.Clear();
    }
}
