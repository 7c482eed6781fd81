using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Authentication;

namespace DmActors;

/// <summary>
/// TLS under code that speaks to a raw socket (non-blocking recv and sendmsg, as the NBD server and the NBD client
/// disk do): the TLS stream is relayed to one end of a socket pair, one thread each way, and the code goes on with
/// the other end as if it were the network. When either direction ends (EOF or an error) both are shut, so the code
/// sees end of stream and the peer a close.
/// </summary>
public static class TlsRelay
{
    private const int Chunk = 256 << 10;

    /// <summary>
    /// Relays <paramref name="ssl"/> (an authenticated stream over <paramref name="network"/>) and returns the
    /// plaintext socket. <paramref name="abortive"/>: the network socket is reset when the relay ends, so nothing
    /// unsent reaches the peer later (the client disk's rule); otherwise closed cleanly after a close_notify.
    /// </summary>
    public static Socket Start(SslStream ssl, Socket network, string name, bool abortive)
    {
        var (mine, theirs) = SocketPair();
        var pending = 2;
        void Done()
        {
            try { mine.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            if (abortive) try { network.LingerState = new LingerOption(true, 0); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            ssl.Dispose(); // wakes the other direction's read
            if (Interlocked.Decrement(ref pending) == 0) mine.Dispose();
        }
        Run($"tls in {name}", () =>
        {
            var buffer = new byte[Chunk];
            for (int n; (n = ssl.Read(buffer)) > 0;)
                for (var at = 0; at < n;) at += mine.Send(buffer.AsSpan(at, n - at));
        }, Done);
        Run($"tls out {name}", () =>
        {
            var buffer = new byte[Chunk];
            for (int n; (n = mine.Receive(buffer)) > 0;) ssl.Write(buffer.AsSpan(0, n));
            if (!abortive) ssl.ShutdownAsync().GetAwaiter().GetResult(); // close_notify: the peer sees a clean end
        }, Done);
        return theirs;
    }

    private static void Run(string name, Action loop, Action done) => new Thread(() =>
    {
        try { loop(); }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException or AuthenticationException) { }
        finally { done(); }
    }) { IsBackground = true, Name = name }.Start();

    private static unsafe (Socket, Socket) SocketPair()
    {
        const int AfUnix = 1, SockStream = 1, SockCloexec = 0x80000;
        var fds = stackalloc int[2];
        if (socketpair(AfUnix, SockStream | SockCloexec, 0, fds) != 0) throw new SocketException(Marshal.GetLastPInvokeError());
        return (new Socket(new SafeSocketHandle(fds[0], ownsHandle: true)), new Socket(new SafeSocketHandle(fds[1], ownsHandle: true)));
    }

    [DllImport("libc", SetLastError = true)] private static extern unsafe int socketpair(int domain, int type, int protocol, int* sv);
}
