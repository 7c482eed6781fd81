using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>Table validation, the live and inactive slots, and dmsetup's control commands.</summary>
public sealed class TableTests : DeviceHarness
{
    private IReadOnlyList<Dm.DeviceEntry> Devices() => Assert.IsType<Dm.DeviceList>(Control(Dm.List.Instance)).Devices;

    private static Dm.DeviceEntry Dev(string name, int minor) => new(name, MappedDevice.Major, minor);

    public TableTests()
    {
        Disks.AddMemory("d0", 1024);
        Disks.AddMemory("d1", 1024);
    }

    [Theory]
    [InlineData("0 10 linear d0 0\n20 10 linear d0 0", "Gap in table")]
    [InlineData("5 10 linear d0 0", "Gap in table")]
    [InlineData("0 0 linear d0 0", "zero-length target")]
    [InlineData("0 10 bogus d0 0", "bogus: unknown target type")]
    [InlineData("0 10 linear d0 0 7", "linear: Invalid argument count")]
    [InlineData("0 10 linear d0 x", "linear: Invalid device sector")]
    [InlineData("0 10 linear nosuch 0", "linear: Device lookup failed: nosuch")]
    [InlineData("0 2048 linear d0 0", "linear: d0 too small for target: start=0, len=2048, dev_size=1024")]
    [InlineData("0 100 linear d0 1000", "linear: d0 too small for target: start=1000, len=100, dev_size=1024")]
    [InlineData("0 99 striped 2 8 d0 0 d1 0", "striped: Target length not divisible by number of stripes")]
    [InlineData("0 100 striped 2 8 d0 0 d1 0", "striped: Target length not divisible by chunk size")]
    [InlineData("0 64 striped 2 8 d0 0", "striped: Not enough destinations specified")]
    [InlineData("0 64 striped 0 8", "striped: Invalid stripe count")]
    [InlineData("0 64 striped 2 0 d0 0 d1 0", "striped: Invalid chunk_size")]
    [InlineData("0 64 zero 1", "zero: No arguments required")]
    // Device areas are compared, never summed: a start near long.MaxValue must not wrap start + len negative.
    [InlineData("0 1024 linear d0 9223372036854775807", "linear: d0 too small for target: start=9223372036854775807, len=1024, dev_size=1024")]
    [InlineData("0 16 striped 2 8 d0 0 d1 9223372036854775800", "striped: d1 too small for target: start=9223372036854775800, len=8, dev_size=1024")]
    [InlineData("0 1024 flakey d0 9223372036854775807 0 1", "flakey: d0 too small for target: start=9223372036854775807, len=1024, dev_size=1024")]
    [InlineData("0 10 delay d0 9223372036854775807 0", "delay: d0 too small for target: start=9223372036854775807, len=10, dev_size=1024")]
    [InlineData("0 10 delay d0 0 0 d1 9223372036854775807 0", "delay: d1 too small for target: start=9223372036854775807, len=10, dev_size=1024")]
    [InlineData("0 1024 dust d0 9223372036854775807 512", "dust: d0 too small for target: start=9223372036854775807, len=1024, dev_size=1024")]
    // The kernel's limit: the size in bytes must fit in a signed 64-bit integer (so at most 2^54 - 1 sectors).
    [InlineData("0 9223372036854775807 zero", "too large device: 9223372036854775807 sectors, at most 18014398509481983 (the size in bytes must fit in a signed 64-bit integer)")]
    [InlineData("0 18014398509481984 error", "too large device: 18014398509481984 sectors, at most 18014398509481983 (the size in bytes must fit in a signed 64-bit integer)")]
    [InlineData("0 10 zero\n10 9223372036854775807 zero", "too large device: 9223372036854775817 sectors, at most 18014398509481983 (the size in bytes must fit in a signed 64-bit integer)")]
    [InlineData("x y linear d0 0", "Invalid format on line 1 of table")]
    [InlineData("0 10 linear d0 0\n# comment\nnonsense", "Invalid format on line 3 of table")]
    public void A_bad_table_fails_create_with_dms_message_and_leaves_no_device(string table, string error)
    {
        var failed = Fails(new Dm.Create("bad", table));
        Assert.Equal("create", failed.Op);
        Assert.Equal(error, failed.Reason);
        Assert.Equal("Device does not exist.", Fails(new Dm.GetInfo("bad")).Reason);
        Assert.Empty(Devices());
        Assert.All(Disks.All, d => Assert.Equal(0, d.OpenCount)); // nothing left open by the failed load
    }

