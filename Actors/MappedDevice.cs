using Akka.Actor;

namespace DmActors;

/// <summary>
/// One dm device (struct mapped_device). It holds a live and an inactive table slot, one child
/// <see cref="TargetActor"/> per live table line, the count of pending ios, and the deferred bios, kept in the
/// actor's stash. It splits every bio at target boundaries and at each target's max IO length, sends the clones
/// to the target actors, and completes the original when every clone has completed.
///
/// Barriers (BarrierMode.Ordered, the founding patch) run in <see cref="OrderedBarrier"/>; this actor defers the
/// bios behind one. BarrierMode.Flush is the modern REQ_PREFLUSH/FUA contract: flush first, then write with FUA,
/// with no draining of unrelated IO. Splitting is <see cref="BioSplit"/>, flush skipping <see cref="FlushTracker"/>.
/// Each open is a child <see cref="DeviceLane"/> that maps bios of a stateless table on its opener's thread
/// (MappedDevice.Lanes.cs takes the lanes back for barriers and suspends).
/// </summary>
public sealed partial class MappedDevice : UntypedActor, IWithUnboundedStash
{
    public const int Major = 253;

    /// <param name="MaxDeferred">Bound on bios held while suspended or behind a barrier; beyond it bios get EAGAIN.</param>
    /// <param name="BarrierTimeout">A barrier that has not completed by then (a disk that never answers) fails with
    /// TimedOut and the bios held behind it go on, instead of being held forever.</param>
    public sealed record Options(BarrierMode Mode = BarrierMode.Ordered, int MaxDeferred = 65536, IClock? Clock = null,
        TimeSpan? ShutdownTimeout = null, bool ReadOnly = false, string? Uuid = null, TimeSpan? BarrierTimeout = null,
        string Dispatcher = Akka.Dispatch.Dispatchers.DefaultDispatcherId);

    /// <summary>Messages from the manager and the target actors; local only (tables hold open devices).</summary>
    public sealed record LoadTable(Table Table, bool Reply = true);
    /// <param name="HandOff">The volume goes on on another node (a move): bios it still holds were never started and
    /// are answered with ESHUTDOWN ("not performed, go elsewhere"), which the data channel resends to the new owner.</param>
    public sealed record Shutdown(bool HandOff = false);
    /// <summary>remove --force: swap in <paramref name="ErrorTable"/> (`0 size error`) with a noflush resume.</summary>
    public sealed record Wipe(Table ErrorTable);
    private sealed record ShutdownTimedOut;

    /// <summary>Options.Dispatcher: <see cref="IoDispatcher.DispatcherId"/> runs the device and its targets on the threads that bring them work.</summary>
    public static Props Props(DeviceShared shared, Options options) =>
        Akka.Actor.Props.Create(() => new MappedDevice(shared, options)).WithDispatcher(options.Dispatcher);

    private readonly DeviceShared _shared;
    private readonly Options _options;
    private readonly HashSet<DmIo> _inflight = new(ReferenceEqualityComparer.Instance);
    private readonly List<DmIo> _requeued = new();
    private readonly List<IActorRef> _suspendWaiters = new();
    private readonly List<Action> _afterSuspend = new();

    private Table? _live;
    private IActorRef[] _targets = [];
    private Table? _inactive;
    private int _generation;

    private int _pending;
    private int _stashed;
    private long _seq;
    private long _eventNr;
    private string? _uuid;
    private bool _readOnly;
    private string? _errorState;

    // Suspend state (DMF_BLOCK_IO_FOR_SUSPEND, DMF_SUSPENDED, DMF_NOFLUSH_SUSPENDING).
    private bool _blockIo;
    private bool _suspended;
    private bool _noflushSuspending;

    // The one barrier in flight (ordered mode), and what the caches below hold unflushed.
    private readonly OrderedBarrier _ordered;
    private readonly IoStats _stats;
    private readonly FlushTracker _flushes = new();
    private IActorRef? _removeReplyTo;
    private bool _handOff;
    // The old table's target actors until they have stopped (and closed the devices they used), and the resumes
    // waiting for that: dm destroys the old table before the resume returns.
    private readonly HashSet<IActorRef> _retiring = new();
    private readonly List<IActorRef> _resumeWaiters = new();

    public MappedDevice(DeviceShared shared, Options options)
    {
        _shared = shared; _options = options; _readOnly = options.ReadOnly; _uuid = options.Uuid;
        _stats = new IoStats(IoStatsBoard.Get(Context.System).Bounds);
        _ordered = new OrderedBarrier(this, options.BarrierTimeout, _stats);
    }

