using System.Net;
using System.Net.Sockets;
using Akka.Actor;
using DmActors.Host.Configuration;

namespace DmActors.Host.Cli;

/// <summary>How dmsetup talks to a device manager: one Ask per control message, always with a timeout.</summary>
public interface IControlChannel
{
    Task<object> AskAsync(IControlMessage message);

    /// <summary>A command that itself waits up to the channel's timeout (a move): its answer is waited for <paramref name="longer"/> more.</summary>
    Task<object> AskAsync(IControlMessage message, TimeSpan longer) => AskAsync(message);
}

/// <summary>A device manager reachable as an actor (in process, or remote through an ActorSelection or resolved ref).</summary>
public sealed class ActorControlChannel(ICanTell manager, TimeSpan timeout) : IControlChannel
{
    public Task<object> AskAsync(IControlMessage message) => manager.Ask<object>(message, timeout);
    public Task<object> AskAsync(IControlMessage message, TimeSpan longer) => manager.Ask<object>(message, timeout + longer);
}

/// <summary>A problem of the control channel (not of a device), worded for one line on stderr.</summary>
public class ControlException(string message) : Exception(message);

/// <summary>The host cannot be reached or did not answer the first call.</summary>
public sealed class ControlUnreachableException(string message) : ControlException(message);

/// <summary>A request or reply that does not fit in one Akka.Remote frame; refused instead of dropped.</summary>
public sealed class ControlMessageTooLargeException(string message) : ControlException(message);

/// <summary>The host's answer to a request whose reply would not fit in one frame (see <see cref="ControlGate"/>).</summary>
public sealed record ControlReplyTooLarge(long Bytes, long Limit) : IControlMessage;

/// <summary>
/// How large a control message may be: one Akka.Remote frame (akka.remote.dot-netty.tcp.maximum-frame-size), less
/// room for its envelope. Akka drops a larger message without telling the sender, so both ends check first.
/// </summary>
public static class ControlFrame
{
    public const string FrameSizeKey = "akka.remote.dot-netty.tcp.maximum-frame-size";

    /// <summary>The envelope around a message (recipient and sender paths, serializer id, acks) is a few hundred bytes.</summary>
    public const int EnvelopeAllowance = 4096;

    public static long Limit(ActorSystem system) => (system.Settings.Config.GetByteSize(FrameSizeKey, null) ?? 128000) - EnvelopeAllowance;

    /// <summary>The message's size as the remote transport will send it (serialized by its bound serializer).</summary>
    public static long SizeOf(ActorSystem system, object message) =>
        system.Serialization.FindSerializerFor(message).ToBinary(message).LongLength;

    public static string TooLarge(string what, long bytes, long limit) =>
        $"{what} is {bytes} bytes, over the control channel's limit of {limit} bytes ({FrameSizeKey})";
}

/// <summary>
/// The remote end of <see cref="RemoteControl"/>: checks each request's size before it is sent, turns the host's
/// <see cref="ControlReplyTooLarge"/> and a missing answer into <see cref="ControlException"/>s.
/// </summary>
public sealed class RemoteControlChannel(ActorSystem system, ICanTell control, TimeSpan timeout, string host) : IControlChannel
{
    private readonly long _limit = ControlFrame.Limit(system);

    public Task<object> AskAsync(IControlMessage message) => AskAsync(message, TimeSpan.Zero);

    public async Task<object> AskAsync(IControlMessage message, TimeSpan longer)
    {
        var bytes = ControlFrame.SizeOf(system, message);
        if (bytes > _limit) throw new ControlMessageTooLargeException(ControlFrame.TooLarge("the request", bytes, _limit));
        object reply;
        var wait = timeout + longer;
        try { reply = await control.Ask<object>(message, wait); }
        catch (AskTimeoutException) { throw new ControlException(RemoteControl.NoAnswer(host, wait)); }
        if (reply is ControlReplyTooLarge big) throw new ControlMessageTooLargeException(ControlFrame.TooLarge("the host's reply", big.Bytes, big.Limit));
        return reply;
    }
}

/// <summary>
/// The dmsetup client's link to a running host: a small actor system with remoting on a free port of the local
/// address that reaches the host, and the host's control actor resolved by its path. Every step is bounded by one
/// timeout (--timeout, DMACTORS_TIMEOUT, or dmactors.control.ask-timeout).
/// </summary>
public sealed class RemoteControl : IAsyncDisposable
{
    /// <summary>How long leaving may take; a host that does not answer is left without its goodbye.</summary>
    private static readonly TimeSpan LeaveTimeout = TimeSpan.FromSeconds(3);

