using System.Text.RegularExpressions;
using DmActors.Tests.Nbd;
using DmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Tests.Cluster;

/// <summary>
/// Three `dmactors serve` processes and PostgreSQL: the owner of a volume is stopped (SIGSTOP) long enough for the
/// cluster to down it. The volume serves again on a survivor with every acknowledged write; the old owner, once
/// it runs again, stops and exits on its own, and a write it held while it was stopped never reaches the disk.
/// </summary>
[Collection("cluster")]
public sealed class OwnerPauseProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Failover = TimeSpan.FromSeconds(90);
    private static readonly Dictionary<string, string> Quick = new() { ["DMACTORS_TIMEOUT"] = "5" };

    [Fact]
    public async Task A_paused_owner_that_the_cluster_downed_exits_when_it_wakes_and_lands_none_of_its_held_writes()
    {
        await using var c = await ClusterOfHosts.StartAsync();
        // n3 owns the volume; its disk is n2's, so a survivor can serve it (n1 runs the directory).
        var created = await c[1].Dmsetup(["create", "vol", "--node", "n3", "--table", "0 65536 linear disk0@n2 0"]);
        Assert.True(created.Code == 0, created.ToString());
        await QemuIo(c[3], "vol", "-c", "write -P 0x33 0 256k", "-c", "flush");

        // A client of the owner itself, whose next write the owner receives only once it runs again.
        using var held = RawNbdClient.Open(c[3].NbdPort, "vol");
        c[3].Pause();
        var stale = Enumerable.Repeat((byte)0x99, 64 << 10).ToArray();
        held.SendRequest(Cmd.Write, 1, 0, (uint)stale.Length, stale);

        // The cluster downs n3 and the volume starts on a survivor, with what was acknowledged.
        await Poll.UntilAsync(async () =>
        {
            // A short CLI wait: while n3 is stopped, a question to its volume is not answered.
            var info = await c[1].Dmsetup(["info", "vol"], env: Quick);
            if (info.Code == 0 && info.Out.Contains("ACTIVE") && !info.Out.Contains("Error:") && !info.Out.Contains("Node:              n3")) return true;
            await Task.Delay(500);
            return false;
        }, "vol to serve on a survivor while n3 is stopped", Failover);
        output.WriteLine(Regex.Match((await c[1].Dmsetup("info vol")).Out, "Node:.*").Value.Trim());
        await QemuIo(c[1], "vol", "-c", "read -P 0x33 0 256k");

        c[3].Continue();
        // Awake, n3 finds it was removed: it stops serving and exits, non-zero, saying why.
        Assert.True(await c[3].ExitsWithinAsync(Failover), $"n3 still runs {Failover.TotalSeconds:0} s after SIGCONT:\n{c[3].Stdout}\n{c[3].Stderr}");
        output.WriteLine(c[3].Stdout);
        Assert.Contains("dmactors: this node was removed from the cluster; stopping", c[3].Stdout);
        Assert.Equal(1, c[3].ExitCode);

        // The write it held was answered with an error, or its connection closed unanswered: never a success ...
        var answer = AnswerOf(held);
        output.WriteLine($"the held write: {answer}");
        Assert.NotEqual("ok", answer);
        // ... and it is not on the disk: the survivor still reads what was acknowledged before the pause.
        await QemuIo(c[1], "vol", "-c", "read -P 0x33 0 256k");
        await QemuIo(c[2], "vol", "-c", "write -P 0x44 256k 64k", "-c", "read -P 0x44 256k 64k");
    }

    private static string AnswerOf(RawNbdClient client)
    {
        try
        {
            var reply = client.ReadReply();
            return reply.Error == 0 ? "ok" : $"error {reply.Error}";
        }
        catch (Exception e) when (e is IOException or EndOfStreamException) { return $"connection closed ({e.Message})"; }
    }

    private static async Task QemuIo(HostProcess node, string export, params string[] commands)
    {
        var (code, stdout, stderr) = await ExternalTool.TryRunAsync("qemu-io", ExternalTool.QemuUtils,
            ["-f", "raw", .. commands, $"nbd://127.0.0.1:{node.NbdPort}/{export}"]);
        Assert.True(code == 0 && !stdout.Contains("failed") && !stderr.Contains("failed"), $"qemu-io via {node.NbdPort}: exit {code}\n{stdout}\n{stderr}");
    }
}