    protected override void PreStart() => IoStatsBoard.Get(Context.System).Add(_shared, _stats);

    public IStash Stash { get; set; } = null!;
    private string Name => _shared.Name;
    private IClock Clock => _options.Clock ?? WallClock.Instance;

    protected override void OnReceive(object message)
    {
        switch (message)
        {
            case Bio bio: Submit(bio); break;
            case BioDone done: OnCloneDone(done); break;
            case Dm.Suspend s: Suspend(s.NoFlush, Sender); break;
            case Dm.Resume: Resume(Sender, noflush: false); break;
            case LoadTable l:
                _inactive?.Destroy();
                _inactive = l.Table;
                if (l.Reply) Sender.Tell(Dm.Done.Empty);
                break;
            case Dm.Clear:
                _inactive?.Destroy();
                _inactive = null;
                Sender.Tell(Dm.Done.Empty);
                break;
            case Wipe w:
                _inactive?.Destroy();
                _inactive = w.ErrorTable;
                Resume(Sender, noflush: true);
                break;
            case Shutdown sd:
                _handOff = sd.HandOff;
                // An open's lane stops with the device: a bio its connection sends after that was never started either.
                if (_handOff) foreach (var lane in _lanes.Keys) LostBioAnswerer.HandedOff(lane);
                Remove(Sender);
                break;
            case ShutdownTimedOut: if (_removeReplyTo != null) Context.Stop(Self); break;
            case BarrierTimedOut t: _ordered.TimedOut(t.Barrier); break;
            case Terminated t: Retired(t.ActorRef); break;
            default: if (!OnControl(message) && !OnLane(message)) Unhandled(message); break;
        }
    }

    // ---- IO path ----------------------------------------------------------------------------------------------

    private void Submit(Bio bio)
    {
        var ordered = _options.Mode == BarrierMode.Ordered;
        if (_blockIo || _ordered.InFlight)
        {
            Defer(bio);
            return;
        }
        if (ordered && OrderedBarrier.IsBarrier(bio))
        {
            QuiesceLanes(); // the barrier drains what every lane issued too
            _ordered.Start(bio, ++_seq);
            return;
        }

        var io = Track(new DmIo(bio, DmIo.Kinds.Normal, ++_seq));
        io.Started = _stats.Start(bio, out io.Regions);
        // An empty flush that is no barrier (flush mode, or NoDrain), and in flush mode a barrier or PREFLUSH bio,
        // first flushes every cache below; nothing in flight is waited for.
        if (bio.Op == BioOp.Flush || (!ordered && (bio.Flags & (BioFlags.Preflush | BioFlags.Barrier)) != 0))
        {
            io.Preflushing = true;
            IssueFlush(io);
        }
        else MapBio(io, bio.Flags);
        PutRef(io);
    }

    /// <summary>Queue a bio while IO is blocked (suspend) or a barrier is in flight (dm's deferred list).</summary>
    private void Defer(Bio bio)
    {
        if (_blockIo && (bio.Flags & BioFlags.ReadAhead) != 0) { bio.Complete(BioStatus.IoError); return; }
        if ((bio.Flags & BioFlags.NoWait) != 0 || _stashed >= _options.MaxDeferred) { bio.Complete(BioStatus.Again); return; }
        Stash.Stash();
        _stashed++;
    }

    private DmIo Track(DmIo io)
    {
        _pending++;
        _inflight.Add(io);
        return io;
    }

    /// <summary>
    /// __split_and_process_bio: one clone per target piece, split at target ends and at the target's max_io_len.
    /// Errors found here (no table, out of range, read-only) become the io's status.
    /// </summary>
    private void MapBio(DmIo io, BioFlags flags)
    {
        var bio = io.Original;
        var table = _live;
        if (table == null) { io.SetError(BioStatus.IoError, false); return; }
        if (bio.Op == BioOp.Flush) { IssueFlush(io); return; }
        var status = BioSplit.Check(bio, table, _readOnly);
        if (status != BioStatus.Ok) { io.SetError(status, false); return; }
        flags &= ~(BioFlags.Barrier | BioFlags.Preflush);
        foreach (var piece in BioSplit.Split(bio, table))
            Send(piece.Target, io, BioSplit.CloneOf(bio, piece, flags, Self, io));
    }

    private void Send(int target, DmIo io, Bio clone)
    {
        io.Refs++;
        _targets[target].Tell(clone, ActorRefs.NoSender);
    }

