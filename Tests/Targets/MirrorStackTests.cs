using DmActors;
using DmActors.Tests.Core;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>A mirror over mirrors: each keeps its own turn of legs, so reads through the top reach every disk.</summary>
public sealed class MirrorStackTests : TargetHarness
{
    [Fact]
    public void Reads_of_a_mirror_of_mirrors_spread_over_all_four_disks()
    {
        var disks = new[] { Gate("a", 1024), Gate("b", 1024), Gate("c", 1024), Gate("d", 1024) };
        Create("m1", "0 1024 mirror core 2 256 nosync 2 a 0 b 0 1 handle_errors");
        Create("m2", "0 1024 mirror core 2 256 nosync 2 c 0 d 0 1 handle_errors");
        var top = Create("top", "0 1024 mirror core 2 256 nosync 2 m1 0 m2 0 1 handle_errors");
        Assert.Equal(BioStatus.Ok, WriteAt(top, 0, Pattern(8, 1)));
        var reads = new Dictionary<string, int>();
        foreach (var g in disks)
        {
            var name = g.Name;
            g.Hold = bio => { if (bio.Op == BioOp.Read) lock (reads) reads[name] = reads.GetValueOrDefault(name) + 1; return false; };
        }
        for (var i = 0; i < 40; i++) AssertBytes(Pattern(8, 1), ReadBack(top, 0, 8), "read through the top");
        // One turn shared by the mirrors on a thread kept each lower one on the same leg (before: c=40).
        Assert.All(disks, g => Assert.True(reads.GetValueOrDefault(g.Name) >= 5, $"{g.Name} got {reads.GetValueOrDefault(g.Name)} of 40 reads"));
    }
}
