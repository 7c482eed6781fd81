using System.Security.Cryptography;
using System.Text.Json;
using Xunit;
using static DmActors.Host.Nbd.NbdProtocol;
using static DmActors.Tests.Nbd.ExternalTool;

namespace DmActors.Tests.Nbd;

/// <summary>
/// Holes over NBD: BLOCK_STATUS base:allocation from the disks' real allocation, mapped through the tables; TRIM and
/// WRITE_ZEROES punching holes (or not, with NO_HOLE); FAST_ZERO refused where zeroes would be written. Checked with
/// the byte-level client and with qemu-img, nbdinfo and nbdcopy.
/// </summary>
[Collection(NbdCollection.Name)]
public sealed class NbdHolesTests(NbdFixture fx, Xunit.Abstractions.ITestOutputHelper output)
{
    private const uint K = 1024, M = 1 << 20;
    private const uint HoleZero = 3, Data = 0;

    private string Url(string name) => $"nbd://127.0.0.1:{fx.Port}/{name}";

    [Fact]
    public async Task Block_status_maps_the_holes_of_a_file_disk()
    {
        var name = await fx.CreateExportAsync(sectors: 8 * M / 512, file: true); // a new sparse file
        using var c = RawNbdClient.Open(fx.Port, name, structured: true, meta: true);
        Assert.Equal(0u, c.Write(M, RawNbdClient.Pattern(64 * (int)K, 1)));
        Assert.Equal(0u, c.Write(5 * M + 4 * K, RawNbdClient.Pattern(4 * (int)K, 2)));

        var all = c.Request(Cmd.BlockStatus, 0, 8 * M);
        Assert.Equal(0u, all.Error);
        Assert.Equal([(M, HoleZero), (64 * K, Data), (4 * M + 4 * K - 64 * K, HoleZero), (4 * K, Data), (3 * M - 8 * K, HoleZero)], all.Extents!);
        Assert.Equal([(M, HoleZero)], c.Request(Cmd.BlockStatus, 0, 8 * M, flags: CmdFlags.ReqOne).Extents!);
        Assert.Equal([(60 * K, Data), (4 * K, HoleZero)], c.Request(Cmd.BlockStatus, M + 4 * K, 64 * K).Extents!);
    }

    [Fact]
    public async Task Block_status_goes_through_striped_zero_error_and_stacked_tables()
    {
        var a = fx.Disks.AddMemory($"bs-a-{Guid.NewGuid():N}", 2048);
        var b = fx.Disks.AddMemory($"bs-b-{Guid.NewGuid():N}", 2048);
        // 512 KiB striped in 64 KiB chunks (chunk 1 is b's first 64 KiB), 256 KiB zero, 256 KiB error.
        var top = await fx.CreateTableExportAsync($"0 1024 striped 2 128 {a.Name} 0 {b.Name} 0\n1024 512 zero\n1536 512 error");
        var stacked = await fx.CreateTableExportAsync($"0 2048 linear {top} 0");
        using (var w = RawNbdClient.Open(fx.Port, top)) Assert.Equal(0u, w.Write(64 * K, RawNbdClient.Pattern(4096, 3)));

        // Memory disks allocate 64 KiB at a time: b's first chunk is data, everything else of the stripes a hole.
        (uint, uint)[] expected = [(64 * K, HoleZero), (64 * K, Data), (384 * K + 256 * K, HoleZero), (256 * K, Data)];
        foreach (var name in new[] { top, stacked })
        {
            using var c = RawNbdClient.Open(fx.Port, name, structured: true, meta: true);
            var r = c.Request(Cmd.BlockStatus, 0, M);
            Assert.Equal(0u, r.Error);
            Assert.Equal(expected, r.Extents!);
        }
    }

