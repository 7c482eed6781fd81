using Akka.Actor;
using Akka.Persistence;

namespace DmActors;

/// <summary>
/// The event journal of a host's devices (a child of the <see cref="DeviceManager"/>). The manager sends it an event
/// and waits for <see cref="Msg.Recorded"/> before it applies the change and acknowledges the command; a journal
/// that cannot write stops (Akka.Persistence's rule), the manager sees it die, fails the command, and starts a new
/// one. Snapshots every <see cref="SnapshotEvery"/> events keep recovery short.
/// </summary>
public sealed class DeviceJournal : ReceivePersistentActor
{
    public static class Msg
    {
        /// <summary>Persist these events as one atomic write.</summary>
        /// <param name="Id">Echoed in the answer, so a late answer is never taken for the next change's.</param>
        public sealed record Record(long Id, IReadOnlyList<DeviceEvents.DeviceEvent> Events);
        /// <param name="SequenceNr">How many events the journal holds now.</param>
        public sealed record Recorded(long Id, HostState State, ConfigDeviceRecords ConfigDevices, long SequenceNr);
        public sealed record Rejected(long Id, string Reason);
        public sealed record Recovered(HostState State, ConfigDeviceRecords ConfigDevices, long SequenceNr);
        public sealed record RecoveryFailed(string Reason);
        /// <summary>A write failed; the journal stops next (the manager names the reason in the command's failure).</summary>
        public sealed record WriteFailed(long Id, string Reason);
    }

    public const int SnapshotEvery = 200;

    public static Props Props(string persistenceId) => Akka.Actor.Props.Create(() => new DeviceJournal(persistenceId));

    private HostState _state = HostState.Empty;
    private ConfigDeviceRecords _config = ConfigDeviceRecords.Empty;
    private long _current;

    public DeviceJournal(string persistenceId)
    {
        PersistenceId = persistenceId;
        Recover<SnapshotOffer>(s =>
        {
            if (s.Snapshot is HostSnapshot snapshot) (_state, _config) = (snapshot.State, snapshot.ConfigDevices);
            else if (s.Snapshot is HostState st) _state = st; // written before HostSnapshot
        });
        Recover<DeviceEvents.DeviceEvent>(Apply);
        Command<Msg.Record>(r =>
        {
            _current = r.Id;
            var left = r.Events.Count;
            var snapshotDue = false;
            var started = JournalTiming.Now();
            PersistAll(r.Events, e =>
            {
                Apply(e);
                snapshotDue |= LastSequenceNr % SnapshotEvery == 0;
                if (--left > 0) return;
                JournalTiming.Get(Context.System).Recorded(started);
                Sender.Tell(new Msg.Recorded(r.Id, _state, _config, LastSequenceNr));
                if (snapshotDue) SaveSnapshot(new HostSnapshot(_state, _config));
            });
        });
        Command<SaveSnapshotSuccess>(s => DeleteSnapshots(new SnapshotSelectionCriteria(s.Metadata.SequenceNr - 1)));
        Command<SaveSnapshotFailure>(_ => { });
        Command<DeleteSnapshotsSuccess>(_ => { });
        Command<DeleteSnapshotsFailure>(_ => { });
    }

    public override string PersistenceId { get; }

    private void Apply(DeviceEvents.DeviceEvent e)
    {
        _state = _state.Apply(e);
        _config = _config.Apply(e);
    }

    protected override void OnReplaySuccess() => Context.Parent.Tell(new Msg.Recovered(_state, _config, LastSequenceNr));

    protected override void OnPersistRejected(Exception cause, object @event, long sequenceNr)
    {
        base.OnPersistRejected(cause, @event, sequenceNr);
        Context.Parent.Tell(new Msg.Rejected(_current, cause.Message)); // once per event: the manager takes the first
    }

    protected override void OnPersistFailure(Exception cause, object @event, long sequenceNr)
    {
        Context.Parent.Tell(new Msg.WriteFailed(_current, Reason(cause)));
        base.OnPersistFailure(cause, @event, sequenceNr);
    }

    protected override void OnRecoveryFailure(Exception reason, object? message = null)
    {
        Context.Parent.Tell(new Msg.RecoveryFailed(Reason(reason)));
        base.OnRecoveryFailure(reason, message);
    }

    private static Exception Innermost(Exception e) => e.InnerException is { } inner ? Innermost(inner) : e;

    /// <summary>The innermost cause, one line (a database driver's message may span several).</summary>
    private static string Reason(Exception e) =>
        string.Join(' ', Innermost(e).Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
}
