using DmActors;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>The file disk on its own: positional IO, flush = fdatasync only when something was written, holes.</summary>
public sealed class FileDiskTests : IDisposable
{
    private readonly TempDir _dir = new("dmactors-filedisk");
    private readonly FileDisk _disk;

    public FileDiskTests() => _disk = FileDisk.Open("f0", _dir["f0.img"], "7:0", createSectors: 4096);

    private BioStatus Run(Bio bio) => Run(_disk, bio);

    private static BioStatus Run(FileDisk disk, Bio bio)
    {
        var done = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        var count = 0;
        bio.ReplyTo = CallbackRef.ForBios(d => { Interlocked.Increment(ref count); done.TrySetResult(d.Status); });
        disk.Submit(bio);
        var status = done.Task.Wait(TimeSpan.FromSeconds(30)) ? done.Task.Result : throw new TimeoutException(bio.ToString());
        Assert.Equal(1, count); // answered exactly once (so far: the test that is about it waits for stragglers)
        return status;
    }

    [Fact]
    public void Every_bio_is_answered_once_when_its_io_pool_is_disposed_under_load()
    {
        var pool = new DiskIoPool(2);
        var disk = FileDisk.Open("p0", _dir["p0.img"], "7:1", createSectors: 4096, pool: pool);
        var answers = new int[400];
        var bios = Enumerable.Range(0, answers.Length).Select(i =>
        {
            var index = i;
            // Above the inline limit, so every one goes through the pool.
            return new Bio(BioOp.Write, (i % 32) * 64, 64, new byte[64 * Bio.Sector512],
                CallbackRef.ForBios(_ => Interlocked.Increment(ref answers[index])));
        }).ToList();
        for (var i = 0; i < bios.Count; i++)
        {
            if (i == bios.Count / 2) pool.Dispose(); // half queued before, half after
            disk.Submit(bios[i]);
        }
        Poll.Until(() => answers.All(a => a != 0), "an answer to every bio");
        Thread.Sleep(50); // the exactly-once window: a second answer to any of them would come now
        disk.Dispose();
        Assert.All(answers, a => Assert.Equal(1, a));
    }

    [Fact]
    public void A_write_abandoned_while_it_waited_in_the_io_queue_is_answered_eio_and_never_written()
    {
        // One IO thread, kept busy by a completion that waits: the next write stays queued, not started.
        using var pool = new DiskIoPool(1);
        var disk = FileDisk.Open("a0", _dir["a0.img"], "7:3", createSectors: 4096, pool: pool);
        using var hold = new ManualResetEventSlim();
        var first = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        var second = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        var answers = 0;
        var busy = new Bio(BioOp.Write, 0, 64, new byte[64 * Bio.Sector512], CallbackRef.ForBios(d =>
        {
            first.TrySetResult(d.Status);
            hold.Wait(TimeSpan.FromSeconds(30));
        }));
        var stale = new Bio(BioOp.Write, 128, 64, Enumerable.Repeat((byte)0x5a, 64 * Bio.Sector512).ToArray(), CallbackRef.ForBios(d =>
        {
            Interlocked.Increment(ref answers);
            second.TrySetResult(d.Status);
        }));
        disk.Submit(busy);
        Assert.True(first.Task.Wait(TimeSpan.FromSeconds(30)));
        disk.Submit(stale); // above the inline limit: queued behind the busy thread
        stale.Abandon();    // its submitter was answered meanwhile (a crashed target actor)
        hold.Set();
        Assert.True(second.Task.Wait(TimeSpan.FromSeconds(30)));
        Assert.Equal(BioStatus.IoError, second.Task.Result);
        var back = new byte[64 * Bio.Sector512];
        Assert.Equal(BioStatus.Ok, Run(disk, Bio.Read(128, back, Akka.Actor.ActorRefs.Nobody)));
        Assert.True(back.All(b => b == 0), "the abandoned write reached the file");
        Assert.Equal(1, answers);
        disk.Dispose();
    }

    [Fact]
    public void A_flush_brought_by_a_disk_thread_syncs_on_that_thread_without_a_hop()
    {
        // One IO thread: had the flush been queued, it could only run after the completion that sent it returned.
        using var pool = new DiskIoPool(1);
        var disk = FileDisk.Open("h0", _dir["h0.img"], "7:2", createSectors: 4096, pool: pool);
        var flushed = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        var answeredInline = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        var large = new Bio(BioOp.Write, 0, 64, new byte[64 * Bio.Sector512], CallbackRef.ForBios(_ =>
        {
            var flush = Bio.Flush(CallbackRef.ForBios(d => flushed.TrySetResult(d.Status)));
            disk.Submit(flush);                           // on the IO thread, from the write's completion
            answeredInline.TrySetResult(flushed.Task.IsCompleted);
        }));
        disk.Submit(large);                               // above the inline limit: runs on the pool's thread
        Assert.True(answeredInline.Task.Wait(TimeSpan.FromSeconds(30)));
        Assert.True(answeredInline.Task.Result, "the flush was queued instead of run on the disk thread");
        Assert.Equal(BioStatus.Ok, flushed.Task.Result);
        Assert.Equal(1, disk.FlushesIssued);
        disk.Dispose();
    }

    [Fact]
    public void Writes_read_back_from_the_cache_and_from_the_file()
    {
        Assert.Equal(4096, _disk.Sectors);
        Assert.Equal(BioStatus.Ok, Run(Bio.Write(8, DeviceHarness.Pattern(8, 3), Akka.Actor.ActorRefs.Nobody)));
        var back = new byte[8 * 512];
        Assert.Equal(BioStatus.Ok, Run(Bio.Read(8, back, Akka.Actor.ActorRefs.Nobody))); // page cache: the inline path
        Assert.Equal(DeviceHarness.Pattern(8, 3), back);
        using var raw = File.OpenRead(_dir["f0.img"]);
        raw.Position = 8 * 512;
        var onFile = new byte[8 * 512];
        raw.ReadExactly(onFile);
        Assert.Equal(DeviceHarness.Pattern(8, 3), onFile);
    }