    [Fact]
    public async Task Write_zeroes_punches_a_hole_unless_no_hole_and_trim_punches_one()
    {
        var name = await fx.CreateExportAsync(sectors: 1024, file: true);
        var file = Path.Combine(fx.TempDir, $"disk{name.Split("file")[1]}.img");
        using var c = RawNbdClient.Open(fx.Port, name, structured: true, meta: true);
        Assert.Equal(0u, c.Write(0, RawNbdClient.Pattern(256 * (int)K, 4)));
        Assert.Equal(0u, c.Request(Cmd.Flush, 0, 0).Error);
        var written = await BlocksAsync(file);

        Assert.Equal(0u, c.Request(Cmd.WriteZeroes, 0, 64 * K).Error);
        var punched = await BlocksAsync(file);
        Assert.True(punched < written, $"write-zeroes without NO_HOLE left {punched} blocks of {written}");
        Assert.Equal(0u, c.Request(Cmd.WriteZeroes, 64 * K, 64 * K, flags: CmdFlags.NoHole).Error);
        Assert.Equal(punched, await BlocksAsync(file)); // still allocated
        Assert.Equal(0u, c.Request(Cmd.Trim, 128 * K, 64 * K).Error);
        Assert.True(await BlocksAsync(file) < punched, "trim punched no hole");
        Assert.Equal(0u, c.Request(Cmd.WriteZeroes, 192 * K, 64 * K, flags: CmdFlags.FastZero).Error); // a hole is fast

        Assert.Equal(new byte[256 * K], c.Read(0, 256 * K));
        // The punched, trimmed and fast-zeroed ranges are holes. The NO_HOLE range is allocated but unwritten, which
        // SEEK_DATA calls a hole or data depending on the page cache (qemu's and nbdkit's file backends see the same).
        Assert.Equal([(64 * K, HoleZero)], c.Request(Cmd.BlockStatus, 0, 64 * K).Extents!);
        Assert.Equal([(128 * K, HoleZero)], c.Request(Cmd.BlockStatus, 128 * K, 128 * K).Extents!);
    }

    [Fact]
    public async Task Fast_zero_is_refused_where_the_zeroes_would_be_written_and_changes_nothing()
    {
        var (name, _) = await fx.CreateCachedExportAsync(); // a write-back cache: its cached sectors must be written
        using var c = RawNbdClient.Open(fx.Port, name, structured: true);
        var data = RawNbdClient.Pattern(8192, 5);
        Assert.Equal(0u, c.Write(0, data));
        Assert.Equal(Errno.NotSup, c.Request(Cmd.WriteZeroes, 0, 8192, flags: CmdFlags.FastZero).Error);
        Assert.Equal(data, c.Read(0, 8192));
        Assert.Equal(0u, c.Request(Cmd.WriteZeroes, 0, 4096).Error); // the slow way is fine
        Assert.Equal(new byte[4096], c.Read(0, 4096));
    }