    /// <summary>An empty flush to every cache below (<see cref="FlushTracker.Issue"/>); EIO without a live table, as dm answers any IO then.</summary>
    private void IssueFlush(DmIo io)
    {
        if (_live != null) _flushes.Issue(io, _live, _targets, Self);
        else io.SetError(BioStatus.IoError, false);
    }

    private void OnCloneDone(BioDone done)
    {
        if (done.Bio.Tag is not DmIo io || io.Refs <= 0) return;
        io.SetError(done.Status, _noflushSuspending);
        PutRef(io);
    }

    private void PutRef(DmIo io)
    {
        if (--io.Refs > 0) return;
        switch (io.Kind)
        {
            case DmIo.Kinds.Normal: NormalDone(io); break;
            case DmIo.Kinds.BarrierData:
                _flushes.WriteCompleted(io.Original);
                Untrack(io);
                _ordered.DataDone(io.Original, io.Status);
                AfterPendingChange();
                break;
            case DmIo.Kinds.BarrierFlush:
                _flushes.Flushed(io, io.Status);
                _ordered.FlushDone(io.Original, io.Status);
                break;
        }
    }

    /// <summary>dec_pending for an ordinary io: requeue, re-issue after a preflush, or complete the original.</summary>
    private void NormalDone(DmIo io)
    {
        var status = io.Status;
        if (status == BioStatus.Requeue)
        {
            if (_noflushSuspending)
            {
                Untrack(io);
                _stats.Abandon(io.Original, io.Regions);
                _requeued.Add(io);
                AfterPendingChange();
                return;
            }
            status = BioStatus.IoError; // noflush suspend was interrupted (or never asked for)
        }
        _flushes.Flushed(io, status);
        if (io.Preflushing && status == BioStatus.Ok && io.Original.Op != BioOp.Flush && io.Original.Sectors > 0)
        {
            // Flush mode: the caches are flushed; now the data, with FUA kept.
            io.Preflushing = false;
            io.Refs = 1;
            MapBio(io, io.Original.Flags | (io.Original.IsBarrier ? BioFlags.Fua : 0));
            PutRef(io);
            return;
        }
        _flushes.WriteCompleted(io.Original);
        Untrack(io);
        _stats.Done(io.Original, status, io.Started, regions: io.Regions);
        io.Original.Complete(status);
        AfterPendingChange();
    }

    private void Untrack(DmIo io)
    {
        if (_inflight.Remove(io)) _pending--;
    }

    private void AfterPendingChange()
    {
        if (Outstanding != 0) return;
        if (_ordered.PendingIsZero()) return;
        CheckSuspended();
    }

    private void ReleaseDeferred()
    {
        if (_blockIo || _ordered.InFlight || _stashed == 0) return;
        _stashed = 0;
        _replays++; // the lanes stay held until the device has run these (ReplayDone in MappedDevice.Lanes.cs)
        Stash.Prepend(Stash.ClearStash().Append(new Envelope(ReplayDone.Instance, Self)).ToList());
        Stash.UnstashAll();
    }

    // ---- Suspend, resume, swap ------------------------------------------------------------------------------------

    private void Suspend(bool noflush, IActorRef replyTo)
    {
        if (_suspended) { replyTo.Tell(Dm.Done.Empty); return; }
        _suspendWaiters.Add(replyTo);
        if (!_blockIo)
        {
            _blockIo = true;
            _noflushSuspending = noflush;
            QuiesceLanes();
            foreach (var t in _targets) t.Tell(new TargetActor.Msg.PreSuspend());
        }
        CheckSuspended();
    }

    /// <summary>Runs <paramref name="then"/> once the device is suspended, suspending it first if needed.</summary>
    private void WhenSuspended(bool noflush, Action then)
    {
        if (_suspended) { then(); return; }
        _afterSuspend.Add(then);
        Suspend(noflush, ActorRefs.Nobody);
    }

    /// <summary>Suspend completes once nothing is pending and no barrier is in flight.</summary>
    private void CheckSuspended()
    {
        if (!_blockIo || _suspended || Outstanding != 0 || _ordered.InFlight) return;
        _suspended = true;
        _noflushSuspending = false;
        foreach (var t in _targets) t.Tell(new TargetActor.Msg.PostSuspend());
        if (_requeued.Count > 0)
        {
            // Push-backs go to the head of the deferred bios, in the order they first arrived.
            var envelopes = _requeued.OrderBy(io => io.Seq)
                .Select(io => new Akka.Actor.Envelope(io.Original, ActorRefs.NoSender)).ToList();
            Stash.Prepend(envelopes);
            _stashed += envelopes.Count;
            _requeued.Clear();
        }
        foreach (var w in _suspendWaiters) w.Tell(Dm.Done.Empty);
        _suspendWaiters.Clear();
        var after = _afterSuspend.ToList();
        _afterSuspend.Clear();
        foreach (var a in after) a();
    }

