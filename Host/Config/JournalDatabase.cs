using Npgsql;

namespace DmActors.Host.Configuration;

/// <summary>A fresh, empty PostgreSQL database on a server, for a journal no earlier run wrote to.</summary>
public static class JournalDatabase
{
    /// <summary>Creates <paramref name="prefix"/>+random on <paramref name="server"/> and returns its connection string; Npgsql's errors go to the caller.</summary>
    public static string Create(string server, string prefix)
    {
        var name = prefix + Guid.NewGuid().ToString("N")[..16];
        var admin = new NpgsqlConnectionStringBuilder(server) { Database = "postgres", Pooling = false };
        using (var db = new NpgsqlConnection(admin.ConnectionString))
        {
            db.Open();
            using var create = db.CreateCommand();
            create.CommandText = $"CREATE DATABASE {name}";
            create.ExecuteNonQuery();
        }
        return new NpgsqlConnectionStringBuilder(server) { Database = name }.ConnectionString;
    }
}
