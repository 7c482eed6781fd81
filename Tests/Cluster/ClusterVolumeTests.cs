using Akka.Actor;
using DmActors.Cluster;
using Xunit;

namespace DmActors.Tests.Cluster;

/// <summary>
/// Volumes as sharded entities on three in-process nodes: any node sees and manages every volume, placement is
/// explicit, stacked volumes live with their lower volumes, a dead owner's volumes come back on a survivor, and a
/// move under IO answers every bio once.
/// </summary>
[Collection("cluster")]
public sealed class ClusterVolumeTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private readonly System.Diagnostics.Stopwatch _clock = System.Diagnostics.Stopwatch.StartNew();

    private void Step(string what) => output.WriteLine($"{_clock.Elapsed.TotalSeconds,6:F1}s {what}");

    private const int Block = 8; // sectors per IO (4 KiB)

    [Fact]
    public void Any_node_sees_and_manages_every_volume_and_placement_is_explicit()
    {
        using var c = new TestCluster();
        Step("cluster up");
        var (n1, n2, n3) = (c["n1"], c["n2"], c["n3"]);

        n1.Ok(new Dm.Create("a", "0 4096 linear disk0 0"));
        foreach (var n in c.Nodes)
        {
            Assert.Equal(new[] { "a" }, n.List());
            var info = n.Info("a");
            Assert.Equal("n1", info.Node);
            Assert.True(info.LiveTable);
            Assert.Equal(4096, info.Sectors);
            Assert.Equal(n1.Disks.Find("disk0")!.DevNo, n.Table("a")[0].Split(' ')[3]);
        }
        // The table is recorded with the disk's node, so a failover never finds another node's disk0.
        Assert.Contains(((Dm.HistoryList)n3.Command(new Dm.History("a"))).Entries, e => e.What.Contains("linear disk0@n1 0"));

        // IO through an open on the owner reaches n1's disk0.
        var opened = n1.Open("a");
        Assert.Equal(4096, opened.Sectors);
        Assert.Equal(BioStatus.Ok, Io(opened.Device, Bio.Write(16, Data(Block, 7), ActorRefs.Nobody)));
        Assert.Equal(Data(Block, 7), ReadDisk(n1, "disk0", 16, Block));
        n1.Ok(new Dm.Close("a"));

        // An open on a node that does not own the volume is served through a local proxy to the owner.
        var remote = n3.Open("a");
        Assert.Equal(BioStatus.Ok, Io(remote.Device, Bio.Write(32, Data(Block, 9), ActorRefs.Nobody)));
        Assert.Equal(Data(Block, 9), ReadDisk(n1, "disk0", 32, Block));
        var back = new byte[Block * Bio.Sector512];
        Assert.Equal(BioStatus.Ok, Io(remote.Device, Bio.Read(16, back, ActorRefs.Nobody)));
        Assert.Equal(Data(Block, 7), back);
        Assert.Equal(1, n1.Info("a").OpenCount);
        n3.Ok(new Dm.Close("a", remote.Device));

        // Two clients through the same non-owner: closing the first one's open leaves the second one's proxy serving.
        var (first, second) = (n3.Open("a"), n3.Open("a"));
        n3.Ok(new Dm.Close("a", first.Device));
        Assert.Equal(BioStatus.Ok, Io(second.Device, Bio.Read(16, back, ActorRefs.Nobody)));
        Assert.Equal(Data(Block, 7), back);
        n3.Ok(new Dm.Close("a", second.Device));

        // Duplicate name from another node.
        var dup = n2.Fails(new Dm.Create("a", "0 8 zero"));
        Assert.Equal((Dm.Failed.Busy, "device a already exists"), (dup.Error, dup.Reason));

        // A volume over a disk of n2, created from n3.
        n3.Ok(new Dm.Create("far", "0 1024 linear disk0@n2 0"));
        Assert.Equal("n3", n1.Info("far").Node);
        Assert.Equal(n2.Disks.Find("disk0")!.DevNo, n1.Table("far")[0].Split(' ')[3]);
        n3.Ok(new Dm.Create("on2", "0 1024 linear disk0 4096", Node: "n2"));
        Assert.Equal("n2", n3.Info("on2").Node);
        Assert.Contains(((Dm.HistoryList)n1.Command(new Dm.History("on2"))).Entries, e => e.What.Contains("linear disk0@n2 4096"));

        // Stacking: the upper volume lands on its lower volume's node; --node elsewhere is refused.
        n3.Ok(new Dm.Create("upper", "0 1024 linear a 1024"));
        Assert.Equal("n1", n2.Info("upper").Node);
        var elsewhere = n2.Fails(new Dm.Create("upper2", "0 1024 linear a 0", Node: "n3"));
        Assert.Equal(Dm.Failed.Invalid, elsewhere.Error);
        Assert.Contains("a is on node n1", elsewhere.Reason);
        var twoGroups = n2.Fails(new Dm.Create("both", "0 512 linear a 0\n512 512 linear on2 0"));
        Assert.Contains("different stack groups", twoGroups.Reason);
        var reload = n2.Fails(new Dm.Load("upper", "0 512 linear on2 0"));
        Assert.Contains("another stack group", reload.Reason);
        Assert.DoesNotContain("upper2", n1.List());

        // IO through the stacked volume reaches the lower volume's disk.
        var up = n1.Open("upper");
        Assert.Equal(BioStatus.Ok, Io(up.Device, Bio.Write(8, Data(Block, 3), ActorRefs.Nobody)));
        Assert.Equal(Data(Block, 3), ReadDisk(n1, "disk0", 1024 + 8, Block));
        n1.Ok(new Dm.Close("upper"));

        // Unknown node.
        var unknown = n1.Fails(new Dm.Create("x", "0 8 zero", Node: "n9"));
        Assert.Equal(("create", "x", "no cluster member named n9"), (unknown.Op, unknown.Name, unknown.Reason));
        var unknownMove = n2.Fails(new ClusterCmd.Move("a", "n9"));
        Assert.Equal(("move", "no cluster member named n9"), (unknownMove.Op, unknownMove.Reason));

        // Rename keeps the entity (and its node); the old name is free, the new one taken.
        var farId = n1.EntityId("far");
        n2.Ok(new Dm.Rename("far", "near"));
        Assert.Equal(farId, n3.EntityId("near"));
        Assert.Equal("n3", n1.Info("near").Node);
        Assert.Equal("near", n3.Info("near").Name);
        Assert.Equal(Dm.Failed.NoDevice, n1.Fails(new Dm.GetInfo("far")).Error);
        Assert.Equal(new[] { "a", "near", "on2", "upper" }, n2.List());

        // Suspend from anywhere; remove releases the name.
        n2.Ok(new Dm.Suspend("near"));
        Assert.True(n1.Info("near").Suspended);
        n1.Ok(new Dm.Remove("near"));
        Assert.Equal(new[] { "a", "on2", "upper" }, n3.List());
        n2.Ok(new Dm.Create("near", "0 8 zero"));
        Assert.Equal("n2", n1.Info("near").Node);

        var status = (ClusterCmd.StatusReply)n3.Command(ClusterCmd.Status.Instance);
        Assert.Equal(new[] { "n1", "n2", "n3" }, status.Members.Select(m => m.Node).OrderBy(n => n));
        Assert.Equal(new[] { "a", "upper" }, status.Members.Single(m => m.Node == "n1").Volumes);
        Assert.Equal(new[] { "near", "on2" }, status.Members.Single(m => m.Node == "n2").Volumes);
    }

    [Fact]
    public void A_dead_owners_volumes_come_back_on_a_survivor_as_recorded_with_a_higher_epoch()
    {
        using var c = new TestCluster();
        Step("cluster up");
        var (n1, n2, n3) = (c["n1"], c["n2"], c["n3"]);
        // On n2: one volume over a disk of n3 (with a loaded inactive table), one suspended over n1's disk, one over
        // n2's own disk (gone with n2), and one stacked on the first.
        n2.Ok(new Dm.Create("wide", "0 2048 linear disk0@n3 0"));
        n2.Ok(new Dm.Load("wide", "0 1024 linear disk0@n3 0"));
        n2.Ok(new Dm.Create("sus", "0 512 linear disk0@n1 0"));
        n2.Ok(new Dm.Suspend("sus"));
        n2.Ok(new Dm.Create("local", "0 512 linear disk0 0"));
        n2.Ok(new Dm.Create("top", "0 1024 linear wide 512"));
        var opened = n2.Open("wide");
        Assert.Equal(BioStatus.Ok, Io(opened.Device, Bio.Write(64, Data(Block, 5), ActorRefs.Nobody)));
        n2.Ok(new Dm.Close("wide"));
        var names = new[] { "wide", "sus", "local", "top" };
        var before = names.ToDictionary(n => n, n => (Info: n1.Info(n), Live: n1.Table(n), Inactive: n1.Table(n, inactive: true)));
        Assert.All(before.Values, b => Assert.Equal("n2", b.Info.Node));
        var wideId = n1.EntityId("wide");
        var epochBefore = c.LatestEpoch(wideId);
        Assert.True(epochBefore >= 1);

        Step("volumes created on n2");
        c.Kill("n2");
        Step("n2 killed and removed");

        // Nobody asks for them: the directory re-places their group and wakes them (the status agrees).
        TestCluster.Await(() => names.All(n => n1.Cluster.Volumes.Names.Contains(n) || n3.Cluster.Volumes.Names.Contains(n)), "volumes running again");
        Step("volumes running again");
        var status = (ClusterCmd.StatusReply)n1.Command(ClusterCmd.Status.Instance);
        Assert.Equal(new[] { "n1", "n3" }, status.Members.Select(m => m.Node).Order());
        Assert.Equal(names.Order(), status.Members.SelectMany(m => m.Volumes).Order());
        foreach (var m in status.Members) Assert.Equal(m.Volumes, c[m.Node].Cluster.Volumes.Names);
        // Groups go to the survivor with the fewest volumes: wide and top (one group) to one, sus and local to the other.
        Assert.Equal(new[] { 2, 2 }, status.Members.Select(m => m.Volumes.Count));
        var after = TestCluster.Eventually(() => n3.Info("wide"), i => i.Node is "n1" or "n3" && i.LiveTable, "wide back on a survivor");
        foreach (var name in new[] { "wide", "sus", "top" })
        {
            var info = TestCluster.Eventually(() => n1.Info(name), i => i.Node != "n2" && i.LiveTable, $"{name} back");
            var was = before[name];
            Assert.Equal((was.Info.Suspended, was.Info.LiveTable, was.Info.InactiveTable, was.Info.Sectors, was.Info.Minor, null as string),
                (info.Suspended, info.LiveTable, info.InactiveTable, info.Sectors, info.Minor, info.ErrorState));
            Assert.Equal(was.Live, n3.Table(name));
            Assert.Equal(was.Inactive, n3.Table(name, inactive: true));
        }
        Assert.Equal(after.Node, n1.Info("top").Node); // the stack group moved as one
        Assert.True(c.LatestEpoch(wideId) > epochBefore, "the new activation has a higher epoch");

        // The volume that needs the dead node's disk is back in an error state that info explains.
        var local = TestCluster.Eventually(() => n3.Info("local"), i => i.Node != "n2" && i.ErrorState != null, "local back in error");
        Assert.False(local.LiveTable);
        Assert.Contains("node n2 is not reachable", local.ErrorState);
        // Stacked on a volume in error, tables name the cause too.
        Assert.Contains("node n2 is not reachable", n3.Fails(new Dm.Create("onlocal", "0 8 linear local 0")).Reason);

        // Data written before the failover reads back through the survivor.
        var owner = c[after.Node!];
        var reopened = owner.Open("wide");
        var back = new byte[Block * Bio.Sector512];
        Assert.Equal(BioStatus.Ok, Io(reopened.Device, Bio.Read(64, back, ActorRefs.Nobody)));
        Assert.Equal(Data(Block, 5), back);
        owner.Ok(new Dm.Close("wide"));

        // n2 comes back (empty disks, new address): the volume that needed its disk serves again where it is now;
        // nothing moves back by itself.
        c.Restart("n2");
        var healed = TestCluster.Eventually(() => n1.Info("local"), i => i.LiveTable, "local serves again");
        Assert.Equal((local.Node, null as string, 512L, false), (healed.Node, healed.ErrorState, healed.Sectors, healed.Suspended));
        Assert.Equal(before["local"].Live, c["n2"].Table("local")); // n2's new disk0 has the old one's device number
        Assert.Equal(BioStatus.Ok, Io(c[healed.Node!].Open("local").Device, Bio.Read(0, new byte[4096], ActorRefs.Nobody)));
        c[healed.Node!].Ok(new Dm.Close("local"));
        Assert.Equal(after.Node, n3.Info("wide").Node);
    }

    [Fact]
    public void Volumes_of_the_node_that_ran_the_directory_come_back_when_it_dies()
    {
        using var c = new TestCluster();
        Step("cluster up");
        var (n1, n2, n3) = (c["n1"], c["n2"], c["n3"]);
        // n1 is the oldest member: it runs the directory and the shard coordinator, and they die with it.
        n1.Ok(new Dm.Create("v1", "0 1024 linear disk0@n3 0"));
        n1.Ok(new Dm.Create("v1u", "0 512 linear v1 0", Uuid: "uuid-v1u"));
        var table = n2.Table("v1u");
        var id = n2.EntityId("v1");

        Step("volumes created on n1");
        c.Kill("n1");
        Step("n1 killed and removed");

        // The directory starts again on a survivor, re-places the group of the dead node and wakes its volumes.
        TestCluster.Await(() => new[] { n2, n3 }.Any(n => n.Cluster.Volumes.Names.SequenceEqual(new[] { "v1", "v1u" })), "volumes running again");
        var info = TestCluster.Eventually(() => n3.Info("v1u"), i => i.Node is "n2" or "n3" && i.LiveTable, "v1u back on a survivor");
        Assert.Equal("uuid-v1u", info.Uuid);
        Assert.Equal(table, n2.Table("v1u"));
        Assert.Equal(info.Node, n2.Info("v1").Node);
        Assert.Equal(2, c.LatestEpoch(id));
        // The directory (now on a survivor) still keeps names unique.
        Assert.Equal(Dm.Failed.Busy, n3.Fails(new Dm.Create("v1", "0 8 zero")).Error);
        Assert.Equal(new[] { "v1", "v1u" }, n3.List());
    }

    [Fact]
    public void A_move_under_io_answers_every_bio_once_and_keeps_the_data()
    {
        using var c = new TestCluster();
        Step("cluster up");
        var (n1, n2, n3) = (c["n1"], c["n2"], c["n3"]);
        n2.Ok(new Dm.Create("m", "0 2048 linear disk0 0"));
        n2.Ok(new Dm.Create("m2", "0 1024 linear m 1024")); // stacked: moves with m
        const int blocks = 32;

        // A client on n1 (not the owner) writes and reads in a loop; an error means "reopen and retry".
        var answers = new System.Collections.Concurrent.ConcurrentDictionary<Bio, int>(ReferenceEqualityComparer.Instance);
        var model = new byte[blocks];
        var errors = 0;
        var stop = new ManualResetEventSlim();
        var movedAt = -1;
        var done = 0;
        var client = Task.Run(() =>
        {
            var device = n1.Open("m").Device;
            var rnd = new Random(12);
            for (var i = 0; !stop.IsSet || Volatile.Read(ref done) < movedAt + 50; i++)
            {
                var block = rnd.Next(blocks);
                var write = rnd.Next(2) == 0;
                var seed = (byte)(i % 200 + 1);
                var buffer = write ? Data(Block, seed) : new byte[Block * Bio.Sector512];
                while (true)
                {
                    var bio = write ? Bio.Write(block * Block, buffer, ActorRefs.Nobody) : Bio.Read(block * Block, buffer, ActorRefs.Nobody);
                    var status = Counted(device, bio, answers);
                    if (status == BioStatus.Ok) break;
                    Interlocked.Increment(ref errors);
                    n1.Ok(new Dm.Close("m"));
                    device = TestCluster.Eventually(() => n1.Open("m"), _ => true, "reopen m").Device;
                }
                if (write) model[block] = seed;
                else if (model[block] != 0) Assert.Equal(Data(Block, model[block]), buffer);
                Volatile.Write(ref done, i);
            }
            n1.Ok(new Dm.Close("m"));
        });
        TestCluster.Await(() => Volatile.Read(ref done) > 50 || client.IsCompleted, "IO running");

        Step("IO running");
        n3.Ok(new ClusterCmd.Move("m", "n3"));
        Step("moved");
        Assert.Equal("n3", n1.Info("m").Node);
        Assert.Equal("n3", n2.Info("m2").Node);
        movedAt = Volatile.Read(ref done);
        stop.Set();
        Assert.True(client.Wait(TestCluster.Timeout), "the client finished");
        client.GetAwaiter().GetResult();

        Assert.All(answers, a => Assert.Equal(1, a.Value)); // every bio answered exactly once
        Assert.True(answers.Count > 100, $"{answers.Count} bios");
        // The client's proxy pointed at n2's device, which stopped: the move happened under IO, and the client saw it.
        Assert.True(errors > 0, "no bio failed over to the new owner");
        // The data is intact after the move, read on the new owner.
        var owner = n3.Open("m");
        for (var b = 0; b < blocks; b++)
        {
            if (model[b] == 0) continue;
            var back = new byte[Block * Bio.Sector512];
            Assert.Equal(BioStatus.Ok, Io(owner.Device, Bio.Read(b * Block, back, ActorRefs.Nobody)));
            Assert.Equal(Data(Block, model[b]), back);
        }
        n3.Ok(new Dm.Close("m"));
        Assert.Equal(BioStatus.Ok, Io(n3.Open("m2").Device, Bio.Read(0, new byte[4096], ActorRefs.Nobody)));
        n3.Ok(new Dm.Close("m2"));
        Assert.Equal("n3", ((ClusterCmd.StatusReply)n2.Command(ClusterCmd.Status.Instance)).Members.Single(m => m.Volumes.Contains("m")).Node);
    }

    // ---- IO helpers ---------------------------------------------------------------------------------------------

    internal static byte[] Data(int sectors, byte seed)
    {
        var d = new byte[sectors * Bio.Sector512];
        for (var i = 0; i < d.Length; i++) d[i] = (byte)(seed + i / Bio.Sector512);
        return d;
    }

    /// <summary>Submits one bio to <paramref name="device"/> and waits for its answer.</summary>
    internal static BioStatus Io(IActorRef device, Bio bio)
    {
        var done = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        bio.ReplyTo = CallbackRef.ForBios(d => done.TrySetResult(d.Status));
        device.Tell(bio, ActorRefs.NoSender);
        Assert.True(done.Task.Wait(TestCluster.Timeout), $"{bio} was not answered");
        return done.Task.Result;
    }

    /// <summary>Like <see cref="Io"/>, counting every answer of every bio (a second answer would show here).</summary>
    private static BioStatus Counted(IActorRef device, Bio bio, System.Collections.Concurrent.ConcurrentDictionary<Bio, int> answers)
    {
        var done = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        answers[bio] = 0;
        bio.ReplyTo = CallbackRef.ForBios(d =>
        {
            answers.AddOrUpdate(d.Bio, 1, (_, n) => n + 1);
            done.TrySetResult(d.Status);
        });
        device.Tell(bio, ActorRefs.NoSender);
        Assert.True(done.Task.Wait(TestCluster.Timeout), $"{bio} was not answered");
        return done.Task.Result;
    }

    private static byte[] ReadDisk(TestCluster.Node node, string disk, long sector, int sectors)
    {
        var data = new byte[sectors * Bio.Sector512];
        ((MemoryDisk)node.Disks.Find(disk)!).ReadAt(sector * Bio.Sector512, data);
        return data;
    }
}
