using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using DmActors.Tests.Nbd;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// A host has its data directory, its ports and its disk files to itself: a second host (or qemu) that wants any
/// of them is refused with one line and exit status 1, and the first host goes on serving.
/// </summary>
public sealed class ExclusiveHostProcessTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private HostProcess Host => fixture.Host;
    private string Disk0 => Path.Combine(Host.Dir, "data", "disk0.img");

    /// <summary>A second host in a directory of its own; returns its config file and how it ended.</summary>
    private static async Task<(string Config, HostProcess.CliResult Result)> SecondHost(Func<string, Task<HostProcess.CliResult>> start)
    {
        var dir = Directory.CreateTempSubdirectory("dmactors-second-").FullName;
        try { return (Path.Combine(dir, "refused.hocon"), await start(dir)); }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private static void Refused(HostProcess.CliResult r, string expectedErr)
    {
        Assert.True(r.Code == 1, r.ToString());
        Assert.Equal(expectedErr, r.Err);
        Assert.DoesNotContain("ready", r.Out);
    }

    [Fact]
    public async Task A_second_host_on_the_same_data_directory_exits_1_naming_it_and_the_host_that_has_it()
    {
        var r = await HostProcess.StartRefusedInAsync(Host.Dir);
        var data = Path.Combine(Host.Dir, "data");
        Refused(r, $"dmactors: {Host.Dir}/refused.hocon: data directory {data} is in use by another dmactors host " +
                   $"(pid {Host.Pid}; lock {data}/dmactors.lock)\n");
        var ls = await Host.Dmsetup("ls");
        Assert.True(ls.Code == 0 && ls.Out.Contains("demo"), ls.ToString());
    }

    [Fact]
    public async Task A_second_host_on_the_same_nbd_port_exits_1_and_the_first_keeps_serving_every_connection()
    {
        var (config, r) = await SecondHost(dir => HostProcess.StartRefusedInAsync(dir, nbdPort: Host.NbdPort));
        Refused(r, $"dmactors: {config}: cannot listen for NBD on 127.0.0.1:{Host.NbdPort}: Address already in use\n");
        var stamp = Core.DeviceHarness.Pattern(8, 0x3c);
        using (var writer = RawNbdClient.Open(Host.NbdPort, "demo")) Assert.Equal(0u, writer.Write(1 << 20, stamp));
        for (var i = 0; i < 10; i++)
        {
            using var reader = RawNbdClient.Open(Host.NbdPort, "demo");
            Assert.Equal(stamp, reader.Read(1 << 20, (uint)stamp.Length)); // the first host's disk, every time
        }
    }

    [Fact]
    public async Task A_second_host_on_the_same_control_port_exits_1_and_the_first_keeps_answering()
    {
        var (config, r) = await SecondHost(dir => HostProcess.StartRefusedInAsync(dir, controlPort: Host.ControlPort));
        Refused(r, $"dmactors: {config}: cannot listen for control on 127.0.0.1:{Host.ControlPort}: Address already in use\n");
        var ls = await Host.Dmsetup("ls");
        Assert.True(ls.Code == 0 && ls.Out.Contains("demo"), ls.ToString());
    }

    [Theory]
    [InlineData("nbd")]
    [InlineData("control")]
    public void A_port_cannot_be_shared_by_a_listener_that_asks_for_SO_REUSEPORT(string which)
    {
        // SO_REUSEPORT on both sides lets two listeners share a port (the kernel splits the connections between
        // them): the host's listeners must not set it, so that no other listener can join them.
        var port = which == "nbd" ? Host.NbdPort : Host.ControlPort;
        using var other = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        other.SetRawSocketOption(1 /* SOL_SOCKET */, 2 /* SO_REUSEADDR */, BitConverter.GetBytes(1));
        other.SetRawSocketOption(1 /* SOL_SOCKET */, 15 /* SO_REUSEPORT */, BitConverter.GetBytes(1));
        var e = Assert.Throws<SocketException>(() => other.Bind(new IPEndPoint(IPAddress.Loopback, port)));
        Assert.Equal(SocketError.AddressAlreadyInUse, e.SocketErrorCode);
    }

    [Fact]
    public async Task A_second_host_is_refused_a_disk_file_the_first_one_serves()
    {
        var (config, r) = await SecondHost(dir => HostProcess.StartRefusedInAsync(dir, diskPath: Disk0));
        Refused(r, $"dmactors: {config}: disk disk0: {Disk0} is in use by another process (locked)\n");
    }

    [Fact]
    public async Task Qemu_refuses_a_file_the_host_serves_as_it_refuses_an_image_a_vm_has()
    {
        var (code, _, err) = await ExternalTool.TryRunAsync("qemu-io", ExternalTool.QemuUtils, "-f", "raw", "-c", "read 0 512", Disk0);
        Assert.True(code != 0, err);
        Assert.Contains("Failed to get \"write\" lock", err);
        // Sharing reads is allowed, as a VM allows it: qemu-io -r (and qemu-img info) work.
        await ExternalTool.RunAsync("qemu-io", ExternalTool.QemuUtils, "-r", "-f", "raw", "-c", "read 0 512", Disk0);
    }

    [Fact]
    public async Task A_file_qemu_nbd_holds_is_refused_in_a_table_and_free_for_qemu_again_once_the_device_is_removed()
    {
        var dir = Directory.CreateTempSubdirectory("dmactors-qemu-").FullName;
        try
        {
            var image = Path.Combine(dir, "held.img");
            File.WriteAllBytes(image, new byte[1 << 20]);
            var table = $"0 64 linear {image} 0";
            using (await QemuNbd.HoldAsync(image, Path.Combine(dir, "nbd.sock")))
            {
                var refused = await Host.Dmsetup(["create", "held", "--table", table]);
                Assert.True(refused.Code == 1, refused.ToString());
                Assert.Contains($"{image} is in use by another process (locked)", refused.Err);
                var (config, second) = await SecondHost(d => HostProcess.StartRefusedInAsync(d, diskPath: image));
                Refused(second, $"dmactors: {config}: disk disk0: {image} is in use by another process (locked)\n");
            }
            var created = await Host.Dmsetup(["create", "held", "--table", table]);
            Assert.True(created.Code == 0, created.ToString());
            var busy = await ExternalTool.TryRunAsync("qemu-io", ExternalTool.QemuUtils, "-f", "raw", "-c", "read 0 512", image);
            Assert.True(busy.ExitCode != 0 && busy.Stderr.Contains("Failed to get \"write\" lock"), busy.Stderr);
            var removed = await Host.Dmsetup("remove held");
            Assert.True(removed.Code == 0, removed.ToString());
            // The host let the file go with the last table that used it.
            await ExternalTool.RunAsync("qemu-io", ExternalTool.QemuUtils, "-f", "raw", "-c", "write 0 512", image);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}

/// <summary>Restarts on the same data directory and ports.</summary>
public sealed class HostRestartProcessTests
{
    [Fact]
    public async Task A_host_restarted_at_once_gets_its_ports_back_while_connections_to_the_old_one_linger()
    {
        var dir = Directory.CreateTempSubdirectory("dmactors-restart-").FullName;
        try
        {
            int nbdPort, controlPort;
            using (var first = await HostProcess.StartInAsync(dir))
            {
                (nbdPort, controlPort) = (first.NbdPort, first.ControlPort);
                using var client = RawNbdClient.Tcp(nbdPort);
                client.ReadHello();
                Assert.True((await first.Dmsetup("ls")).Code == 0);
                Assert.Equal(0, await first.TerminateAsync());
                // The host closed the connection first, so its end lingers in TIME_WAIT once the client closes too.
                Assert.True(client.IsClosedByServer());
            }
            // What a host's connections leave behind when it closed them first, made here for certain on both ports:
            // a listener without SO_REUSEADDR could not bind while they linger.
            LeaveTimeWaitOn(nbdPort);
            LeaveTimeWaitOn(controlPort);
            using var second = await HostProcess.StartInAsync(dir, nbdPort: nbdPort, controlPort: controlPort);
            using var again = RawNbdClient.Open(nbdPort, "demo");
            Assert.Equal(64UL << 20, again.Info!.Size);
            Assert.True((await second.Dmsetup("ls")).Code == 0);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    /// <summary>Serves one connection on 127.0.0.1:<paramref name="port"/> and closes it from the server's end first.</summary>
    private static void LeaveTimeWaitOn(int port)
    {
        var at = new IPEndPoint(IPAddress.Loopback, port);
        using (var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        using (var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp))
        {
            listener.Bind(at);
            listener.Listen();
            client.Connect(at);
            using (var served = listener.Accept()) served.Shutdown(SocketShutdown.Both);
            Assert.Equal(0, client.Receive(new byte[1])); // the server's FIN
        }
        Assert.True(TimeWaitOn(port), $"no connection in TIME_WAIT on port {port}");
    }

    /// <summary>A socket bound to 127.0.0.1:<paramref name="port"/> in TIME_WAIT (state 06 in /proc/net/tcp).</summary>
    private static bool TimeWaitOn(int port) =>
        File.ReadLines("/proc/net/tcp").Skip(1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Any(f => f[1] == $"0100007F:{port:X4}" && f[3] == "06");

    [Fact]
    public async Task The_first_flush_after_a_restart_syncs_what_a_killed_host_acknowledged_but_never_synced()
    {
        var dir = Directory.CreateTempSubdirectory("dmactors-resync-").FullName;
        try
        {
            using (var first = await HostProcess.StartInAsync(dir))
            {
                using var client = RawNbdClient.Open(first.NbdPort, "demo");
                Assert.Equal(0u, client.Write(0, new byte[1 << 20])); // acknowledged, never flushed
                await first.KillAsync();
            }
            using var second = await HostProcess.StartInAsync(dir);
            using var nbd = RawNbdClient.Open(second.NbdPort, "demo");
            var syncs = await Strace.FdatasyncsDuring(second.Pid, () =>
                Assert.Equal(0u, nbd.Request(DmActors.Host.Nbd.NbdProtocol.Cmd.Flush, 0, 0).Error));
            Assert.Contains(syncs, s => s.Contains("/data/disk0.img>"));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}

/// <summary>qemu-nbd serving an image on a unix socket: it holds the image open (and locked) until disposed.</summary>
internal sealed class QemuNbd : IDisposable
{
    private readonly Process _process;
    private QemuNbd(Process process) => _process = process;

    public static async Task<QemuNbd> HoldAsync(string image, string socket)
    {
        var psi = new ProcessStartInfo(ExternalTool.Find("qemu-nbd", ExternalTool.QemuUtils)) { UseShellExecute = false };
        foreach (var a in new[] { "-f", "raw", "-k", socket, image }) psi.ArgumentList.Add(a);
        var held = new QemuNbd(Process.Start(psi)!);
        // It listens once the image is open and locked.
        var until = DateTime.UtcNow + ExternalTool.Timeout;
        while (!File.Exists(socket))
        {
            if (held._process.HasExited || DateTime.UtcNow > until) { held.Dispose(); Assert.Fail("qemu-nbd did not start"); }
            await Task.Delay(20);
        }
        return held;
    }

    public void Dispose()
    {
        if (!_process.HasExited) _process.Kill();
        _process.WaitForExit();
        _process.Dispose();
    }
}

/// <summary>strace on a running process: the fdatasync calls it made while an action ran.</summary>
internal static class Strace
{
    public static async Task<List<string>> FdatasyncsDuring(int pid, Action action)
    {
        var output = Path.GetTempFileName();
        var psi = new ProcessStartInfo(ExternalTool.Find("strace", "strace")) { UseShellExecute = false, RedirectStandardError = true };
        // -f with -p attaches every thread; -y names the file behind each descriptor.
        foreach (var a in new[] { "-f", "-y", "-e", "trace=fdatasync", "-o", output, "-p", pid.ToString() }) psi.ArgumentList.Add(a);
        using var strace = Process.Start(psi)!;
        try
        {
            var attached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            strace.ErrorDataReceived += (_, e) => { if (e.Data?.Contains("attached") == true) attached.TrySetResult(); };
            strace.BeginErrorReadLine();
            await attached.Task.WaitAsync(ExternalTool.Timeout);
            action();
            Assert.Equal(0, kill(strace.Id, 2)); // SIGINT: strace detaches and writes out what it saw
            await strace.WaitForExitAsync().WaitAsync(ExternalTool.Timeout);
            return File.ReadAllLines(output).Where(l => l.Contains("fdatasync(")).ToList();
        }
        finally
        {
            if (!strace.HasExited) strace.Kill();
            File.Delete(output);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);
}
