using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace DmActors.Tests.Nbd;

/// <summary>
/// Certificates made at test time, in the directory layout nbdkit, qemu and libnbd read: a server directory
/// (ca-cert.pem, server-cert.pem, server-key.pem) and client directories (ca-cert.pem, client-cert.pem,
/// client-key.pem), one signed by the same CA and one by another.
/// </summary>
public sealed class TestCertificates : IDisposable
{
    private readonly Support.TempDir _dir = new("dmactors-tls-");
    public string ServerDir { get; }
    /// <summary>The CA only: enough to check the server, no certificate of its own.</summary>
    public string AnonymousClientDir { get; }
    public string ClientDir { get; }
    /// <summary>A client certificate from another CA (it still trusts the server's CA).</summary>
    public string StrangerDir { get; }

    public TestCertificates()
    {
        using var ca = Authority("DmActors test CA");
        using var other = Authority("Some other CA");
        ServerDir = Directory(ca, "server", Leaf(ca, "server", serverAuth: true));
        AnonymousClientDir = Directory(ca, "anonymous", null);
        ClientDir = Directory(ca, "client", Leaf(ca, "client", serverAuth: false));
        StrangerDir = Directory(ca, "stranger", Leaf(other, "client", serverAuth: false), "client");
    }

    private static X509Certificate2 Authority(string name)
    {
        var key = RSA.Create(2048);
        var req = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        return req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
    }

    private static (X509Certificate2 Cert, RSA Key) Leaf(X509Certificate2 ca, string name, bool serverAuth)
    {
        var key = RSA.Create(2048);
        var req = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        req.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        req.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(
            [new Oid(serverAuth ? "1.3.6.1.5.5.7.3.1" : "1.3.6.1.5.5.7.3.2")], false));
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        req.CertificateExtensions.Add(san.Build());
        req.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(req.PublicKey, false));
        req.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        var serial = RandomNumberGenerator.GetBytes(12);
        serial[0] &= 0x7f;
        return (req.Create(ca, DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(29), serial), key);
    }

    private string Directory(X509Certificate2 ca, string name, (X509Certificate2 Cert, RSA Key)? leaf, string? fileRole = null)
    {
        var dir = System.IO.Directory.CreateDirectory(Path.Combine(_dir.Path, name)).FullName;
        File.WriteAllText(Path.Combine(dir, "ca-cert.pem"), ca.ExportCertificatePem());
        if (leaf is { } l)
        {
            var role = fileRole ?? name;
            File.WriteAllText(Path.Combine(dir, $"{role}-cert.pem"), l.Cert.ExportCertificatePem());
            File.WriteAllText(Path.Combine(dir, $"{role}-key.pem"), l.Key.ExportPkcs8PrivateKeyPem());
            l.Cert.Dispose();
            l.Key.Dispose();
        }
        return dir;
    }

    public void Dispose() => _dir.Dispose();
}
