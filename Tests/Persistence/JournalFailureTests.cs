using System.Collections.Immutable;
using Akka.Actor;
using Akka.Persistence;
using Akka.Persistence.Journal;
using DmActors;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>An in-memory journal whose writes fail while <see cref="Failing"/> is set (like a full or broken disk).</summary>
public sealed class FailingJournal : MemoryJournal
{
    public static volatile bool Failing;

    protected override Task<IImmutableList<Exception?>> WriteMessagesAsync(IEnumerable<AtomicWrite> messages, CancellationToken cancellationToken) =>
        Failing ? Task.FromException<IImmutableList<Exception?>>(new IOException("journal disk is full")) : base.WriteMessagesAsync(messages, cancellationToken);
}

/// <summary>A change the journal cannot record is answered as an error, and nothing of it is applied.</summary>
public sealed class JournalFailureTests : Akka.TestKit.Xunit2.TestKit
{
    public JournalFailureTests() : base(Engine.AkkaConfig("""
        akka.loglevel = OFF
        akka.persistence.journal.plugin = "akka.persistence.journal.failing"
        akka.persistence.journal.failing.class = "DmActors.Tests.Persistence.FailingJournal, DmActors.Tests"
        akka.persistence.journal.failing.plugin-dispatcher = "akka.actor.default-dispatcher"
        akka.persistence.snapshot-store.plugin = "akka.persistence.snapshot-store.inmem"
        """))
    { }

    private static object Ask(IActorRef m, object message) => m.Command(message);

    [Fact]
    public void A_failed_write_fails_the_command_and_applies_nothing()
    {
        var disks = new DiskRegistry();
        disks.AddMemory("d0", 1024);
        var m = Engine.On(Sys, new DeviceManager.Options(PersistenceId: "failing"), disks).Manager;
        FailingJournal.Failing = false;
        Assert.IsType<Dm.Done>(Ask(m, new Dm.Create("x", "0 100 linear d0 0")));
        try
        {
            FailingJournal.Failing = true;
            var failed = Assert.IsType<Dm.Failed>(Ask(m, new Dm.Create("y", "0 100 linear d0 100")));
            Assert.Equal("journal: write failed: journal disk is full", failed.Reason);
            Assert.IsType<Dm.Failed>(Ask(m, new Dm.Load("x", "0 200 linear d0 0")));
            Assert.IsType<Dm.Failed>(Ask(m, new Dm.Rename("x", "z")));
            // Named as dmsetup names the ioctl: "suspend ioctl on x failed: Input/output error".
            Assert.Equal(("suspend", "Input/output error"), Assert.IsType<Dm.Failed>(Ask(m, new Dm.Suspend("x"))) is var f ? (f.Op, f.Error) : default);
        }
        finally { FailingJournal.Failing = false; }

        // Nothing half-applied: no y, no inactive table on x, x not renamed; y's table released its disk.
        Assert.Equal(new[] { new Dm.DeviceEntry("x", 253, 0) }, ((Dm.DeviceList)Ask(m, Dm.List.Instance)).Devices);
        Assert.False(((Dm.DeviceInfo)Ask(m, new Dm.GetInfo("x"))).InactiveTable);
        Assert.False(((Dm.DeviceInfo)Ask(m, new Dm.GetInfo("x"))).Suspended);
        Assert.Equal(1, disks.Find("d0")!.OpenCount);
        // The journal is back: changes record again.
        Assert.IsType<Dm.Done>(Ask(m, new Dm.Create("y", "0 100 linear d0 100")));
        Assert.Equal(new[] { new Dm.DeviceEntry("x", 253, 0), new Dm.DeviceEntry("y", 253, 1) }, ((Dm.DeviceList)Ask(m, Dm.List.Instance)).Devices);
    }
}

/// <summary>
/// An in-memory journal that, while <see cref="Forgetting"/>, reads as empty (as a database restored from an old
/// backup, or one that lost its last commits, would) and fails writes while <see cref="Failing"/>.
/// </summary>
public sealed class ForgetfulJournal : MemoryJournal
{
    public static volatile bool Failing, Forgetting;

    protected override Task<IImmutableList<Exception?>> WriteMessagesAsync(IEnumerable<AtomicWrite> messages, CancellationToken cancellationToken) =>
        Failing ? Task.FromException<IImmutableList<Exception?>>(new IOException("connection lost")) : base.WriteMessagesAsync(messages, cancellationToken);

    public override Task<long> ReadHighestSequenceNrAsync(string persistenceId, long fromSequenceNr, CancellationToken cancellationToken) =>
        Forgetting ? Task.FromResult(0L) : base.ReadHighestSequenceNrAsync(persistenceId, fromSequenceNr, cancellationToken);
}

/// <summary>A journal restarted after a failed write that replays fewer events than it acknowledged is not believed.</summary>
public sealed class ForgetfulJournalTests : Akka.TestKit.Xunit2.TestKit
{
    public ForgetfulJournalTests() : base(Engine.AkkaConfig("""
        akka.loglevel = OFF
        akka.persistence.journal.plugin = "akka.persistence.journal.forgetful"
        akka.persistence.journal.forgetful.class = "DmActors.Tests.Persistence.ForgetfulJournal, DmActors.Tests"
        akka.persistence.journal.forgetful.plugin-dispatcher = "akka.actor.default-dispatcher"
        akka.persistence.snapshot-store.plugin = "akka.persistence.snapshot-store.inmem"
        """))
    { }

    [Fact]
    public async Task A_replay_that_lost_events_fails_changes_and_the_running_devices_stay_as_they_are()
    {
        var disks = new DiskRegistry();
        disks.AddMemory("d0", 1024);
        var m = Engine.On(Sys, new DeviceManager.Options(PersistenceId: "forgetful"), disks).Manager;
        m.Ok(new Dm.Create("x", "0 100 linear d0 0"));
        try
        {
            (ForgetfulJournal.Failing, ForgetfulJournal.Forgetting) = (true, true);
            Assert.StartsWith("journal: write failed: ", m.Fails(new Dm.Create("y", "0 100 linear d0 100")).Reason);
            ForgetfulJournal.Failing = false;
            Assert.Equal("journal: unavailable: it replayed 0 of 3 events", m.Fails(new Dm.Create("y", "0 100 linear d0 100")).Reason);
            Assert.Equal(new[] { new Dm.DeviceEntry("x", 253, 0) }, ((Dm.DeviceList)m.Command(Dm.List.Instance)).Devices);
        }
        finally { (ForgetfulJournal.Failing, ForgetfulJournal.Forgetting) = (false, false); }

        // Reading all of it again, the journal is believed and records again; minors go on from what runs.
        await Poll.UntilAsync(() => Task.FromResult(m.Command(new Dm.Create("y", "0 100 linear d0 100")) is Dm.Done), "the journal to record again");
        Assert.Equal(new[] { new Dm.DeviceEntry("x", 253, 0), new Dm.DeviceEntry("y", 253, 1) }, ((Dm.DeviceList)m.Command(Dm.List.Instance)).Devices);
    }
}
