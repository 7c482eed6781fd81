using System.Net;
using DmActors.Host.Nbd;
using DmActors.Tests.Support;
using Xunit;
using static DmActors.Host.Nbd.NbdProtocol;
using static DmActors.Tests.Nbd.ExternalTool;

namespace DmActors.Tests.Nbd;

/// <summary>
/// A node's disks served to the cluster as internal NBD exports (<see cref="DiskExports"/>), fenced by epoch: each
/// test has its own NBD server with internal exports on the shared NBD engine, and its own memory disk.
/// </summary>
[Collection(NbdCollection.Name)]
public sealed class InternalExportTests(NbdFixture fx) : IAsyncLifetime
{
    private const string Token = "s3cret";
    private static int _next;
    private readonly FenceTable _fences = new();
    private DiskExports _exports = null!;
    private NbdServer _server = null!;
    private MemoryDisk _disk = null!;

    private int Port => _server.TcpEndpoint!.Port;

    public async Task InitializeAsync()
    {
        _disk = fx.Disks.AddMemory($"ix{Interlocked.Increment(ref _next)}", 2048);
        _exports = new DiskExports(fx.System, fx.Disks, _fences, Token);
        _server = await fx.StartServerAsync(new NbdServerOptions { Tcp = new IPEndPoint(IPAddress.Loopback, 0), InternalExports = _exports });
    }

    public async Task DisposeAsync()
    {
        await _server.StopAsync();
        _exports.Dispose();
    }

    private string Name(long epoch, string volume = "V", string? disk = null, string token = Token) =>
        new InternalExport(token, disk ?? _disk.Name, volume, epoch).Format();

    private static byte[] Fill(byte b, int n = 4096) => Enumerable.Repeat(b, n).ToArray();

    private byte[] OnDisk(long offset, int n = 4096)
    {
        var b = new byte[n];
        _disk.ReadAt(offset, b);
        return b;
    }

    /// <summary>GO for <paramref name="name"/>, expected to be refused: the error reply's text.</summary>
    private string Refusal(string name)
    {
        using var c = RawNbdClient.Tcp(Port).Greet();
        var r = c.Option(Opt.Go, RawNbdClient.InfoRequest(name))[^1];
        Assert.Equal(Rep.ErrUnknown, r.Type);
        return r.Text;
    }

    [Fact]
    public void An_epoch_writes_and_reads_its_disk_and_the_token_is_not_shown()
    {
        using var c = RawNbdClient.Tcp(Port).Greet();
        var go = c.Option(Opt.Go, RawNbdClient.InfoRequest(Name(1), NbdProtocol.Info.Name));
        Assert.Equal(Rep.Ack, go[^1].Type);
        var info = RawNbdClient.ParseInfo(go);
        Assert.Equal((ulong)_disk.Sectors << 9, info.Size);
        Assert.Matches($@"^\.dmactors/-\d+/disk/{_disk.Name}/V/1$", info.Name); // the open's number, not the token

        Assert.Equal(0u, c.Write(8192, Fill(0x5a)));
        Assert.Equal(Fill(0x5a), c.Read(8192, 4096));
        Assert.Equal(Fill(0x5a), OnDisk(8192));
        Assert.Equal(0u, c.Write(0, Fill(0x5b), CmdFlags.Fua));
        Assert.Equal(0u, c.Request(Cmd.Flush, 0, 0).Error);
    }

    [Fact]
    public async Task A_newer_epoch_closes_the_older_epochs_connection_and_its_later_writes_never_land()
    {
        using var one = RawNbdClient.Open(Port, Name(1));
        Assert.Equal(0u, one.Write(0, Fill(0x11)));

        using var two = RawNbdClient.Open(Port, Name(2));
        // The claim has returned: whatever epoch 1 sends now is refused, or finds its connection closed.
        try
        {
            Assert.NotEqual(0u, one.Write(0, Fill(0x99)));
        }
        catch (Exception e) when (e is IOException or EndOfStreamException) { }
        Assert.True(one.IsClosedByServer(), "the epoch 1 connection stayed open");
        Assert.Equal(Fill(0x11), OnDisk(0));
        Assert.Equal(Fill(0x11), two.Read(0, 4096));

        Assert.Equal(0u, two.Write(0, Fill(0x22)));
        Assert.Equal(Fill(0x22), OnDisk(0));
        // Epoch 1's device is gone: only epoch 2 holds the disk open.
        await Poll.UntilAsync(() => Task.FromResult(_disk.OpenCount == 1), "epoch 1's device to close the disk");
    }

