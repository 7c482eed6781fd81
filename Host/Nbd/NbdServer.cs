using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;

namespace DmActors.Host.Nbd;

/// <summary>Where and how the NBD server listens.</summary>
public sealed record NbdServerOptions
{
    /// <summary>TCP endpoint (127.0.0.1:10809 by default); port 0 picks a free port. Null: no TCP.</summary>
    public IPEndPoint? Tcp { get; init; } = new(IPAddress.Loopback, 10809);
    /// <summary>Unix socket path for nbd+unix://; null: none.</summary>
    public string? UnixSocket { get; init; }
    /// <summary>Timeout for the Asks at the edge (opening an export by name through the manager).</summary>
    public TimeSpan AskTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Cap on bytes of requests in flight per connection (bounded memory); a larger request is let through alone.</summary>
    public int MaxInFlightBytesPerConnection { get; init; } = 64 << 20;
    /// <summary>The largest READ or WRITE payload (a multiple of 512, at most <see cref="NbdProtocol.AbusiveLength"/>); larger ones get EINVAL.</summary>
    public int MaxPayload { get; init; } = NbdProtocol.DefaultMaxPayload;
    /// <summary>How long a stop (or a client's disconnect request) waits for requests in flight to be answered.</summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>SO_SNDBUF/SO_RCVBUF of every connection (the kernel caps it at rmem_max/wmem_max); 0 keeps the defaults.</summary>
    public int SocketBufferBytes { get; init; } = 4 << 20;
    /// <summary>STARTTLS (nbd.tls); null: off.</summary>
    public NbdTls? Tls { get; init; }
    /// <summary>Serves the names that <see cref="InternalExport.IsInternal"/> (a node's disks to the cluster); null: they are refused.</summary>
    public IInternalExports? InternalExports { get; init; }
}

/// <summary>
/// Serves every mapped device with a live table as an NBD export (fixed newstyle, see NbdHandshake), over TCP
/// and/or a unix socket. Each connection opens its export through the device manager (an Ask at the edge) and
/// then sends bios straight to the device actor (see NbdConnection). One bad client never disturbs the others.
/// </summary>
public sealed class NbdServer : IAsyncDisposable
{
    private readonly ConcurrentDictionary<NbdConnection, byte> _connections = new();
    private readonly List<Socket> _listeners = new();
    private readonly List<Task> _acceptLoops = new();
    private int _started;
    private int _stopping;
    private Task? _stopped;

    public NbdServer(ActorSystem system, IActorRef manager, NbdServerOptions options)
    {
        if (options.MaxPayload < NbdProtocol.MinBlock || options.MaxPayload > NbdProtocol.AbusiveLength || options.MaxPayload % NbdProtocol.MinBlock != 0)
            throw new ArgumentException($"NBD max payload {options.MaxPayload} is not a multiple of {NbdProtocol.MinBlock} up to {NbdProtocol.AbusiveLength}");
        System = system; Manager = manager; Options = options;
        Log = Logging.GetLogger(system, "nbd");
        Watch = system.ActorOf(DeviceWatch.Props());
    }

    public ActorSystem System { get; }
    public IActorRef Manager { get; }
    public NbdServerOptions Options { get; }

    /// <summary>The bound TCP endpoint (the real port when 0 was asked for).</summary>
    public IPEndPoint? TcpEndpoint { get; private set; }

    /// <summary>Connections being served right now.</summary>
    public int ConnectionCount => _connections.Count;

    internal ILoggingAdapter Log { get; }
    /// <summary>Closes connections whose device actor stopped (see <see cref="DeviceWatch"/>).</summary>
    internal IActorRef Watch { get; }
    internal bool Stopping => Volatile.Read(ref _stopping) != 0;

    private const int SolSocket = 1, SoReuseAddr = 2;

