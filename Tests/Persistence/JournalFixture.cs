using Akka.Actor;
using Akka.Configuration;
using DmActors;
using Microsoft.Data.Sqlite;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>
/// The journal a host writes, as committed test data (Data/journal-*.fixture.db): a few devices through every kind
/// of event, with a snapshot in the middle. The events have fixed times, so every fixture, whatever build wrote it,
/// recovers to the same state (Data/journal-fixtures.txt lists it; <see cref="JournalFixtureTests"/> asserts it).
/// </summary>
public static class JournalFixture
{
    /// <summary>What the host calls its journal (dmactors.journal.persistence-id's default).</summary>
    public const string PersistenceId = "dmactors-devices";

    private static readonly DateTime Start = new(2026, 1, 5, 10, 0, 0, 123, DateTimeKind.Utc);

    /// <summary>
    /// The writes, one per command and grouped as the manager groups them (create with a table = created, loaded,
    /// resumed in one write). Event 200 is in the churn, so the snapshot holds a device removed after it.
    /// </summary>
    public static IReadOnlyList<DeviceEvents.DeviceEvent[]> Writes()
    {
        var n = 0;
        DateTime At() => Start.AddSeconds(n++);
        var writes = new List<DeviceEvents.DeviceEvent[]>();
        void W(params DeviceEvents.DeviceEvent[] events) => writes.Add(events);
        W(new DeviceEvents.Created("a", At(), 0, BarrierMode.Ordered, false, null),
          new DeviceEvents.TableLoaded("a", At(), "0 2048 linear disk0 0", false), new DeviceEvents.Resumed("a", At()));
        W(new DeviceEvents.Created("b", At(), 1, BarrierMode.Flush, false, "uuid-b"),
          new DeviceEvents.TableLoaded("b", At(), "0 1024 linear a 512", false), new DeviceEvents.Resumed("b", At()));
        W(new DeviceEvents.Created("cfg", At(), 2, BarrierMode.Ordered, false, null),
          new DeviceEvents.TableLoaded("cfg", At(), "0 256 zero", false), new DeviceEvents.Resumed("cfg", At()),
          new DeviceEvents.ConfigDevice("cfg", At(), "0 256 zero", false, BarrierMode.Ordered));
        W(new DeviceEvents.Created("ro", At(), 3, BarrierMode.Ordered, true, null));
        W(new DeviceEvents.TableLoaded("ro", At(), "0 128 linear disk0 4096", true));
        W(new DeviceEvents.Suspended("a", At(), false));
        W(new DeviceEvents.Resumed("a", At()));
        W(new DeviceEvents.Suspended("b", At(), true));
        W(new DeviceEvents.TableLoaded("b", At(), "0 1024 linear a 1024", false));
        W(new DeviceEvents.UuidSet("a", At(), "uuid-a"));
        W(new DeviceEvents.Renamed("cfg", At(), "cfg2"));
        W(new DeviceEvents.Created("gone", At(), 4, BarrierMode.Ordered, false, null));
        W(new DeviceEvents.Removed("gone", At()));
        W(new DeviceEvents.Created("churn", At(), 5, BarrierMode.Ordered, false, null));
        while (n < 210)
            W(n % 2 == 1 ? new DeviceEvents.TableLoaded("churn", At(), "0 8 zero", false) : new DeviceEvents.TableCleared("churn", At()));
        W(new DeviceEvents.Removed("churn", At()));
        W(new DeviceEvents.Created("late", At(), 6, BarrierMode.Flush, false, "uuid-late"),
          new DeviceEvents.TableLoaded("late", At(), "0 64 error", false), new DeviceEvents.Resumed("late", At()));
        W(new DeviceEvents.Suspended("late", At(), false));
        W(new DeviceEvents.Renamed("late", At(), "late2"));
        W(new DeviceEvents.UuidSet("ro", At(), "uuid-ro"));
        W(new DeviceEvents.TableLoaded("cfg2", At(), "0 512 zero", false));
        W(new DeviceEvents.TableCleared("cfg2", At()));
        W(new DeviceEvents.ConfigDevice("a", At(), "0 2048 linear disk0 0", false, BarrierMode.Ordered));
        return writes;
    }

