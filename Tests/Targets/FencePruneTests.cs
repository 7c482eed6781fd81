using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>
/// Pruning the fence file (<see cref="FenceTable.Prune"/>): the fences of volumes that no longer exist go, the newest
/// epoch of every volume that exists stays (it refuses that volume's old owners, also after a restart).
/// </summary>
public sealed class FencePruneTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("fence-prune-").FullName;
    private string FilePath => Path.Combine(_dir, "fences.json");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>A node's fences as recorded before this start: V removed since, W still a volume.</summary>
    private FenceTable Recorded()
    {
        var before = new FenceTable(FilePath);
        before.Claim("disk0", "V", 3);
        before.Claim("disk0", "W", 5);
        before.Claim("disk1", "W", 2);
        return new FenceTable(FilePath); // a restart reads the file
    }

    [Fact]
    public void Prune_drops_the_fences_of_removed_volumes_from_the_file_and_keeps_the_newest_epoch_of_the_others()
    {
        var fences = Recorded();
        var gone = fences.Prune(new HashSet<string> { "W" });

        Assert.Equal(["disk0: volume V at epoch 3"], gone.Select(c => c.ToString()));
        var after = new FenceTable(FilePath);
        Assert.Equal((0L, 5L, 2L), (after.Current("disk0", "V"), after.Current("disk0", "W"), after.Current("disk1", "W")));
        // W's old owner is still refused, before and after a restart.
        Assert.Throws<FencedException>(() => fences.Claim("disk0", "W", 4));
        Assert.Throws<FencedException>(() => after.Claim("disk0", "W", 4));
        Assert.Empty(after.Prune(new HashSet<string> { "W" })); // nothing more to drop
    }

    [Fact]
    public void Prune_keeps_every_fence_claimed_since_the_start_even_of_a_volume_missing_from_the_listing()
    {
        var fences = Recorded();
        fences.Claim("disk0", "X", 1); // a volume created after the listing was taken
        fences.Claim("disk0", "V", 3); // claimed again (in use here): the listing is older than that

        Assert.Empty(fences.Prune(new HashSet<string> { "W" }));
        var after = new FenceTable(FilePath);
        Assert.Equal((3L, 1L, 5L), (after.Current("disk0", "V"), after.Current("disk0", "X"), after.Current("disk0", "W")));
    }

    [Fact]
    public void A_revoked_table_prunes_nothing()
    {
        var fences = Recorded();
        fences.Revoke("this node was removed from the cluster");
        Assert.Empty(fences.Prune(new HashSet<string>()));
        Assert.Equal(3L, new FenceTable(FilePath).Current("disk0", "V"));
    }
}