    /// <summary>Binds the listeners and starts accepting.</summary>
    public Task StartAsync()
    {
        if (Interlocked.Exchange(ref _started, 1) != 0) throw new InvalidOperationException("NBD server already started");
        if (Options.Tcp == null && Options.UnixSocket == null) throw new InvalidOperationException("NBD server: neither a TCP endpoint nor a unix socket is configured");
        try
        {
            if (Options.Tcp is { } tcp)
            {
                var socket = new Socket(tcp.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
                _listeners.Add(socket);
                // SO_REUSEADDR alone, so that a restarted host binds while old connections linger in TIME_WAIT.
                // Not SocketOptionName.ReuseAddress: on Linux .NET sets SO_REUSEPORT with it, and a second host
                // would then share the port silently, taking half of the new connections.
                socket.SetRawSocketOption(SolSocket, SoReuseAddr, BitConverter.GetBytes(1));
                socket.Bind(tcp);
                socket.Listen(512);
                TcpEndpoint = (IPEndPoint)socket.LocalEndPoint!;
                Log.Info("NBD server listening on {0}", TcpEndpoint);
            }
            if (Options.UnixSocket is { } path)
            {
                RemoveStaleSocket(path);
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                _listeners.Add(socket);
                socket.Bind(new UnixDomainSocketEndPoint(path));
                socket.Listen(512);
                Log.Info("NBD server listening on unix socket {0}", path);
            }
        }
        catch
        {
            foreach (var l in _listeners) l.Dispose();
            _listeners.Clear();
            throw;
        }
        foreach (var l in _listeners) _acceptLoops.Add(Task.Run(() => AcceptLoopAsync(l)));
        return Task.CompletedTask;
    }

    /// <summary>Stops accepting; new requests get ESHUTDOWN; waits for in-flight requests; closes connections.</summary>
    public Task StopAsync()
    {
        lock (_listeners)
        {
            if (_stopped != null) return _stopped;
            Volatile.Write(ref _stopping, 1);
            return _stopped = StopCoreAsync();
        }
    }

    public async ValueTask DisposeAsync() => await StopAsync();

    private async Task StopCoreAsync()
    {
        foreach (var l in _listeners) l.Dispose();
        await Task.WhenAll(_acceptLoops);
        var stops = new List<Task>();
        foreach (var c in _connections.Keys) stops.Add(c.StopAsync(Options.DrainTimeout));
        await Task.WhenAll(stops);
        if (Options.UnixSocket is { } path && _listeners.Count > 0)
            try { File.Delete(path); } catch (IOException) { }
        System.Stop(Watch);
        Log.Info("NBD server stopped");
    }

    private async Task AcceptLoopAsync(Socket listener)
    {
        while (!Stopping)
        {
            Socket socket;
            try { socket = await listener.AcceptAsync(); }
            catch (Exception) when (Stopping) { return; }
            catch (SocketException e)
            {
                // EMFILE and friends: keep the listener, back off a little.
                Log.Warning("NBD accept failed: {0}", e.Message);
                await Task.Delay(100);
                continue;
            }
            try
            {
                if (socket.AddressFamily is AddressFamily.InterNetwork or AddressFamily.InterNetworkV6) socket.NoDelay = true;
                if (Options.SocketBufferBytes > 0)
                {
                    socket.SendBufferSize = Options.SocketBufferBytes;
                    socket.ReceiveBufferSize = Options.SocketBufferBytes;
                }
                var peer = socket.RemoteEndPoint is IPEndPoint ip ? ip.ToString() : "unix:" + Options.UnixSocket;
                var unix = socket.AddressFamily == AddressFamily.Unix;
                var connection = new NbdConnection(this, socket, peer, Options.Tls?.AppliesTo(unix) == true ? Options.Tls : null);
                _connections.TryAdd(connection, 0);
                if (Stopping) { _connections.TryRemove(connection, out _); socket.Dispose(); return; }
                connection.Start();
                _ = connection.Completion.ContinueWith(_ => _connections.TryRemove(connection, out byte _), TaskScheduler.Default);
            }
            catch (Exception e)
            {
                Log.Warning("NBD: could not set up a connection: {0}", e.Message);
                socket.Dispose();
            }
        }
    }

    /// <summary>
    /// A leftover socket file from a crashed server is removed; a live server on it, or a file with content
    /// (a socket file is always empty: a wrong path must not delete someone's data), is an error.
    /// </summary>
    private static void RemoveStaleSocket(string path)
    {
        if (!File.Exists(path)) return;
        if (new FileInfo(path).Length > 0) throw new IOException($"{path} exists and is not a unix socket");
        using (var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            try
            {
                probe.Connect(new UnixDomainSocketEndPoint(path));
                throw new IOException($"unix socket {path} is in use by a running server");
            }
            catch (SocketException) { }
        }
        File.Delete(path);
    }

    // ---- the manager, at the edge -------------------------------------------------------------------------------

    internal async Task<(Dm.Opened? Opened, string? Error)> OpenExportAsync(string name)
    {
        if (InternalExport.IsInternal(name))
            return Options.InternalExports is { } internals
                ? await internals.OpenAsync(name)
                : (null, "internal export: this node serves no internal exports");
        try
        {
            return await Manager.Ask<object>(new Dm.Open(name, Acknowledge: true), Options.AskTimeout) switch
            {
                // This connection has it: the manager keeps the open (one that is never acknowledged, because this
                // Ask timed out before the reply came, is closed by the manager).
                Dm.Opened o when o.AwaitsAcknowledgement => Acknowledged(o),
                Dm.Opened o => (o, null),
                Dm.Failed f => (null, f.Reason.Length > 0 ? f.Reason : f.Error),
                var other => (null, $"unexpected reply {other.GetType().Name}"),
            };
        }
        catch (AskTimeoutException) { return (null, $"no answer from the device manager within {Options.AskTimeout}"); }
    }

    private (Dm.Opened, string?) Acknowledged(Dm.Opened o)
    {
        Manager.Tell(new Dm.OpenAcknowledged(o.Name, o.Device));
        return (o, null);
    }

    internal async Task CloseExportAsync(string name, IActorRef? device = null)
    {
        if (InternalExport.IsInternal(name))
        {
            if (Options.InternalExports is { } internals) await internals.CloseAsync(name);
            return;
        }
        try { await Manager.Ask<object>(new Dm.Close(name, device), Options.AskTimeout); }
        catch (Exception e) { Log.Warning("NBD: closing export {0} failed: {1}", name, e.Message); }
    }

    internal async Task<IReadOnlyList<string>> ListExportsAsync()
    {
        try
        {
            if (await Manager.Ask<object>(Dm.ListExports.Instance, Options.AskTimeout) is Dm.ExportList l)
                return l.Names.Where(n => !InternalExport.IsInternal(n)).ToArray(); // never listed
        }
        catch (AskTimeoutException) { Log.Warning("NBD: the device manager did not list exports within {0}", Options.AskTimeout); }
        return Array.Empty<string>();
    }
}
