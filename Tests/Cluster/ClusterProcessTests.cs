using DmActors.Tests.Nbd;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Cluster;

/// <summary>
/// Three `dmactors serve` processes and PostgreSQL, driven with the real tools: dmsetup against any node,
/// qemu-io and nbdcopy through any node, kill -9 and SIGSTOP of an owner.
/// </summary>
// With the in-process cluster tests, not beside them: three hosts and three actor systems at once overload two cores.
[Collection("cluster")]
public sealed class ClusterProcessTests
{
    private static readonly TimeSpan Failover = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task A_volume_over_another_nodes_disk_serves_through_every_node_and_comes_back_on_a_survivor_after_kill_9_of_its_owner()
    {
        await using var c = await ClusterOfHosts.StartAsync();
        var created = await c[1].Dmsetup(["create", "vol", "--node", "n2", "--table", "0 65536 linear disk0@n3 0"]);
        Assert.True(created.Code == 0, created.ToString());

        foreach (var n in new[] { 1, 2, 3 })
        {
            var info = await c[n].Dmsetup("info vol");
            Assert.True(info.Code == 0, info.ToString());
            Assert.Contains("Node:              n2", info.Out);
        }
        var status = await HostProcess.Run(["cluster", "status", "--config", c[3].ConfigFile]);
        Assert.True(status.Code == 0, status.ToString());
        Assert.Matches(@"n2\s+Up\s+\S+\s+vol", status.Out);

        // Written through a node that does not own it, read back through the owner and the third node.
        await QemuIo(c[1], "vol", "-c", "write -P 0x5a 0 1M", "-c", "flush");
        foreach (var n in new[] { 2, 3 }) await QemuIo(c[n], "vol", "-c", "read -P 0x5a 0 1M");
        // nbdcopy (four connections) copies the whole volume out through the third node.
        using (var copyDir = new TempDir("dmactors-copy-"))
        {
            var copy = Path.Combine(copyDir.Path, "vol.img");
            var (code, stdout, stderr) = await ExternalTool.TryRunAsync("nbdcopy", ExternalTool.LibnbdBin, [$"nbd://127.0.0.1:{c[3].NbdPort}/vol", copy]);
            Assert.True(code == 0, $"nbdcopy: exit {code}\n{stdout}\n{stderr}");
            var bytes = File.ReadAllBytes(copy);
            Assert.Equal(65536L * 512, bytes.LongLength);
            Assert.True(bytes.Take(1 << 20).All(b => b == 0x5a), "nbdcopy did not copy the data written through n1");
        }

        await c[2].KillAsync();
        var home = "";
        await Poll.UntilAsync(async () =>
        {
            var info = await c[1].Dmsetup("info vol");
            home = info.Out;
            return info.Code == 0 && info.Out.Contains("ACTIVE") && !info.Out.Contains("Error:") && !info.Out.Contains("Node:              n2");
        }, "vol to serve again on a survivor", Failover);
        Assert.Matches(@"Node:\s+n[13]", home);
        foreach (var n in new[] { 1, 3 }) await QemuIo(c[n], "vol", "-c", "read -P 0x5a 0 1M");
    }

    [Fact]
    public async Task A_paused_owner_lands_no_write_after_its_volume_moved_away()
    {
        await using var c = await ClusterOfHosts.StartAsync();
        var created = await c[1].Dmsetup(["create", "vol", "--node", "n1", "--table", "0 65536 linear disk0@n3 0"]);
        Assert.True(created.Code == 0, created.ToString());
        await QemuIo(c[2], "vol", "-c", "write -P 0x11 0 64k", "-c", "flush");

        using var zombie = RawNbdClient.Open(c[1].NbdPort, "vol");
        Assert.Equal(0u, zombie.Write(0, Pattern(0x11, 4096)));
        c[1].Pause();
        // Queued in the paused owner's socket: it would land when the owner wakes, unless the disk's node fences it.
        zombie.SendRequest(DmActors.Host.Nbd.NbdProtocol.Cmd.Write, 7, 0, 4096, Pattern(0x66, 4096));
        try
        {
            await Poll.UntilAsync(async () =>
            {
                var info = await c[2].Dmsetup("info vol");
                return info.Code == 0 && info.Out.Contains("ACTIVE") && !info.Out.Contains("Node:              n1") && !info.Out.Contains("Error:");
            }, "vol to move off the paused owner", Failover);
        }
        finally { c[1].Continue(); }
        // The woken owner answers the queued write with an error, or closes the connection (it was downed): the
        // disk's node refuses its old epoch either way. An acknowledged write would be a second writer.
        var answer = await Task.Run(() =>
        {
            try { return zombie.ReadReply(); }
            catch (Exception) { return null; }
        }).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.True(answer == null || answer.Error != 0, "the paused owner acknowledged a write after its volume moved away");
        // Downed, the woken owner (which also ran the directory) stops and exits by itself.
        Assert.True(await c[1].ExitsWithinAsync(Failover), $"the downed owner still runs after SIGCONT:\n{c[1].Stdout}");
        Assert.Contains("dmactors: this node was removed from the cluster; stopping", c[1].Stdout);
        Assert.Equal(1, c[1].ExitCode);
        await QemuIo(c[2], "vol", "-c", "read -P 0x11 0 4k");
        await QemuIo(c[3], "vol", "-c", "read -P 0x11 0 64k");
    }

