using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>__split_and_process_bio as a pure function: checks, pieces and clones, without actors.</summary>
public sealed class BioSplitTests
{
    private readonly MemoryDisk _d0 = new("d0", 4096), _d1 = new("d1", 4096);

    private Table Build(string text) => Table.Build(Table.Parse(text), new DeviceList(_d0, _d1));

    private static Bio Io(BioOp op, long sector, long sectors) =>
        new(op, sector, sectors, op is BioOp.Read or BioOp.Write ? new byte[sectors * 512] : Memory<byte>.Empty, ActorRefs.Nobody);

    private static List<BioPiece> Pieces(Bio bio, Table table)
    {
        var list = new List<BioPiece>();
        foreach (var p in BioSplit.Split(bio, table)) list.Add(p);
        return list;
    }

    [Fact]
    public void A_bio_across_a_target_boundary_is_split_there()
    {
        var table = Build("0 100 linear d0 0\n100 100 linear d1 0");
        var bio = Io(BioOp.Write, 90, 20);
        Assert.Equal(BioStatus.Ok, BioSplit.Check(bio, table, false));
        Assert.Equal([new BioPiece(0, 0, 10, 0), new BioPiece(1, 10, 10, 0)], Pieces(bio, table));
    }

    [Fact]
    public void A_bio_is_split_at_each_multiple_of_max_io_len_from_the_target_start()
    {
        // striped chunk 8 starting at sector 100: pieces end at 108, 116, ... counted from the target's begin.
        var table = Build("0 100 linear d0 0\n100 64 striped 2 8 d0 200 d1 200");
        var bio = Io(BioOp.Read, 98, 20);
        Assert.Equal([new BioPiece(0, 0, 2, 0), new BioPiece(1, 2, 8, 0), new BioPiece(1, 10, 8, 0), new BioPiece(1, 18, 2, 0)],
            Pieces(bio, table));
    }

    [Fact]
    public void A_discard_goes_to_every_stripe_without_the_max_io_len_split()
    {
        var table = Build("0 64 striped 2 8 d0 0 d1 0\n64 64 linear d0 100");
        var bio = Io(BioOp.Discard, 0, 80);
        Assert.Equal(BioStatus.Ok, BioSplit.Check(bio, table, false));
        Assert.Equal([new BioPiece(0, 0, 64, 0), new BioPiece(0, 0, 64, 1), new BioPiece(1, 64, 16, 0)], Pieces(bio, table));
    }

    [Fact]
    public void A_discard_or_write_zeroes_a_target_in_range_cannot_take_is_refused_whole()
    {
        var table = Build("0 64 zero\n64 64 dust d0 0 512");
        Assert.Equal(BioStatus.NotSupported, BioSplit.Check(Io(BioOp.WriteZeroes, 0, 100), table, false));
        Assert.Equal(BioStatus.Ok, BioSplit.Check(Io(BioOp.WriteZeroes, 0, 64), table, false));
        Assert.Equal(BioStatus.Ok, BioSplit.Check(Io(BioOp.Discard, 0, 100), table, false));
    }

    [Theory]
    [InlineData(-1, 1)]
    [InlineData(0, -1)]
    [InlineData(100, 1)]
    [InlineData(90, 11)]
    [InlineData(1, long.MaxValue)] // sector + sectors wraps negative
    [InlineData(long.MaxValue, 2)]
    public void Out_of_range_including_overflow(long sector, long sectors)
    {
        var table = Build("0 100 zero");
        Assert.Equal(BioStatus.OutOfRange, BioSplit.Check(Io(BioOp.Discard, sector, sectors), table, false));
    }

    [Fact]
    public void Read_only_refuses_every_op_but_read()
    {
        var table = Build("0 100 zero");
        Assert.Equal(BioStatus.ReadOnly, BioSplit.Check(Io(BioOp.Write, 0, 8), table, readOnly: true));
        Assert.Equal(BioStatus.ReadOnly, BioSplit.Check(Io(BioOp.Discard, 0, 8), table, readOnly: true));
        Assert.Equal(BioStatus.Ok, BioSplit.Check(Io(BioOp.Read, 0, 8), table, readOnly: true));
        var roTable = Table.Build(Table.Parse("0 100 zero"), new DeviceList(), readOnly: true);
        Assert.Equal(BioStatus.ReadOnly, BioSplit.Check(Io(BioOp.Write, 0, 8), roTable, readOnly: false));
    }

    [Fact]
    public void A_payload_of_the_wrong_size_is_invalid()
    {
        var table = Build("0 100 zero");
        var bio = new Bio(BioOp.Write, 0, 8, new byte[512], ActorRefs.Nobody);
        Assert.Equal(BioStatus.Invalid, BioSplit.Check(bio, table, false));
    }

    [Fact]
    public void A_clone_carries_its_slice_flags_copy_index_and_tag()
    {
        var data = new byte[16 * 512];
        data[8 * 512] = 7;
        var bio = new Bio(BioOp.Write, 40, 16, data, ActorRefs.Nobody, BioFlags.Fua | BioFlags.Barrier);
        var tag = new object();
        var clone = BioSplit.CloneOf(bio, new BioPiece(1, 8, 8, 3), BioFlags.Fua, ActorRefs.Nobody, tag);
        Assert.Equal((BioOp.Write, 48L, 8L, BioFlags.Fua, 3, 8 * 512), (clone.Op, clone.Sector, clone.Sectors, clone.Flags, clone.Index, clone.Data.Length));
        Assert.Equal(7, clone.Data.Span[0]);
        Assert.Same(tag, clone.Tag);
    }
}
