using System.Security.Cryptography;
using System.Text.Json;
using Xunit;
using static DmActors.Tests.Nbd.ExternalTool;

namespace DmActors.Tests.Nbd;

/// <summary>
/// The server against the real Debian clients: nbdinfo and nbdcopy (libnbd-bin), qemu-io and qemu-img (qemu-utils),
/// over TCP and over the unix socket. Data is checked independently through the byte-level client or a checksum.
/// </summary>
[Collection(NbdCollection.Name)]
public sealed class NbdClientToolTests(NbdFixture fx)
{
    private string Url(string name) => $"nbd://127.0.0.1:{fx.Port}/{name}";
    private string UnixUrl(string name) => $"nbd+unix:///{name}?socket={fx.UnixSocket}";

    [Fact]
    public async Task Nbdinfo_sees_size_flags_and_block_sizes()
    {
        var name = await fx.CreateExportAsync(sectors: 16384);
        var json = await RunAsync("nbdinfo", LibnbdBin, "--json", Url(name));
        using var doc = JsonDocument.Parse(json);
        Assert.True(doc.RootElement.GetProperty("structured").GetBoolean(), json);
        var e = doc.RootElement.GetProperty("exports")[0];
        Assert.Equal(16384L * 512, e.GetProperty("export-size").GetInt64());
        foreach (var flag in new[] { "can_flush", "can_fua", "can_multi_conn", "can_trim", "can_zero", "can_fast_zero", "can_cache", "can_df" })
            Assert.True(e.GetProperty(flag).GetBoolean(), $"{flag} in {json}");
        Assert.False(e.GetProperty("is_read_only").GetBoolean());
        Assert.Contains("base:allocation", e.GetProperty("contexts").EnumerateArray().Select(c => c.GetString()));
        Assert.Equal(512, e.GetProperty("block_size_minimum").GetInt32());
        Assert.Equal(4096, e.GetProperty("block_size_preferred").GetInt32());
        Assert.Equal(64 << 20, e.GetProperty("block_size_maximum").GetInt32());
    }

    [Fact]
    public async Task Nbdinfo_lists_exports_and_sees_a_read_only_one()
    {
        var rw = await fx.CreateExportAsync();
        var ro = await fx.CreateExportAsync(readOnly: true);
        var json = await RunAsync("nbdinfo", LibnbdBin, "--list", "--json", $"nbd://127.0.0.1:{fx.Port}");
        using var doc = JsonDocument.Parse(json);
        var exports = doc.RootElement.GetProperty("exports").EnumerateArray().ToDictionary(x => x.GetProperty("export-name").GetString()!);
        Assert.True(exports.ContainsKey(rw), json);
        Assert.True(exports[ro].GetProperty("is_read_only").GetBoolean(), json);
        Assert.False(exports[rw].GetProperty("is_read_only").GetBoolean(), json);
    }

    [Fact]
    public async Task Qemu_io_writes_with_and_without_fua_flushes_and_reads_patterns()
    {
        var name = await fx.CreateExportAsync(sectors: 4096, file: true);
        var output = await RunAsync("qemu-io", QemuUtils, "-f", "raw",
            "-c", "write -P 0xab 0 64k",
            "-c", "write -f -P 0xcd 64k 64k",
            "-c", "write -P 0x11 5000 100", // unaligned: qemu reads-modifies-writes on the advertised 512-byte blocks
            "-c", "flush",
            "-c", "read -P 0xab 0 4096",
            "-c", "read -P 0xcd 64k 64k",
            "-c", "read -P 0x11 5000 100",
            Url(name));
        Assert.DoesNotContain("fail", output, StringComparison.OrdinalIgnoreCase);

        using var c = RawNbdClient.Open(fx.Port, name);
        var data = c.Read(0, 128 << 10);
        var expected = new byte[128 << 10];
        Array.Fill(expected, (byte)0xab, 0, 64 << 10);
        Array.Fill(expected, (byte)0x11, 5000, 100);
        Array.Fill(expected, (byte)0xcd, 64 << 10, 64 << 10);
        Assert.Equal(expected, data);
    }

    [Fact]
    public async Task Qemu_io_writes_and_reads_40_MiB_at_once()
    {
        var name = await fx.CreateExportAsync(sectors: 96 * 2048);
        var output = await RunAsync("qemu-io", QemuUtils, "-f", "raw",
            "-c", "write -P 0x5a 1M 40M", "-c", "read -P 0x5a 1M 40M", Url(name));
        Assert.DoesNotContain("fail", output, StringComparison.OrdinalIgnoreCase);
        using var c = RawNbdClient.Open(fx.Port, name);
        Assert.All(c.Read(41 * 1024 * 1024 - 4096, 4096), b => Assert.Equal(0x5a, b));
    }

    [Fact]
    public async Task Qemu_io_detects_a_wrong_pattern()
    {
        // Proves the pattern reads above can fail: 0xab was never written here.
        var name = await fx.CreateExportAsync();
        var (code, stdout, stderr) = await TryRunAsync("qemu-io", QemuUtils, "-f", "raw", "-c", "read -P 0xab 0 4k", Url(name));
        Assert.True(code != 0 || (stdout + stderr).Contains("Pattern verification failed"), stdout + stderr);
    }

