using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>
/// A journal of a kind the host can be configured with, fresh for one test: <c>sqlite</c> (a file in a temp
/// directory) or <c>postgres</c> (a new database on the test server, <see cref="Postgres"/>). Theories over
/// <see cref="Kinds"/> run the same test on each.
/// </summary>
public sealed class TestJournal : IDisposable
{
    public static readonly TheoryData<string> Kinds = new() { "sqlite", "postgres" };

    private readonly TempDir? _dir;

    private TestJournal(string kind, string hocon, TempDir? dir) { Kind = kind; Hocon = hocon; _dir = dir; }

    public static TestJournal Create(string kind)
    {
        switch (kind)
        {
            case "sqlite":
                var dir = new TempDir("dmactors-journal");
                return new TestJournal(kind, JournalConfig.Sqlite(dir["state.db"]), dir);
            case "postgres":
                return new TestJournal(kind, JournalConfig.Postgres(Support.Postgres.NewDatabase()), null);
            default: throw new ArgumentException($"no such journal kind: {kind}", nameof(kind));
        }
    }

    public string Kind { get; }
    /// <summary>The journal and snapshot store sections (<see cref="JournalConfig"/>), as the host writes them.</summary>
    public string Hocon { get; }

    public override string ToString() => Kind;

    public void Dispose()
    {
        if (_dir == null) return;
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _dir.Dispose();
    }
}
