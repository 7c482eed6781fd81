using DmActors;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// A mirror's leg whose node died and came back (found by `dmactors clustertest`): the leg is a volume whose table
/// was rebuilt over a new connection while the old one is gone, with writes of the mirror's still unflushed on it.
/// </summary>
public sealed class MirrorLegReturnTests : TargetHarness
{
    private const int Region = 256;

    [Fact]
    public void A_stacked_leg_rebuilt_over_a_new_disk_while_its_old_one_is_gone_is_resynced_at_the_first_return_leg()
    {
        var (old, fresh, b) = (Gate("old", 1024), Gate("fresh", 1024), Gate("b", 1024));
        Create("s", "0 1024 linear old 0");
        var dev = Create("m", $"0 1024 mirror core 2 256 nosync 2 s 0 {b.Name} 0 1 handle_errors");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, Region, Pattern(8, 1)));    // on both legs, not flushed

        // The leg's node dies: its disk fails every bio for good.
        old.Fail = _ => BioStatus.IoError;
        old.Gone = true;
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 2 * Region, Pattern(8, 2))); // the leg fails; b alone has it
        Assert.Matches(@" 2/4 1 DA ", Status("m"));

        // The node is back: the leg's volume gets a table over the new connection to the same disk (here, a copy
        // of it), while its old table's disk, still holding the leg's unflushed write, is gone.
        var image = Contents(old.Memory, 0, 1024);
        fresh.Memory.WriteAt(0, image);
        Reload("s", "0 1024 linear fresh 0");

        Assert.Empty(Message("m", "return_leg", "s"));
        Eventually(() => Status("m").Contains(" 4/4 1 AA "), $"the resync done at the first return_leg (status: {Status("m")})");
        AssertBytes(Pattern(8, 2), Contents(fresh.Memory, 2 * Region, 8), "the write the leg missed, copied to it");
        Assert.Equal(Hash(b.Memory), Hash(fresh.Memory));
        Assert.Equal(BioStatus.Ok, Flush(dev));
    }

    [Fact]
    public void A_volume_whose_swapped_out_disk_is_gone_fails_one_flush_not_every_later_one()
    {
        var (old, fresh) = (Gate("old", 1024), Gate("fresh", 1024));
        var dev = Create("s", "0 1024 linear old 0");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 1)));          // unflushed on old
        old.Fail = _ => BioStatus.IoError;
        old.Gone = true;
        Reload("s", "0 1024 linear fresh 0");
        Assert.Equal(BioStatus.IoError, Flush(dev));                         // the write old held is lost: said once
        Assert.Equal(BioStatus.Ok, Flush(dev));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 16, Pattern(8, 2)));
        Assert.Equal(BioStatus.Ok, Flush(dev));
    }
}
