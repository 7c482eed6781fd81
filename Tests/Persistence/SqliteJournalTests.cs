using Akka.Actor;
using Akka.Configuration;
using DmActors;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>The embedded default journal: SQLite in a file. Devices survive a whole new actor system.</summary>
public sealed class SqliteJournalTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30); // the first persist in a process is slow
    private readonly string _dir = Directory.CreateTempSubdirectory("dmactors-journal").FullName;
    private string Db => Path.Combine(_dir, "state.db");

    private (ActorSystem, IActorRef) Start(DiskRegistry disks)
    {
        var system = ActorSystem.Create("journal", ConfigurationFactory.ParseString(JournalConfig.Sqlite(Db) +
            "\nakka.loglevel = ERROR\nakka.persistence.journal.sql.recovery-event-timeout = 3s").WithFallback(DmActors.Host.Configuration.HostConfig.IoDispatcherSection()));
        return (system, system.ActorOf(DeviceManager.Props(disks, new DeviceManager.Options(PersistenceId: "host")), "devices"));
    }

    private static async Task<T> Ask<T>(IActorRef m, object message) => (T)await m.Ask<object>(message, Wait);

    [Fact]
    public async Task Devices_survive_a_new_actor_system_on_the_same_sqlite_file()
    {
        var disks = new DiskRegistry();
        disks.AddMemory("d0", 1024);
        var (sys, m) = Start(disks);
        await Ask<Dm.Done>(m, new Dm.Create("a", "0 100 linear d0 0"));
        await Ask<Dm.Done>(m, new Dm.Create("b", "0 50 linear a 10"));
        await Ask<Dm.Done>(m, new Dm.Load("b", "0 60 linear a 10"));
        await sys.Terminate();

        var (sys2, m2) = Start(disks);
        try
        {
            Assert.Equal(new[] { "a\t(253:0)", "b\t(253:1)" }, (await Ask<Dm.Done>(m2, Dm.List.Instance)).Lines);
            Assert.Equal(new[] { "0 50 linear 253:0 10" }, (await Ask<Dm.Done>(m2, new Dm.GetTable("b"))).Lines);
            Assert.Equal(new[] { "0 60 linear 253:0 10" }, (await Ask<Dm.Done>(m2, new Dm.GetTable("b", Inactive: true))).Lines);
            Assert.Equal(4, (await Ask<Dm.Done>(m2, new Dm.History("b"))).Lines.Count); // created, loaded, resumed, loaded
        }
        finally { await sys2.Terminate(); }
    }

    [Fact]
    public async Task An_unreadable_journal_makes_the_manager_answer_with_the_reason()
    {
        await File.WriteAllTextAsync(Db, "this is not a database, just garbage bytes that SQLite must refuse ........");
        var (sys, m) = Start(new DiskRegistry());
        try
        {
            var reply = await m.Ask<object>(Dm.List.Instance, TimeSpan.FromSeconds(90));
            var unavailable = Assert.IsType<Dm.Unavailable>(reply);
            Assert.StartsWith("cannot recover devices from the journal", unavailable.Reason);
            Assert.True(unavailable.Reason.Length > "cannot recover devices from the journal: ".Length, unavailable.Reason);
        }
        finally { await sys.Terminate(); }
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}
