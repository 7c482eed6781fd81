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
            case Dm.GetInfo: Sender.Tell(Info()); return true;
            case Dm.Message m: RouteMessage(m); return true;
            case TargetEvent: _eventNr++; return true;
            case MarkError e: _errorState = e.Reason; return true;
            case Renamed r:
                _shared.Name = r.NewName;
                _eventNr++;
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
        _inactive != null, _shared.OpenCount, _eventNr, Major, _shared.Minor, _live?.Targets.Count ?? 0, _live?.Sectors ?? 0, _options.Mode, _errorState);

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
