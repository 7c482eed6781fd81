using Akka.Actor;

namespace DmActors;

/// <summary>
/// Runs one table line's <see cref="Target"/>: maps each clone the device sends, issues it to the device below,
/// runs end_io on its completion and reports it to the device. Every clone it holds is tracked, so that if the
/// actor crashes, the held clones are answered with EIO instead of being lost.
/// </summary>
public sealed class TargetActor : UntypedActor, ITargetContext
{
    /// <summary>Lifecycle hooks and a dmsetup message, sent by the device.</summary>
    public static class Msg
    {
        public sealed record PreSuspend;
        public sealed record PostSuspend;
        public sealed record Resume;
        public sealed record Message(string[] Args, IActorRef ReplyTo, string DeviceName);
        /// <summary>A completion of a bio the target issued itself through <see cref="ITargetContext.Submit"/>.</summary>
        internal sealed record OwnDone(Action<BioStatus> Done, BioStatus Status);
        internal sealed record Run(Action Action);
    }

    public static Props Props(Target target, IActorRef device, IClock clock, string dispatcher) =>
        Akka.Actor.Props.Create(() => new TargetActor(target, device, clock)).WithDispatcher(dispatcher);

    private readonly Target _target;
    private readonly IActorRef _device;
    private readonly HashSet<Bio> _held = new(ReferenceEqualityComparer.Instance);

    public TargetActor(Target target, IActorRef device, IClock clock)
    {
        _target = target; _device = device; Clock = clock;
        var self = Self;
        _handle = Handle;
        _takeIn = a => a.Done(a.Status);
        _sendAnswer = a => self.Tell(new Msg.OwnDone(a.Done, a.Status));
    }

    public IClock Clock { get; }

    /// <summary>Completions of the bios the target issued (<see cref="Submit"/>): one on this actor's thread inside its message is kept.</summary>
    private readonly InlineAnswers<(Action<BioStatus> Done, BioStatus Status)> _answers = new();
    private readonly Action<(Action<BioStatus> Done, BioStatus Status)> _sendAnswer, _takeIn;
    private readonly Action<object> _handle;

    protected override void OnReceive(object message)
    {
        _answers.Handle(message, _handle, _takeIn, _sendAnswer);
    }

    private void Handle(object message)
    {
        switch (message)
        {
            case Bio clone:
                _held.Add(clone);
                var r = _target.Map(clone, clone.Index, this);
                switch (r.Kind)
                {
                    case MapKind.Remapped:
                        if (_target.HasEndIo) clone.ReplyTo = Self;
                        else
                        {
                            // No end_io to run: the completion goes straight to the device, one hop less. The
                            // clone is no longer ours, so a crash of this actor does not answer it (the disk will).
                            _held.Remove(clone);
                            clone.ReplyTo = _device;
                        }
                        clone.Device = r.Device;
                        r.Device!.Submit(clone);
                        break;
                    case MapKind.Kill: Complete(clone, BioStatus.IoError); break;
                    case MapKind.Requeue: Complete(clone, BioStatus.Requeue); break;
                }
                break;
            case BioDone done:
                if (_held.Contains(done.Bio)) Complete(done.Bio, done.Status);
                break; // else: a completion for a clone already failed by a crash of this actor
            case Msg.OwnDone own:
                own.Done(own.Status);
                break;
            case Msg.Run run:
                run.Action();
                break;
            case Msg.PreSuspend: _target.PreSuspend(this); break;
            case Msg.PostSuspend: _target.PostSuspend(this); break;
            case Msg.Resume: _target.Resume(this); break;
            case Msg.Message m:
                try { m.ReplyTo.Tell(Dm.Done.Of(_target.Message(m.Args, this) is { } s ? [s] : [])); }
                catch (TargetException e) { m.ReplyTo.Tell(new Dm.Failed("message", m.DeviceName, Dm.Failed.Invalid, e.Message)); }
                break;
            default:
                Unhandled(message);
                break;
        }
    }

    /// <summary>end_io, then tell the device. Called for every clone exactly once.</summary>
    public void Complete(Bio clone, BioStatus status)
    {
        if (!_held.Contains(clone)) return;
        Exception? failure = null;
        try { status = _target.EndIo(clone, status, this); }
        catch (Exception e) { status = BioStatus.IoError; failure = e; }
        if (status == BioStatus.Incomplete && failure == null) return; // still held: the target completes it later
        if (status == BioStatus.Incomplete) status = BioStatus.IoError;
        _held.Remove(clone);
        _device.Tell(new BioDone(clone, status));
        // The clone is answered; now the crash, so the supervisor restarts the target (and answers the rest).
        if (failure != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(failure);
    }

    public void Submit(IBlockDevice device, Bio bio, Action<BioStatus> done)
    {
        bio.ReplyTo = CallbackRef.ForBios((_, status) =>
        {
            if (!_answers.Keep((done, status))) _sendAnswer((done, status));
        });
        bio.Device = device;
        device.Submit(bio);
    }

    public ICancelable Schedule(TimeSpan delay, Action action) =>
        Context.System.Scheduler.ScheduleTellOnceCancelable(delay, Self, new Msg.Run(action), Self);

    public void RaiseEvent() => _device.Tell(MappedDevice.TargetEvent.Instance);

    public Action<Action> Inbox
    {
        get
        {
            var self = Self;
            return action => self.Tell(new Msg.Run(action));
        }
    }

    protected override void PreRestart(Exception reason, object message)
    {
        // A crash must not strand bios: answer every clone this incarnation held.
        // Abandoned first: what the disks below have not started yet is dropped, so it cannot land after the EIO.
        foreach (var clone in _held.ToList()) Abandon(clone);
        _held.Clear();
        _device.Tell(MappedDevice.TargetEvent.Instance);
        // Not base.PreRestart: that would run PostStop and destroy the target, which lives on in the new incarnation.
    }

    /// <summary>The table line is gone (swapped out or removed): answer what is held, then dtr.</summary>
    protected override void PostStop()
    {
        foreach (var clone in _held) Abandon(clone);
        _held.Clear();
        _target.Release();
    }

    /// <summary>A clone answered EIO before its IO ended (<see cref="Bio.Abandon"/>).</summary>
    private void Abandon(Bio clone)
    {
        clone.Abandon();
        _device.Tell(new BioDone(clone, BioStatus.IoError));
    }
}
