using Akka.Actor;
using Akka.Configuration;
using DmActors;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>
/// Journals written by earlier builds (Data/journal-*.fixture.db, described in Data/journal-fixtures.txt) recover
/// to exactly what was recorded: a rename or reshaping of an event record that orphans existing state.db files
/// fails here. Each test recovers a copy; the committed files are never opened for writing.
/// </summary>
public sealed class JournalFixtureTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30); // the first journal read in a process is slow
    private readonly string _dir = Directory.CreateTempSubdirectory("dmactors-fixture").FullName;

    /// <summary>What every fixture holds (see JournalFixture.Writes): the state after all its events.</summary>
    private static readonly string[] Expected =
    [
        "next minor 7",
        "device a: minor 0, Ordered, read-only False, uuid uuid-a, live [0 2048 linear disk0 0], inactive [-], suspended False",
        "  2026-01-05 10:00:00.123 Utc created (minor 0, ordered barriers)",
        "  2026-01-05 10:00:01.123 Utc table loaded into the inactive slot: 0 2048 linear disk0 0",
        "  2026-01-05 10:00:02.123 Utc resumed",
        "  2026-01-05 10:00:12.123 Utc suspended",
        "  2026-01-05 10:00:13.123 Utc resumed",
        "  2026-01-05 10:00:16.123 Utc uuid set to uuid-a",
        "  2026-01-05 10:03:39.123 Utc recorded as a configuration device (a restart leaves it as recorded)",
        "device b: minor 1, Flush, read-only False, uuid uuid-b, live [0 1024 linear a 512], inactive [0 1024 linear a 1024], suspended True",
        "  2026-01-05 10:00:03.123 Utc created (minor 1, flush barriers, uuid uuid-b)",
        "  2026-01-05 10:00:04.123 Utc table loaded into the inactive slot: 0 1024 linear a 512",
        "  2026-01-05 10:00:05.123 Utc resumed",
        "  2026-01-05 10:00:14.123 Utc suspended (noflush)",
        "  2026-01-05 10:00:15.123 Utc table loaded into the inactive slot: 0 1024 linear a 1024",
        "device cfg2: minor 2, Ordered, read-only False, uuid -, live [0 256 zero], inactive [-], suspended False",
        "  2026-01-05 10:00:06.123 Utc created (minor 2, ordered barriers)",
        "  2026-01-05 10:00:07.123 Utc table loaded into the inactive slot: 0 256 zero",
        "  2026-01-05 10:00:08.123 Utc resumed",
        "  2026-01-05 10:00:09.123 Utc recorded as a configuration device (a restart leaves it as recorded)",
        "  2026-01-05 10:00:17.123 Utc renamed to cfg2",
        "  2026-01-05 10:03:37.123 Utc table loaded into the inactive slot: 0 512 zero",
        "  2026-01-05 10:03:38.123 Utc inactive table cleared",
        "device late2: minor 6, Flush, read-only False, uuid uuid-late, live [0 64 error], inactive [-], suspended True",
        "  2026-01-05 10:03:31.123 Utc created (minor 6, flush barriers, uuid uuid-late)",
        "  2026-01-05 10:03:32.123 Utc table loaded into the inactive slot: 0 64 error",
        "  2026-01-05 10:03:33.123 Utc resumed",
        "  2026-01-05 10:03:34.123 Utc suspended",
        "  2026-01-05 10:03:35.123 Utc renamed to late2",
        "device ro: minor 3, Ordered, read-only True, uuid uuid-ro, live [-], inactive [0 128 linear disk0 4096] ro, suspended False",
        "  2026-01-05 10:00:10.123 Utc created (minor 3, ordered barriers, read-only)",
        "  2026-01-05 10:00:11.123 Utc table loaded into the inactive slot (read-only): 0 128 linear disk0 4096",
        "  2026-01-05 10:03:36.123 Utc uuid set to uuid-ro",
        "config device a: table [0 2048 linear disk0 0], read-only False, Ordered, now a",
        "config device cfg: table [0 256 zero], read-only False, Ordered, now cfg2",
    ];

    [Fact]
    public async Task A_journal_written_before_stable_manifests_recovers_exactly()
    {
        // What the fixture is: every event and the snapshot stored by Hyperion (serializer id -5, no manifest).
        var db = Copy("journal-v1.fixture.db");
        var (events, snapshots) = JournalFixture.Rows(db);
        Assert.Equal([(-5L, "", 220L)], events);
        Assert.Equal([(-5L, "", 1L)], snapshots);
        Assert.Equal(Expected, await RecoverAsync(db));
    }

    [Fact]
    public async Task A_journal_written_with_stable_manifests_recovers_exactly()
    {
        var db = Copy("journal-v2.fixture.db");
        AssertStableRows(JournalFixture.Rows(db));
        Assert.Equal(Expected, await RecoverAsync(db));
    }

    [Fact]
    public async Task This_build_writes_stable_manifests_and_reads_them_back()
    {
        var db = Path.Combine(_dir, "state.db");
        await JournalFixture.WriteAsync(db);
        AssertStableRows(JournalFixture.Rows(db));
        Assert.Equal(Expected, await RecoverAsync(db));
    }

    /// <summary>A host upgraded over an old journal: old rows stay Hyperion's, new ones get manifests, both recover.</summary>
    [Fact]
    public async Task An_old_journal_takes_new_events_and_recovers_both()
    {
        var db = Copy("journal-v1.fixture.db");
        await RecoverAsync(db, async manager =>
        {
            Assert.IsType<Dm.Done>(await manager.Ask<object>(new Dm.Remove("late2"), Wait));
            Assert.IsType<Dm.Done>(await manager.Ask<object>(new Dm.Create("new", "0 16 linear disk0 16"), Wait));
        });
        Assert.Equal([(-5L, "", 220L), (253L, "device-created.v1", 1L), (253L, "device-removed.v1", 1L),
            (253L, "device-resumed.v1", 1L), (253L, "device-table-loaded.v1", 1L)], JournalFixture.Rows(db).Events);
        var now = await RecoverAsync(db);
        var late = Array.FindIndex(Expected, l => l.StartsWith("device late2:"));
        var after = Expected.Skip(late + 1).SkipWhile(l => l.StartsWith("  ")).ToArray();
        Assert.Equal(Expected.Take(late).Select(l => l == "next minor 7" ? "next minor 8" : l), now.Take(late));
        Assert.Matches(@"^device new: minor 7, Ordered, read-only False, uuid -, live \[0 16 linear disk0 16\], inactive \[-\], suspended False$", now[late]);
        Assert.Equal(3, now.Skip(late + 1).TakeWhile(l => l.StartsWith("  ")).Count()); // created, loaded, resumed
        Assert.Equal(after, now.Skip(late + 4));
    }

    /// <summary>Rows of <see cref="JournalFixture.Writes"/> as this build stores them: by manifest, under the journal's serializer.</summary>
    private static readonly (List<(long, string, long)>, List<(long, string, long)>) StableRows = (
        [
            (253L, "device-config-device.v1", 2L), (253L, "device-created.v1", 7L), (253L, "device-removed.v1", 2L),
            (253L, "device-renamed.v1", 2L), (253L, "device-resumed.v1", 5L), (253L, "device-suspended.v1", 3L),
            (253L, "device-table-cleared.v1", 95L), (253L, "device-table-loaded.v1", 102L), (253L, "device-uuid-set.v1", 2L),
        ],
        [(253L, "host-snapshot.v1", 1L)]);

    private static void AssertStableRows((List<(long, string, long)> Events, List<(long, string, long)> Snapshots) rows)
    {
        Assert.Equal(StableRows.Item1, rows.Events);
        Assert.Equal(StableRows.Item2, rows.Snapshots);
    }

    private static string Fixture(string name) => Path.Combine(AppContext.BaseDirectory, "Persistence", "Data", name);

    /// <summary>A copy of a committed fixture to recover (recovery may write; the fixture must stay as it is).</summary>
    private string Copy(string fixture)
    {
        var db = Path.Combine(_dir, "state.db");
        File.Copy(Fixture(fixture), db);
        return db;
    }

    /// <summary>Recovers <paramref name="db"/> as the host does (its SQLite journal, persistence id and manager), then runs <paramref name="then"/>.</summary>
    private static async Task<string[]> RecoverAsync(string db, Func<IActorRef, Task>? then = null)
    {
        var disks = new DiskRegistry();
        disks.AddMemory("disk0", 8192);
        var system = ActorSystem.Create("fixture", ConfigurationFactory.ParseString(JournalConfig.Sqlite(db) + "\nakka.loglevel = WARNING")
            .WithFallback(DmActors.Host.Configuration.HostConfig.IoDispatcherSection()));
        try
        {
            var manager = system.ActorOf(DeviceManager.Props(disks, new DeviceManager.Options(PersistenceId: JournalFixture.PersistenceId)), "devices");
            var reply = await manager.Ask<object>(new DeviceManager.GetRecorded(), Wait);
            if (reply is Dm.Unavailable u) throw new Xunit.Sdk.XunitException($"the journal did not recover: {u.Reason}");
            var recorded = Assert.IsType<DeviceManager.Recorded>(reply);
            if (then != null) await then(manager);
            return JournalFixture.Describe(recorded.State, recorded.ConfigDevices).ToArray();
        }
        finally
        {
            await system.Terminate();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        }
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}
