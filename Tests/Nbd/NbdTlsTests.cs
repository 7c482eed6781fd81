using System.Net;
using System.Security.Cryptography;
using System.Text.Json;
using DmActors.Host.Nbd;
using Xunit;
using static DmActors.Host.Nbd.NbdProtocol;
using static DmActors.Tests.Nbd.ExternalTool;

namespace DmActors.Tests.Nbd;

/// <summary>Three TLS servers on the shared NBD engine (so they serve the same exports): require, on, and require with verify-peer.</summary>
public sealed class TlsServers : IAsyncLifetime
{
    public TestCertificates Certs { get; } = new();
    public NbdServer Require { get; private set; } = null!;
    public NbdServer On { get; private set; } = null!;
    public NbdServer VerifyPeer { get; private set; } = null!;

    public async Task StartAsync(NbdFixture fx)
    {
        if (Require != null) return;
        NbdServerOptions Options(NbdTlsMode mode, bool verify) =>
            new() { Tcp = new IPEndPoint(IPAddress.Loopback, 0), Tls = new NbdTls(mode, Certs.ServerDir, verify) };
        Require = await fx.StartServerAsync(Options(NbdTlsMode.Require, false));
        On = await fx.StartServerAsync(Options(NbdTlsMode.On, false));
        VerifyPeer = await fx.StartServerAsync(Options(NbdTlsMode.Require, true));
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var s in new[] { Require, On, VerifyPeer })
            if (s != null) await s.StopAsync();
        Certs.Dispose();
    }
}

/// <summary>
/// NBD over TLS (STARTTLS) against the real clients: nbdinfo and nbdcopy with nbds:// URIs, qemu-io with
/// tls-creds-x509; plain clients refused by `require`, client certificates checked with verify-peer.
/// </summary>
[Collection(NbdCollection.Name)]
public sealed class NbdTlsTests(NbdFixture fx, TlsServers tls) : IClassFixture<TlsServers>, IAsyncLifetime
{
    public Task InitializeAsync() => tls.StartAsync(fx);
    public Task DisposeAsync() => Task.CompletedTask;

    private static string Nbds(NbdServer s, string name, string certs) =>
        $"nbds://127.0.0.1:{s.TcpEndpoint!.Port}/{name}?tls-certificates={certs}";

