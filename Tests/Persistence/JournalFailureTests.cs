using System.Collections.Immutable;
using Akka.Actor;
using Akka.Persistence;
using Akka.Persistence.Journal;
using DmActors;
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
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    public JournalFailureTests() : base(Akka.Configuration.ConfigurationFactory.ParseString(@"
        akka.loglevel = OFF
        akka.persistence.journal.plugin = ""akka.persistence.journal.failing""
        akka.persistence.journal.failing.class = ""DmActors.Tests.Persistence.FailingJournal, DmActors.Tests""
        akka.persistence.journal.failing.plugin-dispatcher = ""akka.actor.default-dispatcher""
        akka.persistence.snapshot-store.plugin = ""akka.persistence.snapshot-store.inmem""").WithFallback(DmActors.Host.Configuration.HostConfig.IoDispatcherSection()))
    { }

    private object Ask(IActorRef m, object message)
    {
        var probe = CreateTestProbe();
        m.Tell(message, probe.Ref);
        return probe.ExpectMsg<object>(Wait);
    }

    [Fact]
    public void A_failed_write_fails_the_command_and_applies_nothing()
    {
        var disks = new DiskRegistry();
        disks.AddMemory("d0", 1024);
        var m = Sys.ActorOf(DeviceManager.Props(disks, new DeviceManager.Options(PersistenceId: "failing")));
        FailingJournal.Failing = false;
        Assert.IsType<Dm.Done>(Ask(m, new Dm.Create("x", "0 100 linear d0 0")));
        try
        {
            FailingJournal.Failing = true;
            var failed = Assert.IsType<Dm.Failed>(Ask(m, new Dm.Create("y", "0 100 linear d0 100")));
            Assert.Equal("journal write failed", failed.Reason);
            Assert.IsType<Dm.Failed>(Ask(m, new Dm.Load("x", "0 200 linear d0 0")));
            Assert.IsType<Dm.Failed>(Ask(m, new Dm.Rename("x", "z")));
        }
        finally { FailingJournal.Failing = false; }

        // Nothing half-applied: no y, no inactive table on x, x not renamed; y's table released its disk.
        Assert.Equal(new[] { "x\t(253:0)" }, ((Dm.Done)Ask(m, Dm.List.Instance)).Lines);
        Assert.False(((Dm.DeviceInfo)Ask(m, new Dm.GetInfo("x"))).InactiveTable);
        Assert.Equal(1, disks.Find("d0")!.OpenCount);
        // The journal is back: changes record again.
        Assert.IsType<Dm.Done>(Ask(m, new Dm.Create("y", "0 100 linear d0 100")));
        Assert.Equal(new[] { "x\t(253:0)", "y\t(253:1)" }, ((Dm.Done)Ask(m, Dm.List.Instance)).Lines);
    }
}
