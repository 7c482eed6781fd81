using Akka.Actor;
using Xunit;
using static DmActors.Tests.Cluster.ClusterVolumeTests;

namespace DmActors.Tests.Cluster;

/// <summary>
/// A mirror one of whose legs' nodes is down when the volume fails over: it starts degraded on a survivor (that leg
/// failed, never read) with every acknowledged write, and takes the leg back when its node returns, copying only
/// the regions the leg missed. Four nodes: the leg's node (n3) dies first, then the owner (n2); n1 and n4 survive.
/// </summary>
public sealed partial class ClusterMirrorTests
{
    // 16 regions of 512 sectors.
    private const int Regions = 16;
    private const long RegionSectors = 512;

    private const string Leg = "n3", Owner = "n2", LogNode = "n1";

    /// <summary>
    /// Where the volume serves after its owner died. With two nodes gone one after the other, the shard coordinator
    /// may take a while to hand the group over (its state update waits for the second removal).
    /// </summary>
    private static TestCluster.Node Survivor(TestCluster c, string name) =>
        c[TestCluster.Eventually(() => c["n1"].Info(name), i => i.Node is "n1" or "n4" && (i.LiveTable || i.ErrorState != null),
            $"{name} on a survivor", TimeSpan.FromSeconds(120)).Node!];

    [Fact]
    public void A_mirror_whose_leg_node_is_down_when_its_owner_dies_serves_degraded_and_resyncs_only_the_stale_regions_when_the_node_returns()
    {
        using var c = new TestCluster(nodes: 4);
        c[LogNode].Disks.AddMemory("log0", 64);
        c[Owner].Ok(new Dm.Create("m", $"0 {Regions * RegionSectors} mirror disk 2 log0@{LogNode} {RegionSectors} 2 disk0@{Leg} 0 disk0@n1 0"));
        TestCluster.Eventually(() => Status(c[Owner], "m"), x => x.Contains($" {Regions}/{Regions} 1 AA "), "m in sync");
        Write(c[Owner], "m", 0, 3);

        // The leg on n3 is fenced and its node dies; a write reaches the other leg only, and the log says so.
        c[Owner].Ok(new Dm.Message("m", 0, ["fail_leg", $"disk0@{Leg}"]));
        c.Kill(Leg);
        Write(c[Owner], "m", 5 * RegionSectors, 4);
        Assert.Contains($" {Regions - 1}/{Regions} 1 DA ", Status(c[Owner], "m"));
        Step("leg node killed");

        c.Kill(Owner);
        // A survivor starts m without that leg: failed, never read; every acknowledged write is there.
        var s = Survivor(c, "m");
        Step($"owner killed, m on {s.Name}");
        Assert.Null(s.Info("m").ErrorState);
        Assert.Contains($" {Regions - 1}/{Regions} 1 DA ", Status(s, "m"));
        Assert.Equal(Data(Block, 3), Read(s, "m", 0));
        Assert.Equal(Data(Block, 4), Read(s, "m", 5 * RegionSectors));
        Write(s, "m", 9 * RegionSectors, 5);
        Assert.Contains($" {Regions - 2}/{Regions} 1 DA ", Status(s, "m"));

        // A region in sync is not copied when the leg returns: mark one on the leg's disk while its node is away.
        WriteDisk(c[Leg], 12 * RegionSectors, 9);
        c.Restart(Leg, keepDisks: true);
        TestCluster.Eventually(() => Status(s, "m"), x => x.Contains($" {Regions}/{Regions} 1 AA "), "m in sync with both legs", TimeSpan.FromSeconds(60));
        Step("leg back and resynced");
        Assert.Equal(Data(Block, 3), ReadDisk(c[Leg], 0));
        Assert.Equal(Data(Block, 4), ReadDisk(c[Leg], 5 * RegionSectors));
        Assert.Equal(Data(Block, 5), ReadDisk(c[Leg], 9 * RegionSectors));
        Assert.Equal(Data(Block, 9), ReadDisk(c[Leg], 12 * RegionSectors));
    }

