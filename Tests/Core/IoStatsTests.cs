using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>A device's IO counters (/proc/diskstats' fields, barriers, errors) after known IO, counted exactly.</summary>
public sealed class IoStatsTests : DeviceHarness
{
    private IoCounters Stats(string name) => Assert.IsType<DeviceIoStats>(Control(new GetIoStats(name))).Counters;

    private static Bio Discard(long sector, long sectors) =>
        new(BioOp.Discard, sector, sectors, Memory<byte>.Empty, ActorRefs.Nobody);

    [Theory]
    [InlineData(BarrierMode.Ordered)]
    [InlineData(BarrierMode.Flush)]
    public void Known_io_is_counted_exactly_once_per_bio_answered(BarrierMode mode)
    {
        Gate("d0");
        var p = CreateTestProbe();
        // Two linear lines, so one write is split in two clones (it still counts once), and an error line.
        var dev = Create("st", "0 500 linear d0 0\n500 500 linear d0 500\n1000 100 error", mode);
        for (var i = 0; i < 3; i++) Assert.Equal(BioStatus.Ok, Run(dev, Read(i * 8, 8, p)));
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(4, 1), p)));
        Assert.Equal(BioStatus.Ok, RunOnce(dev, Write(496, Pattern(8, 2), p)));
        Assert.Equal(BioStatus.Ok, Run(dev, Write(100, Pattern(2, 3), p, BioFlags.Barrier)));
        Assert.Equal(BioStatus.Ok, Run(dev, Discard(200, 16)));
        Assert.Equal(BioStatus.Ok, Run(dev, Bio.FlushCompleted(p.Ref)));  // an NBD FLUSH: never a barrier
        Assert.Equal(BioStatus.Ok, Run(dev, Bio.Flush(p.Ref)));           // an empty barrier in ordered mode
        Assert.Equal(BioStatus.IoError, Run(dev, Read(1000, 4, p)));
        // Refused before it started (out of range): answered, so counted, as an error.
        Assert.Equal(BioStatus.OutOfRange, Run(dev, Read(1096, 8, p)));

        var s = Stats("st");
        Assert.Equal((5L, 0L, 36L), (s.Reads, s.ReadsMerged, s.ReadSectors));
        Assert.Equal((3L, 0L, 14L), (s.Writes, s.WritesMerged, s.WriteSectors));
        Assert.Equal((1L, 16L), (s.Discards, s.DiscardSectors));
        Assert.Equal(2L, s.Flushes);
        Assert.Equal(mode == BarrierMode.Ordered ? 2L : 1L, s.Barriers); // the flagged write; in ordered mode the empty flush too
        Assert.Equal(2L, s.Errors);
        Assert.Equal(0L, s.InFlight);
        // Summed before rounding to milliseconds, as diskstats does: at most one lost per group.
        Assert.InRange(s.WeightedMs, s.ReadMs + s.WriteMs + s.DiscardMs + s.FlushMs, s.ReadMs + s.WriteMs + s.DiscardMs + s.FlushMs + 3);
        Assert.Equal(new long[] { 11 }, s.Histogram); // no bounds configured: one bin holds every bio
        Assert.Equal("5 0 36 " + s.ReadMs + " 3 0 14 " + s.WriteMs + " 0 " + s.IoMs + " " + s.WeightedMs
            + " 1 0 16 " + s.DiscardMs + " 2 " + s.FlushMs, s.DiskstatsFields);
    }

    [Fact]
    public void A_bio_held_below_is_in_flight_until_it_is_answered()
    {
        var disk = Gate("d0");
        disk.Hold = b => b.Op == BioOp.Read;
        var p = CreateTestProbe();
        var dev = Create("held", "0 100 linear d0 0");
        dev.Tell(Read(0, 2, p));
        dev.Tell(Read(8, 2, p));
        Eventually(() => disk.HeldCount == 2, "both reads held at the disk");
        Assert.Equal((2L, 0L), (Stats("held").InFlight, Stats("held").Reads));
        disk.Release();
        p.ExpectMsg<BioDone>(Wait);
        p.ExpectMsg<BioDone>(Wait);
        var s = Stats("held");
        Assert.Equal((0L, 2L, 4L), (s.InFlight, s.Reads, s.ReadSectors));
    }

    [Fact]
    public void Bios_pushed_back_by_a_noflush_suspend_count_once_when_they_finally_complete()
    {
        var disk = Gate("d0");
        disk.Hold = b => b.Op == BioOp.Write;
        var p = CreateTestProbe();
        var dev = Create("nf", "0 100 linear d0 0", BarrierMode.Flush);
        dev.Tell(Write(0, Pattern(1, 1), p));
        Eventually(() => disk.HeldCount == 1, "the write held at the disk");
        var suspender = CreateTestProbe();
        dev.Tell(new Dm.Suspend("nf", NoFlush: true), suspender.Ref); // straight to the device, and handled before the release
        Settle(dev);
        disk.Release(status: BioStatus.Requeue); // the target pushes it back (DM_ENDIO_REQUEUE)
        suspender.ExpectMsg<Dm.Done>(Wait);
        Assert.Equal((0L, 0L), (Stats("nf").InFlight, Stats("nf").Writes));
        disk.Hold = _ => false;
        Ok(new Dm.Resume("nf"));
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        var s = Stats("nf");
        Assert.Equal((0L, 1L, 1L, 0L), (s.InFlight, s.Writes, s.WriteSectors, s.Errors));
    }

    [Fact]
    public void A_barrier_pushed_back_with_the_io_before_it_counts_once_when_it_finally_completes()
    {
        var disk = Gate("d0");
        disk.Hold = b => b.Op == BioOp.Write;
        var p = CreateTestProbe();
        var dev = Create("nfb", "0 100 linear d0 0", BarrierMode.Ordered);
        dev.Tell(Write(0, Pattern(1, 1), p));
        Eventually(() => disk.HeldCount == 1, "the write held at the disk");
        dev.Tell(Bio.Flush(p.Ref)); // an empty barrier: it waits for the write (drain)
        Settle(dev);
        Assert.Equal(2L, Stats("nfb").InFlight);
        var suspender = CreateTestProbe();
        dev.Tell(new Dm.Suspend("nfb", NoFlush: true), suspender.Ref); // straight to the device, and handled before the release
        Settle(dev);
        disk.Release(status: BioStatus.Requeue); // the write is pushed back, and the barrier behind it too
        suspender.ExpectMsg<Dm.Done>(Wait);
        Assert.Equal(0L, Stats("nfb").InFlight);
        disk.Hold = _ => false;
        Ok(new Dm.Resume("nfb"));
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        var s = Stats("nfb");
        Assert.Equal((0L, 1L, 1L, 1L, 0L), (s.InFlight, s.Writes, s.Flushes, s.Barriers, s.Errors));
    }

    [Fact]
    public void The_board_lists_running_devices_with_the_same_counters_and_forgets_removed_ones()
    {
        Gate("d0");
        var p = CreateTestProbe();
        var dev = Create("b1", "0 100 linear d0 0");
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(2, 1), p)));
        var board = IoStatsBoard.Get(Sys);
        var entry = Assert.Single(board.Devices, d => d.Device.Name == "b1");
        Assert.Equal((1L, 2L), (entry.Stats.Read().Writes, entry.Stats.Read().WriteSectors));
        Ok(new Dm.Close("b1"));
        Ok(new Dm.Remove("b1"));
        Eventually(() => board.Devices.All(d => d.Device.Name != "b1"), "the removed device leaves the board");
        Assert.IsType<Dm.Failed>(Control(new GetIoStats("b1")));
    }

    [Theory]
    [InlineData(BarrierMode.Ordered)]
    [InlineData(BarrierMode.Flush)]
    public void A_region_counts_barriers_errors_and_discards_inside_it_in_both_barrier_modes(BarrierMode mode)
    {
        Gate("d0");
        var p = CreateTestProbe();
        var dev = Create("rb", "0 1000 linear d0 0\n1000 100 error", mode);
        var made = Assert.IsType<StatsRegionsCreated>(Control(new CreateStatsRegion("rb", 96, 1004, false, [], "t")));
        Assert.Equal(1L, made.Regions.Single().Id);
        Assert.Equal(BioStatus.Ok, Run(dev, Write(100, Pattern(2, 3), p, BioFlags.Barrier))); // a barrier with data
        Assert.Equal(BioStatus.Ok, Run(dev, Discard(90, 16)));                               // 10 sectors inside
        Assert.Equal(BioStatus.IoError, Run(dev, Read(1000, 8, p)));                         // the error line
        Assert.Equal(BioStatus.Ok, Run(dev, Read(0, 8, p)));                                 // outside the region
        var r = Assert.IsType<DeviceIoStats>(Control(new GetIoStats("rb"))).Regions!.Single().Counters;
        Assert.Equal((1L, 2L, 1L, 10L, 1L, 8L), (r.Writes, r.WriteSectors, r.Discards, r.DiscardSectors, r.Reads, r.ReadSectors));
        Assert.Equal((1L, 1L, 0L), (r.Barriers, r.Errors, r.InFlight));
    }

    [Fact]
    public void A_bio_ends_in_the_regions_it_started_in_whatever_changed_meanwhile()
    {
        var device = new IoStats();
        var region = new StatsRegion(1, 0, 8, "t", new IoStats());
        var before = Bio.Write(0, new byte[4096], ActorRefs.Nobody);
        var started = device.Start(before, out var none);
        device.Regions = [region];                                  // made while the write is in flight
        device.Done(before, BioStatus.Ok, started, regions: none);
        Assert.Equal((0L, 0L), (region.Stats.Read().Writes, region.Stats.Read().InFlight));
        var during = Bio.Write(4, new byte[4096], ActorRefs.Nobody); // 4 of its 8 sectors inside
        started = device.Start(during, out var regions);
        Assert.Equal(1L, region.Stats.Read().InFlight);
        device.Regions = [];                                        // deleted while it is in flight
        device.Done(during, BioStatus.Ok, started, regions: regions);
        Assert.Equal((1L, 4L, 0L), (region.Stats.Read().Writes, region.Stats.Read().WriteSectors, region.Stats.Read().InFlight));
        Assert.Equal((2L, 16L), (device.Read().Writes, device.Read().WriteSectors));
    }
}
