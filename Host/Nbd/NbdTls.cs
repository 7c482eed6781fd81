using System.Net.Security;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace DmActors.Host.Nbd;

/// <summary>nbd.tls: off (STARTTLS refused), on (offered), require (nothing but STARTTLS and ABORT before it).</summary>
public enum NbdTlsMode { Off, On, Require }

/// <summary>
/// TLS for NBD (STARTTLS), with certificates in the directory layout nbdkit and qemu use: ca-cert.pem,
/// server-cert.pem, server-key.pem. With <see cref="VerifyPeer"/> a client must present a certificate that
/// ca-cert.pem signed. Loaded once at start, so a missing or bad file is a start error that names it.
/// </summary>
public sealed class NbdTls
{
    public NbdTlsMode Mode { get; }
    public string Directory { get; }
    public bool VerifyPeer { get; }
    /// <summary>Also on the unix socket (by default only the TCP listener: a local socket is guarded by its file mode).</summary>
    public bool OnUnixSocket { get; }
    private readonly SslStreamCertificateContext _certificate;
    private readonly X509Certificate2Collection _ca = new();

    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(30);

    public NbdTls(NbdTlsMode mode, string directory, bool verifyPeer, bool onUnixSocket = false)
    {
        Mode = mode; Directory = directory; VerifyPeer = verifyPeer; OnUnixSocket = onUnixSocket;
        string File(string name)
        {
            var path = Path.Combine(directory, name);
            if (!System.IO.File.Exists(path)) throw new ArgumentException($"nbd.tls-certificates: {path} does not exist");
            return path;
        }
        X509Certificate2 server;
        try { server = X509Certificate2.CreateFromPemFile(File("server-cert.pem"), File("server-key.pem")); }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            throw new ArgumentException($"nbd.tls-certificates: server-cert.pem / server-key.pem in {directory}: {e.Message}");
        }
        var caPath = Path.Combine(directory, "ca-cert.pem");
        if (verifyPeer || System.IO.File.Exists(caPath))
        {
            try { _ca.ImportFromPemFile(File("ca-cert.pem")); }
            catch (System.Security.Cryptography.CryptographicException e) { throw new ArgumentException($"nbd.tls-certificates: {caPath}: {e.Message}"); }
            if (_ca.Count == 0) throw new ArgumentException($"nbd.tls-certificates: {caPath} holds no certificate");
        }
        _certificate = SslStreamCertificateContext.Create(server, _ca.Count > 0 ? _ca : null, offline: true);
    }

    /// <summary>Whether a connection from this listener may use TLS at all.</summary>
    public bool AppliesTo(bool unixSocket) => Mode != NbdTlsMode.Off && (!unixSocket || OnUnixSocket);

    /// <summary>
    /// The server side of the TLS handshake on <paramref name="raw"/> (blocking, bounded by
    /// <see cref="HandshakeTimeout"/>), then a relay: the returned socket carries the plaintext, so the connection
    /// reads and sends on it exactly as on a plain one. The relay owns <paramref name="raw"/> and closes it when
    /// either side ends.
    /// </summary>
    public Socket Accept(Socket raw, string peer)
    {
        var ssl = new SslStream(new NetworkStream(raw, ownsSocket: true), leaveInnerStreamOpen: false);
        var options = new SslServerAuthenticationOptions
        {
            ServerCertificateContext = _certificate,
            ClientCertificateRequired = VerifyPeer,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, cert, _, errors) => !VerifyPeer || SignedByCa(cert),
        };
        try
        {
            using var timeout = new CancellationTokenSource(HandshakeTimeout);
            ssl.AuthenticateAsServerAsync(options, timeout.Token).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is AuthenticationException or IOException or OperationCanceledException)
        {
            ssl.Dispose();
            throw new NbdProtocolException($"TLS handshake failed: {e.Message}");
        }
        var (mine, theirs) = SocketPair();
        TlsRelay.Start(ssl, mine, peer);
        return theirs;
    }

    private bool SignedByCa(X509Certificate? presented)
    {
        if (presented == null) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(_ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(presented as X509Certificate2 ?? new X509Certificate2(presented));
    }

    private static unsafe (Socket, Socket) SocketPair()
    {
        const int AfUnix = 1, SockStream = 1, SockCloexec = 0x80000;
        var fds = stackalloc int[2];
        if (socketpair(AfUnix, SockStream | SockCloexec, 0, fds) != 0) throw new SocketException(Marshal.GetLastPInvokeError());
        return (new Socket(new SafeSocketHandle(fds[0], ownsHandle: true)), new Socket(new SafeSocketHandle(fds[1], ownsHandle: true)));
    }

    [DllImport("libc", SetLastError = true)] private static extern unsafe int socketpair(int domain, int type, int protocol, int* sv);
}

/// <summary>
/// Moves bytes between a TLS stream and the plaintext end of a socket pair, one thread each way. When either
/// direction ends (EOF or an error) both are shut down, so the connection sees end of stream and the client a close.
/// </summary>
internal static class TlsRelay
{
    private const int Chunk = 256 << 10;

    public static void Start(SslStream ssl, Socket plain, string peer)
    {
        var pending = 2;
        void Done()
        {
            try { plain.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            if (Interlocked.Decrement(ref pending) > 0)
            {
                ssl.Dispose(); // wakes the other direction's read
                return;
            }
            ssl.Dispose();
            plain.Dispose();
        }
        Run($"nbd tls in {peer}", () =>
        {
            var buffer = new byte[Chunk];
            for (int n; (n = ssl.Read(buffer)) > 0;)
                for (var at = 0; at < n;) at += plain.Send(buffer.AsSpan(at, n - at));
        }, Done);
        Run($"nbd tls out {peer}", () =>
        {
            var buffer = new byte[Chunk];
            for (int n; (n = plain.Receive(buffer)) > 0;) ssl.Write(buffer.AsSpan(0, n));
            ssl.ShutdownAsync().GetAwaiter().GetResult(); // close_notify: the client sees a clean end
        }, Done);
    }

    private static void Run(string name, Action loop, Action done) => new Thread(() =>
    {
        try { loop(); }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException or InvalidOperationException or AuthenticationException) { }
        finally { done(); }
    }) { IsBackground = true, Name = name }.Start();
}
