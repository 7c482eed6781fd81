using System.Collections.Concurrent;
using Akka.Actor;
using DmActors;
using DmActors.Tests.Core;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// mirror, as a volume of a cluster needs it: a core log's leg failures in the device's journal
/// (<see cref="ITargetRecords"/>) before the write that saw them is acknowledged, and never a resync source after a
/// restart; reads from a leg on this node before one on another, spread over the legs. 1024 sectors in regions of 256.
/// </summary>
public sealed class MirrorRecordsTests : TargetHarness
{
    private const int Region = 256;
    private readonly HeldRecords _records;

    public MirrorRecordsTests() : this(new HeldRecords()) { }
    private MirrorRecordsTests(HeldRecords records) : base(records) => _records = records;

    /// <summary>A journal whose writes can be held, to see what waits for them.</summary>
    private sealed class HeldRecords : ITargetRecords
    {
        public readonly ConcurrentDictionary<string, string> Values = new();
        private readonly List<Action> _held = new();
        public volatile bool Hold;
        public int HeldCount { get { lock (_held) return _held.Count; } }
        public string? Get(string key) => Values.GetValueOrDefault(key);

        public void Put(string key, string value, Action<bool> done)
        {
            void Write() { Values[key] = value; done(true); }
            lock (_held) if (Hold) { _held.Add(Write); return; }
            Write();
        }

        public void Release()
        {
            List<Action> run;
            lock (_held) { run = _held.ToList(); _held.Clear(); Hold = false; }
            foreach (var w in run) w();
        }
    }

    private static string Table(string log, params IBlockDevice[] legs) =>
        $"0 1024 mirror {log} {legs.Length} {string.Join(' ', legs.Select(l => $"{l.Name} 0"))}";

    [Fact]
    public void A_core_log_leg_failure_is_in_the_journal_before_the_write_that_saw_it_is_acknowledged_and_a_restart_never_reads_that_leg()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        var table = Table("core 2 256 nosync", a, b);
        var dev = Create("m", table);
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 1)));
        Assert.Empty(_records.Values);                                           // nothing to say while the legs agree

        a.Fail = bio => bio.Op == BioOp.Write ? BioStatus.IoError : null;
        _records.Hold = true;
        var p = CreateTestProbe();
        dev.Tell(Write(2 * Region, Pattern(8, 2), p));
        Eventually(() => _records.HeldCount == 1, "the failure's journal write");
        Settle(dev);
        Assert.False(p.HasMessages, "acknowledged before the leg failure was in the journal");
        _records.Release();
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        Assert.Equal("a 0", _records.Values.Single(v => v.Key == "mirror a 0,b 0").Value);

        // A restart (the state in memory is gone; nosync would take the legs as equal): the journal says a may
        // lack writes, so a is never read, and it is resynced whole from b.
        Ok(new Dm.Close("m"));
        Ok(new Dm.Remove("m"));
        a.Fail = _ => null;
        a.Hold = bio => bio.Op == BioOp.Write && bio.Sectors == Region;          // its resync waits
        dev = Create("m", table);
        Eventually(() => a.HeldCount == 1, "the first copy at a");
        for (var i = 0; i < 4; i++) AssertBytes(Pattern(8, 2), ReadBack(dev, 2 * Region, 8), $"read {i} after the restart");
        Assert.Empty(Events(e => e.Disk == "a" && e.Op == BioOp.Read));
        a.Hold = _ => false;
        a.Release();
        Eventually(() => Status("m").Contains(" 4/4 "), "a resynced from b");
        AssertBytes(Pattern(8, 2), Contents(a.Memory, 2 * Region, 8), "a got the write it missed");
        Eventually(() => _records.Values["mirror a 0,b 0"] == "", "the journal says every leg has every write again");
    }

    [Fact]
    public void A_leg_not_yet_resynced_is_in_the_journal_so_a_restart_never_reads_it()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        a.Memory.WriteAt(Region * 512, Pattern(8, 7));
        b.Hold = bio => bio.Op == BioOp.Write && bio.Sectors == Region;          // the initial resync waits at b
        var table = Table("core 1 256", a, b);
        var dev = Create("m", table);
        Eventually(() => b.HeldCount == 1, "the first copy at b");
        Assert.Equal("b 0", _records.Values["mirror a 0,b 0"]);                 // b lacks writes until its resync ends
        Assert.Empty(Message("m", "resync_rate", "1"));                         // the next region in minutes
        b.Hold = _ => false;
        b.Release();
        Eventually(() => Status("m").Contains(" 1/4 "), "region 0 copied");
        Ok(new Dm.Close("m"));
        Ok(new Dm.Remove("m"));

        // A restart with nosync (the legs taken as equal, were it not for the journal): b is never read.
        dev = Create("m", Table("core 2 256 nosync", a, b));
        for (var i = 0; i < 4; i++) AssertBytes(Pattern(8, 7), ReadBack(dev, Region, 8), $"read {i} after the restart");
        Eventually(() => Status("m").Contains(" 4/4 "), "b resynced from a");
        Eventually(() => _records.Values["mirror a 0,b 0"] == "", "the journal says b has every write");
    }

    [Fact]
    public void The_first_flush_of_a_new_table_reaches_every_leg_with_nothing_written_even_one_being_resynced()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        b.Hold = bio => bio.Op == BioOp.Write && bio.Sectors == Region;          // b is being resynced
        var dev = Create("m", Table("core 1 256", a, b));
        Eventually(() => b.HeldCount == 1, "the first copy at b");
        var before = Events(e => e.Start && e.Op == BioOp.Flush).Count;
        Assert.Equal(BioStatus.Ok, Flush(dev));                                  // what a previous owner wrote may sit in a cache
        foreach (var d in new[] { "a", "b" }) Assert.NotEmpty(Events(e => e.Disk == d && e.Start && e.Op == BioOp.Flush));
        Assert.True(Events(e => e.Start && e.Op == BioOp.Flush).Count >= before + 2);
        b.Hold = _ => false;
        b.Release();
    }

    [Fact]
    public void Reads_prefer_a_local_in_sync_leg_and_spread_over_the_others()
    {
        var (a, b, c) = (Gate("a", 1024), Gate("b", 1024), Gate("c", 1024));
        a.Remote = true;                                                        // first in the table, on another node
        var dev = Create("m", Table("core 2 256 nosync", a, b, c));
        for (var i = 0; i < 8; i++) Assert.Equal(BioStatus.Ok, ReadInto(dev, 8 * i, new byte[4096]));
        int Reads(GateDisk d) => Events(e => e.Disk == d.Name && e.Start && e.Op == BioOp.Read).Count;
        Assert.Equal(0, Reads(a));
        Assert.True(Reads(b) >= 2 && Reads(c) >= 2, $"reads not spread: b {Reads(b)}, c {Reads(c)}");

        // The local legs gone: the remote one serves.
        Assert.Empty(Message("m", "fail_leg", b.Name));
        Assert.Empty(Message("m", "fail_leg", c.Name));
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 0, new byte[4096]));
        Assert.Equal(1, Reads(a));
    }
}
