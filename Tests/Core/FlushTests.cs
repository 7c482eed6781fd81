using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>Flush fan-out, the modern PREFLUSH/FUA mode, and durability on write-back caches.</summary>
public sealed class FlushTests : DeviceHarness
{
    private int Flushes(string disk) => Events(e => e.Start && e.Op == BioOp.Flush && e.Disk == disk).Count;

    [Theory]
    [InlineData(BarrierMode.Ordered)]
    [InlineData(BarrierMode.Flush)]
    public void An_empty_flush_reaches_each_distinct_disk_once(BarrierMode mode)
    {
        Gate("d0"); Gate("d1"); Gate("d2");
        var p = CreateTestProbe();
        var linear = Create("lin", "0 100 linear d0 0", mode);
        Assert.Equal(BioStatus.Ok, Run(linear, Write(0, Pattern(1, 1), p)));
        Assert.Equal(BioStatus.Ok, Run(linear, Bio.Flush(p.Ref)));
        Assert.Equal(1, Flushes("d0"));
        Assert.Equal(BioStatus.Ok, Run(linear, Bio.Flush(p.Ref)));
        Assert.Equal(1, Flushes("d0"));                       // nothing written since: nothing to flush

        var segments = string.Join('\n', Enumerable.Range(0, 10).Select(i => $"{i * 10} 10 linear d1 {i * 10}"));
        var ten = Create("ten", segments, mode);
        Assert.Equal(BioStatus.Ok, RunOnce(ten, Write(5, Pattern(20, 1), p))); // touches three segments
        Assert.Equal(BioStatus.Ok, Run(ten, Bio.Flush(p.Ref)));
        Assert.Equal(1, Flushes("d1"));

        Log.Clear();
        var striped = Create("str", "0 96 striped 3 8 d0 0 d1 0 d2 0", mode);
        Assert.Equal(BioStatus.Ok, Run(striped, Write(0, Pattern(1, 1), p))); // one stripe written: all flushed
        Assert.Equal(BioStatus.Ok, RunOnce(striped, Bio.Flush(p.Ref)));
        Assert.Equal((1, 1, 1), (Flushes("d0"), Flushes("d1"), Flushes("d2")));

        Log.Clear();
        var nothing = Create("none", "0 100 zero\n100 100 error", mode);
        Assert.Equal(BioStatus.Ok, Run(nothing, Write(0, Pattern(1, 1), p)));
        Assert.Equal(BioStatus.Ok, Run(nothing, Bio.Flush(p.Ref)));
        Assert.Empty(Events());
    }

    [Theory]
    [InlineData(BarrierMode.Ordered)]
    [InlineData(BarrierMode.Flush)]
    public void The_first_flush_after_a_table_goes_live_reaches_its_disks_even_with_nothing_written(BarrierMode mode)
    {
        // The disks may hold writes acknowledged before this table (an earlier process, another device): a client's
        // first FLUSH must make them durable.
        Gate("d0"); Gate("d1");
        var p = CreateTestProbe();
        var dev = Create("fresh", "0 100 linear d0 0", mode);
        Assert.Equal(BioStatus.Ok, Run(dev, Bio.Flush(p.Ref)));
        Assert.Equal(1, Flushes("d0"));
        Assert.Equal(BioStatus.Ok, Run(dev, Bio.Flush(p.Ref)));
        Assert.Equal(1, Flushes("d0"));                       // steady state: skipped
        Ok(new Dm.Load("fresh", "0 100 linear d1 0"));
        Ok(new Dm.Resume("fresh"));
        Assert.Equal(BioStatus.Ok, Run(dev, Bio.Flush(p.Ref)));
        Assert.Equal((1, 1), (Flushes("d0"), Flushes("d1"))); // the reloaded table's disk too
    }

    [Fact]
    public void A_new_devices_first_flush_syncs_its_file_disk()
    {
        var dir = Directory.CreateTempSubdirectory("dmactors-flush-");
        try
        {
            var disk = (FileDisk)Disks.AddFile("f0", Path.Combine(dir.FullName, "f0.img"), 1024);
            var dev = Create("onfile", "0 1024 linear f0 0");
            var p = CreateTestProbe();
            Assert.Equal(BioStatus.Ok, Run(dev, Bio.Flush(p.Ref)));
            Assert.Equal(1, disk.FlushesIssued);
        }
        finally { dir.Delete(recursive: true); }
    }

