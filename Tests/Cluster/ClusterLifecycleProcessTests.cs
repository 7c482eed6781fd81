using System.Diagnostics;
using System.Text.RegularExpressions;
using DmActors.Tests.Nbd;
using DmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace DmActors.Tests.Cluster;

/// <summary>
/// Three `dmactors serve` processes and PostgreSQL through a volume's life: a disk's node that dies and returns,
/// a move under IO from a client on a node that does not move (no write fails), and a restart of the whole cluster.
/// </summary>
[Collection("cluster")]
public sealed partial class ClusterLifecycleProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Failover = TimeSpan.FromSeconds(90);
    private const int Chunk = 64 << 10;
    private const int Chunks = 256; // 16 MiB of the volume, written round-robin

    [Fact]
    public async Task Io_over_a_removed_members_disk_fails_naming_it_and_the_volume_serves_again_when_the_member_returns()
    {
        await using var c = await ClusterOfHosts.StartAsync();
        var created = await c[1].Dmsetup(["create", "vol", "--node", "n1", "--table", "0 65536 linear disk0@n2 0"]);
        Assert.True(created.Code == 0, created.ToString());
        await QemuIo(c[1], "vol", "-c", "write -P 0x33 0 256k", "-c", "flush");

        await c[2].KillAsync();
        // Once n2 is removed, the owner drops its connection to n2's disk: info says so ...
        await Poll.UntilAsync(async () => (await c[1].Dmsetup("info vol")).Out.Contains("disk0@n2: node n2 was removed from the cluster"),
            "info to name the removed disk's node", Failover);
        // ... and IO is answered with an error instead of being held for the data channel's reconnect.
        await Poll.UntilAsync(() => Task.FromResult((c[1].Stdout + c[1].Stderr).Contains("node n2 was removed from the cluster: dropped 1 connection(s) to its disks")),
            "the owner to drop its connection to n2's disk", Failover);
        var (code, stdout, stderr) = await ExternalTool.TryRunAsync("qemu-io", ExternalTool.QemuUtils,
            ["-f", "raw", "-c", "read 0 4k", $"nbd://127.0.0.1:{c[1].NbdPort}/vol"]);
        Assert.True(code != 0 || stdout.Contains("failed") || stderr.Contains("failed"), $"a read over the removed node's disk succeeded:\n{stdout}\n{stderr}");

        await c.RestartAsync(2, through: 3);
        await Poll.UntilAsync(async () =>
        {
            var info = await c[1].Dmsetup("info vol");
            return info.Code == 0 && info.Out.Contains("ACTIVE") && !info.Out.Contains("Error:");
        }, "vol to serve again once n2 is back", Failover);
        Assert.Contains("Node:              n1", (await c[3].Dmsetup("info vol")).Out); // nothing moved
        foreach (var n in new[] { 1, 3 }) await QemuIo(c[n], "vol", "-c", "read -P 0x33 0 256k");
    }

    [Fact]
    public async Task A_move_under_io_keeps_every_acknowledged_write_and_a_whole_cluster_restart_brings_every_volume_back()
    {
        await using var c = await ClusterOfHosts.StartAsync();
        Assert.True((await c[1].Dmsetup(["create", "vol", "--node", "n2", "--table", "0 65536 linear disk0@n1 0"])).Code == 0);
        // A second volume with a state to keep: suspended, an inactive table loaded.
        Assert.True((await c[1].Dmsetup(["create", "held", "--node", "n3", "--table", "0 8192 linear disk0 65536"])).Code == 0);
        await QemuIo(c[3], "held", "-c", "write -P 0x77 0 1M", "-c", "flush");
        Assert.True((await c[2].Dmsetup(["load", "held", "--table", "0 4096 linear disk0 65536"])).Code == 0);
        Assert.True((await c[2].Dmsetup(["suspend", "held"])).Code == 0);

        // qemu-io through n1 (which does not move) writes while vol moves from n2 to n3.
        var acked = new Dictionary<int, byte>(); // chunk -> pattern of its last acknowledged write
        var failed = new List<string>();
        await using (var client = QemuIoSession.Start(c[1], "vol"))
        {
            var next = 0;
            async Task WriteAsync()
            {
                var chunk = next % Chunks;
                var pattern = (byte)(next % 250 + 1);
                next++;
                var answer = await client.CommandAsync($"write -P 0x{pattern:x2} {chunk * Chunk} {Chunk}");
                if (answer.Contains("wrote ")) acked[chunk] = pattern;
                else { acked.Remove(chunk); failed.Add(answer); } // its content is either pattern now (and the test fails below)
            }
            for (var i = 0; i < 20; i++) await WriteAsync();
            // The move waits for the handoff, which waits for the volume's IO: slow on a loaded machine.
            var moving = Stopwatch.StartNew();
            var move = HostProcess.Run(["cluster", "move", "vol", "n3", "--config", c[2].ConfigFile], env: new Dictionary<string, string> { ["DMACTORS_TIMEOUT"] = "120" });
            var during = 0;
            while (!move.IsCompleted)
            {
                await WriteAsync();
                during++;
                await Task.Delay(20);
            }
            var moved = await move;
            moving.Stop();
            Assert.True(moved.Code == 0, moved.ToString());
            for (var i = 0; i < 20; i++) await WriteAsync();
            output.WriteLine($"{next} writes, {during} while the move ran ({moving.Elapsed.TotalSeconds:F1} s), {failed.Count} failed: {string.Join(" | ", failed.Take(5))}");
        }
        // A graceful move fails no write: what reached the old owner's stopped device was answered ESHUTDOWN and
        // sent again to the new owner by n1's proxy.
        Assert.Empty(failed);
        Assert.Contains("Node:              n3", (await c[1].Dmsetup("info vol")).Out);
        await VerifyAsync(c[3], "vol", acked);

        var before = new Dictionary<string, string>();
        foreach (var v in new[] { "vol", "held" })
        {
            before[v] = (await c[1].Dmsetup($"table {v}")).Out;
            before[v + "-inactive"] = (await c[1].Dmsetup($"table --inactive {v}")).Out;
        }

        await c.RestartAllAsync();
        await Poll.UntilAsync(async () =>
        {
            var vol = await c[2].Dmsetup("info vol");
            var held = await c[2].Dmsetup("info held");
            return vol.Code == 0 && vol.Out.Contains("ACTIVE") && !vol.Out.Contains("Error:") &&
                held.Code == 0 && held.Out.Contains("SUSPENDED") && !held.Out.Contains("Error:");
        }, "every volume back after the whole cluster restarted", Failover);
        foreach (var v in new[] { "vol", "held" })
        {
            output.WriteLine($"after the restart: {Regex.Match((await c[1].Dmsetup($"info {v}")).Out, "Node:.*").Value.Trim()} ({v})");
            Assert.Equal(before[v], (await c[3].Dmsetup($"table {v}")).Out);
            Assert.Equal(before[v + "-inactive"], (await c[3].Dmsetup($"table --inactive {v}")).Out);
        }
        Assert.Contains("Tables present:    LIVE & INACTIVE", (await c[1].Dmsetup("info held")).Out);
        await VerifyAsync(c[2], "vol", acked);
        Assert.True((await c[1].Dmsetup(["resume", "held"])).Code == 0); // the inactive table (the first 4096 sectors) goes live
        await QemuIo(c[1], "held", "-c", "read -P 0x77 0 1M");
    }

    /// <summary>Every acknowledged write reads back with its pattern, through <paramref name="node"/>.</summary>
    private static async Task VerifyAsync(HostProcess node, string export, Dictionary<int, byte> acked)
    {
        Assert.NotEmpty(acked);
        var reads = acked.OrderBy(p => p.Key).SelectMany(p => new[] { "-c", $"read -P 0x{p.Value:x2} {p.Key * Chunk} {Chunk}" }).ToArray();
        await QemuIo(node, export, reads);
    }

    private static async Task QemuIo(HostProcess node, string export, params string[] commands)
    {
        var (code, stdout, stderr) = await ExternalTool.TryRunAsync("qemu-io", ExternalTool.QemuUtils,
            ["-f", "raw", .. commands, $"nbd://127.0.0.1:{node.NbdPort}/{export}"]);
        Assert.True(code == 0 && !stdout.Contains("failed") && !stderr.Contains("failed"), $"qemu-io via {node.NbdPort}: exit {code}\n{stdout}\n{stderr}");
    }

    /// <summary>One qemu-io process fed a command at a time on its standard input; each answer is read before the next.</summary>
    private sealed partial class QemuIoSession : IAsyncDisposable
    {
        private readonly Process _process;
        private readonly System.Threading.Channels.Channel<string> _lines = System.Threading.Channels.Channel.CreateUnbounded<string>();

        private QemuIoSession(Process process)
        {
            _process = process;
            process.OutputDataReceived += (_, e) => { if (e.Data != null) _lines.Writer.TryWrite(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data != null) _lines.Writer.TryWrite(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public static QemuIoSession Start(HostProcess node, string export)
        {
            var psi = new ProcessStartInfo(ExternalTool.Find("qemu-io", ExternalTool.QemuUtils))
            {
                RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
            };
            foreach (var a in new[] { "-f", "raw", $"nbd://127.0.0.1:{node.NbdPort}/{export}" }) psi.ArgumentList.Add(a);
            return new QemuIoSession(Process.Start(psi)!);
        }

        /// <summary>Sends one write or read and returns its answer line ("wrote ...", "read ...", or the failure).</summary>
        public async Task<string> CommandAsync(string command)
        {
            await _process.StandardInput.WriteLineAsync(command);
            await _process.StandardInput.FlushAsync();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            while (true)
            {
                var line = await _lines.Reader.ReadAsync(cts.Token);
                if (Answer().IsMatch(line)) return line;
            }
        }

        [GeneratedRegex(@"(wrote|read) \d+/\d+ bytes|failed|error", RegexOptions.IgnoreCase)]
        private static partial Regex Answer();

        public async ValueTask DisposeAsync()
        {
            try
            {
                await _process.StandardInput.WriteLineAsync("quit");
                _process.StandardInput.Close();
                using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await _process.WaitForExitAsync(cts.Token);
            }
            finally
            {
                if (!_process.HasExited) _process.Kill(entireProcessTree: true);
                _process.Dispose();
            }
        }
    }
}
