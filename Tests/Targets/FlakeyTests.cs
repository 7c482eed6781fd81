using DmActors;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>flakey (Documentation/admin-guide/device-mapper/dm-flakey.rst): up/down intervals on a virtual clock, each down-interval mode.</summary>
public sealed class FlakeyTests : TargetHarness
{
    private static readonly TimeSpan Second = TimeSpan.FromSeconds(1);

    /// <summary>d0 prefilled with pattern 1 at sectors 0..7, so "unchanged" is checkable.</summary>
    private MemoryDisk Prefilled()
    {
        var d0 = Mem("d0", 1024);
        d0.WriteAt(0, Pattern(8, 1));
        return d0;
    }

    [Fact]
    public void Up_interval_passes_io_and_down_without_features_fails_reads_and_writes()
    {
        var d0 = Prefilled();
        var dev = Create("fl", "0 1024 flakey d0 0 1 1");

        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 2)));        // t=0: up
        AssertBytes(Pattern(8, 2), Contents(d0, 8, 8), "write while up");

        Clock.Advance(Second * 1.5);                                       // t=1.5: down
        Assert.Equal(BioStatus.IoError, WriteAt(dev, 16, Pattern(8, 3)));
        Assert.Equal(BioStatus.IoError, ReadInto(dev, 0, new byte[4096]));
        Assert.True(d0.IsUnallocated(16 * 512, 4096) || Contents(d0, 16, 8).All(b => b == 0), "failed write reached the disk");

        Clock.Advance(Second);                                             // t=2.5: up again
        var back = new byte[4096];
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 0, back));
        AssertBytes(Pattern(8, 1), back, "read while up again");
    }

    [Fact]
    public void Always_up_table_is_linear_with_its_offset()
    {
        var d0 = Mem("d0", 1024);
        var dev = Create("fl", "0 512 flakey d0 100 180 0");
        Clock.Advance(TimeSpan.FromHours(1));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 4, Pattern(8, 7)));
        AssertBytes(Pattern(8, 7), Contents(d0, 104, 8), "offset mapping");
    }

    [Fact]
    public void Drop_writes_acknowledges_writes_and_flushes_without_touching_the_disk_and_reads_pass()
    {
        var d0 = Gate("d0", 1024);
        d0.Memory.WriteAt(0, Pattern(8, 1));
        var dev = Create("fl", "0 1024 flakey d0 0 0 180 1 drop_writes");

        var mine = Pattern(8, 9);
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, mine));
        Assert.Equal(BioStatus.Ok, Flush(dev));
        Assert.Equal(BioStatus.Ok, Discard(dev, 0, 8));
        AssertBytes(Pattern(8, 1), Contents(d0.Memory, 0, 8), "disk after dropped write and discard");
        Assert.DoesNotContain(Events(), e => e.Op != BioOp.Read);          // nothing write-direction was issued

        var back = new byte[4096];
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 0, back));
        AssertBytes(Pattern(8, 1), back, "read served from the disk");

        // Restore: reload an always-up table; writes reach the disk again.
        Reload("fl", "0 1024 flakey d0 0 180 0");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, mine));
        AssertBytes(mine, Contents(d0.Memory, 0, 8), "write after restore");
    }

    [Fact]
    public void Error_writes_fails_writes_and_flushes_but_reads_pass()
    {
        var d0 = Gate("d0", 1024);
        d0.Memory.WriteAt(0, Pattern(8, 1));
        var dev = Create("fl", "0 1024 flakey d0 0 0 180 1 error_writes");

        Assert.Equal(BioStatus.IoError, WriteAt(dev, 0, Pattern(8, 2)));
        Assert.Equal(BioStatus.IoError, Flush(dev));                        // D4: fsync sees EIO
        var back = new byte[4096];
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 0, back));
        AssertBytes(Pattern(8, 1), back, "read");
        AssertBytes(Pattern(8, 1), Contents(d0.Memory, 0, 8), "disk");
    }

    [Fact]
    public void Error_reads_fails_reads_but_writes_land()
    {
        var d0 = Prefilled();
        var dev = Create("fl", "0 1024 flakey d0 0 0 180 1 error_reads");
        Assert.Equal(BioStatus.IoError, ReadInto(dev, 0, new byte[4096]));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 5)));
        AssertBytes(Pattern(8, 5), Contents(d0, 0, 8), "disk");
    }

    [Fact]
    public void Corrupt_bio_byte_on_reads_changes_what_is_read_not_the_disk()
    {
        var d0 = Prefilled();
        var dev = Create("fl", "0 1024 flakey d0 0 0 180 5 corrupt_bio_byte 32 r 200 0");
        var back = new byte[4096];
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 0, back));
        var expected = Pattern(8, 1);
        Assert.NotEqual(200, expected[31]);
        expected[31] = 200;
        AssertBytes(expected, back, "read");
        AssertBytes(Pattern(8, 1), Contents(d0, 0, 8), "disk untouched");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, Pattern(8, 4)));         // writes are not corrupted in r mode
        AssertBytes(Pattern(8, 4), Contents(d0, 8, 8), "write");
    }

    [Fact]
    public void Corrupt_bio_byte_on_writes_corrupts_the_media_copy_only_and_only_bios_with_the_flags()
    {
        var d0 = Mem("d0", 1024);
        // Flags mask 2 = FUA: only FUA writes are corrupted (like the doc's REQ_META example).
        var dev = Create("fl", "0 1024 flakey d0 0 0 180 5 corrupt_bio_byte 1 w 7 2");

        var plain = Pattern(8, 3);
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, plain));
        AssertBytes(Pattern(8, 3), Contents(d0, 0, 8), "plain write is not corrupted");

        var fua = Pattern(8, 3);
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 8, fua, BioFlags.Fua));
        AssertBytes(Pattern(8, 3), fua, "submitter's buffer");
        var onDisk = Contents(d0, 8, 8);
        Assert.Equal(7, onDisk[0]);
        AssertBytes(Pattern(8, 3)[1..], onDisk[1..], "rest of the FUA write");
    }

    [Fact]
    public void Random_read_corrupt_at_100_percent_changes_one_byte_of_each_read()
    {
        var d0 = Prefilled();
        var dev = Create("fl", "0 1024 flakey d0 0 0 180 2 random_read_corrupt 1000000000");
        var expected = Pattern(8, 1);
        // Every read is corrupted, but the random byte may happen to get its old value (1 in 256, as in dm-flakey):
        // of 8 reads at least one shows the change (all 8 unlucky: 2^-64).
        var changed = new List<int>();
        for (var read = 0; read < 8; read++)
        {
            var back = new byte[4096];
            Assert.Equal(BioStatus.Ok, ReadInto(dev, 0, back));
            changed.Add(Enumerable.Range(0, back.Length).Count(i => expected[i] != back[i]));
        }
        Assert.All(changed, n => Assert.True(n <= 1, $"{n} bytes changed in one read"));
        Assert.Contains(1, changed);
        AssertBytes(Pattern(8, 1), Contents(d0, 0, 8), "disk untouched");
    }

    [Theory]
    [InlineData("d0 0 0 180", "7:0 0 0 180 2 error_reads error_writes")]
    [InlineData("d0 0 0 180 0", "7:0 0 0 180 2 error_reads error_writes")]
    [InlineData("d0 8 180 0", "7:0 8 180 0 2 error_reads error_writes")]
    [InlineData("d0 0 0 180 1 drop_writes", "7:0 0 0 180 1 drop_writes")]
    [InlineData("d0 0 0 180 1 error_reads", "7:0 0 0 180 1 error_reads")]
    [InlineData("d0 0 0 180 2 error_reads error_writes", "7:0 0 0 180 2 error_reads error_writes")]
    [InlineData("d0 0 1 1 5 corrupt_bio_byte 32 r 1 0", "7:0 0 1 1 5 corrupt_bio_byte 32 r 1 0")]
    [InlineData("d0 0 1 1 6 drop_writes corrupt_bio_byte 32 r 1 0", "7:0 0 1 1 6 drop_writes corrupt_bio_byte 32 r 1 0")]
    [InlineData("d0 0 1 1 2 random_write_corrupt 5", "7:0 0 1 1 2 random_write_corrupt 5")]
    public void Table_prints_the_modern_format(string args, string expected)
    {
        Mem("d0", 1024);
        Create("fl", $"0 512 flakey {args}");
        Assert.Equal($"0 512 flakey {expected}", TableOf("fl"));
        Assert.Equal("0 512 flakey ", Status("fl"));
    }

    [Theory]
    [InlineData("d0 0 1", "Invalid argument count")]
    [InlineData("d0 x 1 1", "Invalid device sector")]
    [InlineData("d0 0 -1 1", "Invalid up interval")]
    [InlineData("d0 0 1 y", "Invalid down interval")]
    [InlineData("d0 0 0 0", "Total (up + down) interval is zero")]
    [InlineData("d0 0 4294967295 1", "Interval overflow")]
    [InlineData("d0 0 1 1 12 drop_writes", "Invalid number of feature args")]
    [InlineData("d0 0 1 1 2 drop_writes", "Invalid number of feature args")]
    [InlineData("d0 0 1 1 2 drop_writes drop_writes", "Feature drop_writes duplicated")]
    [InlineData("d0 0 1 1 2 error_writes drop_writes", "Feature drop_writes conflicts with feature error_writes")]
    [InlineData("d0 0 1 1 2 drop_writes error_writes", "Feature error_writes conflicts with feature drop_writes")]
    [InlineData("d0 0 1 1 2 corrupt_bio_byte 1", "Feature corrupt_bio_byte requires parameters")]
    [InlineData("d0 0 1 1 5 corrupt_bio_byte 0 r 1 0", "Invalid corrupt bio byte")]
    [InlineData("d0 0 1 1 5 corrupt_bio_byte 1 x 1 0", "Invalid corrupt bio direction (r or w)")]
    [InlineData("d0 0 1 1 5 corrupt_bio_byte 1 r 256 0", "Invalid corrupt value to write into bio byte (0-255)")]
    [InlineData("d0 0 1 1 5 corrupt_bio_byte 1 r 1 z", "Invalid corrupt bio flags mask")]
    [InlineData("d0 0 1 1 1 sometimes", "Unrecognised flakey feature requested")]
    [InlineData("d0 0 1 1 6 drop_writes corrupt_bio_byte 1 w 1 0", "drop_writes is incompatible with corrupt_bio_byte with the WRITE flag set")]
    [InlineData("nosuch 0 1 1", "Device lookup failed: nosuch")]
    public void Constructor_errors_use_dm_text(string args, string error)
    {
        Mem("d0", 1024);
        Assert.Equal($"flakey: {error}", LoadError($"0 512 flakey {args}"));
        Assert.Equal(0, Disks.Find("d0")!.OpenCount);                       // nothing left open
    }
}
