using Akka.Actor;

namespace DmActors;

/// <summary>The device's answers to dmsetup (table, status, info, message, rename) and its event counter.</summary>
public sealed partial class MappedDevice
{
    public sealed record Renamed(string NewName);
    public sealed record SetUuid(string Uuid);
    public sealed record TargetEvent { public static readonly TargetEvent Instance = new(); }
    /// <summary>The device came back from the journal but its table could not be rebuilt (a disk is missing).</summary>
    public sealed record MarkError(string Reason);

    /// <summary>Handles a control message; false if <paramref name="message"/> is none.</summary>
    private bool OnControl(object message)
    {
        switch (message)
        {
            case Dm.GetTable t:
                var table = t.Inactive ? _inactive : _live;
                Sender.Tell(new Dm.Done(table?.TableText().ToArray() ?? []));
                return true;
            case Dm.GetStatus:
                Sender.Tell(new Dm.Done(_live?.StatusText().ToArray() ?? []));
                return true;
            case GetIoStats:
                Sender.Tell(new DeviceIoStats(Name, Major, _shared.Minor, _shared.Sectors, _stats.Read(), StatsRegionCommands.Read(_stats)));
                return true;
            case CreateStatsRegion c: Sender.Tell(StatsRegionCommands.Create(c, _stats, _live)); return true;
            case DeleteStatsRegion d: Sender.Tell(StatsRegionCommands.Delete(d, _stats)); return true;
            case Dm.GetInfo { WaitAfter: { } after } w: Wait(after, w.Patience); return true;
            case Dm.GetInfo: Sender.Tell(Info()); return true;
            case WaitExpired e: AnswerWaiters(w => w.Id == e.Id); return true;
            case Dm.Message m: RouteMessage(m); return true;
            case TargetEvent: RaiseEvent(); return true;
            case MarkError e: _errorState = e.Reason; return true;
            case Renamed r:
                _shared.Name = r.NewName;
                RaiseEvent(); // dm_hash_rename wakes the event waiters too
                Sender.Tell(Dm.Done.Empty);
                return true;
            case SetUuid u:
                if (_uuid != null) Sender.Tell(new Dm.Failed("rename", Name, Dm.Failed.Invalid,
                    $"Unable to change uuid of mapped device {Name} to {u.Uuid} because uuid is already set to {_uuid}"));
                else { _uuid = u.Uuid; Sender.Tell(Dm.Done.Empty); }
                return true;
            default: return false;
        }
    }

    private Dm.DeviceInfo Info() => new(Name, _uuid, _suspended, _readOnly || (_live?.ReadOnly ?? false), _live != null,
        _inactive != null, _shared.OpenCount, _eventNr, Major, _shared.Minor, _live?.Targets.Count ?? 0, _live?.Sectors ?? 0, _options.Mode, _errorState,
        Deps: Dependencies());

    /// <summary>
    /// The live table's devices as dm's table_deps lists them: dm_get_device adds each new device at the head of the
    /// table's list, so the last one a table names comes first.
    /// </summary>
    private Dm.Dependency[] Dependencies() => (_live?.Devices ?? []).Reverse().Select(d =>
    {
        var devno = d.DevNo.Split(':');
        return new Dm.Dependency(d.Name, int.Parse(devno[0]), int.Parse(devno[1]), d is MappedDeviceHandle);
    }).ToArray();

    // ---- wait: DM_DEV_WAIT ---------------------------------------------------------------------------------------

    private sealed record Waiter(long Id, IActorRef ReplyTo, ICancelable? Expiry);
    private sealed record WaitExpired(long Id);
    private readonly List<Waiter> _waiters = new();
    private long _nextWaiter;

    /// <summary>dev_wait: answered at once if the event number is no longer <paramref name="after"/>, else at the next event (or when patience runs out).</summary>
    private void Wait(long after, TimeSpan? patience)
    {
        if (_eventNr != after) { Sender.Tell(Info()); return; }
        var id = ++_nextWaiter;
        var expiry = patience is { } p ? Context.System.Scheduler.ScheduleTellOnceCancelable(p, Self, new WaitExpired(id), Self) : null;
        _waiters.Add(new Waiter(id, Sender, expiry));
    }

    /// <summary>dm's event_callback: the event number moves on and every waiter is woken with the new status.</summary>
    private void RaiseEvent()
    {
        _eventNr++;
        AnswerWaiters(_ => true);
    }

    private void AnswerWaiters(Func<Waiter, bool> which)
    {
        if (_waiters.Count == 0) return;
        var info = Info();
        foreach (var w in _waiters.Where(which).ToList())
        {
            w.Expiry?.Cancel();
            w.ReplyTo.Tell(info);
            _waiters.Remove(w);
        }
    }

    /// <summary>The device is gone: a waiter learns it instead of waiting for an event that cannot come.</summary>
    private void FailWaiters()
    {
        foreach (var w in _waiters)
        {
            w.Expiry?.Cancel();
            w.ReplyTo.Tell(new Dm.Failed("waitevent", Name, Dm.Failed.NoDevice, "device removed while waiting"));
        }
        _waiters.Clear();
    }

    private void RouteMessage(Dm.Message m)
    {
        if (m.Args.Length == 0) { Sender.Tell(new Dm.Failed("message", Name, Dm.Failed.Invalid, "Empty message received.")); return; }
        if (m.Args[0].StartsWith('@'))
        {
            Sender.Tell(new Dm.Failed("message", Name, Dm.Failed.Invalid, $"Unsupported message sent to DM core: {m.Args[0]}"));
            return;
        }
        var index = _live?.FindTarget(m.Sector) ?? -1;
        if (index < 0) { Sender.Tell(new Dm.Failed("message", Name, Dm.Failed.Invalid, "Target message sector outside device.")); return; }
        _targets[index].Tell(new TargetActor.Msg.Message(m.Args, Sender, Name));
    }
}