    /// <summary>What the Identify gets at least once the probe used up most of the timeout.</summary>
    private static readonly TimeSpan MinimumWait = TimeSpan.FromMilliseconds(100);

    private readonly ActorSystem _system;

    private RemoteControl(ActorSystem system, IControlChannel channel) { _system = system; Channel = channel; }

    public IControlChannel Channel { get; }

    public static string NoAnswer(string host, TimeSpan timeout) => $"no answer from the dmactors host at {host} within {Seconds(timeout)}s";

    public static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>`HOST:PORT` with a bracketed IPv6 address, as in a URI.</summary>
    public static string Endpoint(string host, int port) => host.Contains(':') ? $"[{host}]:{port}" : $"{host}:{port}";

    public static async Task<RemoteControl> ConnectAsync(HostSettings s, TimeSpan timeout)
    {
        var started = System.Diagnostics.Stopwatch.StartNew();
        using var deadline = new CancellationTokenSource(timeout);
        var named = Endpoint(s.ControlHost, s.ControlPort);
        var (remote, local) = await ProbeAsync(s.ControlHost, s.ControlPort, timeout, named, deadline.Token);
        var host = Endpoint(remote.ToString(), s.ControlPort);
        ActorSystem system;
        // Remoting binds to the local address the probe used: the host's own address is not ours unless on loopback.
        try { system = ActorSystem.Create("dmsetup", HostConfig.ClientAkka(s, local.ToString())); }
        catch (Exception e)
        {
            // Akka wraps the cause (a bad akka.remote setting, a bind failure) in several AggregateExceptions.
            throw new ControlUnreachableException($"cannot start the control client on {local}: {Innermost(e).Message}");
        }
        try
        {
            var path = HostSettings.ControlPathAt(remote.ToString(), s.ControlPort);
            var left = timeout - started.Elapsed;
            var control = await system.ActorSelection(path).ResolveOne(left > MinimumWait ? left : MinimumWait);
            return new RemoteControl(system, new RemoteControlChannel(system, control, timeout, host));
        }
        catch (Exception e)
        {
            await Leave(system);
            // ResolveOne wraps both its Ask's timeout and an answer "no such actor" (a host that is no dmactors host).
            throw new ControlUnreachableException(e is ActorNotFoundException { InnerException: ActorNotFoundException }
                ? $"cannot reach dmactors host at {host}: it answers, but has no {HostConfig.ControlName} actor"
                : NoAnswer(host, timeout));
        }
    }

    /// <summary>
    /// Resolves the host name and connects to each of its addresses in turn: a quick refusal or a name that does
    /// not resolve is said at once instead of after the whole timeout, and the connection tells which local address
    /// reaches the host. Returns the address that accepted and ours.
    /// </summary>
    private static async Task<(IPAddress Remote, IPAddress Local)> ProbeAsync(string hostName, int port, TimeSpan timeout, string named, CancellationToken ct)
    {
        string Unreachable(string why) => $"cannot reach dmactors host at {named}: {why}";
        IPAddress[] addresses;
        try
        {
            addresses = IPAddress.TryParse(hostName, out var ip) ? [ip] : await Dns.GetHostAddressesAsync(hostName, ct);
        }
        catch (SocketException e) { throw new ControlUnreachableException(Unreachable(e.Message)); }
        catch (OperationCanceledException) { throw new ControlUnreachableException(Unreachable($"name lookup timed out after {Seconds(timeout)}s")); }
        if (addresses.Length == 0) throw new ControlUnreachableException(Unreachable("the name has no address"));

        SocketException? refused = null;
        foreach (var address in addresses)
        {
            using var probe = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                await probe.ConnectAsync(new IPEndPoint(address, port), ct);
                return (address, ((IPEndPoint)probe.LocalEndPoint!).Address);
            }
            catch (SocketException e) { refused = e; }
            catch (OperationCanceledException)
            {
                throw new ControlUnreachableException(Unreachable($"connect timed out after {Seconds(timeout)}s"));
            }
        }
        throw new ControlUnreachableException(Unreachable(refused!.Message));
    }

    /// <summary>Terminate: remoting tells the host this client is leaving, so the host sees a clean disassociation.</summary>
    private static async Task Leave(ActorSystem system)
    {
        try { await system.Terminate().WaitAsync(LeaveTimeout); }
        catch (TimeoutException) { }
    }

    public async ValueTask DisposeAsync() => await Leave(_system);

    private static Exception Innermost(Exception e) => e.InnerException is { } inner ? Innermost(inner) : e;
}
