using Akka.Actor;
using Akka.TestKit;
using DmActors;
using DmActors.Tests.Core;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>Issue 4: every device fact is an event; a restarted manager comes back with exactly what was acknowledged.</summary>
public sealed class JournalTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20); // the first persist in a process is slow
    private readonly DiskRegistry _disks = new();
    private int _incarnation;

    public JournalTests() : base(Akka.Configuration.ConfigurationFactory.ParseString(@"
        akka.loglevel = WARNING
        akka.persistence.journal.plugin = ""akka.persistence.journal.inmem""
        akka.persistence.snapshot-store.plugin = ""akka.persistence.snapshot-store.inmem""").WithFallback(DmActors.Host.Configuration.HostConfig.IoDispatcherSection()))
    {
        _disks.AddMemory("d0", 4096);
        _disks.AddMemory("d1", 4096);
    }

    private IActorRef StartManager(DiskRegistry? disks = null) =>
        Sys.ActorOf(DeviceManager.Props(disks ?? _disks, new DeviceManager.Options(PersistenceId: "host")), $"devices{_incarnation++}");

    private void Stop(IActorRef manager)
    {
        Watch(manager);
        Sys.Stop(manager);
        ExpectTerminated(manager, Wait);
    }

    private object Ask(IActorRef manager, object message)
    {
        var probe = CreateTestProbe();
        manager.Tell(message, probe.Ref);
        return probe.ExpectMsg<object>(Wait);
    }

    private Dm.Done Ok(IActorRef manager, object message) =>
        Ask(manager, message) as Dm.Done ?? throw new Xunit.Sdk.XunitException($"{message} failed");

    private Dm.DeviceInfo Info(IActorRef manager, string name) => (Dm.DeviceInfo)Ask(manager, new Dm.GetInfo(name));

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
        Assert.Equal(new[] { "bare\t(253:2)", "lower\t(253:0)", "new\t(253:5)", "ro\t(253:3)", "susp\t(253:4)", "upper\t(253:1)" },
            Ok(m2, Dm.List.Instance).Lines);
        var upper2 = ((Dm.Opened)Ask(m2, new Dm.Open("upper"))).Device;
        var read = new Bio(BioOp.Read, 8, 8, new byte[8 * 512], probe.Ref);
        upper2.Tell(read);
        Assert.Equal(BioStatus.Ok, probe.ExpectMsg<BioDone>(Wait).Status);
        Assert.Equal(DeviceHarness.Pattern(8, 3), read.Data.ToArray());
        var history = Ok(m2, new Dm.History("susp")).Lines;
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
        Assert.EndsWith("recorded as a configuration device (a restart leaves it as recorded)", Ok(m2, new Dm.History("mine")).Lines[3]); // after created, loaded, resumed
    }

    /// <summary>What a restart must reproduce: every device's info (minus open count) and both table slots.</summary>
    private string Snapshot(IActorRef m)
    {
        var names = Ok(m, Dm.List.Instance).Lines.Select(l => l.Split('\t')[0]).ToList();
        return string.Join("\n", names.Select(n =>
        {
            var i = Info(m, n) with { OpenCount = 0, EventNr = 0 };
            return $"{i} | {string.Join(";", Ok(m, new Dm.GetTable(n)).Lines)} | {string.Join(";", Ok(m, new Dm.GetTable(n, true)).Lines)}";
        }));
    }
}