    [Fact]
    public async Task Nbdinfo_and_nbdcopy_over_tls_move_the_data()
    {
        const int size = 4 << 20;
        var name = await fx.CreateExportAsync(sectors: size / 512, file: true);
        var json = await RunAsync("nbdinfo", LibnbdBin, "--json", Nbds(tls.Require, name, tls.Certs.AnonymousClientDir));
        using (var doc = JsonDocument.Parse(json))
            Assert.Equal(size, doc.RootElement.GetProperty("exports")[0].GetProperty("export-size").GetInt64());

        var source = Path.Combine(fx.TempDir, $"{name}-tls-in.img");
        var back = Path.Combine(fx.TempDir, $"{name}-tls-out.img");
        var bytes = RawNbdClient.Pattern(size, 77);
        await File.WriteAllBytesAsync(source, bytes);
        await File.WriteAllBytesAsync(back, []);
        await RunAsync("nbdcopy", LibnbdBin, "--flush", source, Nbds(tls.Require, name, tls.Certs.AnonymousClientDir));
        await RunAsync("nbdcopy", LibnbdBin, Nbds(tls.Require, name, tls.Certs.AnonymousClientDir), back);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(bytes)), Convert.ToHexString(SHA256.HashData(await File.ReadAllBytesAsync(back))));
        using var plain = RawNbdClient.Open(fx.Port, name); // the same bytes through the plain server
        Assert.Equal(bytes[..65536], plain.Read(0, 65536));
    }

    [Fact]
    public async Task Qemu_io_over_tls_with_x509_credentials()
    {
        var name = await fx.CreateExportAsync(sectors: 4096);
        var port = tls.Require.TcpEndpoint!.Port;
        var output = await RunAsync("qemu-io", QemuUtils,
            "--object", $"tls-creds-x509,id=tls0,dir={tls.Certs.AnonymousClientDir},endpoint=client",
            "--image-opts", $"driver=nbd,host=127.0.0.1,port={port},export={name},tls-creds=tls0",
            "-c", "write -P 0x3c 0 256k", "-c", "flush", "-c", "read -P 0x3c 0 256k");
        Assert.DoesNotContain("fail", output, StringComparison.OrdinalIgnoreCase);
        using var plain = RawNbdClient.Open(fx.Port, name);
        Assert.All(plain.Read(0, 256 << 10), b => Assert.Equal(0x3c, b));
    }

    [Fact]
    public async Task Require_refuses_every_option_before_starttls_and_lists_nothing()
    {
        var name = await fx.CreateExportAsync();
        using var c = RawNbdClient.Tcp(tls.Require.TcpEndpoint!.Port).Greet();
        Assert.Equal(Rep.ErrTlsReqd, c.Option(Opt.List)[^1].Type);
        Assert.Single(c.Option(Opt.List)); // nothing but the error: no export named
        Assert.Equal(Rep.ErrTlsReqd, c.Option(Opt.Go, RawNbdClient.InfoRequest(name))[^1].Type);
        Assert.Equal(Rep.ErrTlsReqd, c.Option(Opt.StructuredReply)[^1].Type);
        Assert.Equal(Rep.ErrInvalid, c.Option(Opt.StartTls, [1, 2, 3])[^1].Type); // STARTTLS takes no data
        c.SendOption(Opt.ExportName, System.Text.Encoding.UTF8.GetBytes(name));
        Assert.True(c.IsClosedByServer()); // EXPORT_NAME has no error reply: the server closes

        var (code, stdout, _) = await TryRunAsync("nbdinfo", LibnbdBin, $"nbd://127.0.0.1:{tls.Require.TcpEndpoint!.Port}/{name}");
        Assert.True(code != 0, $"a plain nbdinfo was served: {stdout}");
    }

    [Fact]
    public async Task On_serves_plain_and_tls_clients_and_off_refuses_starttls()
    {
        var name = await fx.CreateExportAsync();
        var port = tls.On.TcpEndpoint!.Port;
        await RunAsync("nbdinfo", LibnbdBin, $"nbd://127.0.0.1:{port}/{name}");
        await RunAsync("nbdinfo", LibnbdBin, Nbds(tls.On, name, tls.Certs.AnonymousClientDir));
        using var c = RawNbdClient.Tcp(fx.Port).Greet(); // the plain server
        Assert.Equal(Rep.ErrUnsup, c.Option(Opt.StartTls)[^1].Type);
    }

    [Fact]
    public async Task Verify_peer_wants_a_client_certificate_from_the_servers_ca()
    {
        var name = await fx.CreateExportAsync();
        await RunAsync("nbdinfo", LibnbdBin, Nbds(tls.VerifyPeer, name, tls.Certs.ClientDir));
        foreach (var refused in new[] { tls.Certs.AnonymousClientDir, tls.Certs.StrangerDir })
        {
            var (code, stdout, stderr) = await TryRunAsync("nbdinfo", LibnbdBin, Nbds(tls.VerifyPeer, name, refused));
            Assert.True(code != 0, $"{refused} was let in: {stdout}");
        }
    }

    [Fact]
    public async Task The_data_channel_disk_speaks_tls_to_a_server_that_requires_it()
    {
        var name = await fx.CreateExportAsync(sectors: 2048);
        var endpoint = tls.VerifyPeer.TcpEndpoint!;
        var plain = Assert.Throws<TargetException>(() => NbdDisk.Connect("plain", "43:1", new NbdDiskTarget(() => endpoint, name)));
        Assert.Contains("NBD_REP_ERR_TLS_REQD", plain.Message);

        // A node shows its server certificate (signed by the cluster's CA), which verify-peer accepts.
        var node = new NbdTls(NbdTlsMode.Require, tls.Certs.ServerDir, verifyPeer: true);
        var disk = NbdDisk.Connect("tls", "43:2", new NbdDiskTarget(() => endpoint, name),
            new NbdDiskOptions { Tls = () => node.ClientOptions("localhost") });
        try
        {
            var data = RawNbdClient.Pattern(65536, 21);
            Assert.Equal(BioStatus.Ok, await SubmitAsync(disk, Bio.Write(128, data, Akka.Actor.ActorRefs.Nobody, BioFlags.Fua)));
            var back = new byte[65536];
            Assert.Equal(BioStatus.Ok, await SubmitAsync(disk, Bio.Read(128, back, Akka.Actor.ActorRefs.Nobody)));
            Assert.Equal(data, back);
            using var check = RawNbdClient.Open(fx.Port, name); // what landed, seen through the plain server
            Assert.Equal(data, check.Read(128 * 512, 65536));
        }
        finally { disk.Dispose(); }
    }

    private static Task<BioStatus> SubmitAsync(IBlockDevice device, Bio bio)
    {
        var done = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        bio.ReplyTo = CallbackRef.ForBios(d => done.TrySetResult(d.Status));
        device.Submit(bio);
        return done.Task.WaitAsync(NbdFixture.Timeout);
    }

    [Fact]
    public async Task A_host_configured_with_tls_require_serves_nbds_only()
    {
        using var host = await Support.HostProcess.StartAsync($"nbd {{ tls = require, tls-certificates = \"{tls.Certs.ServerDir}\" }}");
        var (code, stdout, _) = await TryRunAsync("nbdinfo", LibnbdBin, $"nbd://127.0.0.1:{host.NbdPort}/demo");
        Assert.True(code != 0, $"a plain client was served: {stdout}");
        var json = await RunAsync("nbdinfo", LibnbdBin, "--json", $"nbds://127.0.0.1:{host.NbdPort}/demo?tls-certificates={tls.Certs.AnonymousClientDir}");
        using var doc = JsonDocument.Parse(json);
        Assert.True(doc.RootElement.GetProperty("exports")[0].GetProperty("export-size").GetInt64() > 0, json);
    }

    [Fact]
    public void Bad_tls_settings_are_named()
    {
        var e = Assert.Throws<ArgumentException>(() => new NbdTls(NbdTlsMode.Require, fx.TempDir, false));
        Assert.Contains("server-cert.pem does not exist", e.Message);
        e = Assert.Throws<ArgumentException>(() => new NbdTls(NbdTlsMode.Require, tls.Certs.AnonymousClientDir, true));
        Assert.Contains("server-cert.pem", e.Message);
    }
}