    [Fact]
    public void Load_fills_the_inactive_slot_resume_swaps_clear_drops()
    {
        Ok(new Dm.Create("x"));
        var info = Info("x");
        Assert.False(info.LiveTable);
        Assert.False(info.InactiveTable);
        Assert.False(info.Suspended);

        Ok(new Dm.Load("x", "0 100 linear d0 0"));
        info = Info("x");
        Assert.True(info.InactiveTable);
        Assert.False(info.LiveTable);
        Assert.Equal(new[] { "0 100 linear 7:0 0" }, Ok(new Dm.GetTable("x", Inactive: true)).Lines);
        Assert.Empty(Ok(new Dm.GetTable("x")).Lines);

        Ok(new Dm.Clear("x"));
        Assert.False(Info("x").InactiveTable);
        Assert.Equal(0, Disks.Find("d0")!.OpenCount); // clear released the table's device

        Ok(new Dm.Load("x", "0 100 linear d0 0"));
        Ok(new Dm.Resume("x"));
        info = Info("x");
        Assert.True(info.LiveTable);
        Assert.False(info.InactiveTable);
        Assert.Equal(1, info.TargetCount);
        Assert.Equal(100, info.Sectors);

        Ok(new Dm.Load("x", "0 50 linear d1 0\n50 50 zero"));
        info = Info("x");
        Assert.True(info.LiveTable && info.InactiveTable);
        Ok(new Dm.Suspend("x"));
        Assert.True(Info("x").Suspended);
        Ok(new Dm.Resume("x"));
        info = Info("x");
        Assert.False(info.Suspended);
        Assert.False(info.InactiveTable);
        Assert.Equal(2, info.TargetCount);
        Assert.Equal(new[] { "0 50 linear 7:1 0", "50 50 zero " }, Ok(new Dm.GetTable("x")).Lines);
        Eventually(() => Disks.Find("d0")!.OpenCount == 0, "the swapped-out table to release d0");
    }

