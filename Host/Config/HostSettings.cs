using System.Net;
using AkkaConfig = Akka.Configuration.Config;

namespace DmActors.Host.Configuration;

/// <summary>A backing disk file: <c>dmactors.disks</c>. <see cref="Sectors"/> is 0 when no size is given.</summary>
public sealed record DiskSpec(string Name, string Path, long Sectors, bool Create, bool WriteBackCache,
    SizeMismatch SizeMismatch = SizeMismatch.Error);

/// <summary>What to do when an existing disk file is not the configured size (<c>size-mismatch</c>).</summary>
public enum SizeMismatch
{
    /// <summary>Refuse to start, naming both sizes: a wrong size usually means a wrong file or a typo.</summary>
    Error,
    /// <summary>Use the file at its own size.</summary>
    UseFile,
    /// <summary>Extend a smaller file (sparse) to the size; a larger one is still an error (never shrunk).</summary>
    Grow,
}

/// <summary>
/// Where device metadata is recorded (<c>dmactors.journal</c>): a SQLite file in the data directory, or a PostgreSQL
/// connection string for hosts that share a journal.
/// </summary>
public sealed record JournalSpec(string? SqlitePath, string? Postgres, string PersistenceId)
{
    /// <summary>The Akka.Persistence configuration for it.</summary>
    public string Hocon => Postgres != null ? JournalConfig.Postgres(Postgres) : JournalConfig.Sqlite(SqlitePath!);

    /// <summary>The journal as messages name it: the file, or the server and database (never the password).</summary>
    public string Describe => Postgres != null ? $"journal postgres ({Where(Postgres)})" : $"journal {SqlitePath}";

    /// <summary>Not the connection string: it may hold a password.</summary>
    public override string ToString() => $"{Describe}, persistence-id {PersistenceId}";

    /// <summary>"host=H port=P db=D" of a PostgreSQL connection string (Npgsql's defaults filled in).</summary>
    public static string Where(string connectionString)
    {
        var b = new Npgsql.NpgsqlConnectionStringBuilder(connectionString);
        return $"host={b.Host} port={b.Port} db={b.Database ?? b.Username ?? Environment.UserName}";
    }
}

/// <summary>A mapped device created at start: <c>dmactors.devices</c>.</summary>
public sealed record DeviceSpec(string Name, string Table, bool ReadOnly, BarrierMode Mode);

/// <summary>Everything the host needs from its configuration, checked. <see cref="Source"/> names where it came from.</summary>
public sealed record HostSettings(
    string Source,
    string DataDir,
    IReadOnlyList<DiskSpec> Disks,
    IReadOnlyList<DeviceSpec> Devices,
    IPEndPoint? NbdListen,
    string? UnixSocket,
    string ControlHost,
    int ControlPort,
    TimeSpan AskTimeout,
    AkkaConfig Akka,
    JournalSpec? Journal = null,
    int NbdMaxPayload = DmActors.Host.Nbd.NbdProtocol.DefaultMaxPayload,
    ClusterSpec? Cluster = null,
    DmActors.Host.Nbd.NbdTls? NbdTls = null)
{
    /// <summary>Where dmsetup finds the host's control actor (in front of the device manager).</summary>
    public string ControlPath => ControlPathAt(ControlHost, ControlPort);

    public static string ControlPathAt(string host, int port) =>
        $"akka.tcp://{HostConfig.SystemName}@{(host.Contains(':') ? $"[{host}]" : host)}:{port}/user/{HostConfig.ControlName}";

    /// <summary>A disk's file: relative paths are relative to the data directory.</summary>
    public string DiskPath(DiskSpec disk) => System.IO.Path.GetFullPath(System.IO.Path.Combine(DataDir, disk.Path));

    /// <summary>Without <see cref="Akka"/>: the whole configuration, journal connection string (and password) included.</summary>
    private bool PrintMembers(System.Text.StringBuilder b)
    {
        b.Append($"Source = {Source}, DataDir = {DataDir}, Disks = {Disks.Count}, Devices = {Devices.Count}, NbdListen = {NbdListen}, ")
         .Append($"UnixSocket = {UnixSocket}, Control = {ControlHost}:{ControlPort}, AskTimeout = {AskTimeout}, Journal = {Journal}, ")
         .Append($"NbdMaxPayload = {NbdMaxPayload}");
        return true;
    }
}

/// <summary>A configuration problem, worded for one line on stderr: "FILE: what is wrong".</summary>
public sealed class ConfigException(string message) : Exception(message);
