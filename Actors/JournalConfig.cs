namespace DmActors;

/// <summary>
/// Where the device journal lives. The embedded default is SQLite in the data directory (Akka.Persistence.Sql with
/// Microsoft.Data.Sqlite); the same plugin speaks PostgreSQL for hosts that share a journal.
/// </summary>
public static class JournalConfig
{
    /// <summary>HOCON for a SQLite journal and snapshot store in one file.</summary>
    public static string Sqlite(string dbPath) => Sql($"Data Source={dbPath}", "SQLite.MS");

    /// <summary>HOCON for a PostgreSQL journal (provider "PostgreSQL.15" in linq2db's naming).</summary>
    public static string Postgres(string connectionString) => Sql(connectionString, "PostgreSQL.15");

    /// <summary>A HOCON quoted string's content: a connection string may hold quotes or backslashes (in a password).</summary>
    private static string Quoted(string s) => s.Replace("\\", "\\\\").Replace("\"", "\\\"");

    private static string Sql(string connectionString, string provider) => $$"""
        akka {
          extensions = ["Akka.Persistence.Sql.SqlPersistenceProvider, Akka.Persistence.Sql"]
          persistence {
            journal {
              plugin = "akka.persistence.journal.sql"
              sql {
                connection-string = "{{Quoted(connectionString)}}", provider-name = "{{provider}}", auto-initialize = on
                # Replay every stored event. The plugin writes one writer id per process, so the default filter
                # takes a volume that ran on A, then B, then A again for two writers at once and drops A's later
                # events (an epoch, a table, a leg's record); the unique (persistence id, sequence number) already
                # keeps one history per volume.
                replay-filter.mode = off
              }
            }
            snapshot-store {
              plugin = "akka.persistence.snapshot-store.sql"
              sql { connection-string = "{{Quoted(connectionString)}}", provider-name = "{{provider}}", auto-initialize = on }
            }
          }
          actor {
            # As in akka.hocon: events under stable manifests; Hyperion for rows written before them.
            serializers.hyperion = "Akka.Serialization.HyperionSerializer, Akka.Serialization.Hyperion"
            serializers.dmactors-journal = "{{typeof(JournalSerializer).FullName}}, {{typeof(JournalSerializer).Assembly.GetName().Name}}"
            serialization-bindings {
              "DmActors.IPersistedEvent, DmActors.Actors" = dmactors-journal
              "DmActors.IControlMessage, DmActors.Actors" = hyperion
            }
          }
        }
        """;
}
