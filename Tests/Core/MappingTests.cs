using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>Where each target sends IO, and how bios are split.</summary>
public sealed class MappingTests : DeviceHarness
{
    [Fact]
    public void Linear_concatenation_lands_on_each_disk_at_its_offset()
    {
        var d0 = Disks.AddMemory("d0", 1024);
        var d1 = Disks.AddMemory("d1", 1024);
        var dev = Create("cat", "0 512 linear d0 100\n512 512 linear d1 0");
        var p = CreateTestProbe();
        // One bio across the boundary: 4 sectors on d0, 4 on d1.
        Assert.Equal(BioStatus.Ok, RunOnce(dev, Write(508, Pattern(8, 1), p)));
        var got = new byte[4 * 512];
        d0.ReadAt((100 + 508) * 512L, got);
        Assert.Equal(Pattern(8, 1)[..(4 * 512)], got);
        d1.ReadAt(0, got);
        Assert.Equal(Pattern(8, 1)[(4 * 512)..], got);
        Assert.Equal(Pattern(8, 1), ReadBack(dev, 508, 8));
    }

    [Theory]
    [InlineData(2, 32)]
    [InlineData(3, 16)]
    [InlineData(5, 8)]
    public void Striped_puts_chunk_c_on_stripe_c_mod_n_row_c_div_n(int stripes, int chunk)
    {
        var disks = Enumerable.Range(0, stripes).Select(i => Gate($"s{i}", 4096, volatileCache: false)).ToList();
        var width = chunk * 10;
        var size = width * stripes;
        var dev = Create("str", $"0 {size} striped {stripes} {chunk} " + string.Join(' ', disks.Select(d => $"{d.Name} 16")));
        var p = CreateTestProbe();
        for (var c = 0; c < size / chunk; c++)
            Assert.Equal(BioStatus.Ok, Run(dev, Write((long)c * chunk, Pattern(chunk, (byte)c), p)));
        for (var c = 0; c < size / chunk; c++)
        {
            var got = new byte[chunk * 512];
            disks[c % stripes].Memory.ReadAt((16 + (long)(c / stripes) * chunk) * 512, got);
            Assert.Equal(Pattern(chunk, (byte)c), got);
        }
        // An IO across a chunk boundary is split there: two writes reach two stripes.
        Log.Clear();
        Assert.Equal(BioStatus.Ok, RunOnce(dev, Write(chunk - 2, Pattern(4, 7), p)));
        var writes = Events(e => e.Start && e.Op == BioOp.Write);
        Assert.Equal(2, writes.Count);
        Assert.Equal(new long[] { 2, 2 }, writes.Select(w => w.Sectors));
        Assert.Equal(new[] { "s0", "s1" }, writes.Select(w => w.Disk).OrderBy(n => n));
        Assert.Equal(Pattern(4, 7), ReadBack(dev, chunk - 2, 4));
        Assert.Equal($"0 {size} striped {stripes} " + string.Join(' ', disks.Select(d => d.DevNo)) + " 1 " + new string('A', stripes),
            Ok(new Dm.GetStatus("str")).Lines.Single());
    }

    [Fact]
    public void Striped_error_marks_the_stripe_D_and_raises_an_event()
    {
        var s0 = Gate("s0", 1024, false);
        var s1 = Gate("s1", 1024, false);
        var dev = Create("str", "0 256 striped 2 8 s0 0 s1 0");
        s1.Fail = b => b.Op == BioOp.Write ? BioStatus.IoError : null;
        var p = CreateTestProbe();
        var events = Info("str").EventNr;
        Assert.Equal(BioStatus.IoError, RunOnce(dev, Write(0, Pattern(16, 1), p))); // chunk 0 ok on s0, chunk 1 fails on s1
        Assert.EndsWith(" 1 AD", Ok(new Dm.GetStatus("str")).Lines.Single());
        Eventually(() => Info("str").EventNr == events + 1, "the stripe error event");
    }

