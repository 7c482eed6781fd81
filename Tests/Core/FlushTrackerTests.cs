using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>Flush skipping and the devices of swapped-out tables, without actors.</summary>
public sealed class FlushTrackerTests
{
    private readonly CachedDisk _c0 = new(new MemoryDisk("c0", 1024, "7:1"));
    private readonly CachedDisk _c1 = new(new MemoryDisk("c1", 1024, "7:2"));
    private readonly MemoryDisk _m0 = new("m0", 1024, "7:3");
    private readonly FlushTracker _flushes = new();

    private Table Build(string text) => Table.Build(Table.Parse(text), new DeviceList(_c0, _c1, _m0));

    private static Bio Io(BioOp op) => new(op, 0, 8, Memory<byte>.Empty, ActorRefs.Nobody);

    /// <summary>One flush going out and completing with <paramref name="status"/>; returns the stale devices it reached.</summary>
    private IBlockDevice[]? Flush(BioStatus status = BioStatus.Ok)
    {
        var io = new DmIo(Bio.Flush(ActorRefs.Nobody), DmIo.Kinds.Normal, 1);
        var stale = _flushes.Begin(io);
        _flushes.Flushed(io, status);
        return stale;
    }

    [Fact]
    public void A_table_that_goes_live_counts_as_one_unflushed_write()
    {
        var table = Build("0 100 linear c0 0");
        _flushes.Swap(null, table);
        Assert.False(_flushes.CanSkip(table));
        Flush();
        Assert.True(_flushes.CanSkip(table));
    }

    [Fact]
    public void Completed_writes_discards_and_write_zeroes_are_unflushed_reads_are_not()
    {
        var table = Build("0 100 linear c0 0");
        _flushes.Swap(null, table);
        Flush();
        _flushes.WriteCompleted(Io(BioOp.Read));
        Assert.True(_flushes.CanSkip(table));
        foreach (var op in new[] { BioOp.Write, BioOp.Discard, BioOp.WriteZeroes })
        {
            _flushes.WriteCompleted(Io(op));
            Assert.False(_flushes.CanSkip(table));
            Flush();
            Assert.True(_flushes.CanSkip(table));
        }
    }

    [Fact]
    public void A_flush_covers_only_writes_completed_before_it_went_out_and_only_when_it_succeeds()
    {
        var table = Build("0 100 linear c0 0");
        _flushes.Swap(null, table);
        Flush(BioStatus.IoError);
        Assert.False(_flushes.CanSkip(table));
        Flush();
        var io = new DmIo(Bio.Flush(ActorRefs.Nobody), DmIo.Kinds.Normal, 1);
        _flushes.Begin(io);
        _flushes.WriteCompleted(Io(BioOp.Write));
        _flushes.Flushed(io, BioStatus.Ok);
        Assert.False(_flushes.CanSkip(table));
    }

    [Fact]
    public void Targets_that_see_flushes_never_skip()
    {
        var table = Build("0 100 flakey m0 0 1 0");
        _flushes.Swap(null, table);
        Flush();
        Assert.False(_flushes.CanSkip(table));
        Assert.False(_flushes.NothingToFlush(table));
    }

    [Fact]
    public void A_barrier_flush_is_skipped_only_for_disks_without_a_cache()
    {
        Assert.True(_flushes.NothingToFlush(Build("0 100 linear m0 0")));
        Assert.False(_flushes.NothingToFlush(Build("0 100 linear c0 0")));
    }

    [Fact]
    public void A_swapped_out_cached_disk_with_unflushed_writes_stays_open_until_a_flush_reaches_it()
    {
        var old = Build("0 100 linear c0 0\n100 100 linear m0 0");
        _flushes.Swap(null, old);
        var next = Build("0 100 linear c1 0");
        _flushes.Swap(old, next);
        old.Destroy();
        Assert.Equal(1, _c0.OpenCount); // held by the tracker: a closed file cannot sync
        Assert.True(_flushes.HasStale);
        Assert.False(_flushes.NothingToFlush(Build("0 100 linear m0 0")));

        Assert.Equal([_c0], Flush(BioStatus.IoError)); // a failed flush keeps it
        Assert.Equal(1, _c0.OpenCount);
        Assert.Equal([_c0], Flush());
        Assert.Equal(0, _c0.OpenCount);
        Assert.False(_flushes.HasStale);
        Assert.Null(Flush());
    }

    [Fact]
    public void Nothing_is_stale_when_everything_was_flushed_or_the_next_table_keeps_the_disk()
    {
        var t1 = Build("0 100 linear c0 0");
        _flushes.Swap(null, t1);
        Flush();
        var t2 = Build("0 100 linear c1 0");
        _flushes.Swap(t1, t2); // nothing unflushed on c0
        Assert.False(_flushes.HasStale);
        var t3 = Build("0 100 linear c1 0\n100 100 linear m0 0");
        _flushes.Swap(t2, t3); // t2 went live unflushed, but t3 keeps c1
        Assert.False(_flushes.HasStale);
        _flushes.Swap(t3, Build("0 100 linear c1 0")); // m0 has no cache
        Assert.False(_flushes.HasStale);
    }

    [Fact]
    public void Close_releases_the_stale_disks()
    {
        var old = Build("0 100 linear c0 0");
        _flushes.Swap(null, old);
        _flushes.Swap(old, Build("0 100 linear c1 0"));
        old.Destroy();
        Assert.Equal(1, _c0.OpenCount);
        _flushes.Close();
        Assert.Equal(0, _c0.OpenCount);
        Assert.False(_flushes.HasStale);
    }
}
