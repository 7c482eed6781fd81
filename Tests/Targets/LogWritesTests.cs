using Akka.Actor;
using DmActors;
using DmActors.Targets;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>log-writes (Documentation/admin-guide/device-mapper/log-writes.rst): what is logged when, the on-disk format, marks, replay.</summary>
public sealed class LogWritesTests : TargetHarness
{
    /// <summary>A device whose flushes reach log-writes whatever the disks' caches (modern flush path).</summary>
    private IActorRef LogDevice(string table = "0 1024 log-writes d0 l0") => Create("lw", table, BarrierMode.Flush);

    private static LogReader Reader(MemoryDisk log) => new(new MemoryDiskStore(log));

    private static string Describe(LogEntry e) =>
        e.Has(LogFlags.Mark) ? $"MARK:{e.Mark}" : e.Has(LogFlags.Flush) ? "FLUSH" : $"{(e.Has(LogFlags.Fua) ? "FUA" : e.Has(LogFlags.Discard) ? "D" : "W")}{e.Sector}+{e.NrSectors}";

    private static string Entries(MemoryDisk log) => string.Join(",", Reader(log).Entries().Select(Describe));

    [Fact]
    public void F1_writes_wait_for_a_flush_then_flush_and_mark_entries_follow_and_removal_ends_the_log()
    {
        Mem("d0", 1024);
        var l0 = Mem("l0", 1024);
        var dev = LogDevice();
        Assert.Equal("0 1024 log-writes 7:0 7:1", TableOf("lw"));
        Assert.Equal("0 1024 log-writes 0 0", Status("lw"));

        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 1)));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 16, Pattern(8, 2)));
        Assert.Equal("0 1024 log-writes 0 0", Status("lw"));                // held on the unflushed list
        Assert.Equal(BioStatus.Ok, Flush(dev));
        Assert.Equal("0 1024 log-writes 3 19", Status("lw"));               // W1(1+8) W2(1+8) FLUSH(1) after the super

        Assert.Empty(Message("lw", "mark", "mkfs"));
        Assert.Equal("0 1024 log-writes 4 20", Status("lw"));
        var log = Reader(l0);
        Assert.Equal(4UL, log.NrEntries);                                   // the mark rewrote the super
        Assert.Equal(512U, log.SectorSize);
        Assert.Equal("W0+8,W16+8,FLUSH,MARK:mkfs", Entries(l0));
        AssertBytes(Pattern(8, 2), log.Data(log.Entries().ElementAt(1)), "logged data of W2");

        Assert.Equal(BioStatus.Ok, WriteAt(dev, 32, Pattern(1, 3)));        // unflushed at removal
        Ok(new Dm.Close("lw"));
        Ok(new Dm.Remove("lw"));
        Eventually(() => Reader(l0).NrEntries == 6, "the end mark in the super");
        Assert.Equal("W0+8,W16+8,FLUSH,MARK:mkfs,W32+1,MARK:dm-log-writes-end", Entries(l0));
    }

    [Fact]
    public void F2_entries_follow_completion_and_flush_order_W3_W2_FLUSH_then_W1()
    {
        var d0 = Gate("d0", 1024);
        var l0 = Mem("l0", 1024);
        var dev = LogDevice();
        d0.Hold = b => b.Op is BioOp.Write or BioOp.Flush;
        var p = CreateTestProbe();
        Bio W(int n) => Write(n * 100, Pattern(1, (byte)n), p);
        var (w1, w2, w3) = (W(1), W(2), W(3));
        dev.Tell(w1); dev.Tell(w2); dev.Tell(w3);
        Eventually(() => d0.HeldCount == 3, "three writes at the disk");

        d0.Release(b => b.Sector == 300);
        Assert.Same(w3, p.ExpectMsg<BioDone>(Wait).Bio);
        d0.Release(b => b.Sector == 200);
        Assert.Same(w2, p.ExpectMsg<BioDone>(Wait).Bio);

        var flush = Bio.Flush(p.Ref);
        dev.Tell(flush);                                                    // takes [W3, W2], not W1
        Eventually(() => d0.HeldCount == 2, "the flush at the disk");
        d0.Release(b => b.Sector == 100);
        Assert.Same(w1, p.ExpectMsg<BioDone>(Wait).Bio);
        d0.Release();
        Assert.Same(flush, p.ExpectMsg<BioDone>(Wait).Bio);
        Assert.Equal("0 1024 log-writes 3 5", Status("lw"));

        d0.Hold = _ => false;
        Message("lw", "mark", "one");
        Assert.Equal("W300+1,W200+1,FLUSH,MARK:one", Entries(l0));
        Assert.Equal(BioStatus.Ok, Flush(dev));
        Message("lw", "mark", "two");
        Assert.Equal("W300+1,W200+1,FLUSH,MARK:one,W100+1,FLUSH,MARK:two", Entries(l0));
    }

    [Fact]
    public void A_FUA_write_is_logged_at_its_completion_and_rewrites_the_super_discards_wait_like_writes()
    {
        Mem("d0", 1024);
        var l0 = Mem("l0", 1024);
        var dev = LogDevice();
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(2, 1)));
        Assert.Equal(BioStatus.Ok, Discard(dev, 64, 16));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(1, 2), BioFlags.Fua));
        Assert.Equal("0 1024 log-writes 1 2", Status("lw"));
        Assert.Equal(1UL, Reader(l0).NrEntries);
        Assert.Equal("FUA8+1", Entries(l0));
        Assert.Equal(BioStatus.Ok, Flush(dev));
        Message("lw", "mark", "m");
        Assert.Equal("FUA8+1,W0+2,D64+16,FLUSH,MARK:m", Entries(l0));          // a discard takes one block, no data
        Assert.Equal("0 1024 log-writes 5 8", Status("lw"));
    }

    [Fact]
    public void A_seed_mode_barrier_shows_in_the_log_as_flush_write_flush()
    {
        Gate("d0", 1024);                                                   // a cache below, so barriers flush
        var l0 = Mem("l0", 1024);
        var dev = Create("lw", "0 1024 log-writes d0 l0", BarrierMode.Ordered);
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(1, 1)));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(1, 2), BioFlags.Barrier));
        Message("lw", "mark", "m");
        Assert.Equal("W0+1,FLUSH,W8+1,FLUSH,MARK:m", Entries(l0));
    }

    [Fact]
    public void A_preflush_FUA_write_logs_the_flush_then_itself_at_once()
    {
        var d0 = Mem("d0", 1024);
        var l0 = Mem("l0", 1024);
        var dev = LogDevice();
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(1, 1)));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(1, 2), BioFlags.Preflush | BioFlags.Fua));
        Assert.Equal("W0+1,FLUSH,FUA8+1", Entries(l0));
        var back = new byte[512];
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 8, back));                // reads pass through
        AssertBytes(Pattern(1, 2), back, "read back");
        AssertBytes(Pattern(1, 2), Contents(d0, 8, 1), "data device");
    }

    [Fact]
    public void F6_a_full_log_disables_logging_and_io_continues()
    {
        var d0 = Mem("d0", 1024);
        Mem("l0", 12);
        var dev = LogDevice();
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 1)));
        Assert.Equal(BioStatus.Ok, Flush(dev));
        Assert.Equal("0 1024 log-writes 2 10", Status("lw"));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 2)));
        Assert.Equal(BioStatus.Ok, Flush(dev));
        Assert.Equal("0 1024 log-writes 2 19 logging_disabled", Status("lw"));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 16, Pattern(8, 3)));
        AssertBytes(Pattern(8, 3), Contents(d0, 16, 8), "data device after logging stopped");
    }

    [Fact]
    public void F7_mark_messages_take_exactly_one_label()
    {
        Mem("d0", 1024);
        Mem("l0", 1024);
        LogDevice();
        Assert.Equal("Invalid log-writes message arguments, expect 2 arguments, got 3", MessageError("lw", "mark", "a", "b"));
        Assert.Equal("Invalid log-writes message arguments, expect 2 arguments, got 1", MessageError("lw", "mark"));
        Assert.Equal("Unrecognised log writes target message received: note", MessageError("lw", "note", "x"));
        Assert.Equal("0 1024 log-writes 0 0", Status("lw"));
    }

    [Fact]
    public void A_long_mark_is_cut_to_fit_its_entry_block()
    {
        Mem("d0", 1024);
        var l0 = Mem("l0", 1024);
        LogDevice();
        Message("lw", "mark", new string('x', 600));
        Assert.Equal(new string('x', 512 - 32 - 1), Reader(l0).Entries().Single().Mark);
    }

    [Theory]
    [InlineData("d0", "Invalid argument count")]
    [InlineData("nosuch l0", "Device lookup failed: nosuch")]
    [InlineData("d0 nosuch", "Log device lookup failed: nosuch")]
    public void Constructor_errors_use_dm_text(string args, string error)
    {
        Mem("d0", 1024);
        Mem("l0", 1024);
        Assert.Equal($"log-writes: {error}", LoadError($"0 1024 log-writes {args}"));
        Assert.Equal(0, Disks.Find("d0")!.OpenCount);
        Assert.Equal(0, Disks.Find("l0")!.OpenCount);
    }

    [Fact]
    public void F3_replay_to_each_mark_reproduces_the_device_as_it_was_at_that_mark()
    {
        var d0 = Mem("d0", 256);
        var l0 = Mem("l0", 2048);
        var dev = LogDevice("0 256 log-writes d0 l0");
        var atMark = new Dictionary<string, string>();
        void Mark(string name)
        {
            Assert.Equal(BioStatus.Ok, Flush(dev));
            Message("lw", "mark", name);
            atMark[name] = Hash(d0);
        }

        WriteAt(dev, 0, Pattern(16, 1));
        WriteAt(dev, 100, Pattern(8, 2));
        Mark("one");
        WriteAt(dev, 4, Pattern(4, 3));                                     // overwrite part of the first write
        Discard(dev, 100, 8);
        Mark("two");
        WriteAt(dev, 200, Pattern(8, 4), BioFlags.Fua);
        Mark("three");
        Assert.Equal(3, atMark.Values.Distinct().Count());

        foreach (var (mark, hash) in atMark)
        {
            var replay = new MemoryDisk("r-" + mark, 256);
            var r = LogReplay.Replay(Reader(l0), new MemoryDiskStore(replay), new ReplayLimits(EndMark: mark));
            Assert.True(r.Stopped);
            Assert.Equal(mark, r.Last!.Mark);
            Assert.Equal(hash, Hash(replay));
        }
    }

    [Fact]
    public void F4_replay_to_every_FUA_point_matches_the_device_after_that_write()
    {
        var d0 = Mem("d0", 256);
        var l0 = Mem("l0", 2048);
        var dev = LogDevice("0 256 log-writes d0 l0");
        var afterFua = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal(BioStatus.Ok, WriteAt(dev, i * 24 % 64, Pattern(8 + i, (byte)(10 * i + 1)), BioFlags.Fua));
            afterFua.Add(Hash(d0));
        }

        var log = Reader(l0);
        var points = LogReplay.Find(log, LogFlags.Fua);
        Assert.Equal(new[] { "0@10", "1@20", "2@31", "3@43" }, points.Select(e => e.FindText));
        for (var i = 0; i < points.Count; i++)
        {
            var replay = new MemoryDisk("r", 256);
            LogReplay.Replay(log, new MemoryDiskStore(replay), new ReplayLimits(Limit: points[i].Index + 1));
            Assert.Equal(afterFua[i], Hash(replay));
        }
        var first = new MemoryDisk("n", 256);
        var r = LogReplay.Replay(log, new MemoryDiskStore(first), new ReplayLimits(NextFua: true));
        Assert.Equal((1, 0L), (r.Replayed, r.Last!.Index));
        Assert.Equal(afterFua[0], Hash(first));
    }

    [Fact]
    public void Replay_log_command_replays_files_to_a_mark_and_finds_fua_points()
    {
        var d0 = Mem("d0", 128);
        var l0 = Mem("l0", 512);
        var dev = LogDevice("0 128 log-writes d0 l0");
        WriteAt(dev, 0, Pattern(8, 5));
        Flush(dev);
        Message("lw", "mark", "here");
        var expected = Hash(d0);
        WriteAt(dev, 0, Pattern(8, 6), BioFlags.Fua);

        using var dir = new TempDir("dmactors-replay-");
        var logPath = dir["log"];
        var devPath = dir["dev"];
        File.WriteAllBytes(logPath, Contents(l0, 0, 512));
        File.WriteAllBytes(devPath, new byte[128 * 512]);
        var (code, stdout, stderr) = ReplayLog("--log", logPath, "--replay", devPath, "--end-mark", "here");
        Assert.Equal((0, ""), (code, stderr));
        Assert.Equal("replayed 3 entries, last entry 2 (Mark)", stdout.Trim()); // W, FLUSH, MARK; not the FUA after it
        var replayed = new MemoryDisk("r", 128);
        replayed.WriteAt(0, File.ReadAllBytes(devPath));
        Assert.Equal(expected, Hash(replayed));

        Assert.Matches(@"^3@\d+$", ReplayLog("--log", logPath, "--find", "fua").Stdout.Trim());
        Assert.Equal((1, "replay-log: mark 'nope' not found; replayed the whole log"),
            (ReplayLog("--log", logPath, "--replay", devPath, "--end-mark", "nope") is var bad ? (bad.Code, bad.Stderr.Trim()) : default));
        Assert.Equal("replay-log: unknown option '--bogus'", ReplayLog("--bogus").Stderr.Trim());

        // --check: replay to each FUA point in turn and run a check on the device after each.
        var check = ReplayLog("--log", logPath, "--replay", devPath, "--check", "fua", "--fsck", "test -s \"$REPLAY_DEV\"");
        Assert.Equal(0, check.Code);
        Assert.Matches(@"^entry 3@\d+: check passed\n1 point\(s\), 0 failed$", check.Stdout.Trim());
        var failing = ReplayLog("--log", logPath, "--replay", devPath, "--check", "fua", "--fsck", "false");
        Assert.Equal(1, failing.Code);
        Assert.Contains("CHECK FAILED", failing.Stdout);
    }

    [Fact]
    public void Replay_log_check_over_a_log_without_such_points_fails_and_names_what_the_log_has()
    {
        Mem("d0", 128);
        var l0 = Mem("l0", 512);
        var dev = LogDevice("0 128 log-writes d0 l0");
        WriteAt(dev, 0, Pattern(8, 1));
        Flush(dev);
        WriteAt(dev, 8, Pattern(8, 2));
        Flush(dev);
        Message("lw", "mark", "done");

        using var dir = new TempDir("dmactors-replay-");
        var logPath = dir["log"];
        var devPath = dir["dev"];
        File.WriteAllBytes(logPath, Contents(l0, 0, 512));
        File.WriteAllBytes(devPath, new byte[128 * 512]);
        var fua = ReplayLog("--log", logPath, "--replay", devPath, "--check", "fua");
        Assert.Equal((1, "", "replay-log: no FUA entries; the log has 2 flush points and 1 mark: try --check flush"),
            (fua.Code, fua.Stdout, fua.Stderr.Trim()));
        Assert.Equal(0, ReplayLog("--log", logPath, "--replay", devPath, "--check", "flush").Code);

        // Plain writes only: nothing of any kind to check.
        var plain = dir["plain"];
        var blocks = new byte[3 * 512];
        LogFormat.WriteSuper(blocks, 1, 512);
        LogFormat.WriteEntry(blocks.AsSpan(512, 512), 0, 1, LogFlags.None, []);
        File.WriteAllBytes(plain, blocks);
        var mark = ReplayLog("--log", plain, "--replay", devPath, "--check", "mark");
        Assert.Equal((1, "replay-log: no marks; the log has no flush points or FUA entries either: nothing to check"),
            (mark.Code, mark.Stderr.Trim()));
    }

    private static (int Code, string Stdout, string Stderr) ReplayLog(params string[] args)
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var code = DmActors.Host.ReplayLogCommand.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public void A_log_without_a_super_is_refused()
    {
        var empty = new MemoryDisk("e", 16);
        Assert.Equal("Magic doesn't match", Assert.Throws<InvalidDataException>(() => Reader(empty)).Message);
    }

    [Fact]
    public void A_corrupt_entry_whose_offsets_would_wrap_is_malformed_not_replayed_at_a_wrapped_offset()
    {
        var log = new MemoryDisk("bad", 8);
        var blocks = new byte[3 * 512];
        LogFormat.WriteSuper(blocks, 2, 512);
        LogFormat.WriteEntry(blocks.AsSpan(512, 512), 1UL << 55, 1, LogFlags.None, []);   // sector * 512 wraps past 2^64
        log.WriteAt(0, blocks);
        var e = Assert.Throws<InvalidDataException>(() => Reader(log).Entries().ToList());
        Assert.Contains("Malformed entry @1: sector 36028797018963968", e.Message);

        LogFormat.WriteEntry(blocks.AsSpan(512, 512), 0, 100, LogFlags.None, []);        // more data than the log holds
        log.WriteAt(0, blocks);
        e = Assert.Throws<InvalidDataException>(() => Reader(log).Entries().ToList());
        Assert.Contains("run past the end of the log (8 blocks)", e.Message);
    }
}