    [Fact]
    public void A_leg_node_that_returns_while_the_degraded_table_is_built_and_serves_its_disks_only_later_is_taken_back()
    {
        // Short tries, so that a chain of them ends long before the leg's node serves its disks.
        using var c = new TestCluster(nodes: 4, tableRetries: [TimeSpan.Zero, TimeSpan.FromMilliseconds(100), TimeSpan.FromMilliseconds(200), TimeSpan.FromMilliseconds(400)]);
        c[LogNode].Disks.AddMemory("log0", 64);
        c[Owner].Ok(new Dm.Create("m", $"0 {Regions * RegionSectors} mirror disk 2 log0@{LogNode} {RegionSectors} 2 disk0@{Leg} 0 disk0@n1 0"));
        TestCluster.Eventually(() => Status(c[Owner], "m"), x => x.Contains($" {Regions}/{Regions} 1 AA "), "m in sync");
        c[Owner].Ok(new Dm.Message("m", 0, ["fail_leg", $"disk0@{Leg}"]));
        c.Kill(Leg);
        Write(c[Owner], "m", 5 * RegionSectors, 4);

        // The survivor's build finds the leg's node missing; before the build ends the node is up again, and then
        // it refuses its disk for a while (a returning node is a member before its NBD server listens).
        using var building = new ManualResetEventSlim();
        using var returned = new ManualResetEventSlim();
        var refusals = 0;
        c.DiskOpening = (_, by, node) =>
        {
            if (by == Owner || node != Leg) return;
            if (!building.IsSet)
            {
                building.Set();
                returned.Wait(TestCluster.Timeout);
                throw new DeviceUnreachableException($"disk0@{Leg}: node {Leg} is not a member of the cluster");
            }
            if (Interlocked.Increment(ref refusals) <= 12) throw new TargetException($"disk0@{Leg}: connection refused");
        };
        c.Kill(Owner);
        Assert.True(building.Wait(TimeSpan.FromSeconds(60)), "no survivor built m");
        c.Restart(Leg, keepDisks: true);
        returned.Set();
        Step("leg node back during the degraded build");

        var s = Survivor(c, "m");
        Assert.Null(s.Info("m").ErrorState);
        TestCluster.Eventually(() => Status(s, "m"), x => x.Contains($" {Regions}/{Regions} 1 AA "), "m in sync with both legs", TimeSpan.FromSeconds(60));
        Step($"leg taken back after {refusals} refusals");
        Assert.True(refusals > 12);
        Assert.Equal(Data(Block, 4), ReadDisk(c[Leg], 5 * RegionSectors));
        Assert.Equal(Data(Block, 4), Read(s, "m", 5 * RegionSectors));
    }

    [Fact]
    public void A_mirror_whose_leg_node_is_removed_while_it_runs_keeps_its_table_and_copies_only_the_stale_regions_when_the_node_returns()
    {
        using var c = new TestCluster();
        var (n1, n2) = (c["n1"], c["n2"]);
        n2.Ok(new Dm.Create("m", $"0 {2 * RegionSectors} mirror core 1 {RegionSectors} 2 disk0@n3 0 disk0@n1 0"));
        TestCluster.Eventually(() => Status(n2, "m"), x => x.Contains(" 2/2 1 AA "), "m in sync");
        n2.Ok(new Dm.Message("m", 0, ["fail_leg", "disk0@n3"]));
        c.Kill("n3");
        Write(n2, "m", RegionSectors, 4);
        TestCluster.Eventually(() => n2.Info("m"), i => i.ErrorState?.Contains("node n3 was removed") == true, "info names the removed node");

        // The table that serves goes on (a table without the leg would be no better); when the node returns the new
        // table takes over its state, so the region in sync is not copied again.
        WriteDisk(c["n3"], 0, 9);
        c.Restart("n3", keepDisks: true);
        TestCluster.Eventually(() => Status(n2, "m"), x => x.Contains(" 2/2 1 AA "), "m in sync with both legs", TimeSpan.FromSeconds(60));
        Assert.Null(n2.Info("m").ErrorState);
        Assert.Equal(Data(Block, 4), ReadDisk(c["n3"], RegionSectors));
        Assert.Equal(Data(Block, 9), ReadDisk(c["n3"], 0));
    }