    [Fact]
    public async Task Qemu_img_map_and_nbdinfo_map_match_the_file_layout()
    {
        var name = await fx.CreateExportAsync(sectors: 16 * M / 512, file: true);
        var file = Path.Combine(fx.TempDir, $"disk{name.Split("file")[1]}.img");
        using (var c = RawNbdClient.Open(fx.Port, name))
        {
            Assert.Equal(0u, c.Write(2 * M, RawNbdClient.Pattern((int)M, 6)));
            Assert.Equal(0u, c.Write(9 * M, RawNbdClient.Pattern(512 * (int)K, 7)));
            Assert.Equal(0u, c.Request(Cmd.Flush, 0, 0).Error);
        }
        var overNbd = Extents(await RunAsync("qemu-img", QemuUtils, "map", "--output=json", "-f", "raw", Url(name)));
        var ofFile = Extents(await RunAsync("qemu-img", QemuUtils, "map", "--output=json", "-f", "raw", file));
        Assert.Equal(ofFile, overNbd);
        Assert.Equal([(0L, 2L * M, false), (2L * M, M, true), (3L * M, 6L * M, false), (9L * M, 512L * K, true), (9L * M + 512 * K, 7L * M - 512 * K, false)], overNbd);

        var lines = (await RunAsync("nbdinfo", LibnbdBin, "--map", Url(name))).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var nbdinfo = lines.Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)).Select(f => (long.Parse(f[0]), long.Parse(f[1]), f[2] == "0")).ToArray();
        Assert.Equal(overNbd, nbdinfo);
    }

    [Fact]
    public async Task Nbdcopy_and_qemu_img_convert_of_a_mostly_empty_volume_move_only_what_was_written()
    {
        const long size = 1L << 30;
        var n = Guid.NewGuid().ToString("N")[..8];
        var inner = FileDisk.Open($"holes-{n}-file", Path.Combine(fx.TempDir, $"holes-{n}.img"), fx.Disks.NextDevNo(), size / 512);
        var disk = (ReadCountingDisk)fx.Disks.Add(new ReadCountingDisk(inner, $"holes-{n}", fx.Disks.NextDevNo()));
        var name = await fx.CreateExportAsync(disk);
        using (var c = RawNbdClient.Open(fx.Port, name))
            for (var i = 0; i < 10; i++) Assert.Equal(0u, c.Write((ulong)i * 97 * M, RawNbdClient.Pattern((int)M, 10 + i)));

        var copy = Path.Combine(fx.TempDir, $"holes-{n}-copy.img");
        await File.WriteAllBytesAsync(copy, []);
        var before = disk.BytesRead;
        await RunAsync("nbdcopy", LibnbdBin, Url(name), copy);
        var read = disk.BytesRead - before;
        output.WriteLine($"nbdcopy of a 1 GiB volume with 10 MiB written read {read / (double)M:F2} MiB from its disk");
        Assert.InRange(read, 10L * M, 12L * M); // what was written, not the 1 GiB
        Assert.InRange(await BlocksAsync(copy) * 512, 10L * M, 12L * M);
        Assert.Equal(Hash(inner.Path), Hash(copy));

        var converted = Path.Combine(fx.TempDir, $"holes-{n}-convert.img");
        before = disk.BytesRead;
        await RunAsync("qemu-img", QemuUtils, "convert", "-f", "raw", "-O", "raw", Url(name), converted);
        output.WriteLine($"qemu-img convert read {(disk.BytesRead - before) / (double)M:F2} MiB; the copy has {await BlocksAsync(converted) * 512 / (double)M:F2} MiB allocated");
        Assert.InRange(disk.BytesRead - before, 10L * M, 12L * M);
        Assert.InRange(await BlocksAsync(converted) * 512, 10L * M, 12L * M); // the copy stays sparse
        Assert.Equal(Hash(inner.Path), Hash(converted));
    }

    /// <summary>qemu-img map's JSON as (start, length, data) with neighbours of the same kind merged.</summary>
    private static (long, long, bool)[] Extents(string json)
    {
        using var doc = JsonDocument.Parse(json);
        var list = new List<(long Start, long Length, bool Data)>();
        foreach (var e in doc.RootElement.EnumerateArray())
        {
            var (start, length, data) = (e.GetProperty("start").GetInt64(), e.GetProperty("length").GetInt64(), e.GetProperty("data").GetBoolean());
            if (list.Count > 0 && list[^1].Data == data && list[^1].Start + list[^1].Length == start) list[^1] = (list[^1].Start, list[^1].Length + length, data);
            else list.Add((start, length, data));
        }
        return list.ToArray();
    }

    /// <summary>The file's allocated 512-byte blocks (st_blocks).</summary>
    private static async Task<long> BlocksAsync(string path) =>
        long.Parse((await RunAsync("stat", "coreutils", "-c", "%b", path)).Trim());

    private static string Hash(string path)
    {
        using var s = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(s));
    }
}

/// <summary>A disk that counts the bytes read from the disk below it: how much a copy really moved.</summary>
internal sealed class ReadCountingDisk(Disk inner, string name, string devNo) : Disk(name, inner.Sectors, devNo)
{
    private long _read;
    public long BytesRead => Interlocked.Read(ref _read);
    public override bool HasVolatileCache => inner.HasVolatileCache;

    protected override void Run(Bio bio, Action<Bio, BioStatus> done)
    {
        if (bio.Op == BioOp.Read) Interlocked.Add(ref _read, bio.Data.Length);
        inner.Start(bio, done);
    }

    public override void Dispose() => inner.Dispose();
}