    [Fact]
    public async Task Bad_cluster_input_gets_errors_that_name_the_problem()
    {
        await using var c = await ClusterOfHosts.StartAsync();
        var unknownNode = await c[1].Dmsetup(["create", "v1", "--node", "n9", "--table", "0 2048 linear disk0 0"]);
        Assert.Equal(1, unknownNode.Code);
        Assert.Contains("no cluster member named n9", unknownNode.Err);
        var unknownDiskNode = await c[1].Dmsetup(["create", "v2", "--table", "0 2048 linear disk0@n7 0"]);
        Assert.Equal(1, unknownDiskNode.Code);
        Assert.Contains("n7", unknownDiskNode.Err);
        var moveUnknown = await HostProcess.Run(["cluster", "move", "nosuch", "n2", "--config", c[1].ConfigFile]);
        Assert.Equal(1, moveUnknown.Code);
        // The live state is unchanged: nothing was created.
        var ls = await c[2].Dmsetup("ls");
        Assert.DoesNotContain("v1", ls.Out);
        Assert.DoesNotContain("v2", ls.Out);

        // A node of another cluster name, and a node whose name a member has, are refused before they join.
        using var dir = new TempDir("dmactors-intruder-");
        var otherName = await HostProcess.StartRefusedInAsync(dir.Path, config: "other.hocon",
            extra: c.Extra(4, c[1].ControlPort).Replace("node = n4", "node = n4, name = elsewhere"));
        Assert.Equal(1, otherName.Code);
        Assert.Contains($"seed node 127.0.0.1:{c[1].ControlPort} belongs to cluster 'dmactors', not 'elsewhere' (dmactors.cluster.name)", otherName.Err);
        var taken = await HostProcess.StartRefusedInAsync(dir.Path, config: "taken.hocon", extra: c.Extra(4, c[1].ControlPort).Replace("node = n4", "node = n2"));
        Assert.Equal(1, taken.Code);
        Assert.Matches(@"node name n2 is taken by the member at akka\.tcp://dmactors@127\.0\.0\.1:\d+ \(dmactors\.cluster\.node\)", taken.Err);
        var status = await HostProcess.Run(["cluster", "status", "--config", c[1].ConfigFile]);
        // Still the three members, all up; neither intruder joined.
        Assert.Equal(["n1", "n2", "n3"], System.Text.RegularExpressions.Regex.Matches(status.Out, @"^(n\d+)\s+Up\b",
            System.Text.RegularExpressions.RegexOptions.Multiline).Select(m => m.Groups[1].Value));
    }

    private static byte[] Pattern(byte b, int n) => Enumerable.Repeat(b, n).ToArray();

    private static async Task QemuIo(HostProcess node, string export, params string[] commands)
    {
        var (code, stdout, stderr) = await ExternalTool.TryRunAsync("qemu-io", ExternalTool.QemuUtils,
            ["-f", "raw", .. commands, $"nbd://127.0.0.1:{node.NbdPort}/{export}"]);
        Assert.True(code == 0 && !stdout.Contains("failed") && !stderr.Contains("failed"), $"qemu-io via {node.NbdPort}: exit {code}\n{stdout}\n{stderr}");
    }
}