    [Fact]
    public void A_mirror_that_fails_over_without_enough_legs_its_log_or_its_only_up_to_date_leg_waits_in_error_saying_why_and_serves_when_the_node_returns()
    {
        using var c = new TestCluster(nodes: 4);
        c[Leg].Disks.AddMemory("log0", 64);
        c[Owner].Ok(new Dm.Create("needs2", $"0 1024 mirror core 1 512 2 disk0@{Leg} 0 disk0@n1 0 2 min_legs 2"));
        c[Owner].Ok(new Dm.Create("logged", $"0 1024 mirror disk 2 log0@{Leg} 512 2 disk0@{Leg} 2048 disk0@n1 2048"));
        c[Owner].Ok(new Dm.Create("behind", $"0 1024 mirror core 1 512 2 disk0@{Leg} 4096 disk0@n1 4096"));
        foreach (var v in new[] { "needs2", "logged", "behind" })
            TestCluster.Eventually(() => Status(c[Owner], v), x => x.Contains(" 2/2 1 AA "), $"{v} in sync");
        // The other leg of "behind" misses a write: only the leg on n3 has every acknowledged write.
        c[Owner].Ok(new Dm.Message("behind", 0, ["fail_leg", "disk0@n1"]));
        Write(c[Owner], "behind", 0, 6);
        c.Kill(Leg);
        c.Kill(Owner);

        string Error(string v) => Survivor(c, v).Info(v).ErrorState ?? "";
        Assert.Contains($"only 1 of 2 legs can be reached (min_legs 2): disk0@{Leg}: node {Leg} is not", Error("needs2"));
        Assert.Contains($"Error creating mirror dirty log: log0@{Leg}: node {Leg} is not", Error("logged"));
        Assert.Contains("a mirror does not start without its log", Error("logged"));
        Assert.Contains("the legs that can be reached may lack acknowledged writes", Error("behind"));

        c.Restart(Leg, keepDisks: true);
        foreach (var v in new[] { "needs2", "logged", "behind" })
            TestCluster.Eventually(() => Status(Survivor(c, v), v), x => x.Contains(" 2/2 1 AA "), $"{v} serves with both legs", TimeSpan.FromSeconds(60));
        Assert.Equal(Data(Block, 6), Read(Survivor(c, "behind"), "behind", 0));
        Assert.Equal(Data(Block, 6), ReadDisk(c["n1"], 4096));
    }

    private static void Write(TestCluster.Node node, string name, long sector, byte seed)
    {
        var opened = node.Open(name);
        Assert.Equal(BioStatus.Ok, Io(opened.Device, Bio.Write(sector, Data(Block, seed), ActorRefs.Nobody)));
        Assert.Equal(BioStatus.Ok, Io(opened.Device, Bio.Flush(ActorRefs.Nobody)));
        node.Ok(new Dm.Close(name));
    }

    private static byte[] Read(TestCluster.Node node, string name, long sector)
    {
        var opened = node.Open(name);
        var back = new byte[Block * Bio.Sector512];
        Assert.Equal(BioStatus.Ok, Io(opened.Device, Bio.Read(sector, back, ActorRefs.Nobody)));
        node.Ok(new Dm.Close(name));
        return back;
    }

    private static void WriteDisk(TestCluster.Node node, long sector, byte seed) =>
        ((MemoryDisk)node.Disks.Find("disk0")!).WriteAt(sector * Bio.Sector512, Data(Block, seed));
}
