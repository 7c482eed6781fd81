using System.Diagnostics;
using DmActors.Host;
using DmActors.Host.Configuration;
using DmActors.Targets;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// A loop device over a file in a test (`losetup -f --show`, root only), detached on Dispose. Tests that need one
/// are <see cref="LoopDeviceFactAttribute"/>s: skipped, with the reason, where losetup cannot find a free device.
/// </summary>
public sealed class LoopDevice : IDisposable
{
    private LoopDevice(string path) => Path = path;

    /// <summary>/dev/loopN.</summary>
    public string Path { get; }

    public static LoopDevice Attach(string file)
    {
        var (code, stdout, stderr) = Losetup("-f", "--show", file);
        if (code != 0) Assert.Fail($"losetup -f --show {file} failed ({code}): {stderr.Trim()}");
        return new LoopDevice(stdout.Trim());
    }

    /// <summary>Why loop devices cannot be used here, or null; asked once.</summary>
    public static string? Unavailable => Probe.Value;

    private static readonly Lazy<string?> Probe = new(() =>
    {
        try
        {
            var (code, _, stderr) = Losetup("-f");
            return code == 0 ? null : $"no loop device: losetup -f failed ({code}): {stderr.Trim()}";
        }
        catch (Exception e) { return $"no loop device: cannot run losetup: {e.Message}"; }
    });

    private static (int Code, string Stdout, string Stderr) Losetup(params string[] args)
    {
        var psi = new ProcessStartInfo("losetup") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEnd();
        if (!p.WaitForExit(60_000)) { p.Kill(); return (-1, "", "losetup did not finish within 60 s"); }
        return (p.ExitCode, stdout.Result, stderr);
    }

    public void Dispose()
    {
        var (code, _, stderr) = Losetup("-d", Path);
        if (code != 0) throw new IOException($"losetup -d {Path} failed: {stderr.Trim()}");
    }
}

/// <summary>A fact that needs a loop device: skipped with the reason where there is none to attach.</summary>
public sealed class LoopDeviceFactAttribute : FactAttribute
{
    public LoopDeviceFactAttribute()
    {
        if (LoopDevice.Unavailable is { } why) Skip = why;
    }
}

/// <summary>Block devices (loop devices here) wherever a file path works: disks, table arguments, replay-log, the config.</summary>
public sealed class BlockDeviceTests : TargetHarness
{
    private const int Sectors = 8192; // the loop devices' size: 4 MiB
    private readonly TempDir _dir = new("dmactors-blk-");

    /// <summary>A 4 MiB backing file filled with <paramref name="seed"/>'s pattern.</summary>
    private string BackingFile(string name, byte seed)
    {
        var path = _dir[name];
        File.WriteAllBytes(path, Pattern(Sectors, seed));
        return path;
    }

    [LoopDeviceFact]
    public void A_file_disk_on_a_loop_device_has_the_device_size_and_is_never_resized()
    {
        var file = BackingFile("a.img", 1);
        using (var loop = LoopDevice.Attach(file))
        {
            Assert.True(BlockDevice.Is(loop.Path));
            Assert.False(BlockDevice.Is(file));
            var disk = FileDisk.Open("blk", loop.Path, "7:99", createSectors: 4 * Sectors);
            try { Assert.Equal(Sectors, disk.Sectors); }
            finally { disk.Dispose(); }
        }
        Assert.Equal(Sectors * 512L, new FileInfo(file).Length);
    }