    [Fact]
    public void A_bad_reload_is_refused_and_the_live_table_keeps_serving()
    {
        var dev = Create("x", "0 100 linear d0 0");
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(4, 9), p)));
        var failed = Fails(new Dm.Load("x", "0 100 linear d0 1000"));
        Assert.Equal("reload", failed.Op);
        Assert.Contains("too small for target", failed.Reason);
        Assert.False(Info("x").InactiveTable);
        Assert.Equal(Pattern(4, 9), ReadBack(dev, 0, 4));
    }

    [Fact]
    public void Remove_is_refused_while_open_and_force_replaces_the_table_with_error()
    {
        var dev = Create("x", "0 100 linear d0 0");     // Create opened it
        var failed = Fails(new Dm.Remove("x"));
        Assert.Equal("Device or resource busy", failed.Error);
        failed = Fails(new Dm.Remove("x", Force: true));
        Assert.Equal("Device or resource busy", failed.Error);
        Eventually(() => Ok(new Dm.GetTable("x")).Lines.SequenceEqual(new[] { "0 100 error " }), "the error table");
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.IoError, Run(dev, Write(0, Pattern(1, 1), p)));
        Ok(new Dm.Close("x"));
        Ok(new Dm.Remove("x"));
        Assert.Equal("Device does not exist.", Fails(new Dm.GetInfo("x")).Reason);
        Eventually(() => Disks.Find("d0")!.OpenCount == 0, "the removed device to release d0");
    }

    [Fact]
    public void A_stacked_device_counts_as_an_open_of_the_device_below()
    {
        Ok(new Dm.Create("lower", "0 100 linear d0 0"));
        var upper = Create("upper", "0 100 linear lower 0");
        Assert.Equal(1, Info("lower").OpenCount);
        Assert.Equal("Device or resource busy", Fails(new Dm.Remove("lower")).Error);
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(upper, Write(10, Pattern(2, 5), p)));
        var onDisk = new byte[1024];
        ((MemoryDisk)Disks.Find("d0")!).ReadAt(10 * 512, onDisk);
        Assert.Equal(Pattern(2, 5), onDisk);
        Assert.Equal("linear: upper: a device cannot map onto itself", Fails(new Dm.Load("lower", "0 100 linear upper 0")).Reason);
    }

    [Fact]
    public void Names_are_checked_listed_in_order_and_renamed()
    {
        Assert.Equal("device name cannot contain '/'", Fails(new Dm.Create("a/b")).Reason);
        Assert.Equal("device name cannot be \"control\", \".\", or \"..\"", Fails(new Dm.Create("control")).Reason);
        Ok(new Dm.Create("b"));
        Ok(new Dm.Create("a"));
        Assert.Equal("Device or resource busy", Fails(new Dm.Create("a")).Error);
        Assert.Equal(new[] { Dev("a", 1), Dev("b", 0) }, Devices());
        var before = Info("b").EventNr;
        Ok(new Dm.Rename("b", "c"));
        Assert.Equal(new[] { Dev("a", 1), Dev("c", 0) }, Devices());
        Assert.Equal(before + 1, Info("c").EventNr);
        Ok(new Dm.Rename("c", "UUID-1", SetUuid: true));
        Assert.Equal("UUID-1", Info("c").Uuid);
        Assert.Contains("already set to UUID-1", Fails(new Dm.Rename("c", "UUID-2", SetUuid: true)).Reason);
    }

    [Fact]
    public void Messages_are_routed_by_sector_with_dms_errors()
    {
        Create("x", "0 100 linear d0 0");
        Assert.Equal("Target type does not support messages", Fails(new Dm.Message("x", 0, ["foo"])).Reason);
        Assert.Equal("Target message sector outside device.", Fails(new Dm.Message("x", 100, ["foo"])).Reason);
        Assert.Equal("Empty message received.", Fails(new Dm.Message("x", 0, [])).Reason);
    }

    [Fact]
    public void Suspend_and_resume_are_idempotent()
    {
        Create("x", "0 100 linear d0 0");
        Ok(new Dm.Suspend("x"));
        Ok(new Dm.Suspend("x"));
        Assert.True(Info("x").Suspended);
        Ok(new Dm.Resume("x"));
        Ok(new Dm.Resume("x"));
        Assert.False(Info("x").Suspended);
    }

    [Fact]
    public void Huge_error_and_zero_targets_are_accepted()
    {
        Ok(new Dm.Create("huge", "0 18014398509481976 error"));
        Assert.Equal(18014398509481976, Info("huge").Sectors);
        Assert.Equal(new[] { "0 18014398509481976 error " }, Ok(new Dm.GetTable("huge")).Lines);
        // The largest device there can be: 2^54 - 1 sectors, (2^54 - 1) * 512 bytes still fits in a long.
        Ok(new Dm.Create("largest", "0 9007199254740992 zero\n9007199254740992 9007199254740991 error"));
        Assert.Equal(18014398509481983, Info("largest").Sectors);
    }

    [Fact]
    public void A_too_large_reload_is_refused_and_the_live_table_keeps_serving()
    {
        var dev = Create("x", "0 100 linear d0 0");
        var failed = Fails(new Dm.Load("x", "0 100 linear d0 0\n100 18014398509481900 zero"));
        Assert.Equal(("reload", Dm.Failed.Invalid), (failed.Op, failed.Error));
        Assert.StartsWith("too large device: 18014398509482000 sectors", failed.Reason);
        Assert.False(Info("x").InactiveTable);
        Assert.Equal(100, Info("x").Sectors);
        Assert.Equal(BioStatus.Ok, Run(dev, Read(0, 1, CreateTestProbe())));
    }

    [Fact]
    public void Duplicate_uuids_are_refused_at_create_and_at_setuuid_with_EBUSY()
    {
        Ok(new Dm.Create("a", Uuid: "U-1"));
        var dup = Fails(new Dm.Create("b", Uuid: "U-1"));
        Assert.Equal(("create", Dm.Failed.Busy, "device with uuid U-1 already exists: a"), (dup.Op, dup.Error, dup.Reason));
        Assert.Equal("Device does not exist.", Fails(new Dm.GetInfo("b")).Reason);

        Ok(new Dm.Create("c"));
        var taken = Fails(new Dm.Rename("c", "U-1", SetUuid: true));
        Assert.Equal(("rename", Dm.Failed.Busy), (taken.Op, taken.Error));
        Assert.Equal("Unable to change uuid on mapped device c to one that already exists: U-1", taken.Reason);
        Assert.Null(Info("c").Uuid);
        // A's own uuid again is "already exists" too (dm looks the uuid up before it looks at the device).
        Assert.Equal(Dm.Failed.Busy, Fails(new Dm.Rename("a", "U-1", SetUuid: true)).Error);

        // Once the holder is gone its uuid is free again; an empty uuid is no uuid, as in dm's ioctl.
        Ok(new Dm.Remove("a"));
        Ok(new Dm.Rename("c", "U-1", SetUuid: true));
        Assert.Equal("U-1", Info("c").Uuid);
        Ok(new Dm.Create("d", Uuid: ""));
        Ok(new Dm.Create("e", Uuid: ""));
        Assert.Null(Info("e").Uuid);
    }

    [Theory]
    [InlineData("a\nb", "Name \"a\\x0ab\" invalid. It contains a control character.")]
    [InlineData("tab\there", "Name \"tab\\x09here\" invalid. It contains a control character.")]
    [InlineData("bell\a", "Name \"bell\\x07\" invalid. It contains a control character.")]
    [InlineData(".", "device name cannot be \"control\", \".\", or \"..\"")]
    [InlineData("..", "device name cannot be \"control\", \".\", or \"..\"")]
    [InlineData("a/b", "device name cannot contain '/'")]
    public void Names_dm_refuses_or_that_break_listings_are_refused_at_create_and_rename(string name, string reason)
    {
        Ok(new Dm.Create("ok"));
        var created = Fails(new Dm.Create(name));
        Assert.Equal(("create", Dm.Failed.Invalid, reason), (created.Op, created.Error, created.Reason));
        var renamed = Fails(new Dm.Rename("ok", name));
        Assert.Equal(("rename", "ok", Dm.Failed.Invalid, reason), (renamed.Op, renamed.Name, renamed.Error, renamed.Reason));
        Assert.Equal(new[] { Dev("ok", 0) }, Devices());
    }

    [Fact]
    public void Names_are_limited_to_127_bytes_and_uuids_to_128()
    {
        var name127 = new string('n', 127);
        Ok(new Dm.Create(name127));
        Assert.Equal($"Name \"{name127}n\" too long.", Fails(new Dm.Create(name127 + "n")).Reason);
        Assert.Equal($"Name \"{name127}n\" too long.", Fails(new Dm.Rename(name127, name127 + "n")).Reason);
        // Bytes, not characters: 64 two-byte characters are 128 bytes.
        Assert.Equal(Dm.Failed.Invalid, Fails(new Dm.Create(new string('\u00e9', 64))).Error);
        Ok(new Dm.Create(new string('\u00e9', 63)));

        var uuid128 = new string('u', 128);
        Ok(new Dm.Create("u1", Uuid: uuid128));
        Assert.Equal(uuid128, Info("u1").Uuid);
        var tooLong = Fails(new Dm.Create("u2", Uuid: uuid128 + "u"));
        Assert.Equal(("create", Dm.Failed.Invalid, $"Uuid \"{uuid128}u\" too long"), (tooLong.Op, tooLong.Error, tooLong.Reason));
        Assert.Equal("Device does not exist.", Fails(new Dm.GetInfo("u2")).Reason);
        Assert.Equal("Uuid \"x\\x0ay\" invalid. It contains a control character.", Fails(new Dm.Create("u3", Uuid: "x\ny")).Reason);

        Ok(new Dm.Create("u4"));
        Assert.Equal($"Uuid \"{uuid128}u\" too long", Fails(new Dm.Rename("u4", uuid128 + "u", SetUuid: true)).Reason);
        Assert.Equal("Uuid \"x\\x0ay\" invalid. It contains a control character.", Fails(new Dm.Rename("u4", "x\ny", SetUuid: true)).Reason);
        Assert.Equal("Invalid new mapped device name or uuid string supplied.", Fails(new Dm.Rename("u4", "", SetUuid: true)).Reason);
        Assert.Null(Info("u4").Uuid);
    }
}
