using System.Text.RegularExpressions;
using Akka.Event;

namespace DmActors.Host;

/// <summary>
/// The host's Akka logger: Akka's default output, except for what Akka.Remote says about connections to the control
/// port. It reports those at ERROR with stack traces, though none is an error of the host: a dmsetup that went away
/// without leaving (killed, or it gave up on a stopped host) becomes one INFO line, a connection from something that
/// does not speak Akka.Remote (garbage on the port) one WARNING line; its other reports keep their level, on one line.
/// </summary>
public sealed partial class HostLogger : DefaultLogger
{
    private readonly LogLevel _level = Logging.LogLevelFor(Context.System.Settings.LogLevel);

    /// <summary>Peers already reported as strangers: DotNetty may fail several frames of one connection's bytes.</summary>
    private readonly Queue<string> _strangers = new();

    protected override void Print(LogEvent e)
    {
        if (Rewrite(e) is not { } shown) return;
        if (shown.Message is Stranger s)
        {
            if (s.Peer != null && _strangers.Contains(s.Peer)) return;
            if (s.Peer != null) _strangers.Enqueue(s.Peer);
            if (_strangers.Count > 64) _strangers.Dequeue();
        }
        // Akka only sends what passes akka.loglevel; a report turned into INFO is checked against it again.
        if (shown.LogLevel() >= _level) base.Print(shown);
    }

    /// <summary>The message of a warning about a connection that does not speak Akka.Remote.</summary>
    public sealed record Stranger(string? Peer, string Reason)
    {
        public override string ToString() => $"closed a connection{(Peer != null ? $" from {Peer}" : "")} that does not speak Akka.Remote: {Reason}";
    }

    /// <summary>The event as the host shows it, or null to drop it.</summary>
    public static LogEvent? Rewrite(LogEvent e)
    {
        if (!FromRemoting(e)) return e;
        var text = e.Message?.ToString() ?? "";
        // The association's writer fails with the end of the connection and its supervisor logs that failure too;
        // its parent's warning (below) says the same with the client's address.
        if (e.Cause?.GetType().Name == "EndpointDisassociatedException") return null;
        if (text.Contains("EndpointDisassociatedException") && RemoteSystem().Match(text) is { Success: true } gone)
            return new Info(Source, typeof(HostLogger), $"{gone.Groups[1].Value} went away without leaving");
        var cause = Innermost(e.Cause);
        if (cause != null && IsGarbage(cause)) return new Warning(Source, typeof(HostLogger), new Stranger(Peer(e, text), FirstLine(cause.Message)));
        var line = FirstLine(text) + (cause != null ? $": {cause.GetType().Name}: {FirstLine(cause.Message)}" : "");
        if (cause == null && line == text) return e;
        return e switch
        {
            Error => new Error(null, e.LogSource, e.LogClass, line),
            Warning => new Warning(e.LogSource, e.LogClass, line),
            Info => new Info(e.LogSource, e.LogClass, line),
            _ => new Debug(e.LogSource, e.LogClass, line),
        };
    }

    private const string Source = "control";

    private static bool FromRemoting(LogEvent e) =>
        e.LogClass?.Namespace?.StartsWith("Akka.Remote") == true
        || e.LogSource.Contains("/system/endpointManager/") || e.LogSource.Contains("/system/transports/");

    /// <summary>Bytes that are not Akka.Remote's framing or protocol: an oversized frame, a PDU that does not decode.</summary>
    private static bool IsGarbage(Exception cause) =>
        cause.GetType().Name is "TooLongFrameException" or "CorruptedFrameException" or "DecoderException" or "InvalidProtocolBufferException" or "PduCodecException";

    /// <summary>The peer's address when the report names it: DotNetty's "[local->remote]" or the protocol actor's encoded path.</summary>
    private static string? Peer(LogEvent e, string text)
    {
        var m = ChannelPeer().Match(text);
        if (!m.Success) m = PathPeer().Match(Uri.UnescapeDataString(e.LogSource));
        return m.Success ? MappedIpv4().Replace(m.Groups[1].Value, "$1") : null;
    }

    private static Exception? Innermost(Exception? e) => e?.InnerException is { } inner ? Innermost(inner) : e;

    private static string FirstLine(string text) => text.Split('\n', 2)[0].TrimEnd('\r', ' ');

    [GeneratedRegex(@"remote system (\S+) has failed")]
    private static partial Regex RemoteSystem();

    [GeneratedRegex(@"->(\S+?)\]\(Id=")]
    private static partial Regex ChannelPeer();

    [GeneratedRegex(@"akkaProtocol-tcp://[^@]+@(\S+?)-\d+$")]
    private static partial Regex PathPeer();

    /// <summary>[::ffff:127.0.0.1] (an IPv4 client on a dual-stack socket) as 127.0.0.1.</summary>
    [GeneratedRegex(@"\[::ffff:([0-9.]+)\]")]
    private static partial Regex MappedIpv4();
}