    [LoopDeviceFact]
    public void A_table_naming_a_loop_device_maps_onto_it()
    {
        var file = BackingFile("t.img", 2);
        using var loop = LoopDevice.Attach(file);
        var dev = Create("blk", $"0 2048 linear {loop.Path} 1024");
        Assert.Equal(Pattern(Sectors, 2).AsSpan(1024 * 512, 8 * 512).ToArray(), ReadBack(dev, 0, 8));
        var data = Pattern(8, 3);
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 16, data));
        Assert.Equal(BioStatus.Ok, Flush(dev)); // fdatasync on the device: the loop driver writes the backing file
        var backing = File.ReadAllBytes(file);
        AssertBytes(data, backing.AsSpan((1024 + 16) * 512, data.Length).ToArray(), "backing file after the flush");
        // And a table longer than the device is refused as too small, with the device's real size.
        Assert.Contains($"dev_size={Sectors}", LoadError($"0 {Sectors + 8} linear {loop.Path} 0"));
    }

    [LoopDeviceFact]
    public void Replay_log_reads_its_log_from_a_loop_device_and_replays_onto_another()
    {
        var d0 = Mem("d0", 128);
        var l0 = Mem("l0", Sectors);
        var dev = Create("lw", $"0 128 log-writes d0 l0", BarrierMode.Flush);
        WriteAt(dev, 0, Pattern(8, 5));
        Flush(dev);
        Message("lw", "mark", "here");
        var expected = Contents(d0, 0, 128);
        WriteAt(dev, 0, Pattern(8, 6), BioFlags.Fua);

        var logFile = _dir["log.img"];
        File.WriteAllBytes(logFile, Contents(l0, 0, Sectors));
        var devFile = _dir["dev.img"];
        File.WriteAllBytes(devFile, new byte[Sectors * 512]);
        using var log = LoopDevice.Attach(logFile);
        using var target = LoopDevice.Attach(devFile);

        var (code, stdout, stderr) = ReplayLog("--log", log.Path, "--replay", target.Path, "--end-mark", "here");
        Assert.Equal((0, ""), (code, stderr));
        Assert.Equal("replayed 3 entries, last entry 2 (Mark)", stdout.Trim());
        AssertBytes(expected, File.ReadAllBytes(devFile)[..(128 * 512)], "replayed device (its backing file)");

        Assert.Matches(@"^3@\d+$", ReplayLog("--log", log.Path, "--find", "fua").Stdout.Trim());
        var check = ReplayLog("--log", log.Path, "--replay", target.Path, "--check", "fua", "--fsck", "test -b \"$REPLAY_DEV\"");
        Assert.Equal((0, ""), (check.Code, check.Stderr));
        Assert.Matches(@"^entry 3@\d+: check passed\n1 point\(s\), 0 failed$", check.Stdout.Trim());
    }

    [LoopDeviceFact]
    public async Task A_config_disk_on_a_loop_device_takes_the_device_size_and_is_never_created_or_resized()
    {
        var file = BackingFile("c.img", 7);
        using var loop = LoopDevice.Attach(file);
        var settings = HostConfig.Parse($$"""
            dmactors {
              data-dir = "{{_dir}}/data"
              disks = [ { name = blk, path = "{{loop.Path}}", size = 64M, create = on } ]
              devices = [ { name = whole, table = "0 {{Sectors}} linear blk 0" } ]
              nbd.listen = off
              control.port = 0
              journal.enabled = off
            }
            """, "blk.hocon");
        var log = new StringWriter();
        var host = await DmHost.StartAsync(settings, log);
        try
        {
            Assert.Equal(Sectors, host.Disks.Find("blk")!.Sectors);
            Assert.Contains($"disk blk = {loop.Path} ({Sectors} sectors", log.ToString());
        }
        finally { await host.StopAsync(TextWriter.Null); }
        Assert.Equal(Sectors * 512L, new FileInfo(file).Length);
        Assert.Equal(Pattern(Sectors, 7), File.ReadAllBytes(file));
    }

    private static (int Code, string Stdout, string Stderr) ReplayLog(params string[] args)
    {
        var (stdout, stderr) = (new StringWriter(), new StringWriter());
        var code = ReplayLogCommand.Run(args, stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    protected override void AfterAll()
    {
        base.AfterAll(); // closes the disks, and with them the last handles on the (already detached) loop devices
        _dir.Dispose();
    }
}
