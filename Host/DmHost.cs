using Akka.Actor;
using DmActors.Host.Configuration;
using DmActors.Host.Nbd;

namespace DmActors.Host;

/// <summary>
/// A running dmactors host: the disks, the actor system with the device manager at /user/devices and the power
/// cutter of `dmactors powercut` beside it (both reachable by dmsetup over Akka.Remote, through /user/control), the
/// configured devices and the NBD server. Stops in the order that loses nothing: NBD first (in-flight IO completes),
/// then every device suspended with flush, then the actors, then the disks. A host has its data directory to itself
/// (<see cref="DataDirLock"/>) and its ports too: a second host on either fails to start.
/// </summary>
public sealed class DmHost
{
    private readonly DataDirLock _dataDirLock;

    private DmHost(HostSettings settings, DiskRegistry disks, ActorSystem system, IActorRef manager, DataDirLock dataDirLock)
    {
        Settings = settings; Disks = disks; System = system; Manager = manager; _dataDirLock = dataDirLock;
    }

    public HostSettings Settings { get; }
    public DiskRegistry Disks { get; }
    public ActorSystem System { get; }
    public IActorRef Manager { get; }
    public NbdServer? Nbd { get; private set; }
    /// <summary>The cluster side of the host (null for a single host).</summary>
    public Cluster.ClusterHost? ClusterNode { get; private init; }
    private Cluster.NodeCard Card { get; init; } = new(null, null);

    /// <summary>Starts everything <paramref name="s"/> declares, reporting to <paramref name="log"/>. Config problems throw <see cref="ConfigException"/>.</summary>
    public static async Task<DmHost> StartAsync(HostSettings s, TextWriter log)
    {
        s = s with { ControlHost = ResolveControlHost(s) };
        var dataDirLock = LockDataDir(s);
        DiskRegistry disks;
        ActorSystem system;
        try
        {
            CheckControlPortFree(s);
            CheckJournalReadable(s);
            disks = OpenDisks(s);
        }
        catch
        {
            dataDirLock.Dispose();
            throw;
        }
        try { system = ActorSystem.Create(HostConfig.SystemName, HostConfig.HostAkka(s)); }
        catch (Exception e)
        {
            disks.Dispose();
            dataDirLock.Dispose();
            throw new ConfigException($"{s.Source}: cannot listen for control on {s.ControlHost}:{s.ControlPort}: {Innermost(e).Message}");
        }
        // control.port = 0 lets the transport pick a free port: from here on the settings say which one it bound.
        s = s with { ControlPort = ((ExtendedActorSystem)system).Provider.DefaultAddress.Port ?? s.ControlPort };
        var card = new Cluster.NodeCard(s.Cluster?.Name, s.Cluster?.Node);
        var clusterNode = s.Cluster is { } spec ? Cluster.ClusterHost.Start(system, disks, s, spec) : null;
        var manager = clusterNode?.Manager ?? system.ActorOf(DeviceManager.Props(disks,
            new DeviceManager.Options(PersistenceId: s.Journal?.PersistenceId, JournalName: s.Journal?.Describe)), HostConfig.ManagerName);
        var powerCutter = system.ActorOf(Crash.PowerCutter.Props(disks), Crash.PowerCutter.Name);
        system.ActorOf(Cli.ControlGate.Props(manager, powerCutter, Cli.ControlFrame.Limit(system), card), HostConfig.ControlName);
        var host = new DmHost(s, disks, system, manager, dataDirLock) { ClusterNode = clusterNode, Card = card };
        try
        {
            log.WriteLine($"dmactors: data directory {Path.GetFullPath(s.DataDir)}");
            foreach (var d in s.Disks)
                log.WriteLine($"dmactors: disk {d.Name} = {s.DiskPath(d)} ({disks.Find(d.Name)!.Sectors} sectors{(d.WriteBackCache ? ", write-back cache" : "")})");
            if (s.Cluster is { } c) await Cluster.ClusterJoin.JoinAsync(system, s, c, log);
            var recovered = await host.RecoverAsync();
            if (s.Journal is { } j) log.WriteLine($"dmactors: {j.Describe}: {recovered.Count} device(s) {(s.Cluster != null ? "in the cluster" : "recovered")}");
            if (clusterNode != null) await clusterNode.CreateDevicesAsync(s, log);
            else await host.CreateDevicesAsync(log);
            log.WriteLine($"dmactors: control listening on {s.ControlPath}");
            await host.StartNbdAsync(log);
            log.WriteLine("dmactors: ready (SIGINT or SIGTERM stops)");
            return host;
        }
        catch
        {
            await host.StopAsync(TextWriter.Null);
            throw;
        }
    }

