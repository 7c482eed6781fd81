using Akka.Actor;
using Xunit;
using static DmActors.Tests.Cluster.ClusterVolumeTests;

namespace DmActors.Tests.Cluster;

/// <summary>
/// Mirrors with a stacked leg (a leg that is another volume) on three in-process nodes: what the mirror records
/// about that leg must still name it after the volume fails over, whatever the table called it.
/// </summary>
[Collection("cluster")]
public sealed partial class ClusterMirrorTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    private void Step(string what) => output.WriteLine($"{_clock.Elapsed.TotalSeconds,6:F1}s {what}");

    private const int Block = 8;

    [Fact]
    public void A_stacked_leg_that_missed_writes_is_known_after_a_failover_and_resynced_from_the_other_leg()
    {
        using var c = new TestCluster();
        var (n1, n2) = (c["n1"], c["n2"]);
        // On n2: a volume over n1's disk, and a mirror whose first leg is that volume, named as an operator names it.
        n2.Ok(new Dm.Create("low", "0 1024 linear disk0@n1 0"));
        n2.Ok(new Dm.Create("m", "0 1024 mirror core 1 512 2 low 0 disk0@n3 0"));
        TestCluster.Eventually(() => Status(n2, "m"), s => s.Contains(" 2/2 1 AA "), "m in sync");
        Step("mirror in sync");

        // The stacked leg is fenced; a write then reaches only the other leg, after the journal says so.
        n2.Ok(new Dm.Message("m", 0, ["fail_leg", "low"]));
        var opened = n2.Open("m");
        Assert.Equal(BioStatus.Ok, Io(opened.Device, Bio.Write(0, Data(Block, 7), ActorRefs.Nobody)));
        n2.Ok(new Dm.Close("m"));

        c.Kill("n2");
        Step("owner killed");
        // The new owner rebuilds the recorded table (the leg by device number there): the journal's note about the
        // leg must still apply, so the write is read from the other leg and copied to the stacked one, not undone.
        var info = TestCluster.Eventually(() => n1.Info("m"), i => i.Node is "n1" or "n3" && i.LiveTable, "m back on a survivor");
        var owner = c[info.Node!];
        var reopened = owner.Open("m");
        var back = new byte[Block * Bio.Sector512];
        Assert.Equal(BioStatus.Ok, Io(reopened.Device, Bio.Read(0, back, ActorRefs.Nobody)));
        owner.Ok(new Dm.Close("m"));
        Assert.Equal(Data(Block, 7), back);
        TestCluster.Eventually(() => Status(owner, "m"), s => s.Contains(" 2/2 1 "), "m in sync on its new owner");
        Step("resynced");
        Assert.Equal(Data(Block, 7), ReadDisk(c["n3"], 0));
        Assert.Equal(Data(Block, 7), ReadDisk(n1, 0));
    }

    [Fact]
    public void A_stacked_mirror_that_fails_over_is_built_once_the_volume_below_it_has_its_table()
    {
        using var c = new TestCluster();
        var (n1, n2) = (c["n1"], c["n2"]);
        n2.Ok(new Dm.Create("low", "0 1024 linear disk0@n1 0"));
        n2.Ok(new Dm.Create("m", "0 1024 mirror core 1 512 2 low 0 disk0@n3 0"));
        TestCluster.Eventually(() => Status(n2, "m"), s => s.Contains(" 2/2 1 AA "), "m in sync");
        var opened = n2.Open("m");
        Assert.Equal(BioStatus.Ok, Io(opened.Device, Bio.Write(0, Data(Block, 9), ActorRefs.Nobody)));
        Assert.Equal(BioStatus.Ok, Io(opened.Device, Bio.Flush(ActorRefs.Nobody)));
        n2.Ok(new Dm.Close("m"));

        // On the new owner the lower volume's build is slow (its disk's node may wait for the old owner's bios before
        // it grants the claim): the mirror stacked on it must wait for it, not build over a device of size 0.
        var lowId = n1.EntityId("low");
        c.DiskOpening = (volume, by, _) => { if (volume == lowId && by != "n2") Thread.Sleep(TimeSpan.FromSeconds(3)); };
        c.Kill("n2");
        Step("owner killed");
        var info = TestCluster.Eventually(() => n1.Info("m"), i => i.Node is "n1" or "n3" && (i.LiveTable || i.ErrorState != null), "m back on a survivor");
        Assert.Null(info.ErrorState);
        var owner = c[info.Node!];
        var reopened = owner.Open("m");
        var back = new byte[Block * Bio.Sector512];
        Assert.Equal(BioStatus.Ok, Io(reopened.Device, Bio.Read(0, back, ActorRefs.Nobody)));
        owner.Ok(new Dm.Close("m"));
        Assert.Equal(Data(Block, 9), back);
    }

    private static string Status(TestCluster.Node node, string name) => string.Join("\n", node.Ok(new Dm.GetStatus(name)).Lines);

    private static byte[] ReadDisk(TestCluster.Node node, long sector)
    {
        var data = new byte[Block * Bio.Sector512];
        ((MemoryDisk)node.Disks.Find("disk0")!).ReadAt(sector * Bio.Sector512, data);
        return data;
    }
}