    [Fact]
    public async Task Qemu_img_convert_into_an_export_then_compare()
    {
        const int size = 8 << 20;
        var name = await fx.CreateExportAsync(sectors: size / 512, file: true);
        var source = Path.Combine(fx.TempDir, $"{name}-src.img");
        var bytes = RawNbdClient.Pattern(size, 2024);
        Array.Clear(bytes, 1 << 20, 3 << 20); // a run of zeroes: qemu sends WRITE_ZEROES for it
        await File.WriteAllBytesAsync(source, bytes);
        using (var c = RawNbdClient.Open(fx.Port, name)) Assert.Equal(0u, c.Write(1 << 20, RawNbdClient.Pattern(1 << 20, 5))); // stale data to be zeroed

        await RunAsync("qemu-img", QemuUtils, "convert", "-n", "-f", "raw", "-O", "raw", source, Url(name));
        await RunAsync("qemu-img", QemuUtils, "compare", "-f", "raw", "-F", "raw", source, Url(name));

        using var check = RawNbdClient.Open(fx.Port, name, structured: true);
        Assert.Equal(bytes[..(4 << 20)], check.Read(0, 4 << 20));
        Assert.Equal(bytes[(4 << 20)..], check.Read(4 << 20, 4 << 20));
    }

    [Fact]
    public async Task Nbdcopy_round_trip_keeps_the_checksum()
    {
        const int size = 16 << 20;
        var name = await fx.CreateExportAsync(sectors: size / 512, file: true);
        var source = Path.Combine(fx.TempDir, $"{name}-in.img");
        var target = Path.Combine(fx.TempDir, $"{name}-out.img");
        var bytes = RawNbdClient.Pattern(size, 99);
        Array.Clear(bytes, 8 << 20, 2 << 20);
        await File.WriteAllBytesAsync(source, bytes);
        await File.WriteAllBytesAsync(target, []);

        await RunAsync("nbdcopy", LibnbdBin, "--flush", source, Url(name));
        await RunAsync("nbdcopy", LibnbdBin, Url(name), target);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(bytes)), Convert.ToHexString(SHA256.HashData(await File.ReadAllBytesAsync(target))));
    }

    [Fact]
    public async Task Two_concurrent_qemu_io_clients_on_one_export()
    {
        var name = await fx.CreateExportAsync(sectors: 8192, file: true); // 4 MiB
        var first = RunAsync("qemu-io", QemuUtils, "-f", "raw",
            "-c", "write -P 0x5a 0 1M", "-c", "write -P 0x5b 1M 1M", "-c", "flush", "-c", "read -P 0x5a 0 1M", Url(name));
        var second = RunAsync("qemu-io", QemuUtils, "-f", "raw",
            "-c", "write -P 0xa5 2M 1M", "-c", "write -P 0xa6 3M 1M", "-c", "flush", "-c", "read -P 0xa6 3M 1M", Url(name));
        var outputs = await Task.WhenAll(first, second);
        Assert.All(outputs, o => Assert.DoesNotContain("fail", o, StringComparison.OrdinalIgnoreCase));

        using var c = RawNbdClient.Open(fx.Port, name, structured: true);
        var data = c.Read(0, 4 << 20);
        var patterns = new byte[] { 0x5a, 0x5b, 0xa5, 0xa6 };
        for (var i = 0; i < 4; i++) Assert.All(data[(i << 20)..((i + 1) << 20)], b => Assert.Equal(patterns[i], b));
    }

    [Fact]
    public async Task Fio_random_writes_with_flushes_verify_by_checksum()
    {
        var name = await fx.CreateExportAsync(sectors: 16 << 11, file: true); // 16 MiB
        var output = await RunAsync("fio", Fio, "--name=verify", "--ioengine=nbd", $"--uri={Url(name)}", "--rw=randwrite",
            "--bs=4k", "--iodepth=16", "--size=8M", "--fsync=32", "--verify=crc32c", "--do_verify=1", "--verify_fatal=1",
            "--output-format=terse", "--terse-version=3");
        var fields = output.Split(';');
        Assert.True(fields.Length > 48 && long.Parse(fields[48]) > 0, output); // write IOPS were measured: fio really ran
    }

    [Fact]
    public async Task Clients_connect_over_the_unix_socket()
    {
        var name = await fx.CreateExportAsync(sectors: 2048);
        await RunAsync("qemu-io", QemuUtils, "-f", "raw", "-c", "write -P 0x77 4k 8k", UnixUrl(name));
        await RunAsync("qemu-io", QemuUtils, "-f", "raw", "-c", "read -P 0x77 4k 8k", UnixUrl(name));
        var json = await RunAsync("nbdinfo", LibnbdBin, "--json", UnixUrl(name));
        using var doc = JsonDocument.Parse(json);
        Assert.Equal(2048L * 512, doc.RootElement.GetProperty("exports")[0].GetProperty("export-size").GetInt64());

        using var c = RawNbdClient.Tcp(fx.Port).Greet().Go(name);
        Assert.All(c.Read(4096, 8192), b => Assert.Equal(0x77, b));
    }
}