    private void Resume(IActorRef replyTo, bool noflush)
    {
        if (!_suspended && (_inactive != null || _blockIo))
        {
            // A new table is swapped in only while suspended (do_resume suspends first), and a suspend that is
            // still draining finishes before the resume (dm serialises the two ioctls).
            WhenSuspended(noflush, () => Resume(replyTo, noflush));
            return;
        }
        if (_inactive != null) Swap();
        if (_suspended)
        {
            if (_live == null) { replyTo.Tell(new Dm.Failed("resume", Name, Dm.Failed.Invalid, "no live table to resume")); return; }
            _suspended = false;
            _blockIo = false;
            foreach (var t in _targets) t.Tell(new TargetActor.Msg.Resume());
            ReleaseDeferred();
            ReleaseLanes(); // with the new table's snapshot, if it is stateless
        }
        if (_retiring.Count == 0) replyTo.Tell(Dm.Done.Empty);
        else _resumeWaiters.Add(replyTo);
    }

    private void Retired(IActorRef target)
    {
        if (!_retiring.Remove(target) || _retiring.Count > 0) return;
        foreach (var r in _resumeWaiters) r.Tell(Dm.Done.Empty);
        _resumeWaiters.Clear();
    }

    private void Swap()
    {
        _flushes.Swap(_live, _inactive!);
        // PoisonPill, not Stop: the old targets first handle what is queued (PostSuspend), then release their devices.
        foreach (var t in _targets)
        {
            _retiring.Add(Context.Watch(t));
            t.Tell(PoisonPill.Instance);
        }
        _live = _inactive!;
        _errorState = null; // a table that could not be rebuilt is replaced
        _inactive = null;
        _generation++;
        _targets = _live.Targets.Select((t, i) =>
            Context.ActorOf(TargetActor.Props(t, Self, Clock, _options.Dispatcher), $"g{_generation}-{i}-{t.TypeName}")).ToArray();
        _shared.Sectors = _live.Sectors;
        _shared.HasVolatileCache = _live.HasVolatileCache;
        _shared.LiveDevices(_live.Devices);
        _shared.ReadOnly = _readOnly || _live.ReadOnly;
    }

    // ---- Remove ---------------------------------------------------------------------------------------------

    /// <summary>Remove: suspend with flush (in-flight IO completes), then stop; bios still deferred get EIO.</summary>
    private void Remove(IActorRef replyTo)
    {
        _removeReplyTo = replyTo;
        WhenSuspended(false, () => Context.Stop(Self));
        if (!_suspended)
            Context.System.Scheduler.ScheduleTellOnce(_options.ShutdownTimeout ?? TimeSpan.FromSeconds(30), Self, new ShutdownTimedOut(), Self);
    }

    protected override void PostStop()
    {
        IoStatsBoard.Get(Context.System).Remove(_stats);
        // A remove is answered once the device is gone (also when its suspend timed out and IO was failed).
        _removeReplyTo?.Tell(Dm.Done.Empty);
        // Nothing hangs: every bio this device still holds is answered.
        // Deferred bios never started: at a handoff they are told to go elsewhere (ESHUTDOWN), not failed.
        foreach (var env in Stash.ClearStash())
            if (env.Message is Bio b) b.Complete(_handOff ? BioStatus.Shutdown : BioStatus.IoError);
        foreach (var io in _inflight)
            if (io.Kind != DmIo.Kinds.BarrierData) // a barrier's: answered below, or at its timeout
            {
                io.Original.Abandon(); // its clones that have not started yet never will
                io.Original.Complete(BioStatus.IoError);
            }
        _inflight.Clear();
        foreach (var io in _requeued) io.Original.Complete(BioStatus.IoError);
        _requeued.Clear();
        _ordered.Abort();
        _live?.Destroy();
        _inactive?.Destroy();
        _live = _inactive = null;
        _flushes.Close();
        foreach (var w in _suspendWaiters) w.Tell(new Dm.Failed("suspend", Name, Dm.Failed.NoDevice, "device removed"));
        FailWaiters();
        foreach (var r in _resumeWaiters) r.Tell(Dm.Done.Empty);
    }

    protected override SupervisorStrategy SupervisorStrategy() =>
        // A target that throws is restarted (its held clones were already answered with EIO); the device lives on.
        new OneForOneStrategy(-1, TimeSpan.FromMinutes(1), _ => Directive.Restart);

}