    [Fact]
    public void Mixed_segments_zero_error_linear_and_a_bio_across_them_fails_as_a_whole()
    {
        var d0 = Disks.AddMemory("d0", 1024);
        var dev = Create("mix", "0 100 linear d0 0\n100 100 zero\n200 100 error\n300 100 linear d0 100");
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(100, Pattern(8, 3), p)));   // zero: write vanishes
        Assert.Equal(new byte[8 * 512], ReadBack(dev, 100, 8));               // zero: reads zeroes
        Assert.Equal(BioStatus.IoError, Run(dev, Read(200, 8, p)));            // error
        Assert.Equal(BioStatus.IoError, Run(dev, Write(250, Pattern(8, 1), p)));
        Assert.Equal(BioStatus.IoError, Run(dev, new Bio(BioOp.Discard, 210, 8, Memory<byte>.Empty, p.Ref)));
        Assert.Equal(BioStatus.IoError, RunOnce(dev, Write(296, Pattern(8, 1), p))); // half error, half linear
        Assert.Equal(BioStatus.Ok, Run(dev, Write(300, Pattern(8, 4), p)));
        Assert.Equal(Pattern(8, 4), ReadBack(dev, 300, 8));
        Assert.Equal(BioStatus.IoError, Run(dev, Read(100, 8, p, BioFlags.ReadAhead))); // dm-zero fails readahead
        Assert.Equal(new[] { "0 100 linear 7:0 0", "100 100 zero ", "200 100 error ", "300 100 linear 7:0 100" },
            Ok(new Dm.GetTable("mix")).Lines);
    }

    [Fact]
    public void Out_of_range_and_read_only_bios_are_refused()
    {
        Disks.AddMemory("d0", 1024);
        var dev = Create("x", "0 100 linear d0 0");
        var ro = Create("ro", "0 100 linear d0 0", readOnly: true);
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.OutOfRange, Run(dev, Read(96, 8, p)));
        Assert.Equal(BioStatus.OutOfRange, Run(dev, Write(100, Pattern(1, 1), p)));
        Assert.Equal(BioStatus.Invalid, Run(dev, new Bio(BioOp.Write, 0, 2, new byte[100], p.Ref)));
        Assert.Equal(BioStatus.ReadOnly, Run(ro, Write(0, Pattern(1, 1), p)));
        Assert.Equal(BioStatus.Ok, Run(ro, Read(0, 1, p)));
        Assert.True(Info("ro").ReadOnly);
    }

    [Fact]
    public void A_bio_whose_end_overflows_is_out_of_range_on_devices_and_disks()
    {
        var d0 = Disks.AddMemory("d0", 1024);
        var dev = Create("x", "0 100 linear d0 0");
        var p = CreateTestProbe();
        // sector + sectors wraps negative: it must not pass the range check as if it were in range.
        Assert.Equal(BioStatus.OutOfRange, Run(dev, new Bio(BioOp.Discard, long.MaxValue - 3, 8, Memory<byte>.Empty, p.Ref)));
        Assert.Equal(BioStatus.OutOfRange, Run(dev, new Bio(BioOp.WriteZeroes, 50, long.MaxValue, Memory<byte>.Empty, p.Ref)));
        Assert.Equal(BioStatus.OutOfRange, Run(dev, Read(long.MaxValue, 1, p)));
        var status = new TaskCompletionSource<BioStatus>();
        d0.Start(new Bio(BioOp.WriteZeroes, long.MaxValue - 3, 8, Memory<byte>.Empty, p.Ref), (_, s) => status.TrySetResult(s));
        Assert.True(status.Task.Wait(Wait));
        Assert.Equal(BioStatus.OutOfRange, status.Task.Result);
        Assert.Equal(BioStatus.Ok, Run(dev, Read(99, 1, p))); // and the device still serves
    }

    [Fact]
    public void Discard_on_striped_goes_once_per_stripe_covering_only_its_part()
    {
        var s0 = Gate("s0", 1024, false);
        var s1 = Gate("s1", 1024, false);
        var dev = Create("str", "0 256 striped 2 8 s0 0 s1 0");
        var p = CreateTestProbe();
        // Sectors 4..36: chunks 0 (4..8 on s0), 1 (s1 0..8), 2 (s0 8..16), 3 (s1 8..16), 4 (s0 16..20).
        Assert.Equal(BioStatus.Ok, RunOnce(dev, new Bio(BioOp.Discard, 4, 32, Memory<byte>.Empty, p.Ref)));
        var discards = Events(e => e.Start && e.Op == BioOp.Discard).OrderBy(e => e.Disk).ToList();
        Assert.Equal(2, discards.Count);
        Assert.Equal(("s0", 4L, 16L), (discards[0].Disk, discards[0].Sector, discards[0].Sectors));
        Assert.Equal(("s1", 0L, 16L), (discards[1].Disk, discards[1].Sector, discards[1].Sectors));
    }
}
