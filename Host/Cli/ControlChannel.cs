using System.Net.Sockets;
using Akka.Actor;
using DmActors.Host.Configuration;

namespace DmActors.Host.Cli;

/// <summary>How dmsetup talks to a device manager: one Ask per control message, always with a timeout.</summary>
public interface IControlChannel
{
    Task<object> AskAsync(IControlMessage message);
}

/// <summary>A device manager reachable as an actor (in process, or remote through an ActorSelection or resolved ref).</summary>
public sealed class ActorControlChannel(ICanTell manager, TimeSpan timeout) : IControlChannel
{
    public Task<object> AskAsync(IControlMessage message) => manager.Ask<object>(message, timeout);
}

/// <summary>The host cannot be reached or did not answer; worded for one line on stderr.</summary>
public sealed class ControlUnreachableException(string message) : Exception(message);

/// <summary>
/// The dmsetup client's link to a running host: a small actor system with remoting on a free loopback port,
/// and the host's manager resolved by its path.
/// </summary>
public sealed class RemoteControl : IAsyncDisposable
{
    private readonly ActorSystem _system;

    private RemoteControl(ActorSystem system, IControlChannel channel) { _system = system; Channel = channel; }

    public IControlChannel Channel { get; }

    public static async Task<RemoteControl> ConnectAsync(HostSettings s)
    {
        var target = $"dmactors host at {s.ControlHost}:{s.ControlPort}";
        // A quick TCP probe: Akka would otherwise wait out the whole timeout before saying nothing answered.
        using (var probe = new TcpClient())
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(10));
                await probe.ConnectAsync(s.ControlHost, s.ControlPort, cts.Token);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                throw new ControlUnreachableException($"cannot reach {target}: {(e is SocketException se ? se.Message : "connect timed out")}");
            }
        }
        var system = ActorSystem.Create("dmsetup", HostConfig.ClientAkka(s));
        try
        {
            var manager = await system.ActorSelection(s.ManagerPath).ResolveOne(s.AskTimeout);
            return new RemoteControl(system, new ActorControlChannel(manager, s.AskTimeout));
        }
        catch (Exception e)
        {
            await system.Terminate();
            throw new ControlUnreachableException($"cannot reach {target} ({s.ManagerPath}): {e.Message}");
        }
    }

    public async ValueTask DisposeAsync() => await _system.Terminate();
}