    /// <summary>The recovered state as text, one line per fact, so a test failure shows what differs.</summary>
    public static IReadOnlyList<string> Describe(HostState state, ConfigDeviceRecords config)
    {
        var lines = new List<string> { $"next minor {state.NextMinor}" };
        foreach (var d in state.Devices.Values)
        {
            lines.Add($"device {d.Name}: minor {d.Minor}, {d.Mode}, read-only {d.ReadOnly}, uuid {d.Uuid ?? "-"}, " +
                      $"live [{d.Live ?? "-"}]{(d.LiveReadOnly ? " ro" : "")}, inactive [{d.Inactive ?? "-"}]{(d.InactiveReadOnly ? " ro" : "")}, suspended {d.Suspended}");
            lines.AddRange(d.History.Select(h => $"  {h.At:yyyy-MM-dd HH:mm:ss.fff} {h.At.Kind} {h.What}"));
        }
        lines.AddRange(config.ByName.Select(c =>
            $"config device {c.Key}: table [{c.Value.Table ?? "-"}], read-only {c.Value.ReadOnly}, {c.Value.Mode}, now {c.Value.Current ?? "removed"}"));
        return lines;
    }

    /// <summary>Writes <see cref="Writes"/> with this build's journal into a new SQLite file, as a host's DeviceJournal would.</summary>
    public static async Task WriteAsync(string db)
    {
        var system = ActorSystem.Create("fixture-writer", ConfigurationFactory.ParseString(JournalConfig.Sqlite(db) + "\nakka.loglevel = WARNING"));
        try
        {
            var journal = system.ActorOf(DeviceJournal.Props(PersistenceId), "journal");
            long id = 0;
            foreach (var write in Writes())
                Assert.IsType<DeviceJournal.Msg.Recorded>(await journal.Ask<object>(new DeviceJournal.Msg.Record(++id, write), TimeSpan.FromSeconds(30)));
            // The snapshot is saved after the write that reached it: wait until it is in the file.
            var deadline = DateTime.UtcNow.AddSeconds(30);
            while (Rows(db).Snapshots.Count == 0 && DateTime.UtcNow < deadline) await Task.Delay(50);
        }
        finally { await system.Terminate(); }
        SqliteConnection.ClearAllPools();
        var (events, snapshots) = Rows(db);
        Assert.Equal(1, snapshots.Sum(s => s.Rows));
        Assert.Equal(Writes().Sum(w => w.Length), events.Sum(e => e.Rows));
    }

    /// <summary>(serializer id, manifest, rows) of the journal's events and of its snapshots.</summary>
    public static (List<(long Serializer, string Manifest, long Rows)> Events, List<(long Serializer, string Manifest, long Rows)> Snapshots) Rows(string db)
    {
        using var c = new SqliteConnection($"Data Source={db};Mode=ReadOnly;Pooling=False");
        c.Open();
        return (Query(c, "select identifier, manifest, count(*) from journal group by identifier, manifest order by manifest"),
                Query(c, "select serializer_id, manifest, count(*) from snapshot group by serializer_id, manifest order by manifest"));
    }

    private static List<(long, string, long)> Query(SqliteConnection c, string sql)
    {
        using var cmd = c.CreateCommand();
        cmd.CommandText = sql;
        using var r = cmd.ExecuteReader();
        var rows = new List<(long, string, long)>();
        while (r.Read()) rows.Add((r.GetInt64(0), r.IsDBNull(1) ? "" : r.GetString(1), r.GetInt64(2)));
        return rows;
    }
}

/// <summary>A test that runs only when <paramref name="variable"/> is set: a tool kept with the tests, run by hand.</summary>
public sealed class ByHandFactAttribute : FactAttribute
{
    public ByHandFactAttribute(string variable)
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(variable))) Skip = $"run by hand: set {variable}";
    }
}

/// <summary>
/// Writes a journal fixture with this build's journal (the host's SQLite configuration and DeviceJournal):
/// <c>DMACTORS_WRITE_JOURNAL_FIXTURE=$PWD/Tests/Persistence/Data/journal-vN.fixture.db dotnet test Tests/DmActors.Tests.csproj --filter FullyQualifiedName~JournalFixtureWriter</c>.
/// A fixture once committed is never rewritten: it is what an existing host has on disk.
/// </summary>
public sealed class JournalFixtureWriter
{
    private const string Variable = "DMACTORS_WRITE_JOURNAL_FIXTURE";

    [ByHandFact(Variable)]
    public async Task Write_a_journal_fixture()
    {
        var target = Path.GetFullPath(Environment.GetEnvironmentVariable(Variable)!);
        Assert.False(File.Exists(target), $"{target} exists: a committed fixture is never rewritten");
        var dir = Directory.CreateTempSubdirectory("dmactors-fixture").FullName;
        var db = Path.Combine(dir, "state.db");
        await JournalFixture.WriteAsync(db);
        using (var c = new SqliteConnection($"Data Source={db};Pooling=False"))
        {
            c.Open();
            using var vacuum = c.CreateCommand();
            vacuum.CommandText = "vacuum";
            vacuum.ExecuteNonQuery();
        }
        Directory.CreateDirectory(Path.GetDirectoryName(target)!);
        File.Copy(db, target);
        Directory.Delete(dir, true);
    }
}
