using System.Buffers.Binary;
using Akka.Actor;
using DmActors;
using DmActors.Tests.Core;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// mirror (drivers/md/dm-raid1.c, Documentation/admin-guide/device-mapper/dm-log.rst): the write rule, leg
/// failures recorded before the acknowledgement, degraded operation, resync of only the stale regions, dm's table
/// and status text at every stage, constructor errors. 1024 sectors in regions of 256: four regions.
/// </summary>
public sealed class MirrorTests : TargetHarness
{
    private const int Region = 256;

    private static string Table(string log, params IBlockDevice[] legs) =>
        $"0 1024 mirror {log} {legs.Length} {string.Join(' ', legs.Select(l => $"{l.Name} 0"))}";

    private static byte[] Leg(GateDisk d, long sector, int sectors) => Contents(d.Memory, sector, sectors);

    /// <summary>Writes to a leg of a region (resync copies are whole regions of 256 sectors).</summary>
    private List<IoEvent> Copies(GateDisk d) => Events(e => e.Disk == d.Name && e.Start && e.Op == BioOp.Write && e.Sectors == Region);

    /// <summary>The disk log as the target wrote it: failed-leg mask, and per leg its stale regions.</summary>
    private static (uint Failed, bool[][] Stale, bool[] Clean) DiskLog(GateDisk log, int legs)
    {
        var image = Leg(log, 0, 2 + (1 + legs));
        Assert.Equal(0x4D695272u, BinaryPrimitives.ReadUInt32LittleEndian(image));
        bool Bit(int sector, int r) => (image[sector * 512 + r / 8] & (1 << (r % 8))) != 0;
        var stale = Enumerable.Range(0, legs).Select(i => Enumerable.Range(0, 4).Select(r => Bit(3 + i, r)).ToArray()).ToArray();
        return (BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(512 + 12)), stale, Enumerable.Range(0, 4).Select(r => Bit(2, r)).ToArray());
    }

    [Fact]
    public void Table_and_status_are_dms_and_a_core_log_resyncs_the_second_leg_from_the_first()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        a.Memory.WriteAt(300 * 512, Pattern(8, 7));
        b.Hold = bio => bio.Op == BioOp.Write;                                  // the initial resync waits at b
        Create("m", Table("core 1 256", a, b));
        Assert.Equal($"0 1024 mirror core 1 256 2 {a.DevNo} 0 {b.DevNo} 0", TableOf("m"));
        Eventually(() => b.HeldCount == 1, "the first region's copy at b");
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 0/4 1 AA 1 core", Status("m"));
        b.Hold = _ => false;
        b.Release();
        Eventually(() => Status("m").Contains(" 4/4 "), "the resync done");
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 4/4 1 AA 1 core", Status("m"));
        AssertBytes(Pattern(8, 7), Leg(b, 300, 8), "region 1 copied to b");
        Assert.Equal(4, Copies(b).Count);
    }

    [Fact]
    public void A_write_completes_only_when_every_leg_has_it_and_flush_and_fua_reach_every_leg()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        var dev = Create("m", Table("core 2 256 nosync", a, b) + " 1 handle_errors");
        Assert.Equal($"0 1024 mirror core 2 256 nosync 2 {a.DevNo} 0 {b.DevNo} 0 1 handle_errors", TableOf("m"));
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 4/4 1 AA 1 core", Status("m"));

        b.Hold = bio => bio.Op == BioOp.Write;
        var p = CreateTestProbe();
        dev.Tell(Write(8, Pattern(8, 1), p));
        Eventually(() => b.HeldCount == 1, "the write at b");
        Eventually(() => Events(e => e.Disk == "a" && !e.Start && e.Op == BioOp.Write).Count == 1, "the write done at a");
        Settle(dev);
        Assert.False(p.HasMessages, "acknowledged before b had it");
        b.Release();
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        b.Hold = _ => false;
        AssertBytes(Pattern(8, 1), Leg(a, 8, 8), "a");
        AssertBytes(Pattern(8, 1), Leg(b, 8, 8), "b");

        Assert.Equal(BioStatus.Ok, WriteAt(dev, 16, Pattern(8, 2), BioFlags.Fua));
        foreach (var d in new[] { "a", "b" })
            Assert.Single(Events(e => e.Disk == d && e.Start && e.Op == BioOp.Write && e.Sector == 16 && (e.Flags & BioFlags.Fua) != 0));
        Assert.Equal(BioStatus.Ok, Flush(dev));
        foreach (var d in new[] { "a", "b" }) Assert.NotEmpty(Events(e => e.Disk == d && e.Start && e.Op == BioOp.Flush));
    }

    [Fact]
    public void A_leg_failure_is_on_the_disk_log_before_the_write_that_saw_it_is_acknowledged()
    {
        var (a, b, log) = (Gate("a", 1024), Gate("b", 1024), Gate("log", 64));
        var dev = Create("m", Table($"disk 3 {log.Name} 256 nosync", a, b));
        Assert.Equal($"0 1024 mirror disk 3 {log.DevNo} 256 nosync 2 {a.DevNo} 0 {b.DevNo} 0", TableOf("m"));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 1)));              // region 0 dirty on the log
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 4/4 1 AA 3 disk {log.DevNo} A", Status("m"));
        Assert.Equal(0u, DiskLog(log, 2).Failed);
        Assert.False(DiskLog(log, 2).Clean[0]);

        b.Fail = bio => bio.Op is BioOp.Write or BioOp.Read ? BioStatus.IoError : null;
        log.Hold = bio => bio.Op == BioOp.Write;
        var p = CreateTestProbe();
        dev.Tell(Write(8, Pattern(8, 2), p));                                   // region 0: no dirty mark needed
        Eventually(() => log.HeldCount == 1, "the failure's log write");
        Settle(dev);
        Assert.False(p.HasMessages, "acknowledged before the failure was on the log");
        log.Hold = _ => false;
        log.Release();
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        var (failed, stale, _) = DiskLog(log, 2);
        Assert.Equal(2u, failed);
        Assert.True(stale[1][0]);
        Assert.False(stale[0][0]);
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 3/4 1 AD 3 disk {log.DevNo} A", Status("m"));

        // Degraded: writes go on to a alone; region 2 becomes stale for b on the log; b is never read.
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region, Pattern(8, 3)));
        Assert.True(DiskLog(log, 2).Stale[1][2]);
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 2/4 1 AD 3 disk {log.DevNo} A", Status("m"));
        AssertBytes(Pattern(8, 2), ReadBack(dev, 8, 8), "read from a");
        AssertBytes(Pattern(8, 3), ReadBack(dev, 2 * Region, 8), "read from a");
        Assert.Empty(Events(e => e.Disk == "b" && e.Op == BioOp.Read));
    }

    [Fact]
    public void A_write_that_a_leg_did_not_get_is_durable_on_the_legs_that_have_it_when_it_is_acknowledged()
    {
        // a caches writes like a drive; b fails every write. A write acknowledged by a alone must survive a's
        // power cut (its node dying): it is the only copy. Found by `dmactors clustertest` (a paused owner whose
        // remote leg failed acknowledged a write its local leg held only in its cache, then lost it).
        var under = new MemoryDisk("a", 1024, Disks.NextDevNo());
        var a = Disks.Add(new CachedDisk(under));
        var b = Gate("b", 1024);
        var dev = Create("m", Table("core 2 256 nosync", a, b) + " 1 handle_errors");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 1)));             // both legs: may stay in a's cache
        b.Fail = bio => bio.Op == BioOp.Write ? BioStatus.IoError : null;
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 2)));             // b fails during this one
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region, Pattern(8, 3)));    // b failed before this one
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 2/4 1 AD 1 core", Status("m"));
        a.PowerCut();
        AssertBytes(Pattern(8, 2), Contents(under, 8, 8), "the write b failed, on a's medium");
        AssertBytes(Pattern(8, 3), Contents(under, 2 * Region, 8), "the degraded write, on a's medium");
        AssertBytes(Pattern(8, 1), Leg(b, 0, 8), "the write both legs had is on b");
    }

    [Fact]
    public void When_a_leg_fails_the_others_are_flushed_before_the_log_says_they_alone_hold_its_regions()
    {
        // a caches writes like a drive. A write both legs acknowledged sits in a's cache; then b reports lost
        // writes (its server went away) and is failed without any write to flush a. Once the log says region 0
        // is held by a alone, a power cut of a must not lose that write. Found by `dmactors clustertest` (a paused
        // owner, fenced at its remote leg, failed it and logged that; its own leg's cache died with it).
        var under = new MemoryDisk("a", 1024, Disks.NextDevNo());
        var a = Disks.Add(new CachedDisk(under));
        var (b, log) = (Gate("b", 1024), Gate("log", 64));
        var dev = Create("m", Table($"disk 3 {log.Name} 256 nosync", a, b) + " 1 handle_errors");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 1)));
        Assert.True(a.CachedSectors > 0, "the write waits in a's cache");
        b.Lost = 1;
        var back = new byte[8 * 512];
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 8, back));                      // the mirror looks at b's losses
        Eventually(() => DiskLog(log, 2).Failed == 2 && DiskLog(log, 2).Stale[1][0], "b's failure on the log");
        a.PowerCut();
        AssertBytes(Pattern(8, 1), Contents(under, 8, 8), "the write on a's medium");
    }

    [Fact]
    public void Writes_fail_once_fewer_legs_than_min_legs_remain_and_reads_go_on()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        var dev = Create("m", Table("core 2 256 nosync", a, b) + " 2 min_legs 2");
        Assert.Equal($"0 1024 mirror core 2 256 nosync 2 {a.DevNo} 0 {b.DevNo} 0 2 min_legs 2", TableOf("m"));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 1)));
        b.Fail = bio => bio.Op == BioOp.Write ? BioStatus.IoError : null;
        Assert.Equal(BioStatus.IoError, WriteAt(dev, 8, Pattern(8, 2)));         // only a has it: below the minimum
        Assert.Equal(BioStatus.IoError, WriteAt(dev, 16, Pattern(8, 2)));
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 3/4 1 AD 1 core", Status("m")); // region 0 may differ on b
        AssertBytes(Pattern(8, 1), ReadBack(dev, 0, 8), "reads go on");
    }

    [Fact]
    public void A_read_failure_marks_the_leg_R_and_the_read_is_retried_on_the_other_leg()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        var dev = Create("m", Table("core 2 256 nosync", a, b));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 4)));
        a.Fail = bio => bio.Op == BioOp.Read ? BioStatus.IoError : null;
        // Reads take the legs in turn: of two, one goes to a first and is retried on b.
        for (var i = 0; i < 2; i++) AssertBytes(Pattern(8, 4), ReadBack(dev, 0, 8), "read from b");
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 4/4 1 RA 1 core", Status("m"));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 5)));              // a still gets writes
        AssertBytes(Pattern(8, 5), Leg(a, 8, 8), "a still written");
    }

    [Fact]
    public void A_leg_that_comes_back_gets_only_the_regions_written_while_it_was_away()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        var dev = Create("m", Table("core 2 256 nosync", a, b));
        Assert.Empty(Message("m", "fail_leg", b.Name));
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 4/4 1 AD 1 core", Status("m"));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 1 * Region + 8, Pattern(8, 1)));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 3 * Region, Pattern(8, 2)));
        Assert.Empty(Events(e => e.Disk == "b" && e.Op == BioOp.Write));
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 2/4 1 AD 1 core", Status("m"));

        Assert.Empty(Message("m", "return_leg", b.Name));
        Eventually(() => Status("m").Contains(" 4/4 "), "the resync done");
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 4/4 1 AA 1 core", Status("m"));
        Assert.Equal([1 * Region, 3 * Region], Copies(b).Select(e => e.Sector).Order().ToArray());
        Assert.Equal(Hash(a.Memory), Hash(b.Memory));
        Assert.Contains("is not a leg", MessageError("m", "fail_leg", "nosuch"));
        Assert.Contains("Unrecognised mirror message", MessageError("m", "frobnicate", "1"));
    }

    [Fact]
    public void A_reload_with_the_same_legs_resyncs_only_the_stale_regions_from_the_leg_that_stayed()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        var table = Table("core 1 256", a, b);
        var dev = Create("m", table);
        Eventually(() => Status("m").Contains(" 4/4 "), "the initial resync");
        // The first leg fails: the one a fresh core log would copy from.
        a.Fail = bio => bio.Op == BioOp.Write ? BioStatus.IoError : null;
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region, Pattern(8, 9)));
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 3/4 1 DA 1 core", Status("m"));
        a.Fail = _ => null;
        var before = Copies(a).Count;

        Reload("m", table);
        Eventually(() => Status("m").Contains(" 4/4 "), "the resync after the reload");
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 4/4 1 AA 1 core", Status("m"));
        Assert.Equal([2 * Region], Copies(a).Skip(before).Select(e => e.Sector).ToArray());
        AssertBytes(Pattern(8, 9), Leg(a, 2 * Region, 8), "a got the write it missed, from b");
        Assert.Equal(Hash(a.Memory), Hash(b.Memory));
    }

    [Fact]
    public void IO_to_a_region_being_copied_waits_for_the_copy()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        var dev = Create("m", Table("core 2 256 nosync", a, b));
        Message("m", "fail_leg", b.Name);
        Assert.Equal(BioStatus.Ok, WriteAt(dev, Region, Pattern(8, 1)));
        a.Hold = bio => bio.Op == BioOp.Read && bio.Sectors == Region;           // the copy's read of region 1
        Message("m", "return_leg", b.Name);
        Eventually(() => a.HeldCount == 1, "the copy reading a");
        var p = CreateTestProbe();
        var w = Write(Region + 8, Pattern(8, 2), p);
        dev.Tell(w);
        var r = Read(Region, 8, p);
        dev.Tell(r);
        Settle(dev);
        Assert.False(p.HasMessages, "IO to the region went on during its copy");
        Assert.Empty(Events(e => e.Start && e.Sector == Region + 8 && e.Op == BioOp.Write));
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 3/4 1 AA 1 core", Status("m"));
        a.Hold = _ => false;
        a.Release();
        var done = new[] { p.ExpectMsg<BioDone>(Wait), p.ExpectMsg<BioDone>(Wait) };
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        AssertBytes(Pattern(8, 1), r.Data.ToArray(), "the read saw the region as copied");
        AssertBytes(Pattern(8, 2), Leg(b, Region + 8, 8), "the write came after the copy on b");
        Eventually(() => Status("m").Contains(" 4/4 "), "the resync done");
    }

    [Fact]
    public void An_interrupted_resync_resumes_from_the_disk_log_where_it_stopped()
    {
        var (a, b, log) = (Gate("a", 1024), Gate("b", 1024), Gate("log", 64));
        for (var r = 0; r < 4; r++) a.Memory.WriteAt(r * Region * 512L, Pattern(8, (byte)(r + 1)));
        b.Hold = bio => bio.Op == BioOp.Write && bio.Sector == 2 * Region;        // the copy of region 2 waits
        var table = Table($"disk 2 {log.Name} 256", a, b);                        // a new log: b is resynced from a
        Create("m", table);
        Eventually(() => b.HeldCount == 1, "region 2's copy at b");
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 2/4 1 AA 3 disk {log.DevNo} A", Status("m"));
        Eventually(() => DiskLog(log, 2).Stale[1].SequenceEqual([false, false, true, true]), "regions 0 and 1 in sync on the log");

        // A reload interrupts it: the new table waits until the old one is gone and its copy has landed, then goes
        // on from the log: regions 0 and 1 are not copied again.
        Ok(new Dm.Load("m", table));
        Ok(new Dm.Resume("m"));
        b.Hold = _ => false;
        b.Release();
        Eventually(() => Status("m").Contains(" 4/4 "), "the resync done");
        AssertCopiedOnceExceptTheInterrupted(b);
        Assert.Equal(Hash(a.Memory), Hash(b.Memory));
        Eventually(() => DiskLog(log, 2).Stale.All(s => s.All(x => !x)), "the log says in sync");
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 4/4 1 AA 3 disk {log.DevNo} A", Status("m"));
    }

    /// <summary>Regions 0, 1 and 3 copied once; region 2, whose copy was cut off, once or (redone by the new table) twice.</summary>
    private void AssertCopiedOnceExceptTheInterrupted(GateDisk b)
    {
        var copies = Copies(b).GroupBy(e => e.Sector / Region).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(1, copies[0]);
        Assert.Equal(1, copies[1]);
        Assert.InRange(copies[2], 1, 2);
        Assert.Equal(1, copies[3]);
    }

    [Fact]
    public void The_disk_log_is_rate_limited_and_resumes_after_removal_and_create()
    {
        var (a, b, log) = (Gate("a", 1024), Gate("b", 1024), Gate("log", 64));
        for (var r = 0; r < 4; r++) a.Memory.WriteAt(r * Region * 512L, Pattern(8, (byte)(r + 1)));
        var table = Table($"disk 2 {log.Name} 256", a, b);
        b.Hold = bio => bio.Op == BioOp.Write && bio.Sector == 2 * Region;
        Create("m", table);
        Message("m", "resync_rate", "100000");                                  // 128 KiB regions: about a millisecond each
        Eventually(() => b.HeldCount == 1, "region 2's copy at b");
        Eventually(() => DiskLog(log, 2).Stale[1].SequenceEqual([false, false, true, true]), "regions 0 and 1 in sync on the log");
        Ok(new Dm.Close("m"));
        Ok(new Dm.Remove("m"));
        b.Hold = _ => false;
        b.Release();
        Create("m", table);
        Eventually(() => Status("m").Contains(" 4/4 "), "the resync done");
        AssertCopiedOnceExceptTheInterrupted(b);
        Assert.Equal(Hash(a.Memory), Hash(b.Memory));
        Assert.Contains("Invalid resync_rate", MessageError("m", "resync_rate", "fast"));
    }

    [Fact]
    public void A_failed_log_write_fails_the_writes_that_need_it_and_shows_D()
    {
        var (a, b, log) = (Gate("a", 1024), Gate("b", 1024), Gate("log", 64));
        var dev = Create("m", Table($"disk 3 {log.Name} 256 nosync", a, b));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 1)));
        log.Fail = bio => bio.Op == BioOp.Write ? BioStatus.IoError : null;
        Assert.Equal(BioStatus.IoError, WriteAt(dev, Region, Pattern(8, 2)));   // region 1 cannot be marked dirty
        Assert.Empty(Events(e => e.Disk == "a" && e.Op == BioOp.Write && e.Sector == Region));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 3)));              // region 0 is dirty on the log already
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 4/4 1 AA 3 disk {log.DevNo} D", Status("m"));
        b.Fail = bio => bio.Op == BioOp.Write ? BioStatus.IoError : null;
        Assert.Equal(BioStatus.IoError, WriteAt(dev, 16, Pattern(8, 4)));        // a leg failure that cannot be recorded
    }

    [Fact]
    public void A_write_after_a_flush_was_issued_keeps_its_region_dirty_whichever_flush_finishes_first()
    {
        var (a, b, log) = (Gate("a", 1024), Gate("b", 1024), Gate("log", 64));
        var dev = Create("m", Table($"disk 3 {log.Name} 256 nosync", a, b), BarrierMode.Flush); // flushes run side by side
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 1)));
        var held = 0;
        a.Hold = bio => bio.Op == BioOp.Flush && Interlocked.Increment(ref held) == 1;   // the first flush waits at a
        var p = CreateTestProbe();
        var first = Bio.Flush(p.Ref);
        dev.Tell(first);
        Eventually(() => a.HeldCount == 1, "the first flush at a");
        Assert.Equal(BioStatus.Ok, Flush(dev));                                  // the second cleans region 0
        Eventually(() => DiskLog(log, 2).Clean[0], "region 0 clean on the log");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 2)));              // after both flushes were issued
        a.Release();
        Assert.Same(first, p.ExpectMsg<BioDone>(Wait).Bio);
        Assert.Equal(BioStatus.Ok, WriteAt(dev, Region, Pattern(8, 3)));         // one more log write, to see its state
        Assert.False(DiskLog(log, 2).Clean[0], "region 0 marked clean by a flush issued before its last write");
    }

    [Fact]
    public void After_a_restart_the_disk_log_resyncs_a_failed_first_leg_from_the_second_and_nothing_else()
    {
        var (a, b, log) = (Gate("a", 1024), Gate("b", 1024), Gate("log", 64));
        var table = Table($"disk 3 {log.Name} 256 nosync", a, b);
        var dev = Create("m", table);
        a.Fail = bio => bio.Op == BioOp.Write ? BioStatus.IoError : null;
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region + 8, Pattern(8, 6)));
        Assert.Equal(BioStatus.Ok, Flush(dev));
        Assert.Equal($"0 1024 mirror 2 {a.DevNo} {b.DevNo} 3/4 1 DA 3 disk {log.DevNo} A", Status("m"));
        Ok(new Dm.Close("m"));
        Ok(new Dm.Remove("m"));
        a.Fail = _ => null;                                                      // the leg is back for the next start

        Create("m", table);
        Eventually(() => Status("m").Contains(" 4/4 "), "the resync done");
        Assert.Equal([2 * Region], Copies(a).Select(e => e.Sector).ToArray());
        Assert.Empty(Copies(b));
        AssertBytes(Pattern(8, 6), Leg(a, 2 * Region + 8, 8), "a got the write it missed, from b");
    }

    [Fact]
    public void A_region_left_dirty_by_a_crash_is_made_equal_on_every_leg_from_the_first()
    {
        var (a, b, log) = (Gate("a", 1024), Gate("b", 1024), Gate("log", 64));
        var table = Table($"disk 3 {log.Name} 256 nosync", a, b);
        Create("m", table);
        Ok(new Dm.Close("m"));
        Ok(new Dm.Remove("m"));
        Eventually(() => DiskLog(log, 2).Clean.All(c => c), "a clean log");
        // A crash mid-write: region 1 differs between the legs and its clean bit is off.
        a.Memory.WriteAt(Region * 512L, Pattern(8, 1));
        b.Memory.WriteAt(Region * 512L, Pattern(8, 2));
        var image = Leg(log, 2, 1);
        image[0] &= unchecked((byte)~2);
        log.Memory.WriteAt(2 * 512, image);

        Create("m", table);
        Eventually(() => Status("m").Contains(" 4/4 "), "the resync done");
        Assert.Equal([Region], Copies(b).Select(e => e.Sector).ToArray());
        Assert.Empty(Copies(a));
        AssertBytes(Pattern(8, 1), Leg(b, Region, 8), "b has the first leg's version");
    }

    [Fact]
    public void Legs_may_be_a_file_and_another_mapped_device()
    {
        using var dir = new DmActors.Tests.Support.TempDir();
        File.WriteAllBytes(dir["leg.img"], new byte[1024 * 512]);
        Mem("below", 2048);
        Create("lin", "0 1024 linear below 1024");
        var dev = Create("m", $"0 1024 mirror core 2 256 nosync 2 {dir["leg.img"]} 0 lin 0");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 100, Pattern(16, 5), BioFlags.Fua));
        AssertBytes(Pattern(16, 5), ReadBack(Open("lin"), 100, 16), "the mapped-device leg");
        Assert.EndsWith(" 4/4 1 AA 1 core", Status("m"));
        Assert.Equal(BioStatus.Ok, Flush(dev));
        Ok(new Dm.Close("m"));
        Ok(new Dm.Remove("m"));
        var back = new byte[16 * 512];
        using (var f = File.OpenRead(dir["leg.img"])) { f.Position = 100 * 512; f.ReadExactly(back); }
        AssertBytes(Pattern(16, 5), back, "the file leg");
    }

    [Theory]
    [InlineData("core", "Insufficient mirror log arguments")]
    [InlineData("core x 256 2 a 0 b 0", "Invalid mirror log argument count")]
    [InlineData("core 9 256 2 a 0", "Insufficient mirror log arguments")]
    [InlineData("core 3 256 sync x 2 a 0 b 0", "Error creating mirror dirty log: wrong number of arguments to dirty region log")]
    [InlineData("core 1 100 2 a 0 b 0", "Error creating mirror dirty log: invalid region size 100")]
    [InlineData("core 1 4096 2 a 0 b 0", "Error creating mirror dirty log: invalid region size 4096")]
    [InlineData("core 2 256 maybe 2 a 0 b 0", "Error creating mirror dirty log: unrecognised sync argument to dirty region log: maybe")]
    [InlineData("disk 1 256 2 a 0 b 0", "Error creating mirror dirty log: wrong number of arguments to disk dirty region log")]
    [InlineData("disk 2 nosuch 256 2 a 0 b 0", "Error creating mirror dirty log: Device lookup failed: nosuch")]
    [InlineData("ram 1 256 2 a 0 b 0", "Error creating mirror dirty log: unknown dirty log type ram")]
    [InlineData("core 1 256 1 a 0", "Invalid number of mirrors")]
    [InlineData("core 1 256 10 a 0", "Invalid number of mirrors")]
    [InlineData("core 1 256 2 a 0", "Too few mirror arguments")]
    [InlineData("core 1 256 2 a x b 0", "Invalid offset")]
    [InlineData("core 1 256 2 a 0 nosuch 0", "Device lookup failure: nosuch")]
    [InlineData("core 1 256 2 a 0 b 0 x", "Invalid number of features")]
    [InlineData("core 1 256 2 a 0 b 0 2 handle_errors", "Not enough arguments to support feature count")]
    [InlineData("core 1 256 2 a 0 b 0 1 fast", "Unrecognised feature requested")]
    [InlineData("core 1 256 2 a 0 b 0 1 keep_log", "keep_log feature requires the handle_errors feature")]
    [InlineData("core 1 256 2 a 0 b 0 1 handle_errors extra", "Too many mirror arguments")]
    [InlineData("core 1 256 2 a 0 b 0 2 min_legs 3", "Invalid min_legs 3: expect 1 to 2")]
    [InlineData("disk 2 tiny 256 2 a 0 b 0", "Error creating mirror dirty log: log device 7:")]
    public void Constructor_errors_are_dms(string args, string error)
    {
        Mem("a", 1024); Mem("b", 1024); Mem("tiny", 4);
        Assert.StartsWith($"mirror: {error}", LoadError($"0 1024 mirror {args}"));
    }

    [Fact]
    public void The_table_and_status_keep_features_and_sync_arguments()
    {
        var (a, b, c, log) = (Mem("a", 2048), Mem("b", 2048), Mem("c", 2048), Mem("log", 64));
        Create("m", "0 1024 mirror disk 2 log 256 3 a 0 b 512 c 1024 2 handle_errors keep_log");
        Assert.Equal($"0 1024 mirror disk 2 {log.DevNo} 256 3 {a.DevNo} 0 {b.DevNo} 512 {c.DevNo} 1024 2 handle_errors keep_log", TableOf("m"));
        Eventually(() => Status("m").Contains(" 4/4 "), "the initial resync");
        Assert.Equal($"0 1024 mirror 3 {a.DevNo} {b.DevNo} {c.DevNo} 4/4 1 AAA 3 disk {log.DevNo} A", Status("m"));
    }
}
