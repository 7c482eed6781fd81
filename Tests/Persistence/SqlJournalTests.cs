using Akka.Actor;
using DmActors;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>The journals a host can be configured with (SQLite in a file, PostgreSQL): devices survive a whole new actor system.</summary>
public sealed class SqlJournalTests : IDisposable
{
    private readonly DiskRegistry _disks = new();
    private readonly TempDir _dir = new("dmactors-journal");
    private readonly List<TestJournal> _journals = [];

    private TestJournal Journal(string kind)
    {
        var j = TestJournal.Create(kind);
        _journals.Add(j);
        return j;
    }

    /// <summary>An engine of its own (a new actor system) over the journal and the test's disks.</summary>
    private Engine Start(string hocon) => Engine.Start("journal",
        hocon + "\nakka.loglevel = ERROR\nakka.persistence.journal.sql.recovery-event-timeout = 30s",
        new DeviceManager.Options(PersistenceId: "host"), _disks);

    private static async Task<T> Ask<T>(Engine e, object message) => (T)await e.AskAsync(message);

    [Theory]
    [MemberData(nameof(TestJournal.Kinds), MemberType = typeof(TestJournal))]
    public async Task Devices_survive_a_new_actor_system_on_the_same_journal(string kind)
    {
        var journal = Journal(kind);
        _disks.AddMemory("d0", 1024);
        using (var m = Start(journal.Hocon))
        {
            await Ask<Dm.Done>(m, new Dm.Create("a", "0 100 linear d0 0"));
            await Ask<Dm.Done>(m, new Dm.Create("b", "0 50 linear a 10"));
            await Ask<Dm.Done>(m, new Dm.Load("b", "0 60 linear a 10"));
        }

        using var m2 = Start(journal.Hocon);
        Assert.Equal(new[] { new Dm.DeviceEntry("a", 253, 0), new Dm.DeviceEntry("b", 253, 1) }, (await Ask<Dm.DeviceList>(m2, Dm.List.Instance)).Devices);
        Assert.Equal(new[] { "0 50 linear 253:0 10" }, (await Ask<Dm.Done>(m2, new Dm.GetTable("b"))).Lines);
        Assert.Equal(new[] { "0 60 linear 253:0 10" }, (await Ask<Dm.Done>(m2, new Dm.GetTable("b", Inactive: true))).Lines);
        Assert.Equal(4, (await Ask<Dm.HistoryList>(m2, new Dm.History("b"))).Entries.Count); // created, loaded, resumed, loaded
    }

    [Fact]
    public async Task An_unreadable_journal_makes_the_manager_answer_with_the_reason()
    {
        var db = _dir["state.db"];
        await File.WriteAllTextAsync(db, "this is not a database, just garbage bytes that SQLite must refuse ........");
        using var m = Start(JournalConfig.Sqlite(db));
        var reply = await m.Manager.Ask<object>(Dm.List.Instance, TimeSpan.FromSeconds(90));
        var unavailable = Assert.IsType<Dm.Unavailable>(reply);
        Assert.StartsWith("cannot recover devices from the journal", unavailable.Reason);
        Assert.True(unavailable.Reason.Length > "cannot recover devices from the journal: ".Length, unavailable.Reason);
    }

    public void Dispose()
    {
        _disks.Dispose();
        foreach (var j in _journals) j.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _dir.Dispose();
    }
}
