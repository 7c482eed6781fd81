namespace DmActors;

/// <summary>
/// What the manager's directory knows about a device that the journal does not: who has it open, and the size
/// of its live table.
/// </summary>
public sealed record DeviceFacts(int OpenCount, long Sectors);

/// <summary>
/// What a recorded command does, decided before anything changes: the events to record, the table to build before
/// recording (a table that does not build refuses the command), or why it is refused. Events and a refusal together
/// mean: record, then still refuse (remove --force of an open device wipes its table and stays).
/// </summary>
/// <param name="Op">The ioctl a failure names (`reload ioctl on x failed`), as dmsetup calls it.</param>
public sealed record Decision(string Op, string Name, IReadOnlyList<DeviceEvents.DeviceEvent> Events,
    Dm.Failed? Refusal = null, Decision.TableText? Build = null)
{
    public sealed record TableText(string Text, bool ReadOnly);

    public static Decision Refuse(Dm.Failed failure) => new(failure.Op, failure.Name, [], failure);

    public bool Refused => Events.Count == 0;
}

/// <summary>
/// The device manager's changes as a pure function (decide, then persist, then apply): from the recorded
/// <see cref="HostState"/>, the directory's facts and a command to a <see cref="Decision"/>. dm-ioctl's checks
/// and wording live here; the actor only records what is decided and carries it out.
/// </summary>
public static class DeviceCommands
{
    /// <summary>The commands that change what is recorded; everything else the manager answers or forwards.</summary>
    public static bool Changes(object command) => command is Dm.Create or DeviceManager.CreateConfigDevice or
        DeviceManager.AdoptConfigDevice or Dm.Load or Dm.Remove or Dm.Rename or Dm.Suspend or Dm.Resume or Dm.Clear;

    /// <param name="devices">The directory: a device by name, or null when there is none.</param>
    /// <param name="at">When the events happen.</param>
    public static Decision Decide(HostState state, Func<string, DeviceFacts?> devices, object command, DateTime at) => command switch
    {
        Dm.Create c => Create(state, devices, c, at, fromConfig: false),
        DeviceManager.CreateConfigDevice c => Create(state, devices, c.Create, at, fromConfig: true),
        DeviceManager.AdoptConfigDevice a => Existing(devices, "create", a.Name, _ =>
            state.Devices.TryGetValue(a.Name, out var rec)
                ? new("create", a.Name, [new DeviceEvents.ConfigDevice(a.Name, at, rec.Live, rec.ReadOnly, rec.Mode)])
                : Decision.Refuse(NoSuchDevice("create", a.Name))),
        Dm.Load l => Existing(devices, "reload", l.Name, _ =>
            new("reload", l.Name, [new DeviceEvents.TableLoaded(l.Name, at, l.Table, l.ReadOnly)], Build: new(l.Table, l.ReadOnly))),
        Dm.Remove r => Existing(devices, "remove", r.Name, d => Remove(d, r, at)),
        Dm.Rename { SetUuid: true } r => Existing(devices, "rename", r.Name, _ => SetUuid(state, r, at)),
        Dm.Rename r => Existing(devices, "rename", r.Name, _ => Rename(devices, r, at)),
        Dm.Suspend s => Existing(devices, "suspend", s.Name, _ => new("suspend", s.Name, [new DeviceEvents.Suspended(s.Name, at, s.NoFlush)])),
        Dm.Resume r => Existing(devices, "resume", r.Name, _ => new("resume", r.Name, [new DeviceEvents.Resumed(r.Name, at)])),
        Dm.Clear c => Existing(devices, "clear", c.Name, _ => new("clear", c.Name, [new DeviceEvents.TableCleared(c.Name, at)])),
        _ => throw new ArgumentException($"{command.GetType().Name} changes nothing recorded", nameof(command)),
    };

    /// <summary>The largest minor number (the kernel's MINORMASK).</summary>
    public const int MaxMinor = (1 << 20) - 1;

    /// <summary>dm-ioctl's answer for a name it has no hash cell for.</summary>
    public static Dm.Failed NoSuchDevice(string op, string name) => new(op, name, Dm.Failed.NoDevice, "Device does not exist.");

    private static Decision Existing(Func<string, DeviceFacts?> devices, string op, string name, Func<DeviceFacts, Decision> decide) =>
        devices(name) is { } facts ? decide(facts) : Decision.Refuse(NoSuchDevice(op, name));

