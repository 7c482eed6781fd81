using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>Table validation, the live and inactive slots, and dmsetup's control commands.</summary>
public sealed class TableTests : DeviceHarness
{
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
    [InlineData("x y linear d0 0", "Invalid format on line 1 of table")]
    [InlineData("0 10 linear d0 0\n# comment\nnonsense", "Invalid format on line 3 of table")]
    public void A_bad_table_fails_create_with_dms_message_and_leaves_no_device(string table, string error)
    {
        var failed = Fails(new Dm.Create("bad", table));
        Assert.Equal("create", failed.Op);
        Assert.Equal(error, failed.Reason);
        Assert.Equal("Device does not exist.", Fails(new Dm.GetInfo("bad")).Reason);
        Assert.Equal(new[] { "No devices found" }, Ok(Dm.List.Instance).Lines);
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
        Assert.Equal("device name cannot be control", Fails(new Dm.Create("control")).Reason);
        Ok(new Dm.Create("b"));
        Ok(new Dm.Create("a"));
        Assert.Equal("Device or resource busy", Fails(new Dm.Create("a")).Error);
        Assert.Equal(new[] { "a\t(253:1)", "b\t(253:0)" }, Ok(Dm.List.Instance).Lines);
        var before = Info("b").EventNr;
        Ok(new Dm.Rename("b", "c"));
        Assert.Equal(new[] { "a\t(253:1)", "c\t(253:0)" }, Ok(Dm.List.Instance).Lines);
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
    }
}
