using DmActors.Host.Cli;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>dmsetup's output formats, checked against dmsetup(8)'s exact strings.</summary>
public class DmsetupFormatTests
{
    private static Dm.DeviceInfo Info(string name = "test", bool suspended = false, bool readOnly = false, bool live = true,
        bool inactive = false, int open = 0, long events = 0, int minor = 5, int targets = 5, string? uuid = null) =>
        new(name, uuid, suspended, readOnly, live, inactive, open, events, 253, minor, targets, 1024, BarrierMode.Ordered);

    [Fact]
    public void Info_block_matches_dmsetup_long_format()
    {
        Assert.Equal(
        [
            "Name:              test",
            "State:             ACTIVE",
            "Read Ahead:        256",
            "Tables present:    LIVE",
            "Open count:        0",
            "Event number:      0",
            "Major, minor:      253, 5",
            "Number of targets: 5",
            "UUID: TEST-foo",
            "",
        ], DmsetupFormat.InfoBlock(Info(uuid: "TEST-foo")));
    }

    [Fact]
    public void Info_block_of_a_device_in_an_error_state_adds_the_reason_after_dmsetups_lines()
    {
        var lines = DmsetupFormat.InfoBlock(Info(live: false, uuid: "U") with { ErrorState = "live table could not be rebuilt: linear: Device lookup failed: d1" }).ToList();
        Assert.Equal("UUID: U", lines[^3]);
        Assert.Equal("Error:             live table could not be rebuilt: linear: Device lookup failed: d1", lines[^2]);
        Assert.Equal("", lines[^1]);
    }

    [Fact]
    public void Info_block_without_uuid_has_no_uuid_line_and_ends_blank()
    {
        var lines = DmsetupFormat.InfoBlock(Info(name: "x", suspended: true, readOnly: true, live: true, inactive: true, open: 2, events: 7, minor: 0, targets: 1)).ToList();
        Assert.Equal(
        [
            "Name:              x",
            "State:             SUSPENDED (READ-ONLY)",
            "Read Ahead:        256",
            "Tables present:    LIVE & INACTIVE",
            "Open count:        2",
            "Event number:      7",
            "Major, minor:      253, 0",
            "Number of targets: 1",
            "",
        ], lines);
    }

    // What `info` shows after each operation.
    [Theory]
    [InlineData(false, false, false, false, "None", "---w", "ACTIVE")]           // create x --notable
    [InlineData(true, false, false, false, "LIVE", "L--w", "ACTIVE")]            // create x with table
    [InlineData(true, true, false, false, "LIVE & INACTIVE", "LI-w", "ACTIVE")]  // load x t2
    [InlineData(true, true, true, false, "LIVE & INACTIVE", "LIsw", "SUSPENDED")] // suspend x
    [InlineData(true, false, false, true, "LIVE", "L--r", "ACTIVE (READ-ONLY)")] // load -r + resume
    [InlineData(false, true, false, false, "INACTIVE", "-I-w", "ACTIVE")]
    public void State_tables_and_attr_follow_the_device_state(bool live, bool inactive, bool suspended, bool readOnly,
        string tables, string attr, string state)
    {
        var info = Info(live: live, inactive: inactive, suspended: suspended, readOnly: readOnly);
        Assert.Equal(tables, DmsetupFormat.TablesPresent(info));
        Assert.Equal(attr, DmsetupFormat.Attr(info));
        Assert.Contains($"State:             {state}", DmsetupFormat.InfoBlock(info));
        Assert.Contains($"Tables present:    {tables}", DmsetupFormat.InfoBlock(info));
    }

    [Fact]
    public void Info_columns_align_like_libdm_reports()
    {
        var lines = DmsetupFormat.InfoColumns([Info(name: "demo", minor: 0, targets: 1), Info(name: "x", minor: 12, targets: 0, live: false, events: 3, uuid: "U-1")]).ToList();
        Assert.Equal(
        [
            "Name             Maj Min Stat Open Targ Event  UUID                            ",
            "demo             253   0 L--w    0    1      0                                 ",
            "x                253  12 ---w    0    0      3 U-1                             ",
        ], lines);
        Assert.Single(DmsetupFormat.InfoColumns([Info()], headings: false));
    }

    [Fact]
    public void Info_columns_widen_for_long_names()
    {
        var name = new string('n', 20);
        var lines = DmsetupFormat.InfoColumns([Info(name: name)]).ToList();
        Assert.StartsWith("Name                 Maj", lines[0]);
        Assert.StartsWith(name + " 253", lines[1]);
    }

    [Fact]
    public void Table_lines_are_prefixed_only_when_listing_several_devices()
    {
        Assert.Equal(["0 8192 linear 7:0 0"], DmsetupFormat.TargetLines(["0 8192 linear 7:0 0"]));
        Assert.Equal(["a: 0 100 zero ", "a: 100 100 error "], DmsetupFormat.TargetLines(["0 100 zero ", "100 100 error "], "a"));
    }

