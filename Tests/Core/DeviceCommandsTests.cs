using DmActors;
using Xunit;
using E = DmActors.DeviceEvents;

namespace DmActors.Tests.Core;

/// <summary>The manager's decisions as a pure function: each command accepted (with its events) or refused (with dm's wording).</summary>
public sealed class DeviceCommandsTests
{
    private static readonly DateTime At = new(2026, 1, 2, 3, 4, 5, DateTimeKind.Utc);

    /// <summary>A host with "a" (minor 0, uuid UA, a live table) and "b" (minor 1, no uuid, no table).</summary>
    private static readonly HostState Two = new DeviceEvents.DeviceEvent[]
    {
        new E.Created("a", At, 0, BarrierMode.Ordered, false, "UA"),
        new E.TableLoaded("a", At, "0 8 zero", true),
        new E.Resumed("a", At),
        new E.Created("b", At, 1, BarrierMode.Flush, false, null),
    }.Aggregate(HostState.Empty, (s, e) => s.Apply(e));

    /// <summary>The directory over <paramref name="state"/>'s devices, each open <paramref name="open"/> times, <paramref name="sectors"/> long.</summary>
    private static Func<string, DeviceFacts?> Directory(HostState state, int open = 0, long sectors = 8) =>
        name => state.Devices.ContainsKey(name) ? new DeviceFacts(open, sectors) : null;

    private static Decision Decide(object command, int open = 0, long sectors = 8) =>
        DeviceCommands.Decide(Two, Directory(Two, open, sectors), command, At);

    private static Dm.Failed Refused(object command, int open = 0)
    {
        var d = Decide(command, open);
        Assert.True(d.Refused, $"{command} was accepted: {string.Join(", ", d.Events)}");
        return d.Refusal!;
    }

    private static void NoDevice(object command, string op) =>
        Assert.Equal(new Dm.Failed(op, "nosuch", Dm.Failed.NoDevice, "Device does not exist."), Refused(command));

    [Fact]
    public void Create_without_a_table_records_the_device_with_the_next_minor()
    {
        var d = Decide(new Dm.Create("c", Uuid: "", Mode: BarrierMode.Flush));
        Assert.Equal(("create", "c", null, null), (d.Op, d.Name, d.Refusal, d.Build));
        Assert.Equal([new E.Created("c", At, 2, BarrierMode.Flush, false, null)], d.Events); // an empty uuid is none
    }

    [Fact]
    public void Create_with_a_table_builds_it_first_and_records_load_and_resume()
    {
        var d = Decide(new Dm.Create("c", "0 8 zero", ReadOnly: true, Uuid: "UC"));
        Assert.Equal(new Decision.TableText("0 8 zero", true), d.Build);
        Assert.Equal([new E.Created("c", At, 2, BarrierMode.Ordered, true, "UC"), new E.TableLoaded("c", At, "0 8 zero", true), new E.Resumed("c", At)], d.Events);
        Assert.Null(Decide(new Dm.Create("c", "  \n")).Build);
    }

    [Fact]
    public void Create_from_the_configuration_also_records_it_as_the_configurations()
    {
        var d = Decide(new DeviceManager.CreateConfigDevice(new Dm.Create("c", "0 8 zero")));
        Assert.Equal(new E.ConfigDevice("c", At, "0 8 zero", false, BarrierMode.Ordered), d.Events[^1]);
        Assert.Equal(4, d.Events.Count);
    }

    [Theory]
    [InlineData("", "", "device name cannot be empty")]
    [InlineData("x/y", "x/y", "device name cannot contain '/'")]
    [InlineData("control", "control", "device name cannot be \"control\", \".\", or \"..\"")]
    [InlineData("bad\nname", "bad\\x0aname", "Name \"bad\\x0aname\" invalid. It contains a control character.")]
    public void Create_refuses_a_name_dm_refuses(string name, string printed, string reason) =>
        Assert.Equal(new Dm.Failed("create", printed, Dm.Failed.Invalid, reason), Refused(new Dm.Create(name)));

    [Fact]
    public void Create_refuses_a_long_name_or_a_bad_uuid()
    {
        Assert.Equal($"Name \"{new string('n', 128)}\" too long.", Refused(new Dm.Create(new string('n', 128))).Reason);
        Assert.Null(Decide(new Dm.Create(new string('n', 127))).Refusal);
        Assert.Equal($"Uuid \"{new string('u', 129)}\" too long", Refused(new Dm.Create("c", Uuid: new string('u', 129))).Reason);
        Assert.Equal("Uuid \"u\\x09\" invalid. It contains a control character.", Refused(new Dm.Create("c", Uuid: "u\t")).Reason);
    }

    [Fact]
    public void Create_refuses_a_name_or_uuid_another_device_has()
    {
        Assert.Equal(new Dm.Failed("create", "b", Dm.Failed.Busy, "device b already exists"), Refused(new Dm.Create("b")));
        Assert.Equal(new Dm.Failed("create", "c", Dm.Failed.Busy, "device with uuid UA already exists: a"), Refused(new Dm.Create("c", Uuid: "UA")));
    }

