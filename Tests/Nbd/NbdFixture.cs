using System.Net;
using Akka.Actor;
using DmActors.Host.Nbd;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Nbd;

/// <summary>
/// One in-process host for all NBD tests: an <see cref="Engine"/> (memory disks, and file disks in a temp
/// directory) with an NBD server on 127.0.0.1 (port 0) and on a unix socket. Every test creates its own export on
/// a fresh disk, so tests never see each other's data.
/// </summary>
public sealed class NbdFixture : IAsyncLifetime
{
    public static readonly TimeSpan Timeout = Engine.Timeout;
    private readonly TempDir _dir = new("dmactors-nbd-");
    private int _next;

    public Engine Engine { get; } = Engine.Start("nbd-tests");
    public ActorSystem System => Engine.System;
    public DiskRegistry Disks => Engine.Disks;
    public IActorRef Manager => Engine.Manager;
    public NbdServer Server { get; private set; } = null!;
    public string TempDir => _dir.Path;
    public string UnixSocket => Path.Combine(TempDir, "nbd.sock");
    public int Port => Server.TcpEndpoint!.Port;

    public async Task InitializeAsync() =>
        Server = await StartServerAsync(new NbdServerOptions { Tcp = new IPEndPoint(IPAddress.Loopback, 0), UnixSocket = UnixSocket });

    /// <summary>A further server on the same manager (for stop and budget tests); the caller stops it.</summary>
    public async Task<NbdServer> StartServerAsync(NbdServerOptions options)
    {
        var server = new NbdServer(System, Manager, options);
        await server.StartAsync();
        return server;
    }

    /// <summary>Creates a device `linear` over a new disk of <paramref name="sectors"/> sectors and returns its name.</summary>
    public async Task<string> CreateExportAsync(long sectors = 2048, bool readOnly = false, bool file = false)
    {
        var n = Interlocked.Increment(ref _next);
        var disk = file
            ? Disks.AddFile($"file{n}", Path.Combine(TempDir, $"disk{n}.img"), sectors)
            : Disks.AddMemory($"mem{n}", sectors);
        return await CreateExportAsync(disk, readOnly);
    }

    /// <summary>An export over a memory disk behind a volatile write-back cache, whose power can be cut.</summary>
    public async Task<(string Name, CachedDisk Disk)> CreateCachedExportAsync(long sectors = 2048)
    {
        var n = Interlocked.Increment(ref _next);
        var disk = Disks.Add(new CachedDisk(new MemoryDisk($"cached{n}", sectors, Disks.NextDevNo())));
        return (await CreateExportAsync(disk, readOnly: false), disk);
    }

    /// <summary>An export `linear` over <paramref name="disk"/>, which the caller added to <see cref="Disks"/>.</summary>
    public async Task<string> CreateExportAsync(Disk disk, bool readOnly = false)
    {
        var name = $"export-{disk.Name}";
        var reply = await AskAsync(new Dm.Create(name, $"0 {disk.Sectors} linear {disk.Name} 0", ReadOnly: readOnly));
        Assert.True(reply is Dm.Done, $"create {name}: {reply}");
        return name;
    }

    /// <summary>An export with the table <paramref name="table"/> (over disks the caller added).</summary>
    public async Task<string> CreateTableExportAsync(string table)
    {
        var name = $"table{Interlocked.Increment(ref _next)}";
        var reply = await AskAsync(new Dm.Create(name, table));
        Assert.True(reply is Dm.Done, $"create {name}: {reply}");
        return name;
    }

    /// <summary>A control command to the device manager.</summary>
    public Task<object> AskAsync(object message) => Engine.AskAsync(message);

    /// <summary>Removes a device; fails (Busy) while any NBD connection still has it open.</summary>
    public Task<object> RemoveAsync(string name) => AskAsync(new Dm.Remove(name));

    /// <summary>Waits until <paramref name="name"/> can be removed, i.e. every connection closed its open.</summary>
    public Task RemoveWhenClosedAsync(string name) =>
        Poll.UntilAsync(async () => await RemoveAsync(name) is Dm.Done, $"{name} to be closed by every connection and removed");

    public async Task DisposeAsync()
    {
        await Server.StopAsync();
        Engine.Dispose();
        _dir.Dispose();
    }
}

[CollectionDefinition(Name)]
public sealed class NbdCollection : ICollectionFixture<NbdFixture>
{
    public const string Name = "nbd";
}
