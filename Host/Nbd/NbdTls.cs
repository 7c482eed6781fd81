using System.Net.Security;
using System.Net.Sockets;
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
        return TlsRelay.Start(ssl, raw, peer, abortive: false);
    }

    /// <summary>
    /// The client side for the cluster's data channel: this node shows its server certificate, and the other node's
    /// certificate must come from ca-cert.pem (the cluster's CA; names are not checked, every node has its own).
    /// </summary>
    public SslClientAuthenticationOptions ClientOptions(string targetHost)
    {
        if (_ca.Count == 0) throw new InvalidOperationException($"nbd.tls-certificates: {Path.Combine(Directory, "ca-cert.pem")} is needed for the data channel between nodes");
        return new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            ClientCertificateContext = _certificate,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            RemoteCertificateValidationCallback = (_, cert, _, _) => SignedByCa(cert),
        };
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
}
