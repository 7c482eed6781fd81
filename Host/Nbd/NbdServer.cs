using System.Net;
using Akka.Actor;

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
    /// <summary>Cap on bytes of requests in flight per connection (bounded memory).</summary>
    public int MaxInFlightBytesPerConnection { get; init; } = 64 << 20;
}

/// <summary>
/// Serves every mapped device with a live table as an NBD export (fixed newstyle). STUB: replaced by the NBD work.
/// </summary>
public sealed class NbdServer : IAsyncDisposable
{
    public NbdServer(ActorSystem system, IActorRef manager, NbdServerOptions options)
    {
        System = system; Manager = manager; Options = options;
    }

    public ActorSystem System { get; }
    public IActorRef Manager { get; }
    public NbdServerOptions Options { get; }

    /// <summary>The bound TCP endpoint (the real port when 0 was asked for).</summary>
    public IPEndPoint? TcpEndpoint { get; private set; }

    /// <summary>Binds the listeners and starts accepting.</summary>
    public Task StartAsync() => throw new NotImplementedException();

    /// <summary>Stops accepting; new requests get ESHUTDOWN; waits for in-flight requests; closes connections.</summary>
    public Task StopAsync() => throw new NotImplementedException();

    public async ValueTask DisposeAsync() => await StopAsync();
}