    /// <summary>
    /// The control address as an IP address: Akka.Remote drops messages addressed to any other spelling of its own
    /// address, so host and dmsetup both turn a name (localhost) into the address it resolves to first.
    /// </summary>
    private static string ResolveControlHost(HostSettings s)
    {
        if (global::System.Net.IPAddress.TryParse(s.ControlHost, out _)) return s.ControlHost;
        try { return global::System.Net.Dns.GetHostAddresses(s.ControlHost)[0].ToString(); }
        catch (Exception e) when (e is global::System.Net.Sockets.SocketException or IndexOutOfRangeException)
        {
            throw new ConfigException($"{s.Source}: cannot listen for control on {s.ControlHost}:{s.ControlPort}: {e.Message}");
        }
    }

    /// <summary>
    /// Two hosts on one data directory would keep two journals of the same devices in one file and write the same
    /// disks: the second one is refused, naming the directory and the process that has it.
    /// </summary>
    private static DataDirLock LockDataDir(HostSettings s)
    {
        try { Directory.CreateDirectory(s.DataDir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{s.Source}: data directory {s.DataDir}: {e.Message}");
        }
        try { return DataDirLock.Acquire(s.DataDir); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{s.Source}: {e.Message}");
        }
    }

    /// <summary>A busy control port is a config problem; found here, before Akka prints a stack trace about it.</summary>
    private static void CheckControlPortFree(HostSettings s)
    {
        if (s.ControlPort == 0 || !global::System.Net.IPAddress.TryParse(s.ControlHost, out var address)) return;
        try
        {
            var probe = new global::System.Net.Sockets.TcpListener(address, s.ControlPort);
            probe.Start();
            probe.Stop();
        }
        catch (global::System.Net.Sockets.SocketException e)
        {
            throw new ConfigException($"{s.Source}: cannot listen for control on {s.ControlHost}:{s.ControlPort}: {e.Message}");
        }
    }

    /// <summary>
    /// A corrupt SQLite journal is found here and named, before the actor system logs a stack trace about it. An
    /// empty one (0 bytes, or no tables) next to existing disk files means the record of their devices is lost:
    /// starting would bring up an empty host over disks in use, so that is refused too. No journal at all is a
    /// first start.
    /// </summary>
    private static void CheckJournalReadable(HostSettings s)
    {
        if (s.Journal is { Postgres: { } postgres } pg) { CheckPostgresReachable(s, pg, postgres); return; }
        if (s.Journal?.SqlitePath is not { } path || !File.Exists(path)) return;
        const string remedy = "restore it from a backup, or move it aside to start with no recorded devices";
        string? empty = null;
        try
        {
            if (new FileInfo(path).Length == 0) empty = "is empty (0 bytes)";
            else
            {
                using var db = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path};Mode=ReadOnly");
                db.Open();
                using var check = db.CreateCommand();
                check.CommandText = "PRAGMA quick_check";
                var result = check.ExecuteScalar() as string;
                if (result != "ok") throw new ConfigException($"{s.Source}: journal {path} is damaged: {result}; {remedy}");
                check.CommandText = "SELECT count(*) FROM sqlite_master WHERE type = 'table'";
                if (Convert.ToInt64(check.ExecuteScalar()) == 0) empty = "holds no journal (no tables)";
            }
        }
        catch (Microsoft.Data.Sqlite.SqliteException e)
        {
            throw new ConfigException($"{s.Source}: journal {path} is unreadable: {e.Message}; {remedy}");
        }
        finally { Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools(); }
        var disks = s.Disks.Select(s.DiskPath).Where(File.Exists).ToList();
        if (empty != null && disks.Count > 0)
            throw new ConfigException($"{s.Source}: journal {path} {empty} while disk files exist ({string.Join(", ", disks)}): " +
                                      $"the devices on them are no longer recorded; {remedy}");
    }

    /// <summary>Seconds the start waits for the PostgreSQL journal's server before it gives up.</summary>
    private const int PostgresConnectTimeout = 10;

    /// <summary>
    /// A PostgreSQL journal that cannot be reached fails the start in one line naming the server and database,
    /// within <see cref="PostgresConnectTimeout"/>, instead of a recovery that times out with a stack trace.
    /// </summary>
    private static void CheckPostgresReachable(HostSettings s, JournalSpec j, string connectionString)
    {
        var b = new Npgsql.NpgsqlConnectionStringBuilder(connectionString) { Pooling = false };
        b.Timeout = Math.Min(b.Timeout, PostgresConnectTimeout);
        b.CommandTimeout = PostgresConnectTimeout;
        try
        {
            using var db = new Npgsql.NpgsqlConnection(b.ConnectionString);
            db.Open();
            using var probe = db.CreateCommand();
            probe.CommandText = "SELECT 1";
            probe.ExecuteScalar();
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or global::System.Net.Sockets.SocketException or TimeoutException
                                      or InvalidOperationException or ArgumentException)
        {
            throw new ConfigException($"{s.Source}: {j.Describe}: cannot connect: {ConnectFailure(e)}");
        }
    }

