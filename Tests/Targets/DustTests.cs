using DmActors;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>dust (dm-dust): listed bad blocks fail reads while enabled; a write makes a block good again.</summary>
public sealed class DustTests : TargetHarness
{
    [Fact]
    public void Bad_block_reads_fail_only_while_enabled_others_pass_and_a_write_clears_it()
    {
        var d0 = Mem("d0", 1024);
        d0.WriteAt(0, Pattern(16, 1));
        var dev = Create("du", "0 1024 dust d0 0 512");
        Assert.Equal("0 1024 dust 7:0 0 512", TableOf("du"));
        Assert.Equal("0 1024 dust 7:0 bypass verbose", Status("du"));

        Assert.Empty(Message("du", "addbadblock", "10"));
        var buf = new byte[512];
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 10, buf));                 // bypass: not failing yet

        Assert.Empty(Message("du", "enable"));
        Assert.Equal("0 1024 dust 7:0 fail_read_on_bad_block verbose", Status("du"));
        Assert.Equal(BioStatus.IoError, ReadInto(dev, 10, buf));
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 11, buf));
        AssertBytes(Pattern(16, 1)[(11 * 512)..(12 * 512)], buf, "good block 11");
        // A multi-block read is split per block: only the bad block's piece fails, which fails the bio.
        Assert.Equal(BioStatus.IoError, ReadInto(dev, 8, new byte[8 * 512]));

        Assert.Equal("dust_query_block: block 10 found in badblocklist", Message("du", "queryblock", "10").Single());
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 10, Pattern(1, 9)));        // writing remaps the sector
        Assert.Equal("countbadblocks: 0 badblock(s) found", Message("du", "countbadblocks").Single());
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 10, buf));
        AssertBytes(Pattern(1, 9), buf, "rewritten block");
        Assert.Equal("dust_query_block: block 10 not found in badblocklist", Message("du", "queryblock", "10").Single());
    }

    [Fact]
    public void Blocks_count_in_blksz_units_from_the_device_start()
    {
        var d0 = Mem("d0", 1024);
        var dev = Create("du", "0 512 dust d0 64 4096");                   // block = 8 sectors; target starts at block 8
        Message("du", "addbadblock", "9");                                  // device sectors 72..79 = target 8..15
        Message("du", "enable");
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 0, new byte[8 * 512]));
        Assert.Equal(BioStatus.IoError, ReadInto(dev, 12, new byte[512]));
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 16, new byte[512]));
    }

    [Fact]
    public void Messages_report_and_reject_like_dm_dust()
    {
        Mem("d0", 1024);
        Create("du", "0 1024 dust d0 0 512");
        Assert.Equal("No blocks in badblocklist", Message("du", "listbadblocks").Single());
        Assert.Equal("dust_clear_badblocks: no badblocks found", Message("du", "clearbadblocks").Single());
        Message("du", "addbadblock", "5");
        Message("du", "addbadblock", "3");
        Assert.Equal("3\n5\n", Message("du", "listbadblocks").Single());
        Assert.Equal("dust_add_block: block 5 already in badblocklist", MessageError("du", "addbadblock", "5"));
        Assert.Equal("dust_remove_block: block 7 not found in badblocklist", MessageError("du", "removebadblock", "7"));
        Assert.Equal("selected block value out of range", MessageError("du", "addbadblock", "1025"));
        Assert.Equal("addbadblock requires an additional argument", MessageError("du", "addbadblock"));
        Assert.Equal("unrecognized message 'frob' received", MessageError("du", "frob"));
        Assert.Equal("invalid number of arguments '4'", MessageError("du", "addbadblock", "1", "2", "3"));
        Assert.Empty(Message("du", "removebadblock", "5"));
        Assert.Equal("countbadblocks: 1 badblock(s) found", Message("du", "countbadblocks").Single());
        Assert.Equal("dust_clear_badblocks: badblocks cleared", Message("du", "clearbadblocks").Single());
        Message("du", "quiet");
        Assert.Equal("0 1024 dust 7:0 bypass quiet", Status("du"));
    }

    [Fact]
    public void Blocks_outside_the_targets_area_are_out_of_range_for_every_block_message()
    {
        Mem("d0", 1 << 21);                                                  // a 1 GiB disk: block 999999 is on it
        Create("du", "0 2048 dust d0 1024 512");                             // but the target maps blocks 1024..3071
        foreach (var args in new[] { new[] { "addbadblock", "999999" }, ["addbadblock", "999999", "3"], ["removebadblock", "999999"],
                     ["queryblock", "999999"], ["addbadblock", "3072"], ["addbadblock", "1023"], ["queryblock", "0"] })
            Assert.Equal("selected block value out of range", MessageError("du", args));
        Assert.Equal("countbadblocks: 0 badblock(s) found", Message("du", "countbadblocks").Single());
        Assert.Empty(Message("du", "addbadblock", "1024"));                 // the first and last blocks it maps
        Assert.Empty(Message("du", "addbadblock", "3071"));
        Assert.Equal("dust_query_block: block 3071 found in badblocklist", Message("du", "queryblock", "3071").Single());

        // With larger blocks, a block the area covers only partly is still the target's.
        Create("du8", "0 12 dust d0 4 4096");                                // sectors 4..15: blocks 0 and 1
        Assert.Empty(Message("du8", "addbadblock", "0"));
        Assert.Empty(Message("du8", "addbadblock", "1"));
        Assert.Equal("selected block value out of range", MessageError("du8", "addbadblock", "2"));
    }

    [Fact]
    public void A_write_fail_count_fails_that_many_writes_first()
    {
        Mem("d0", 1024);
        var dev = Create("du", "0 1024 dust d0 0 512");
        Message("du", "addbadblock", "4", "2");
        Message("du", "enable");
        Assert.Equal(BioStatus.IoError, WriteAt(dev, 4, Pattern(1, 1)));
        Assert.Equal(BioStatus.IoError, WriteAt(dev, 4, Pattern(1, 1)));
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 4, Pattern(1, 1)));
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 4, new byte[512]));
    }

    [Theory]
    [InlineData("d0 0", "Invalid argument count")]
    [InlineData("d0 0 0", "Invalid block size parameter")]
    [InlineData("d0 0 256", "Block size must be at least 512")]
    [InlineData("d0 0 1000", "Block size must be a power of 2")]
    [InlineData("d0 0 1048576", "Block size is too large")]
    [InlineData("d0 x 512", "Invalid device offset sector")]
    public void Constructor_errors_use_dm_text(string args, string error)
    {
        Mem("d0", 1024);
        Assert.Equal($"dust: {error}", LoadError($"0 1024 dust {args}"));
    }
}
