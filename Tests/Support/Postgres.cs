using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace DmActors.Tests.Support;

/// <summary>
/// PostgreSQL for the tests that run the journal on it. <see cref="NewDatabase"/> gives each test a database of its
/// own on one server per test process: the server named by <c>DMACTORS_TEST_PG</c> (a base Npgsql connection
/// string; `.ci/run` sets it), else a private instance started here once (initdb in a temp dir, on a free loopback
/// port) and stopped when the process exits. Without PostgreSQL such tests fail, naming what is missing: CI always
/// provides it, so a silent skip would hide a journal that is never tested.
/// </summary>
public static class Postgres
{
    public const string EnvVar = "DMACTORS_TEST_PG";

    private static readonly Lazy<string> Shared = new(() =>
    {
        if (Environment.GetEnvironmentVariable(EnvVar) is { Length: > 0 } configured) return configured;
        return PostgresServer.Start("dmactors-pg-").BaseConnectionString; // its watchdog stops it when the process exits
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The shared server's base connection string (no database named).</summary>
    public static string Server => Shared.Value;

    /// <summary>A connection string to a fresh, empty database on the shared server.</summary>
    public static string NewDatabase() => CreateDatabase(Server);

    /// <summary>
    /// A private server of the caller's (for outage tests that stop and start it): the binaries must be installed
    /// even when <c>DMACTORS_TEST_PG</c> names a server. Dispose stops it and deletes its directory.
    /// </summary>
    public static PostgresServer StartPrivate() => PostgresServer.Start("dmactors-pg-outage-");

    internal static string CreateDatabase(string server)
    {
        try { return DmActors.Host.Configuration.JournalDatabase.Create(server, "t_"); }
        catch (Exception e) when (e is NpgsqlException or SocketException)
        {
            throw new InvalidOperationException($"PostgreSQL test server ({Describe(server)}): cannot create a database: {e.Message}", e);
        }
    }

    private static string Describe(string connectionString)
    {
        var b = new NpgsqlConnectionStringBuilder(connectionString);
        return $"host={b.Host} port={b.Port}";
    }
}

/// <summary>A PostgreSQL instance in a temp directory on a free loopback port, owned by the test process.</summary>
public sealed class PostgresServer : IDisposable
{
    private readonly string _bin;
    private readonly string _dir;
    private bool _running;

    private PostgresServer(string bin, string dir, int port) { _bin = bin; _dir = dir; Port = port; }

    public int Port { get; }
    private string DataDir => Path.Combine(_dir, "data");
    private string LogFile => Path.Combine(_dir, "server.log");

    /// <summary>Connects as the superuser (trust authentication on loopback), to no particular database.</summary>
    public string BaseConnectionString => $"Host=127.0.0.1;Port={Port};Username=postgres;Database=postgres";

    /// <summary>A fresh database on this server.</summary>
    public string NewDatabase() => Postgres.CreateDatabase(BaseConnectionString);

    internal static PostgresServer Start(string prefix)
    {
        var bin = FindBin() ?? throw new InvalidOperationException(
            $"PostgreSQL not found: no initdb/pg_ctl on PATH or under /usr/lib/postgresql/*/bin; install the postgresql " +
            $"package, or set {Postgres.EnvVar} to a base connection string (e.g. Host=127.0.0.1;Port=5432;Username=postgres)");
        ReapAbandoned(bin);
        var dir = Directory.CreateTempSubdirectory(prefix).FullName;
        var server = new PostgresServer(bin, dir, FreePort());
        try
        {
            File.WriteAllText(Path.Combine(dir, OwnerFile), Environment.ProcessId.ToString());
            // PostgreSQL refuses to run as root: the cluster belongs to user postgres then.
            if (IsRoot) server.Run("chown", ["-R", "postgres:postgres", dir]);
            server.Pg("initdb", ["-D", server.DataDir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"]);
            server.Start();
            server.StartWatchdog();
            return server;
        }
        catch
        {
            server.Dispose();
            throw;
        }
    }

    /// <summary>Starts the server (again, after <see cref="Stop"/>) and waits until it accepts connections.</summary>
    public void Start()
    {
        // Test data need not survive a machine crash: no fsync. But synchronous_commit stays on, so what was
        // committed survives the immediate stop of an outage test. Many tests, each with its own pool: many connections.
        Pg("pg_ctl", ["-D", DataDir, "-l", LogFile, "-w", "-t", "120", "start", "-o",
            $"-p {Port} -k {_dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=500"]);
        _running = true;
    }

    /// <summary>Stops the server at once (immediate mode: clients see their connections drop, as in an outage).</summary>
    public void Stop()
    {
        Pg("pg_ctl", ["-D", DataDir, "-w", "-t", "120", "stop", "-m", "immediate"]);
        _running = false;
        NpgsqlConnection.ClearAllPools();
    }

    public void Dispose()
    {
        try { if (_running) Stop(); }
        catch (InvalidOperationException) { } // already gone: nothing to stop
        try { Directory.Delete(_dir, recursive: true); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>
    /// The test host may be killed right after the last test (so a ProcessExit handler may never finish): a detached
    /// shell waits for this process to end, then stops the server and deletes its directory.
    /// </summary>
    private void StartWatchdog()
    {
        var pgCtl = Path.Combine(_bin, "pg_ctl");
        var stop = $"{(IsRoot ? "runuser -u postgres -- " : "")}'{pgCtl}' -D '{DataDir}' -w -t 60 stop -m immediate";
        var script = $"exec >/dev/null 2>&1 </dev/null; tail --pid={Environment.ProcessId} -f /dev/null; {stop}; rm -rf '{_dir}'";
        var psi = new ProcessStartInfo("setsid") { RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "sh", "-c", script }) psi.ArgumentList.Add(a);
        using var _ = Process.Start(psi) ?? throw new InvalidOperationException("cannot start the PostgreSQL test server's watchdog");
    }

    private const string OwnerFile = "owner.pid";

    /// <summary>
    /// Instances left by test processes that were killed before they could stop theirs (their owner is gone): stopped
    /// and deleted, so they do not pile up. Instances of running processes (other test runs) are left alone.
    /// </summary>
    private static void ReapAbandoned(string bin)
    {
        foreach (var dir in Directory.GetDirectories(Path.GetTempPath(), "dmactors-pg-*"))
        {
            try
            {
                var owner = Path.Combine(dir, OwnerFile);
                if (!File.Exists(owner) || !int.TryParse(File.ReadAllText(owner), out var pid) || Alive(pid)) continue;
                var stale = new PostgresServer(bin, dir, 0);
                if (File.Exists(Path.Combine(dir, "data", "postmaster.pid"))) stale._running = true;
                stale.Dispose();
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException) { }
        }
    }

    private static bool Alive(int pid)
    {
        try { using var p = Process.GetProcessById(pid); return !p.HasExited; }
        catch (ArgumentException) { return false; }
    }

    private static bool IsRoot => Environment.UserName == "root";

    private static string? FindBin()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
            if (File.Exists(Path.Combine(dir, "initdb")) && File.Exists(Path.Combine(dir, "pg_ctl"))) return dir;
        if (!Directory.Exists("/usr/lib/postgresql")) return null;
        // The newest installed major version.
        return Directory.GetDirectories("/usr/lib/postgresql")
            .Select(d => Path.Combine(d, "bin"))
            .Where(b => File.Exists(Path.Combine(b, "initdb")) && File.Exists(Path.Combine(b, "pg_ctl")))
            .OrderByDescending(b => int.TryParse(Path.GetFileName(Path.GetDirectoryName(b)), out var v) ? v : 0)
            .FirstOrDefault();
    }

    private static int FreePort()
    {
        var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    private void Pg(string tool, string[] args)
    {
        var path = Path.Combine(_bin, tool);
        if (IsRoot) Run("runuser", ["-u", "postgres", "--", path, .. args]);
        else Run(path, args);
    }

    private void Run(string program, string[] args)
    {
        var psi = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi) ?? throw new InvalidOperationException($"cannot run {program}");
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromMinutes(3))) { p.Kill(entireProcessTree: true); }
        p.WaitForExit();
        if (p.ExitCode != 0)
        {
            var log = File.Exists(LogFile) ? File.ReadAllText(LogFile) : "";
            throw new InvalidOperationException(
                $"PostgreSQL test server: {Path.GetFileName(program)} {string.Join(' ', args)} failed ({p.ExitCode}): {stdout.Result}{stderr.Result}{log}");
        }
    }
}