    [Fact]
    public void A_flush_syncs_only_when_something_was_written_since_the_last_one()
    {
        Assert.Equal(BioStatus.Ok, Run(Bio.Flush(Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(1, _disk.FlushesIssued); // the first one after the open
        Assert.Equal(BioStatus.Ok, Run(Bio.Flush(Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(1, _disk.FlushesIssued);
        Assert.Equal(BioStatus.Ok, Run(Bio.Write(0, DeviceHarness.Pattern(1, 1), Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(BioStatus.Ok, Run(Bio.Flush(Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(2, _disk.FlushesIssued);
        Assert.Equal(BioStatus.Ok, Run(Bio.Write(0, DeviceHarness.Pattern(1, 2), Akka.Actor.ActorRefs.Nobody, BioFlags.Fua)));
        Assert.Equal(3, _disk.FlushesIssued); // a FUA write syncs
        Assert.Equal(BioStatus.Ok, Run(Bio.Flush(Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(3, _disk.FlushesIssued);
    }

    [Fact]
    public void The_first_flush_after_an_open_syncs_writes_an_earlier_process_left_in_the_page_cache()
    {
        // What a host killed before it flushed leaves: data in the page cache that nobody has synced.
        var path = _dir["left.img"];
        File.WriteAllBytes(path, DeviceHarness.Pattern(64, 9));
        var disk = FileDisk.Open("l0", path, "7:2");
        try
        {
            Assert.Equal(BioStatus.Ok, Run(disk, Bio.Flush(Akka.Actor.ActorRefs.Nobody)));
            Assert.Equal(1, disk.FlushesIssued);
            Assert.Equal(BioStatus.Ok, Run(disk, Bio.Flush(Akka.Actor.ActorRefs.Nobody)));
            Assert.Equal(1, disk.FlushesIssued); // steady state: nothing written since, nothing to sync
        }
        finally { disk.Dispose(); }
    }

    [Fact]
    public void A_file_is_refused_while_another_disk_has_it_open_and_free_once_that_one_closes()
    {
        var path = _dir["f0.img"];
        Assert.Equal($"{path} is in use by another process (locked)",
            Assert.Throws<DiskInUseException>(() => FileDisk.Open("again", path, "7:3")).Message);
        _disk.Dispose();
        var again = FileDisk.Open("again", path, "7:3");
        Assert.Equal(BioStatus.Ok, Run(again, Bio.Write(0, DeviceHarness.Pattern(1, 4), Akka.Actor.ActorRefs.Nobody)));
        again.Dispose();
    }

    [Fact]
    public void A_disk_closed_when_unused_lets_the_file_go_and_is_locked_and_dirty_again_when_reopened()
    {
        var path = _dir["f0.img"];
        Assert.Equal(BioStatus.Ok, Run(Bio.Flush(Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(1, _disk.FlushesIssued);
        _disk.CloseWhenUnused();                            // nobody has it open: the file is let go at once
        FileDisk.Open("other", path, "7:4").Dispose();
        Assert.Equal(BioStatus.IoError, Run(Bio.Write(0, DeviceHarness.Pattern(1, 5), Akka.Actor.ActorRefs.Nobody)));

        _disk.Open();                                       // a table opens it: the file is opened and locked again
        Assert.Throws<DiskInUseException>(() => FileDisk.Open("other", path, "7:4"));
        Assert.Equal(BioStatus.Ok, Run(Bio.Flush(Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(2, _disk.FlushesIssued);               // dirty again after the reopen
        Assert.Equal(BioStatus.Ok, Run(Bio.Write(0, DeviceHarness.Pattern(1, 6), Akka.Actor.ActorRefs.Nobody)));
        _disk.Close();                                      // the last table let it go
        FileDisk.Open("other", path, "7:4").Dispose();
        var back = new byte[512];
        using (var raw = File.OpenRead(path)) raw.ReadExactly(back);
        Assert.Equal(DeviceHarness.Pattern(1, 6), back);
    }

    [Fact]
    public void Discard_and_write_zeroes_read_back_as_zeroes_and_bad_ranges_are_refused()
    {
        Assert.Equal(BioStatus.Ok, Run(Bio.Write(0, DeviceHarness.Pattern(64, 1), Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(BioStatus.Ok, Run(new Bio(BioOp.Discard, 8, 16, Memory<byte>.Empty, Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(BioStatus.Ok, Run(new Bio(BioOp.WriteZeroes, 40, 8, Memory<byte>.Empty, Akka.Actor.ActorRefs.Nobody)));
        var back = new byte[64 * 512];
        Assert.Equal(BioStatus.Ok, Run(Bio.Read(0, back, Akka.Actor.ActorRefs.Nobody)));
        var expected = DeviceHarness.Pattern(64, 1);
        Array.Clear(expected, 8 * 512, 16 * 512);
        Array.Clear(expected, 40 * 512, 8 * 512);
        Assert.Equal(expected, back);
        Assert.Equal(BioStatus.OutOfRange, Run(Bio.Read(4090, new byte[8 * 512], Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(BioStatus.Invalid, Run(new Bio(BioOp.Write, 0, 2, new byte[100], Akka.Actor.ActorRefs.Nobody)));
    }

    public void Dispose()
    {
        _disk.Dispose();
        _dir.Dispose();
    }
}
