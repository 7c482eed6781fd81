using Akka.Actor;
using Akka.TestKit;
using DmActors;
using DmActors.Tests.Core;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>
/// Issue 4: every device fact is an event; a restarted manager comes back with exactly what was acknowledged. Run
/// on each journal a host can have (the subclasses below): in memory, SQLite, PostgreSQL.
/// </summary>
public abstract class JournalTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20); // the first persist in a process is slow
    private readonly Engine _engine;
    private readonly TestJournal? _journal;
    private int _incarnation;

    protected JournalTests(TestJournal journal) : this(journal, journal.Hocon) { }

    protected JournalTests(TestJournal? journal, string hocon) : base(Engine.AkkaConfig(hocon + "\nakka.persistence.journal.sql.recovery-event-timeout = 30s"))
    {
        _journal = journal;
        _engine = Engine.On(Sys, new DeviceManager.Options(PersistenceId: "host"));
        _engine.Disks.AddMemory("d0", 4096);
        _engine.Disks.AddMemory("d1", 4096);
    }

    /// <summary>The next incarnation of the manager over the same journal (the previous one stopped).</summary>
    private IActorRef StartManager(DiskRegistry? disks = null) => _engine.StartManager(disks: disks, name: $"devices{_incarnation++}");

    private void Stop(IActorRef manager)
    {
        Watch(manager);
        Sys.Stop(manager);
        ExpectTerminated(manager, Wait);
    }

    private static object Ask(IActorRef manager, object message) => manager.Command(message);
    private static Dm.Done Ok(IActorRef manager, object message) => manager.Ok(message);
    private static Dm.DeviceInfo Info(IActorRef manager, string name) => manager.Info(name);

    protected override void AfterAll()
    {
        base.AfterAll();
        _engine.Dispose();
        _journal?.Dispose();
    }

    private IReadOnlyList<Dm.DeviceEntry> Devices(IActorRef manager) => Assert.IsType<Dm.DeviceList>(Ask(manager, Dm.List.Instance)).Devices;

    private IReadOnlyList<string> History(IActorRef manager, string name) =>
        Assert.IsType<Dm.HistoryList>(Ask(manager, new Dm.History(name))).Entries.Select(e => e.What).ToList();

    [Fact]
    public void A_restarted_manager_brings_back_devices_tables_and_states()
    {
        var m = StartManager();
        Ok(m, new Dm.Create("lower", "0 4096 linear d0 0"));
        Ok(m, new Dm.Create("upper", "0 2048 linear lower 1024", Mode: BarrierMode.Flush));
        Ok(m, new Dm.Create("bare"));
        Ok(m, new Dm.Create("ro", "0 100 linear d1 0", ReadOnly: true));
        Ok(m, new Dm.Create("susp", "0 100 linear d1 100"));
        Ok(m, new Dm.Load("susp", "0 200 linear d1 200"));
        Ok(m, new Dm.Suspend("susp"));
        Ok(m, new Dm.Create("old", "0 10 zero"));
        Ok(m, new Dm.Rename("old", "new"));
        Ok(m, new Dm.Rename("new", "UUID-7", SetUuid: true));
        Ok(m, new Dm.Create("gone", "0 10 error"));
        Ok(m, new Dm.Remove("gone"));

        var upper = ((Dm.Opened)Ask(m, new Dm.Open("upper"))).Device;
        var probe = CreateTestProbe();
        upper.Tell(Bio.Write(8, DeviceHarness.Pattern(8, 3), probe.Ref));
        Assert.Equal(BioStatus.Ok, probe.ExpectMsg<BioDone>(Wait).Status);
        var before = Snapshot(m);
        Stop(m);

        var m2 = StartManager();
        Assert.Equal(before, Snapshot(m2));
        Assert.Equal(new[] { ("bare", 2), ("lower", 0), ("new", 5), ("ro", 3), ("susp", 4), ("upper", 1) },
            Devices(m2).Select(d => (d.Name, d.Minor)));
        var upper2 = ((Dm.Opened)Ask(m2, new Dm.Open("upper"))).Device;
        var read = new Bio(BioOp.Read, 8, 8, new byte[8 * 512], probe.Ref);
        upper2.Tell(read);
        Assert.Equal(BioStatus.Ok, probe.ExpectMsg<BioDone>(Wait).Status);
        Assert.Equal(DeviceHarness.Pattern(8, 3), read.Data.ToArray());
        var history = History(m2, "susp");
        Assert.Equal(5, history.Count);
        Assert.EndsWith("created (minor 4, ordered barriers)", history[0]);
        Assert.EndsWith("table loaded into the inactive slot: 0 100 linear d1 100", history[1]);
        Assert.EndsWith("resumed", history[2]);
        Assert.EndsWith("table loaded into the inactive slot: 0 200 linear d1 200", history[3]);
        Assert.EndsWith("suspended", history[4]);
        // A new device after the restart does not reuse a recorded minor.
        Ok(m2, new Dm.Create("later"));
        Assert.Equal(7, Info(m2, "later").Minor);
    }

    [Fact]
    public void Recovery_from_a_snapshot_and_the_events_after_it()
    {
        var m = StartManager();
        Ok(m, new Dm.Create("x", "0 100 linear d0 0"));
        for (var i = 0; i < DeviceJournal.SnapshotEvery / 2 + 10; i++)
        {
            Ok(m, new Dm.Load("x", $"0 {100 + i} linear d0 0"));
            Ok(m, new Dm.Resume("x"));
        }
        var before = Snapshot(m);
        Stop(m);
        var m2 = StartManager();
        Assert.Equal(before, Snapshot(m2));
        Assert.Equal(100 + DeviceJournal.SnapshotEvery / 2 + 9, Info(m2, "x").Sectors);
    }

    [Fact]
    public void A_device_whose_disk_is_gone_comes_back_in_an_error_state()
    {
        var m = StartManager();
        Ok(m, new Dm.Create("x", "0 100 linear d1 0"));
        Ok(m, new Dm.Create("y", "0 100 linear d0 0"));
        Stop(m);
        var fewer = new DiskRegistry();
        fewer.AddMemory("d0", 4096);
        var m2 = StartManager(fewer);
        var info = Info(m2, "x");
        Assert.False(info.LiveTable);
        Assert.Equal("live table could not be rebuilt: linear: Device lookup failed: d1", info.ErrorState);
        Assert.True(Info(m2, "y").LiveTable);
    }

    [Fact]
    public void A_device_stacked_on_one_whose_disk_is_gone_names_that_device()
    {
        var m = StartManager();
        Ok(m, new Dm.Create("x", "0 100 linear d1 0"));
        Ok(m, new Dm.Create("z", "0 50 linear x 10"));
        Stop(m);
        var fewer = new DiskRegistry();
        fewer.AddMemory("d0", 4096);
        var m2 = StartManager(fewer);
        var info = Info(m2, "z");
        Assert.False(info.LiveTable);
        Assert.Equal("live table could not be rebuilt: linear: lower device 'x' has no live table (linear: Device lookup failed: d1)", info.ErrorState);
        // So does a new table on it.
        var failed = Assert.IsType<Dm.Failed>(Ask(m2, new Dm.Create("w", "0 10 linear x 0")));
        Assert.Equal("linear: lower device 'x' has no live table (linear: Device lookup failed: d1)", failed.Reason);
        // A table loaded and resumed replaces the error.
        Ok(m2, new Dm.Load("x", "0 100 linear d0 0"));
        Ok(m2, new Dm.Resume("x"));
        Assert.Null(Info(m2, "x").ErrorState);
        Ok(m2, new Dm.Create("w", "0 10 linear x 0"));
    }

    [Fact]
    public void Configuration_devices_are_followed_through_renames_and_removes_and_survive_a_snapshot()
    {
        var m = StartManager();
        Ok(m, new DeviceManager.CreateConfigDevice(new Dm.Create("c", "0 10 zero")));
        Ok(m, new Dm.Create("mine", "0 10 zero"));
        Ok(m, new DeviceManager.AdoptConfigDevice("mine"));
        Ok(m, new Dm.Rename("c", "c2"));
        for (var i = 0; i < DeviceJournal.SnapshotEvery / 2; i++)
        {
            Ok(m, new Dm.Load("mine", $"0 {10 + i} zero"));
            Ok(m, new Dm.Resume("mine"));
        }
        Stop(m);

        var m2 = StartManager();
        var recorded = (DeviceManager.Recorded)Ask(m2, new DeviceManager.GetRecorded());
        Assert.Equal(new ConfigDeviceRecord("0 10 zero", false, BarrierMode.Ordered, "c2"), recorded.ConfigDevices.ByName["c"]);
        Assert.Equal(new ConfigDeviceRecord("0 10 zero", false, BarrierMode.Ordered, "mine"), recorded.ConfigDevices.ByName["mine"]);
        Ok(m2, new Dm.Remove("c2"));
        recorded = (DeviceManager.Recorded)Ask(m2, new DeviceManager.GetRecorded());
        Assert.Null(recorded.ConfigDevices.ByName["c"].Current);
        Assert.EndsWith("recorded as a configuration device (a restart leaves it as recorded)", History(m2, "mine")[3]); // after created, loaded, resumed
    }

    /// <summary>What a restart must reproduce: every device's info (minus open count) and both table slots.</summary>
    private string Snapshot(IActorRef m)
    {
        var names = Devices(m).Select(d => d.Name).ToList();
        return string.Join("\n", names.Select(n =>
        {
            var i = Info(m, n) with { OpenCount = 0, EventNr = 0 };
            return $"{i} | {string.Join(";", Ok(m, new Dm.GetTable(n)).Lines)} | {string.Join(";", Ok(m, new Dm.GetTable(n, true)).Lines)}";
        }));
    }
}

public sealed class InMemoryJournalTests() : JournalTests(null, """
    akka.persistence.journal.plugin = "akka.persistence.journal.inmem"
    akka.persistence.snapshot-store.plugin = "akka.persistence.snapshot-store.inmem"
    """);

public sealed class SqliteJournalTests() : JournalTests(TestJournal.Create("sqlite"));

public sealed class PostgresJournalTests() : JournalTests(TestJournal.Create("postgres"));