    [Fact]
    public void Adopt_records_the_device_as_it_is_and_refuses_an_unknown_one()
    {
        var d = Decide(new DeviceManager.AdoptConfigDevice("a"));
        Assert.Equal([new E.ConfigDevice("a", At, "0 8 zero", false, BarrierMode.Ordered)], d.Events);
        NoDevice(new DeviceManager.AdoptConfigDevice("nosuch"), "create");
        // In the directory but never recorded (nothing to adopt): refused too.
        var none = DeviceCommands.Decide(HostState.Empty, _ => new DeviceFacts(0, 0), new DeviceManager.AdoptConfigDevice("x"), At);
        Assert.Equal(Dm.Failed.NoDevice, none.Refusal!.Error);
    }

    [Fact]
    public void Load_builds_then_records_into_the_inactive_slot()
    {
        var d = Decide(new Dm.Load("b", "0 8 error", ReadOnly: true));
        Assert.Equal(("reload", new Decision.TableText("0 8 error", true)), (d.Op, d.Build));
        Assert.Equal([new E.TableLoaded("b", At, "0 8 error", true)], d.Events);
        NoDevice(new Dm.Load("nosuch", "0 8 zero"), "reload");
    }

    [Fact]
    public void Remove_of_a_closed_device_records_its_removal()
    {
        Assert.Equal([new E.Removed("a", At)], Decide(new Dm.Remove("a")).Events);
        Assert.Equal([new E.Removed("a", At)], Decide(new Dm.Remove("a", Force: true)).Events);
        NoDevice(new Dm.Remove("nosuch"), "remove");
    }

    [Fact]
    public void Remove_of_an_open_device_is_refused_and_force_wipes_its_table_first()
    {
        var busy = new Dm.Failed("remove", "a", Dm.Failed.Busy, "a is open (2)");
        Assert.Equal(busy, Refused(new Dm.Remove("a"), open: 2));
        var forced = Decide(new Dm.Remove("a", Force: true), open: 2, sectors: 100);
        Assert.False(forced.Refused);
        Assert.Equal(busy, forced.Refusal);
        Assert.Equal(new Decision.TableText("0 100 error", false), forced.Build);
        Assert.Equal([new E.TableLoaded("a", At, "0 100 error", false), new E.Resumed("a", At)], forced.Events);
        // A device without a live table still gets a one-sector error table.
        Assert.Equal("0 1 error", Decide(new Dm.Remove("b", Force: true), open: 1, sectors: 0).Build!.Text);
    }

    [Fact]
    public void Rename_records_a_valid_free_name()
    {
        Assert.Equal([new E.Renamed("a", At, "z")], Decide(new Dm.Rename("a", "z")).Events);
        Assert.Equal(new Dm.Failed("rename", "a", Dm.Failed.Invalid, "device name cannot contain '/'"), Refused(new Dm.Rename("a", "z/")));
        Assert.Equal(new Dm.Failed("rename", "a", Dm.Failed.Busy, "device b already exists"), Refused(new Dm.Rename("a", "b")));
        NoDevice(new Dm.Rename("nosuch", "z"), "rename");
    }

    [Fact]
    public void Setuuid_records_a_first_unique_uuid()
    {
        Assert.Equal([new E.UuidSet("b", At, "UB")], Decide(new Dm.Rename("b", "UB", SetUuid: true)).Events);
        Assert.Equal(new Dm.Failed("rename", "b", Dm.Failed.Invalid, "Invalid new mapped device name or uuid string supplied."),
            Refused(new Dm.Rename("b", "", SetUuid: true)));
        Assert.Equal("Uuid \"U\\x0a\" invalid. It contains a control character.", Refused(new Dm.Rename("b", "U\n", SetUuid: true)).Reason);
        Assert.Equal(new Dm.Failed("rename", "b", Dm.Failed.Busy, "Unable to change uuid on mapped device b to one that already exists: UA"),
            Refused(new Dm.Rename("b", "UA", SetUuid: true)));
        Assert.Equal(new Dm.Failed("rename", "a", Dm.Failed.Invalid, "Unable to change uuid of mapped device a to UX because uuid is already set to UA"),
            Refused(new Dm.Rename("a", "UX", SetUuid: true)));
        NoDevice(new Dm.Rename("nosuch", "UX", SetUuid: true), "rename");
    }

    [Fact]
    public void Suspend_resume_and_clear_record_one_event_each()
    {
        Assert.Equal([new E.Suspended("a", At, true)], Decide(new Dm.Suspend("a", NoFlush: true)).Events);
        Assert.Equal([new E.Resumed("a", At)], Decide(new Dm.Resume("a")).Events);
        Assert.Equal([new E.TableCleared("a", At)], Decide(new Dm.Clear("a")).Events);
        Assert.Equal(("suspend", "resume", "clear"), (Decide(new Dm.Suspend("a")).Op, Decide(new Dm.Resume("a")).Op, Decide(new Dm.Clear("a")).Op));
        NoDevice(new Dm.Suspend("nosuch"), "suspend");
        NoDevice(new Dm.Resume("nosuch"), "resume");
        NoDevice(new Dm.Clear("nosuch"), "clear");
    }

    [Fact]
    public void Queries_are_not_changes()
    {
        Assert.True(DeviceCommands.Changes(new Dm.Clear("a")));
        Assert.False(DeviceCommands.Changes(new Dm.GetInfo("a")));
        Assert.False(DeviceCommands.Changes(Dm.List.Instance));
        Assert.False(DeviceCommands.Changes(new Dm.Open("a")));
        Assert.Throws<ArgumentException>(() => Decide(new Dm.GetTable("a")));
    }
}
