using Akka.Actor;
using DmActors;
using DmActors.Tests.Core;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// A leg whose device lost answered writes (an NBD server that died with them in its cache, reached again after
/// its restart) is failed as soon as the mirror can know it, not at the next flush: until then a read from it
/// returned data older than an answered write (found by `dmactors clustertest --seed 12`, kill of a leg's node).
/// The loss is shown by <see cref="IBlockDevice.WritesLost"/>; here a GateDisk stands for the NBD client, and
/// zeroing its memory for the cache that died.
/// </summary>
public sealed class MirrorLostWritesTests : TargetHarness
{
    private const int Region = 256;

    /// <summary>Legs a (on this node, so reads prefer it) and b (remote), in sync, with one write on both.</summary>
    private (GateDisk A, GateDisk B, IActorRef Dev) WrittenMirror(string sync = "nosync")
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        b.Remote = true;
        var dev = Create("m", MirrorTable(a, b, sync));
        Eventually(() => Status("m").Contains(" 4/4 1 AA "), $"in sync (status: {Status("m")})");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 1)));
        return (a, b, dev);
    }

    private static string MirrorTable(GateDisk a, GateDisk b, string sync) =>
        $"0 1024 mirror core {(sync == "" ? 1 : 2)} 256 {sync} 2 {a.Name} 0 {b.Name} 0 1 handle_errors".Replace("  ", " ");

    private static void LoseCache(GateDisk leg)
    {
        leg.Memory.WriteAt(8 * 512, new byte[8 * 512]);
        leg.Lost++;
    }

    [Fact]
    public void A_leg_that_lost_writes_is_not_read_from_and_gets_them_back_when_it_returns()
    {
        var (a, b, dev) = WrittenMirror();
        LoseCache(a);
        AssertBytes(Pattern(8, 1), ReadBack(dev, 8, 8), "read after a's loss");
        Assert.Contains(" 1 FA ", Status("m"));
        Assert.Empty(Message("m", "return_leg", a.Name));
        Eventually(() => Status("m").Contains(" 4/4 1 AA "), $"in sync again (status: {Status("m")})");
        Assert.Equal(Hash(a.Memory), Hash(b.Memory));
    }

    [Fact]
    public void A_loss_shows_in_the_status_without_any_io()
    {
        var (a, _, _) = WrittenMirror();
        LoseCache(a);
        Eventually(() => Status("m").Contains(" 1 FA "), $"leg a failed (status: {Status("m")})");
    }

    [Fact]
    public void A_read_answered_after_the_leg_lost_writes_is_read_again_from_another_leg()
    {
        var (a, _, dev) = WrittenMirror();
        a.Hold = bio => bio.Op == BioOp.Read;
        var probe = CreateTestProbe();
        dev.Tell(Read(8, 8, probe), ActorRefs.NoSender);
        Eventually(() => a.HeldCount == 1, "the read at a");
        LoseCache(a); // a's server died with the write in its cache; the read is sent again to its restarted self
        a.Hold = _ => false;
        a.Release();
        var done = probe.ExpectMsg<BioDone>(Wait);
        Assert.Equal(BioStatus.Ok, done.Status);
        AssertBytes(Pattern(8, 1), done.Bio.Data.ToArray(), "the read");
    }

    [Fact]
    public void A_write_answered_after_the_leg_lost_writes_does_not_count_on_that_leg()
    {
        var (a, b, dev) = WrittenMirror();
        a.HoldCompletion = bio => bio.Op == BioOp.Write;
        b.Fail = bio => bio.Op == BioOp.Write ? BioStatus.IoError : null;
        var probe = CreateTestProbe();
        dev.Tell(Write(2 * Region, Pattern(8, 2), probe), ActorRefs.NoSender);
        Eventually(() => a.HeldCompletions == 1, "the write at a");
        a.Lost++;
        a.ReleaseCompleted();
        // Neither leg is known to hold it: b failed it, and a may have lost it.
        Assert.Equal(BioStatus.IoError, probe.ExpectMsg<BioDone>(Wait).Status);
    }

    [Fact]
    public void A_stacked_leg_reports_the_losses_of_the_disk_below_it()
    {
        var (a, b) = (Gate("a", 1024), Gate("b", 1024));
        b.Remote = true;
        Create("low", $"0 1024 linear {a.Name} 0");
        var dev = Create("m", $"0 1024 mirror core 2 256 nosync 2 low 0 {b.Name} 0 1 handle_errors");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 1)));
        LoseCache(a);
        AssertBytes(Pattern(8, 1), ReadBack(dev, 8, 8), "read after the loss below low");
        Assert.Contains(" 1 FA ", Status("m"));
    }

    [Fact]
    public void A_mapped_device_keeps_the_losses_of_devices_its_earlier_tables_used()
    {
        var shared = new DeviceShared("low", 1);
        var (a, c) = (Gate("a", 64), Gate("c", 64));
        shared.LiveDevices([a]);
        a.Lost = 2;
        Assert.Equal(2, shared.WritesLost);
        shared.LiveDevices([a, c]);   // a reload that keeps a: not counted twice
        Assert.Equal(2, shared.WritesLost);
        shared.LiveDevices([c]);      // a's losses stay with the device
        Assert.Equal(2, shared.WritesLost);
        c.Lost = 1;
        Assert.Equal(3, shared.WritesLost);
    }

    [Fact]
    public void A_reload_after_a_loss_the_old_table_did_not_see_copies_the_dirty_regions_to_that_leg()
    {
        var (a, b, dev) = WrittenMirror(sync: ""); // synced (a table reloaded with nosync would take the legs as equal); region 0 dirty
        LoseCache(a);
        Reload("m", MirrorTable(a, b, ""));
        AssertBytes(Pattern(8, 1), ReadBack(dev, 8, 8), "read after the reload");
        if (Status("m").Contains(" F")) Assert.Empty(Message("m", "return_leg", a.Name));
        Eventually(() => Status("m").Contains(" 4/4 1 AA "), $"in sync (status: {Status("m")})");
        Assert.Equal(Hash(a.Memory), Hash(b.Memory));
        AssertBytes(Pattern(8, 1), Contents(a.Memory, 8, 8), "region 0 copied back to a");
    }
}