    /// <summary>Npgsql's message and, when it says more, the innermost cause ("Failed to connect to H:P: Connection refused").</summary>
    private static string ConnectFailure(Exception e)
    {
        var inner = Innermost(e).Message;
        var text = ReferenceEquals(Innermost(e), e) || e.Message.Contains(inner) ? e.Message : $"{e.Message}: {inner}";
        return string.Join(' ', text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    private static DiskRegistry OpenDisks(HostSettings s)
    {
        var disks = new DiskRegistry();
        try
        {
            Directory.CreateDirectory(s.DataDir);
            foreach (var d in s.Disks)
            {
                var path = s.DiskPath(d);
                var exists = File.Exists(path);
                if (!exists && !d.Create)
                    throw new ConfigException($"{s.Source}: disk {d.Name}: file {path} does not exist (create = on makes it)");
                // Only the data directory is created: a missing directory elsewhere is more likely a typo or a
                // filesystem that is not mounted than a place to start an empty disk.
                if (!exists && Path.GetDirectoryName(path) is { } dir && !Directory.Exists(dir))
                    throw new ConfigException($"{s.Source}: disk {d.Name}: directory {dir} does not exist (for {path})");
                try
                {
                    if (exists) GrowIfAsked(d, path);
                    disks.AddFile(d.Name, path, d.Create ? d.Sectors : 0, d.WriteBackCache);
                }
                catch (DiskInUseException e) { throw new ConfigException($"{s.Source}: disk {d.Name}: {e.Message}"); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new ConfigException($"{s.Source}: disk {d.Name}: cannot open {path}: {e.Message}");
                }
                if (exists) CheckSize(s, d, path, disks.Find(d.Name)!.Sectors);
            }
            return disks;
        }
        catch (Exception e)
        {
            disks.Dispose();
            if (e is ConfigException) throw;
            throw new ConfigException($"{s.Source}: data directory {s.DataDir}: {e.Message}");
        }
    }

    /// <summary>size-mismatch = grow: a smaller regular file is extended (sparse) to the configured size.</summary>
    private static void GrowIfAsked(DiskSpec d, string path)
    {
        if (d.SizeMismatch != SizeMismatch.Grow || d.Sectors == 0) return;
        // A block device has the size it has.
        if (BlockDevice.Is(path) || new FileInfo(path).Length >= d.Sectors << Bio.SectorShift) return;
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        stream.SetLength(d.Sectors << Bio.SectorShift);
    }

    /// <summary>An existing disk of another size than configured: an error unless size-mismatch says what to do.</summary>
    private static void CheckSize(HostSettings s, DiskSpec d, string path, long sectors)
    {
        // A block device has the size the kernel gives it: `size` does not apply to it (README).
        if (d.Sectors == 0 || sectors == d.Sectors || d.SizeMismatch == SizeMismatch.UseFile || BlockDevice.Is(path)) return;
        var what = $"{s.Source}: disk {d.Name}: {path} holds {ByteSize.DescribeSectors(sectors)}, not the configured size {ByteSize.DescribeSectors(d.Sectors)}";
        throw new ConfigException(d.SizeMismatch == SizeMismatch.Grow
            ? $"{what}; size-mismatch = grow never shrinks a disk (size-mismatch = use-file uses it as it is)"
            : $"{what} (size-mismatch = use-file uses it as it is, grow extends a smaller file)");
    }

    /// <summary>
    /// The devices the journal brought back (the first Ask waits for its replay). An unreadable journal is a
    /// configuration problem that names the journal.
    /// </summary>
    private async Task<IReadOnlyList<string>> RecoverAsync()
    {
        var reply = await Manager.Ask<object>(Dm.List.Instance, Settings.AskTimeout + Settings.AskTimeout);
        return reply switch
        {
            Dm.DeviceList l => l.Devices.Select(d => d.Name).ToList(),
            Dm.Unavailable u => throw new ConfigException($"{Settings.Source}: {Settings.Journal?.Describe}: {u.Reason}"),
            _ => throw new ConfigException($"{Settings.Source}: unexpected answer from the device manager: {reply}"),
        };
    }

    /// <summary>
    /// Creates every configured device the journal has never seen, in order (later ones may stack on earlier
    /// ones); the others are left as recorded, with a line for each that is not as configured
    /// (<see cref="ConfigDevices"/>).
    /// </summary>
    private async Task CreateDevicesAsync(TextWriter log)
    {
        var recorded = await Manager.Ask<DeviceManager.Recorded>(new DeviceManager.GetRecorded(), Settings.AskTimeout);
        foreach (var step in ConfigDevices.Plan(recorded.State, recorded.ConfigDevices, Settings.Devices))
        {
            var d = step.Device;
            if (step.Note != null) log.WriteLine($"dmactors: config device '{d.Name}' left as recorded: {step.Note}");
            object? command = step.Action switch
            {
                ConfigDevices.Action.Create => new DeviceManager.CreateConfigDevice(
                    new Dm.Create(d.Name, string.IsNullOrWhiteSpace(d.Table) ? null : d.Table, d.ReadOnly, null, d.Mode)),
                ConfigDevices.Action.Adopt => new DeviceManager.AdoptConfigDevice(d.Name),
                _ => null,
            };
            if (command == null) continue;
            var reply = await Manager.Ask<object>(command, Settings.AskTimeout);
            if (reply is Dm.Failed f)
                throw new ConfigException($"{Settings.Source}: device {d.Name}: {(f.Reason.Length > 0 ? f.Reason : f.Error)}");
        }
    }

    private async Task StartNbdAsync(TextWriter log)
    {
        if (Settings.NbdListen == null && Settings.UnixSocket == null) { log.WriteLine("dmactors: NBD disabled"); return; }
        var nbd = new NbdServer(System, Manager, new NbdServerOptions
        {
            Tcp = Settings.NbdListen, UnixSocket = Settings.UnixSocket, MaxPayload = Settings.NbdMaxPayload, InternalExports = ClusterNode?.Exports,
            Tls = Settings.NbdTls,
        });
        try { await nbd.StartAsync(); }
        catch (Exception e) when (e is global::System.Net.Sockets.SocketException or IOException)
        {
            throw new ConfigException($"{Settings.Source}: cannot listen for NBD on {Settings.NbdListen?.ToString() ?? Settings.UnixSocket}: {e.Message}");
        }
        Nbd = nbd;
        if (nbd.TcpEndpoint is { } ep) log.WriteLine($"dmactors: NBD listening on {ep}");
        // Members reach this node's exports here; a wildcard listener is reached at the control address.
        Card.Nbd = nbd.TcpEndpoint is { } at
            ? (at.Address.Equals(global::System.Net.IPAddress.Any) || at.Address.Equals(global::System.Net.IPAddress.IPv6Any)
                ? new global::System.Net.IPEndPoint(global::System.Net.IPAddress.Parse(Settings.ControlHost), at.Port) : at).ToString()
            : null;
        if (Settings.UnixSocket is { } sock) log.WriteLine($"dmactors: NBD listening on unix:{sock}");
        Dm.ExportList exports;
        // Only for the log: in a whole-cluster restart the directory may not answer yet, and the host serves anyway.
        try { exports = await Manager.Ask<Dm.ExportList>(Dm.ListExports.Instance, Settings.AskTimeout); }
        catch (AskTimeoutException)
        {
            log.WriteLine($"dmactors: exports not listed: the device manager did not answer within {Settings.AskTimeout.TotalSeconds:0} s");
            return;
        }
        foreach (var name in exports.Names)
        {
            var where = nbd.TcpEndpoint is { } e ? $"nbd://{e}/{name}" : $"nbd+unix:///{name}?socket={Settings.UnixSocket}";
            log.WriteLine($"dmactors: exporting {name} at {where}");
        }
    }

    /// <summary>Stops NBD, suspends every device with flush, terminates the actors and closes the disks.</summary>
    public async Task StopAsync(TextWriter log)
    {
        if (Nbd is { } nbd)
        {
            try { await nbd.StopAsync(); log.WriteLine("dmactors: NBD stopped"); }
            catch (Exception e) { log.WriteLine($"dmactors: stopping NBD: {e.Message}"); }
            Nbd = null;
        }
        ClusterNode?.Exports.Dispose();
        try
        {
            // Not dmsetup suspend: that would be recorded, and the devices would come back suspended.
            if (await Manager.Ask<object>(new DeviceManager.Quiesce(), Settings.AskTimeout) is Dm.Failed f)
                log.WriteLine($"dmactors: suspending {f.Name}: {f.Error} {f.Reason}");
            log.WriteLine("dmactors: devices suspended");
        }
        catch (Exception e) { log.WriteLine($"dmactors: suspending devices: {e.Message}"); }
        // A cluster node leaves first, so the survivors take its volumes over at once instead of after a timeout.
        if (ClusterNode != null) await ClusterNode.LeaveAsync(Settings.AskTimeout);
        await System.Terminate();
        Disks.Dispose();
        _dataDirLock.Dispose();
        log.WriteLine("dmactors: stopped");
    }

    private static Exception Innermost(Exception e) => e.InnerException is { } inner ? Innermost(inner) : e;
}