    [Fact]
    public void A_device_without_table_prints_an_empty_line()
    {
        Assert.Equal([""], DmsetupFormat.TargetLines([]));
        Assert.Equal(["y: "], DmsetupFormat.TargetLines([], "y"));
    }

    [Fact]
    public void Ls_line_is_name_tab_major_colon_minor()
    {
        Assert.Equal("demo\t(253:0)", DmsetupFormat.LsLine("demo", 253, 0));
        Assert.Equal(["demo\t(253:0)", "my dev\t(253:1)"], DmsetupFormat.Ls(new Dm.DeviceList([new("demo", 253, 0), new("my dev", 253, 1)])));
        Assert.Equal([DmsetupFormat.NoDevices], DmsetupFormat.Ls(new Dm.DeviceList([])));
    }

    [Fact]
    public void Targets_pad_the_name_to_16_and_history_prints_utc_with_milliseconds()
    {
        // dm lists the types newest first: loaded modules above the built-in striped, linear, error.
        Assert.Equal(["a-very-long-target-name v1.0.0", "zero             v1.2.0", "striped          v1.6.0", "linear           v1.4.0", "error            v1.7.0"],
            DmsetupFormat.Targets(new Dm.TargetList([new("a-very-long-target-name", "v1.0.0"), new("error", "v1.7.0"), new("linear", "v1.4.0"),
                new("striped", "v1.6.0"), new("zero", "v1.2.0")])));
        var at = new DateTime(2026, 3, 4, 5, 6, 7, 89, DateTimeKind.Utc);
        Assert.Equal(["2026-03-04 05:06:07.089  created (minor 0, ordered barriers)"],
            DmsetupFormat.History(new Dm.HistoryList("x", [new HistoryEntry(at, "created (minor 0, ordered barriers)")])));
        Assert.Null(DmsetupFormat.Output(new Dm.DeviceInfo("x", null, false, false, false, false, 0, 0, 253, 0, 0, 0, BarrierMode.Ordered)));
    }

    [Fact]
    public void Ioctl_failure_has_two_spaces_when_there_is_no_uuid()
    {
        Assert.Equal("device-mapper: remove ioctl on root  failed: Device or resource busy",
            DmsetupFormat.IoctlFailure("remove", "root", null, "Device or resource busy"));
        Assert.Equal("device-mapper: create ioctl on x TEST-x failed: Device or resource busy",
            DmsetupFormat.IoctlFailure("create", "x", "TEST-x", "Device or resource busy"));
    }

    [Fact]
    public void Failure_prints_the_ioctl_line_then_the_reason()
    {
        Assert.Equal(["device-mapper: reload ioctl on x  failed: Invalid argument", "linear: Invalid argument count"],
            DmsetupFormat.Failure(new Dm.Failed("reload", "x", Dm.Failed.Invalid, "linear: Invalid argument count")));
        Assert.Equal(["device-mapper: suspend ioctl on x  failed: Invalid argument"],
            DmsetupFormat.Failure(new Dm.Failed("suspend", "x", Dm.Failed.Invalid)));
    }

    [Theory]
    [InlineData("info")]
    [InlineData("table")]
    [InlineData("status")]
    public void Queries_on_a_missing_device_say_it_does_not_exist(string op) =>
        Assert.Equal(["Device does not exist."], DmsetupFormat.Failure(new Dm.Failed(op, "nosuch", Dm.Failed.NoDevice, "Device does not exist.")));

    [Fact]
    public void Commands_on_a_missing_device_fail_in_the_ioctl() =>
        Assert.Equal(["device-mapper: remove ioctl on nosuch  failed: No such device or address"],
            DmsetupFormat.Failure(new Dm.Failed("remove", "nosuch", Dm.Failed.NoDevice, "Device does not exist.")));

    [Fact]
    public void Other_fixed_strings()
    {
        Assert.Equal("Invalid format on line 3 of table t.txt.", DmsetupFormat.InvalidFormat(3, "t.txt"));
        Assert.Equal("ok\n", DmsetupFormat.MessageResponse("ok"));
        Assert.Equal("1\n2\n", DmsetupFormat.MessageResponse("1\n2\n"));
        Assert.Equal("Command failed.", DmsetupFormat.CommandFailed);
        Assert.Equal("No devices found", DmsetupFormat.NoDevices);
        Assert.Equal(["Library version:   1.02.199 (dmactors)", "Driver version:    4.48.0"], DmsetupFormat.Version(true));
        Assert.Equal(["Library version:   1.02.199 (dmactors)"], DmsetupFormat.Version(false));
    }
}