    [Fact]
    public void A_flush_covers_writes_to_the_disks_of_a_table_swapped_out_since()
    {
        Gate("d0"); Gate("d1");
        var p = CreateTestProbe();
        var dev = Create("mv", "0 100 linear d0 0");
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(1, 1), p)));
        Ok(new Dm.Load("mv", "0 100 linear d1 0"));
        Ok(new Dm.Resume("mv"));
        Assert.Equal(BioStatus.Ok, Run(dev, Bio.Flush(p.Ref)));
        Assert.Equal((1, 1), (Flushes("d0"), Flushes("d1")));  // d0 still held the write made before the swap
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(1, 2), p)));
        Assert.Equal(BioStatus.Ok, Run(dev, Bio.Flush(p.Ref)));
        Assert.Equal((1, 2), (Flushes("d0"), Flushes("d1")));
    }

    [Fact]
    public void A_barrier_flushes_the_cached_disk_of_a_swapped_out_table_even_if_the_new_one_has_no_cache()
    {
        var c0 = Disks.Add(new CachedDisk(new MemoryDisk("c0", 1024, Disks.NextDevNo())));
        Disks.AddMemory("m1", 1024);
        var dev = Create("mv", "0 100 linear c0 0");
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(4, 1), p)));
        Ok(new Dm.Load("mv", "0 100 linear m1 0"));
        Ok(new Dm.Resume("mv"));
        Assert.Equal(4, c0.CachedSectors);
        Assert.Equal(BioStatus.Ok, Run(dev, Bio.Flush(p.Ref)));
        Assert.Equal(0, c0.CachedSectors); // what was written through the old table is durable now
    }

    [Fact]
    public void A_cached_read_racing_a_flush_never_sees_the_older_data_below()
    {
        var gate = Gate("g0", 1024);
        var cache = new CachedDisk(gate);
        var p = CreateTestProbe();
        void RunOn(Bio b) { b.ReplyTo = p.Ref; cache.Submit(b); }
        RunOn(Bio.Write(0, Pattern(1, 7), p.Ref));
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        gate.HoldCompletion = b => b.Op == BioOp.Read;
        var read = new Bio(BioOp.Read, 0, 1, new byte[512], p.Ref);
        RunOn(read);                                       // has read the old data below; its completion waits
        Eventually(() => gate.HeldCompletions == 1, "the read below");
        RunOn(Bio.Flush(p.Ref));                           // writes the cached sector down and drops it
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        Assert.Equal(0, cache.CachedSectors);
        gate.ReleaseCompleted();
        Assert.Same(read, p.ExpectMsg<BioDone>(Wait).Bio);
        Assert.Equal(Pattern(1, 7), read.Data.ToArray());
    }

    [Fact]
    public void Flush_mode_preflush_completes_before_the_data_goes_out_with_fua_and_without_a_drain()
    {
        var d0 = Gate("d0");
        var dev = Create("m", "0 8192 linear d0 0", BarrierMode.Flush);
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(500, Pattern(1, 1), p))); // a completed write for the preflush to cover
        d0.Hold = b => b.Op == BioOp.Write && b.Sector == 0;  // an unrelated write stays in flight
        var unrelated = Write(0, Pattern(8, 1), p);
        dev.Tell(unrelated);
        Eventually(() => d0.HeldCount == 1, "the unrelated write");

        var pf = Write(100, Pattern(8, 2), p, BioFlags.Preflush | BioFlags.Fua);
        dev.Tell(pf);
        var done = p.ExpectMsg<BioDone>(Wait);               // no drain: completes while the other is in flight
        Assert.Same(pf, done.Bio);
        var ev = Events();
        var flushDone = ev.First(e => !e.Start && e.Op == BioOp.Flush).Seq;
        var data = ev.Single(e => e.Start && e.Sector == 100);
        Assert.True(flushDone < data.Seq);
        Assert.Equal(BioFlags.Fua, data.Flags);
        Assert.DoesNotContain(ev, e => e.Op == BioOp.Flush && e.Seq > data.Seq); // no post-flush: FUA instead
        d0.Release();
        Assert.Same(unrelated, p.ExpectMsg<BioDone>(Wait).Bio);
    }

    [Fact]
    public void Flush_mode_barrier_becomes_preflush_and_fua()
    {
        var d0 = Gate("d0");
        var dev = Create("m", "0 8192 linear d0 0", BarrierMode.Flush);
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(100, Pattern(1, 1), p)));
        Log.Clear();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(8, Pattern(8, 1), p, BioFlags.Barrier)));
        var ev = Events(e => e.Start);
        Assert.Equal(BioOp.Flush, ev[0].Op);
        Assert.Equal((BioOp.Write, BioFlags.Fua), (ev[1].Op, ev[1].Flags));
    }

    [Fact]
    public void A_flush_error_fails_the_flush()
    {
        var d0 = Gate("d0");
        var dev = Create("f", "0 8192 linear d0 0");
        d0.Fail = b => b.Op == BioOp.Flush ? BioStatus.IoError : null;
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(100, Pattern(1, 1), p)));
        Assert.Equal(BioStatus.IoError, RunOnce(dev, Bio.Flush(p.Ref)));
        Assert.Equal(BioStatus.IoError, RunOnce(dev, Write(0, Pattern(1, 1), p, BioFlags.Barrier)));
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(1, 1), p)));
    }

    [Theory]
    [InlineData(BarrierMode.Ordered)]
    [InlineData(BarrierMode.Flush)]
    public void Writes_completed_before_a_completed_flush_survive_a_power_cut_on_a_stack(BarrierMode mode)
    {
        var m0 = new MemoryDisk("m0", 4096, Disks.NextDevNo());
        var m1 = new MemoryDisk("m1", 4096, Disks.NextDevNo());
        var c0 = Disks.Add(new CachedDisk(m0));
        var c1 = Disks.Add(new CachedDisk(m1));
        Ok(new Dm.Create("lower", "0 4096 linear m1 0", Mode: mode));
        var dev = Create("top", "0 2048 linear m0 0\n2048 2048 linear lower 0", mode);
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(8, 1), p)));
        Assert.Equal(BioStatus.Ok, Run(dev, Write(2048, Pattern(8, 2), p)));
        Assert.Equal(BioStatus.Ok, Run(dev, Bio.Flush(p.Ref)));
        Assert.Equal(BioStatus.Ok, Run(dev, Write(16, Pattern(8, 3), p, BioFlags.Fua)));
        Assert.Equal(BioStatus.Ok, Run(dev, Write(2100, Pattern(8, 4), p)));
        c0.PowerCut();
        c1.PowerCut();
        var got = new byte[8 * 512];
        m0.ReadAt(0, got); Assert.Equal(Pattern(8, 1), got);
        m1.ReadAt(0, got); Assert.Equal(Pattern(8, 2), got);
        m0.ReadAt(16 * 512, got); Assert.Equal(Pattern(8, 3), got);       // FUA: durable on its own
        m1.ReadAt(52 * 512, got); Assert.Equal(new byte[8 * 512], got);    // never flushed: lost
    }

    [Theory]
    [InlineData(BarrierMode.Ordered)]
    [InlineData(BarrierMode.Flush)]
    public void Without_a_live_table_every_flush_fails_with_eio_as_reads_and_writes_do(BarrierMode mode)
    {
        // Created without a table, and one with a table loaded but never resumed: dm answers any IO with EIO.
        Gate("d0");
        Ok(new Dm.Create("bare", Mode: mode));
        Ok(new Dm.Create("loaded", Mode: mode));
        Ok(new Dm.Load("loaded", "0 100 linear d0 0"));
        var p = CreateTestProbe();
        foreach (var name in new[] { "bare", "loaded" })
        {
            // The manager refuses to open a device without a table: go to the actor.
            var dev = Sys.ActorSelection($"/user/devices/dm-{Info(name).Minor}").ResolveOne(Wait).Result;
            Assert.Equal(BioStatus.IoError, Run(dev, Read(0, 1, p)));
            Assert.Equal(BioStatus.IoError, Run(dev, Write(0, Pattern(1, 1), p)));
            Assert.Equal(BioStatus.IoError, RunOnce(dev, Bio.Flush(p.Ref)));
            Assert.Equal(BioStatus.IoError, RunOnce(dev, Bio.FlushCompleted(p.Ref)));
            Assert.Equal(BioStatus.IoError, RunOnce(dev, Write(0, Pattern(1, 1), p, BioFlags.Preflush | BioFlags.Fua)));
        }
        Assert.Empty(Events(e => e.Start && e.Disk == "d0"));
    }
}