    [Fact]
    public void An_older_epoch_connecting_after_a_newer_one_is_refused_at_go_with_the_fence()
    {
        using var two = RawNbdClient.Open(Port, Name(2));
        Assert.Equal($"internal export: {_disk.Name}: volume V is claimed by epoch 2; epoch 1 is fenced", Refusal(Name(1)));
        // Other volumes of the disk are not fenced by it, and the owner's further connections are welcome.
        using var w = RawNbdClient.Open(Port, Name(1, volume: "W"));
        using var again = RawNbdClient.Open(Port, Name(2));
        Assert.Equal(0u, again.Write(0, Fill(0x33)));
        Assert.Equal(Fill(0x33), two.Read(0, 4096));
    }

    [Fact]
    public void A_wrong_token_is_refused_and_claims_nothing()
    {
        var text = Refusal(Name(5, token: "guess"));
        Assert.Equal("internal export: not a member of this cluster (wrong token)", text);
        Assert.Equal(0, _fences.Current(_disk.Name, "V"));
    }

    [Fact]
    public void An_unknown_disk_or_a_malformed_name_is_refused()
    {
        Assert.Equal("internal export: no disk nosuch on this node", Refusal(Name(1, disk: "nosuch")));
        Assert.StartsWith("internal export: malformed internal export name", Refusal($".dmactors/{Token}/disk/{_disk.Name}/V/0"));
    }

    [Fact]
    public async Task A_server_without_internal_exports_refuses_them()
    {
        await using var plain = await fx.StartServerAsync(new NbdServerOptions { Tcp = new IPEndPoint(IPAddress.Loopback, 0) });
        using var c = RawNbdClient.Tcp(plain.TcpEndpoint!.Port).Greet();
        var r = c.Option(Opt.Go, RawNbdClient.InfoRequest(Name(1)))[^1];
        Assert.Equal((Rep.ErrUnknown, "internal export: this node serves no internal exports"), (r.Type, r.Text));
    }

    [Fact]
    public async Task Internal_exports_are_not_listed_and_their_device_goes_with_the_last_connection()
    {
        var ordinary = await fx.CreateExportAsync();
        using (var a = RawNbdClient.Open(Port, Name(1)))
        using (var b = RawNbdClient.Open(Port, Name(1)))
        {
            Assert.Equal(0u, a.Write(0, Fill(0x44)));
            Assert.Equal(Fill(0x44), b.Read(0, 4096)); // one device, shared by the epoch's connections
            Assert.Equal(1, _disk.OpenCount);
            using var c = RawNbdClient.Tcp(Port).Greet();
            var names = c.Option(Opt.List).Where(r => r.Type == Rep.Server)
                .Select(r => System.Text.Encoding.UTF8.GetString(r.Data, 4, r.Data.Length - 4)).ToList();
            Assert.Contains(ordinary, names);
            Assert.DoesNotContain(names, n => InternalExport.IsInternal(n));
        }
        await Poll.UntilAsync(() => Task.FromResult(_disk.OpenCount == 0), "the internal export's device to close the disk");
    }

    [Fact]
    public void Flush_reaches_a_disk_with_a_volatile_cache()
    {
        var cached = fx.Disks.Add(new CachedDisk(new MemoryDisk($"ixc{Interlocked.Increment(ref _next)}", 2048, fx.Disks.NextDevNo())));
        using var c = RawNbdClient.Open(Port, Name(1, disk: cached.Name));
        Assert.Equal(0u, c.Write(0, Fill(0x61)));
        Assert.Equal(0u, c.Request(Cmd.Flush, 0, 0).Error);
        Assert.Equal(0u, c.Write(4096, Fill(0x62)));
        cached.PowerCut();
        Assert.Equal(Fill(0x61), c.Read(0, 4096));     // flushed: kept
        Assert.Equal(new byte[4096], c.Read(4096, 4096)); // not flushed: lost
    }

    [Fact]
    public async Task Qemu_io_reads_and_writes_an_internal_export_by_name()
    {
        _disk.WriteAt(0, Fill(0xab, 65536));
        var opts = $"driver=nbd,host=127.0.0.1,port={Port},export={Name(3)}";
        var output = await RunAsync("qemu-io", QemuUtils, "--image-opts",
            "-c", "read -P 0xab 0 64k",
            "-c", "write -P 0xcd 64k 4k",
            "-c", "flush", opts);
        Assert.DoesNotContain("fail", output, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(Fill(0xcd), OnDisk(65536));
    }
}
