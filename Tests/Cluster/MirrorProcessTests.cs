using System.Text.RegularExpressions;
using DmActors.Tests.Nbd;
using DmActors.Tests.Persistence;
using DmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace DmActors.Tests.Cluster;

/// <summary>
/// A mirror whose legs live on two other nodes than its owner, three `dmactors serve` processes over PostgreSQL:
/// kill -9 of a leg's node (writes go on degraded, the leg shows failed, it is resynced when its node returns), of
/// the owner (the volume serves again from a survivor with every acknowledged write), and of a leg's node and then
/// the owner before the leg returns (the new owner never takes the dead leg as the resync source). Data is checked
/// with qemu-io patterns through the mirror and on each leg by itself.
/// </summary>
[Collection("cluster")]
public sealed partial class MirrorProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Failover = TimeSpan.FromSeconds(90);
    private const long Sectors = 32768;    // 16 MiB in 32 regions of 512 KiB
    private const string Mirror = "0 32768 mirror core 1 1024 2 disk0@n2 0 disk0@n3 0";
    private const int MiB = 1 << 20;

    [Fact]
    public async Task A_mirror_over_two_other_nodes_goes_on_degraded_when_a_leg_node_dies_resyncs_it_when_it_returns_and_serves_from_a_survivor_after_kill_9_of_its_owner()
    {
        await using var c = await ClusterOfHosts.StartAsync();
        var created = await c[1].Dmsetup(["create", "vol", "--node", "n1", "--table", Mirror]);
        Assert.True(created.Code == 0, created.ToString());
        await InSync(c[1], "the initial resync");
        await QemuIo(c[1], "vol", "-c", $"write -P 0x11 0 {4 * MiB}", "-c", "flush");

        // A leg's node dies: a write through another node goes on to the other leg, and the status says which failed.
        await c[2].KillAsync();
        await QemuIo(c[3], "vol", "-c", $"write -P 0x22 {4 * MiB} {MiB}", "-c", "flush");
        var (inSync, health) = Status(await c[3].Dmsetup("status vol"));
        output.WriteLine($"degraded: {inSync}/32 {health}");
        Assert.Equal('D', health[0]);
        Assert.Equal('A', health[1]);
        Assert.True(inSync < 32, $"{inSync}/32 in sync after writes the dead leg missed");
        await QemuIo(c[1], "vol", "-c", "read -P 0x11 0 1M", "-c", $"read -P 0x22 {4 * MiB} {MiB}");

        // It returns: its stale regions are copied to it, and the mirror is whole again.
        await c.RestartAsync(2, through: 3);
        await InSync(c[3], "the returned leg resynced");

        // The owner dies: a survivor serves with every acknowledged write, and resyncs the legs (a core log).
        await c[1].KillAsync();
        await Poll.UntilAsync(async () =>
        {
            var info = await c[2].Dmsetup("info vol");
            return info.Code == 0 && info.Out.Contains("ACTIVE") && !info.Out.Contains("Error:") && !info.Out.Contains("Node:              n1");
        }, "vol to serve again on a survivor", Failover);
        foreach (var n in new[] { 2, 3 }) await QemuIo(c[n], "vol", "-c", $"read -P 0x11 0 {4 * MiB}", "-c", $"read -P 0x22 {4 * MiB} {MiB}");
        await QemuIo(c[2], "vol", "-c", $"write -P 0x33 {8 * MiB} {MiB}", "-c", "flush");
        await InSync(c[3], "the resync after the failover");
        await EveryLegHolds(c[2], ["n2", "n3"], ("0x11", 0, 4 * MiB), ("0x22", 4 * MiB, MiB), ("0x33", 8 * MiB, MiB), ("0", 9 * MiB, MiB));
    }

    [Fact]
    public async Task When_a_leg_node_and_then_the_owner_die_the_new_owner_resyncs_from_the_leg_that_has_every_acknowledged_write()
    {
        await using var c = await ClusterOfHosts.StartAsync();
        // Two of three nodes down one after the other: the last one keeps the cluster only if it has the lower
        // address of the two left (keep-majority's tie rule), so it holds the second leg and the other one owns.
        var (x, y) = c[1].ControlPort < c[3].ControlPort ? (1, 3) : (3, 1);
        var table = $"0 32768 mirror core 1 1024 2 disk0@n2 0 disk0@n{x} 0";
        var created = await c[1].Dmsetup(["create", "vol", "--node", $"n{y}", "--table", table]);
        Assert.True(created.Code == 0, created.ToString());
        await InSync(c[x], "the initial resync");
        await QemuIo(c[x], "vol", "-c", $"write -P 0x11 0 {4 * MiB}", "-c", "flush");

        // The first leg's node dies; writes go on to the second leg alone, and the journal says the first lacks them.
        await c[2].KillAsync();
        await QemuIo(c[x], "vol", "-c", $"write -P 0x22 {4 * MiB} {MiB}", "-c", "flush");
        Assert.Equal("DA", Status(await c[x].Dmsetup("status vol")).Health);
        await Poll.UntilAsync(async () => (await c[y].Dmsetup("info vol")).Out.Contains("node n2 was removed from the cluster"),
            "n2 removed from the cluster", Failover);

        // The owner dies before the first leg is back: the survivor starts without that leg (degraded), and when its
        // node is back copies the second leg to the first, not the first (the default source, which missed the
        // writes) to the second.
        await c[y].KillAsync();
        await Poll.UntilAsync(async () =>
        {
            var info = await c[x].Dmsetup("info vol");
            return info.Out.Contains($"Node:              n{x}") && info.Out.Contains("ACTIVE") && !info.Out.Contains("Error:");
        }, "vol serving on the survivor without the first leg", Failover);
        Assert.Equal("DA", Status(await c[x].Dmsetup("status vol")).Health);
        await QemuIo(c[x], "vol", "-c", $"read -P 0x11 0 {4 * MiB}", "-c", $"read -P 0x22 {4 * MiB} {MiB}", "-c", $"write -P 0x44 {6 * MiB} {MiB}", "-c", "flush");
        await c.RestartAsync(2, through: x);
        await InSync(c[x], "the first leg resynced from the second");
        await QemuIo(c[x], "vol", "-c", $"read -P 0x11 0 {4 * MiB}", "-c", $"read -P 0x22 {4 * MiB} {MiB}");
        await EveryLegHolds(c[x], ["n2", $"n{x}"], ("0x11", 0, 4 * MiB), ("0x22", 4 * MiB, MiB), ("0x44", 6 * MiB, MiB));
    }

    /// <summary>The long variant (`DMACTORS_LONG_CLUSTER_TESTS=1`): each leg's node killed in turn under writes, then the owner.</summary>
    [ByHandFact("DMACTORS_LONG_CLUSTER_TESTS")]
    public async Task Long_each_leg_node_killed_in_turn_under_writes_and_then_the_owner_keeps_every_acknowledged_write()
    {
        await using var c = await ClusterOfHosts.StartAsync();
        Assert.True((await c[1].Dmsetup(["create", "vol", "--node", "n1", "--table", Mirror])).Code == 0);
        await InSync(c[1], "the initial resync");
        var written = new List<(string Pattern, int At, int Length)>();
        for (var round = 0; round < 4; round++)
        {
            var leg = round % 2 == 0 ? 2 : 3;
            await c[leg].KillAsync();
            var (pattern, at) = ($"0x{0x41 + round:x2}", round * 2 * MiB);
            await QemuIo(c[1], "vol", "-c", $"write -P {pattern} {at} {2 * MiB}", "-c", "flush");
            written.Add((pattern, at, 2 * MiB));
            Assert.Equal(leg == 2 ? "DA" : "AD", Status(await c[1].Dmsetup("status vol")).Health);
            await c.RestartAsync(leg, through: 1);
            await InSync(c[1], $"round {round}: the leg on n{leg} resynced");
            output.WriteLine($"round {round}: n{leg} killed and back");
        }
        await c[1].KillAsync();
        await Poll.UntilAsync(async () =>
        {
            var info = await c[2].Dmsetup("info vol");
            return info.Code == 0 && info.Out.Contains("ACTIVE") && !info.Out.Contains("Error:") && !info.Out.Contains("Node:              n1");
        }, "vol to serve again on a survivor", Failover);
        await QemuIo(c[3], "vol", written.SelectMany(w => new[] { "-c", $"read -P {w.Pattern} {w.At} {w.Length}" }).ToArray());
        await InSync(c[2], "the resync after the failover");
        await EveryLegHolds(c[2], ["n2", "n3"], [.. written]);
    }

    /// <summary>Waits until the mirror reports every region in sync with both legs alive.</summary>
    private static Task InSync(HostProcess via, string what) => Poll.UntilAsync(async () =>
    {
        var status = await via.Dmsetup("status vol");
        return status.Code == 0 && Status(status) is (32, "AA");
    }, what, Failover);

    /// <summary>In-sync regions and leg health from `dmsetup status` of the mirror.</summary>
    private static (long InSync, string Health) Status(HostProcess.CliResult status)
    {
        var m = MirrorStatus().Match(status.Out);
        Assert.True(m.Success, status.ToString());
        return (long.Parse(m.Groups[1].Value), m.Groups[2].Value);
    }

    [GeneratedRegex(@"mirror 2 \S+ \S+ (\d+)/32 1 ([A-Z]{2}) 1 core")]
    private static partial Regex MirrorStatus();

    /// <summary>
    /// Each leg read by itself (a linear volume over it, on the node <paramref name="via"/>) holds every pattern:
    /// the legs agree.
    /// </summary>
    private static async Task EveryLegHolds(HostProcess via, string[] legs, params (string Pattern, int At, int Length)[] patterns)
    {
        foreach (var leg in legs)
        {
            var name = "leg-" + leg;
            var created = await via.Dmsetup(["create", name, "--table", $"0 {Sectors} linear disk0@{leg} 0"]);
            Assert.True(created.Code == 0, created.ToString());
            await QemuIo(via, name, patterns.SelectMany(p => new[] { "-c", $"read -P {p.Pattern} {p.At} {p.Length}" }).ToArray());
            Assert.True((await via.Dmsetup(["remove", name])).Code == 0);
        }
    }

    private static async Task QemuIo(HostProcess node, string export, params string[] commands)
    {
        var (code, stdout, stderr) = await ExternalTool.TryRunAsync("qemu-io", ExternalTool.QemuUtils,
            ["-f", "raw", .. commands, $"nbd://127.0.0.1:{node.NbdPort}/{export}"]);
        Assert.True(code == 0 && !stdout.Contains("failed") && !stderr.Contains("failed"), $"qemu-io via {node.NbdPort}: exit {code}\n{stdout}\n{stderr}");
    }
}