    private static Decision Create(HostState state, Func<string, DeviceFacts?> devices, Dm.Create c, DateTime at, bool fromConfig)
    {
        if ((CheckName(c.Name) ?? CheckUuid(c.Uuid)) is { } bad) return Decision.Refuse(new("create", Printable(c.Name), Dm.Failed.Invalid, bad));
        if (devices(c.Name) != null) return Decision.Refuse(new("create", c.Name, Dm.Failed.Busy, $"device {c.Name} already exists"));
        // dm_hash_insert: a uuid names one device, like a name (an empty uuid is none, as in the ioctl).
        if (c.Uuid is { Length: > 0 } && state.WithUuid(c.Uuid) is { } holder)
            return Decision.Refuse(new("create", c.Name, Dm.Failed.Busy, $"device with uuid {c.Uuid} already exists: {holder.Name}"));
        // dm_create with a requested minor: one in use is busy (idr_alloc fails), one beyond MINORMASK invalid.
        if (c.Minor is < 0 or > MaxMinor) return Decision.Refuse(new("create", c.Name, Dm.Failed.Invalid, $"minor {c.Minor} is out of range (0-{MaxMinor})"));
        if (c.Minor is { } wanted && state.Devices.Values.FirstOrDefault(d => d.Minor == wanted) is { } user)
            return Decision.Refuse(new("create", c.Name, Dm.Failed.Busy, $"minor {wanted} is in use by {user.Name}"));
        var uuid = c.Uuid == "" ? null : c.Uuid;
        var hasTable = !string.IsNullOrWhiteSpace(c.Table);
        var events = new List<DeviceEvents.DeviceEvent> { new DeviceEvents.Created(c.Name, at, c.Minor ?? state.NextMinor, c.Mode, c.ReadOnly, uuid) };
        if (hasTable)
        {
            events.Add(new DeviceEvents.TableLoaded(c.Name, at, c.Table!, c.ReadOnly));
            events.Add(new DeviceEvents.Resumed(c.Name, at));
        }
        if (fromConfig) events.Add(new DeviceEvents.ConfigDevice(c.Name, at, c.Table, c.ReadOnly, c.Mode));
        // Built before recording: a create whose table fails leaves nothing behind (dmsetup's _revert_create).
        return new("create", c.Name, events, Build: hasTable ? new(c.Table!, c.ReadOnly) : null);
    }

    private static Decision Remove(DeviceFacts device, Dm.Remove r, DateTime at)
    {
        if (device.OpenCount == 0) return new("remove", r.Name, [new DeviceEvents.Removed(r.Name, at)]);
        var busy = new Dm.Failed("remove", r.Name, Dm.Failed.Busy, $"{r.Name} is open ({device.OpenCount})");
        if (!r.Force) return Decision.Refuse(busy);
        // remove --force first wipes the table to `error` (so IO fails instead of hanging), then still refuses.
        var wipe = $"0 {Math.Max(1, device.Sectors)} error";
        return new("remove", r.Name, [new DeviceEvents.TableLoaded(r.Name, at, wipe, false), new DeviceEvents.Resumed(r.Name, at)],
            busy, new(wipe, false));
    }

    /// <summary>dev_rename, then dm_hash_rename: a valid string, not another device's uuid, no uuid yet.</summary>
    private static Decision SetUuid(HostState state, Dm.Rename r, DateTime at)
    {
        if ((r.NewName.Length == 0 ? "Invalid new mapped device name or uuid string supplied." : CheckUuid(r.NewName)) is { } invalid)
            return Decision.Refuse(new("rename", r.Name, Dm.Failed.Invalid, invalid));
        if (state.WithUuid(r.NewName) != null)
            return Decision.Refuse(new("rename", r.Name, Dm.Failed.Busy,
                $"Unable to change uuid on mapped device {r.Name} to one that already exists: {r.NewName}"));
        if (state.Devices.TryGetValue(r.Name, out var rec) && rec.Uuid is { } current)
            return Decision.Refuse(new("rename", r.Name, Dm.Failed.Invalid,
                $"Unable to change uuid of mapped device {r.Name} to {r.NewName} because uuid is already set to {current}"));
        return new("rename", r.Name, [new DeviceEvents.UuidSet(r.Name, at, r.NewName)]);
    }

    private static Decision Rename(Func<string, DeviceFacts?> devices, Dm.Rename r, DateTime at)
    {
        if (CheckName(r.NewName) is { } bad) return Decision.Refuse(new("rename", r.Name, Dm.Failed.Invalid, bad));
        if (devices(r.NewName) != null) return Decision.Refuse(new("rename", r.Name, Dm.Failed.Busy, $"device {r.NewName} already exists"));
        return new("rename", r.Name, [new DeviceEvents.Renamed(r.Name, at, r.NewName)]);
    }

    /// <summary>
    /// A device name dm accepts: at most 127 bytes (DM_NAME_LEN with its NUL; libdm's message), no '/', not
    /// "control", "." or ".." (dm-ioctl's check_name, its messages), and no control characters: dm takes them,
    /// but a newline breaks every listing (`dmsetup ls`), so they are refused too.
    /// </summary>
    public static string? CheckName(string name) => name switch
    {
        "" => "device name cannot be empty",
        _ when System.Text.Encoding.UTF8.GetByteCount(name) > 127 => $"Name \"{Printable(name)}\" too long.",
        _ when name.Contains('/') => "device name cannot contain '/'",
        "." or ".." or "control" => "device name cannot be \"control\", \".\", or \"..\"",
        _ when name.Any(char.IsControl) => $"Name \"{Printable(name)}\" invalid. It contains a control character.",
        _ => null,
    };

    /// <summary>A uuid dm accepts: at most 128 bytes (DM_UUID_LEN with its NUL; libdm's message), no control characters.</summary>
    public static string? CheckUuid(string? uuid) => uuid switch
    {
        null => null,
        _ when System.Text.Encoding.UTF8.GetByteCount(uuid) > 128 => $"Uuid \"{Printable(uuid)}\" too long",
        _ when uuid.Any(char.IsControl) => $"Uuid \"{Printable(uuid)}\" invalid. It contains a control character.",
        _ => null,
    };

    /// <summary>Control characters as libdm mangles them (\xNN), so a refused name prints on one line.</summary>
    private static string Printable(string s) =>
        s.Any(char.IsControl) ? string.Concat(s.Select(ch => char.IsControl(ch) ? $"\\x{(int)ch:x2}" : ch.ToString())) : s;
}
