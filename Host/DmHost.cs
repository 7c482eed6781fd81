using Akka.Actor;
using DmActors.Host.Configuration;
using DmActors.Host.Nbd;

namespace DmActors.Host;

/// <summary>
/// A running dmactors host: the disks, the actor system with the device manager at /user/devices (reachable by
/// dmsetup over Akka.Remote), the configured devices and the NBD server. Stops in the order that loses nothing:
/// NBD first (in-flight IO completes), then every device suspended with flush, then the actors, then the disks.
/// A host has its data directory to itself (<see cref="DataDirLock"/>) and its ports too: a second host on either
/// fails to start.
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

    /// <summary>Starts everything <paramref name="s"/> declares, reporting to <paramref name="log"/>. Config problems throw <see cref="ConfigException"/>.</summary>
    public static async Task<DmHost> StartAsync(HostSettings s, TextWriter log)
    {
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
        var manager = system.ActorOf(DeviceManager.Props(disks, new DeviceManager.Options(PersistenceId: s.Journal?.PersistenceId)),
            HostConfig.ManagerName);
        var host = new DmHost(s, disks, system, manager, dataDirLock);
        try
        {
            log.WriteLine($"dmactors: data directory {Path.GetFullPath(s.DataDir)}");
            foreach (var d in s.Disks)
                log.WriteLine($"dmactors: disk {d.Name} = {s.DiskPath(d)} ({disks.Find(d.Name)!.Sectors} sectors{(d.WriteBackCache ? ", write-back cache" : "")})");
            var recovered = await host.RecoverAsync();
            if (s.Journal is { } j) log.WriteLine($"dmactors: {j.Describe}: {recovered.Count} device(s) recovered");
            await host.CreateDevicesAsync(recovered);
            log.WriteLine($"dmactors: control listening on {s.ManagerPath}");
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

    /// <summary>A corrupt SQLite journal is found here and named, before the actor system logs a stack trace about it.</summary>
    private static void CheckJournalReadable(HostSettings s)
    {
        if (s.Journal?.SqlitePath is not { } path || !File.Exists(path)) return;
        try
        {
            using var db = new Microsoft.Data.Sqlite.SqliteConnection($"Data Source={path};Mode=ReadOnly");
            db.Open();
            using var check = db.CreateCommand();
            check.CommandText = "PRAGMA quick_check";
            var result = check.ExecuteScalar() as string;
            if (result != "ok") throw new ConfigException($"{s.Source}: journal {path} is damaged: {result}");
        }
        catch (Microsoft.Data.Sqlite.SqliteException e)
        {
            throw new ConfigException($"{s.Source}: journal {path} is unreadable: {e.Message}");
        }
        finally { Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools(); }
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
                if (!File.Exists(path) && !d.Create)
                    throw new ConfigException($"{s.Source}: disk {d.Name}: file {path} does not exist (create = on makes it)");
                try { disks.AddFile(d.Name, path, d.Create ? d.Sectors : 0, d.WriteBackCache); }
                catch (DiskInUseException e) { throw new ConfigException($"{s.Source}: disk {d.Name}: {e.Message}"); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new ConfigException($"{s.Source}: disk {d.Name}: cannot open {path}: {e.Message}");
                }
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

    /// <summary>
    /// The devices the journal brought back (the first Ask waits for its replay). An unreadable journal is a
    /// configuration problem that names the journal.
    /// </summary>
    private async Task<IReadOnlyList<string>> RecoverAsync()
    {
        var reply = await Manager.Ask<object>(Dm.List.Instance, Settings.AskTimeout + Settings.AskTimeout);
        return reply switch
        {
            Dm.Done d => Cli.DmsetupFormat.NamesOf(d.Lines).ToList(),
            Dm.Unavailable u => throw new ConfigException($"{Settings.Source}: {Settings.Journal?.Describe}: {u.Reason}"),
            _ => throw new ConfigException($"{Settings.Source}: unexpected answer from the device manager: {reply}"),
        };
    }

    /// <summary>
    /// dmsetup create for every configured device not already recovered from the journal, in order (later ones may
    /// stack on earlier ones). What the journal recorded wins over the configuration.
    /// </summary>
    private async Task CreateDevicesAsync(IReadOnlyList<string> recovered)
    {
        foreach (var d in Settings.Devices.Where(d => !recovered.Contains(d.Name)))
        {
            var table = string.IsNullOrWhiteSpace(d.Table) ? null : d.Table;
            var reply = await Manager.Ask<object>(new Dm.Create(d.Name, table, d.ReadOnly, null, d.Mode), Settings.AskTimeout);
            if (reply is Dm.Failed f)
                throw new ConfigException($"{Settings.Source}: device {d.Name}: {(f.Reason.Length > 0 ? f.Reason : f.Error)}");
        }
    }

    private async Task StartNbdAsync(TextWriter log)
    {
        if (Settings.NbdListen == null && Settings.UnixSocket == null) { log.WriteLine("dmactors: NBD disabled"); return; }
        var nbd = new NbdServer(System, Manager, new NbdServerOptions { Tcp = Settings.NbdListen, UnixSocket = Settings.UnixSocket });
        try { await nbd.StartAsync(); }
        catch (Exception e) when (e is global::System.Net.Sockets.SocketException or IOException)
        {
            throw new ConfigException($"{Settings.Source}: cannot listen for NBD on {Settings.NbdListen?.ToString() ?? Settings.UnixSocket}: {e.Message}");
        }
        Nbd = nbd;
        if (nbd.TcpEndpoint is { } ep) log.WriteLine($"dmactors: NBD listening on {ep}");
        if (Settings.UnixSocket is { } sock) log.WriteLine($"dmactors: NBD listening on unix:{sock}");
        var exports = await Manager.Ask<Dm.Done>(Dm.ListExports.Instance, Settings.AskTimeout);
        foreach (var name in exports.Lines)
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
        try
        {
            // Not dmsetup suspend: that would be recorded, and the devices would come back suspended.
            if (await Manager.Ask<object>(new DeviceManager.Quiesce(), Settings.AskTimeout) is Dm.Failed f)
                log.WriteLine($"dmactors: suspending {f.Name}: {f.Error} {f.Reason}");
            log.WriteLine("dmactors: devices suspended");
        }
        catch (Exception e) { log.WriteLine($"dmactors: suspending devices: {e.Message}"); }
        await System.Terminate();
        Disks.Dispose();
        _dataDirLock.Dispose();
        log.WriteLine("dmactors: stopped");
    }

    private static Exception Innermost(Exception e) => e.InnerException is { } inner ? Innermost(inner) : e;
}
