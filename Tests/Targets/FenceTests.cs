using DmActors.Tests.Core;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>Epoch fencing at the node that owns a disk: <see cref="FenceTable"/> and <see cref="FencedDisk"/>.</summary>
public sealed class FenceTests
{
    private static readonly TimeSpan Timeout = Engine.Timeout;

    /// <summary>Submits a bio and waits for its one completion.</summary>
    private static BioStatus Run(IBlockDevice dev, Func<Akka.Actor.IActorRef, Bio> make)
    {
        var done = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        dev.Submit(make(CallbackRef.ForBios(d => done.TrySetResult(d.Status))));
        Assert.True(done.Task.Wait(Timeout), "the bio was never answered");
        return done.Task.Result;
    }

    private static BioStatus Write(IBlockDevice dev, long sector, byte fill) =>
        Run(dev, r => Bio.Write(sector, Enumerable.Repeat(fill, 512).ToArray(), r));

    private static byte[] ReadMemory(MemoryDisk disk, long sector)
    {
        var b = new byte[512];
        disk.ReadAt(sector << 9, b);
        return b;
    }

    [Fact]
    public void FencedDisk_refuses_io_of_its_epoch_once_a_newer_epoch_has_claimed_the_disk()
    {
        var disk = new MemoryDisk("disk0", 64);
        var fences = new FenceTable();
        var one = new FencedDisk(disk, fences.Claim("disk0", "V", 1), 1);
        Assert.Equal(BioStatus.Ok, Write(one, 0, 0x11));

        var two = new FencedDisk(disk, fences.Claim("disk0", "V", 2), 2);
        Assert.True(one.IsFenced);
        Assert.Equal(BioStatus.IoError, Write(one, 0, 0x22));
        Assert.Equal(BioStatus.IoError, Run(one, r => Bio.Flush(r)));
        Assert.Equal(BioStatus.IoError, Run(one, r => Bio.Read(0, new byte[512], r)));
        Assert.All(ReadMemory(disk, 0), b => Assert.Equal(0x11, b)); // the refused write never reached the disk

        Assert.Equal(BioStatus.Ok, Write(two, 0, 0x33));
        Assert.All(ReadMemory(disk, 0), b => Assert.Equal(0x33, b));
        // Other volumes on the same disk have fences of their own.
        Assert.Equal(BioStatus.Ok, Write(new FencedDisk(disk, fences.Claim("disk0", "W", 1), 1), 1, 0x44));
        Assert.Equal((disk.Name, disk.DevNo, disk.Sectors, disk.HasVolatileCache), (two.Name, two.DevNo, two.Sectors, two.HasVolatileCache));
    }

    [Fact]
    public void A_claim_of_an_older_epoch_is_refused_naming_both_epochs()
    {
        var fences = new FenceTable();
        var cell = fences.Claim("disk0", "V", 7);
        var e = Assert.Throws<FencedException>(() => fences.Claim("disk0", "V", 6));
        Assert.Equal("disk0: volume V is claimed by epoch 7; epoch 6 is fenced", e.Message);
        Assert.Same(cell, fences.Claim("disk0", "V", 7)); // the same epoch again (another connection of the owner)
        Assert.Equal(7, fences.Current("disk0", "V"));
        Assert.Equal(0, fences.Current("disk1", "V"));
    }

    [Fact]
    public void A_raise_is_in_the_fence_file_and_a_new_table_over_it_keeps_the_epochs()
    {
        using var dir = new TempDir();
        var path = dir["fences.json"];
        var first = new FenceTable(path);
        first.Claim("disk0", "V", 3);
        first.Claim("disk0", "V", 5);
        first.Claim("disk1", "W", 2);

        var reloaded = new FenceTable(path);
        Assert.Equal(5, reloaded.Current("disk0", "V"));
        Assert.Equal(2, reloaded.Current("disk1", "W"));
        var e = Assert.Throws<FencedException>(() => reloaded.Claim("disk0", "V", 4));
        Assert.Equal("disk0: volume V is claimed by epoch 5; epoch 4 is fenced", e.Message);
        Assert.False(File.Exists(path + ".tmp"));
    }

    [Fact]
    public void A_revoked_table_refuses_every_epochs_io_and_every_claim_but_its_file_keeps_the_real_epochs()
    {
        using var dir = new TempDir();
        var path = dir["fences.json"];
        var disk = new MemoryDisk("disk0", 64);
        var fences = new FenceTable(path);
        var current = new FencedDisk(disk, fences.Claim("disk0", "V", 3), 3);
        Assert.Equal(BioStatus.Ok, Write(current, 0, 0x11));

        fences.Revoke("this node was removed from the cluster");
        // The newest epoch too: this node no longer writes for anyone.
        Assert.Equal(BioStatus.IoError, Write(current, 0, 0x22));
        Assert.All(ReadMemory(disk, 0), b => Assert.Equal(0x11, b));
        var e = Assert.Throws<FencedException>(() => fences.Claim("disk0", "W", 1));
        Assert.Equal("disk0: volume W: this node was removed from the cluster", e.Message);
        Assert.Throws<FencedException>(() => fences.Claim("disk0", "V", 4));
        // A restarted node fences by what really claimed the disks, not by the revoke.
        Assert.Equal(3, new FenceTable(path).Current("disk0", "V"));
    }

    [Fact]
    public void An_unreadable_fence_file_is_refused_at_start_rather_than_forgotten()
    {
        using var dir = new TempDir();
        var path = dir["fences.json"];
        File.WriteAllText(path, "{ \"fences\": [ { \"disk\": \"disk0\", ");
        var e = Assert.Throws<InvalidDataException>(() => new FenceTable(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void A_claim_waits_until_the_older_epochs_bios_in_flight_have_completed()
    {
        var log = new List<IoEvent>();
        var disk = new GateDisk("disk0", 64, log, "7:0") { Hold = b => b.Op == BioOp.Write };
        var fences = new FenceTable(drainTimeout: Timeout);
        var one = new FencedDisk(disk, fences.Claim("disk0", "V", 1), 1);
        var held = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        one.Submit(Bio.Write(0, Enumerable.Repeat((byte)0x11, 512).ToArray(), CallbackRef.ForBios(d => held.TrySetResult(d.Status))));
        Poll.Until(() => disk.HeldCount == 1, "the epoch 1 write to reach the disk");

        var landedWhenClaimed = false;
        var claim = Task.Factory.StartNew(() =>
        {
            fences.Claim("disk0", "V", 2);
            landedWhenClaimed = held.Task.IsCompleted && ReadMemory(disk.Memory, 0)[0] == 0x11;
        }, TaskCreationOptions.LongRunning);
        // The raise comes first: new bios of epoch 1 are refused while the claim waits for the held one.
        Poll.Until(() => one.IsFenced, "the epoch to be raised");
        Assert.Equal(BioStatus.IoError, Write(one, 1, 0x22));
        Assert.False(claim.IsCompleted);

        disk.Release();
        Assert.True(claim.Wait(Timeout), "the claim did not return after the held bio completed");
        Assert.True(landedWhenClaimed, "the claim returned before the epoch 1 write had completed");
        Assert.Equal(BioStatus.Ok, held.Task.Result);
    }

    [Fact]
    public void A_claim_whose_older_bios_never_complete_fails_and_the_old_epoch_stays_fenced()
    {
        var log = new List<IoEvent>();
        var disk = new GateDisk("disk0", 64, log, "7:0") { Hold = b => b.Op == BioOp.Write };
        var fences = new FenceTable(drainTimeout: TimeSpan.FromMilliseconds(200));
        var one = new FencedDisk(disk, fences.Claim("disk0", "V", 1), 1);
        one.Submit(Bio.Write(0, new byte[512], CallbackRef.ForBios(_ => { })));

        var e = Assert.Throws<TimeoutException>(() => fences.Claim("disk0", "V", 2));
        Assert.Contains("epoch 1 still has 1 bios in flight", e.Message);
        Assert.Equal(2, fences.Current("disk0", "V"));
        Assert.Equal(BioStatus.IoError, Write(one, 1, 0x22));

        disk.Release();
        fences.Claim("disk0", "V", 2); // the retry finds nothing in flight
    }

    [Fact]
    public void No_bio_of_an_older_epoch_reaches_the_disk_after_the_claim_returned()
    {
        var claimed = 0;
        var late = 0;
        var disk = new WatchedDisk("disk0", 1024, () => { if (Volatile.Read(ref claimed) != 0) Interlocked.Increment(ref late); });
        var fences = new FenceTable(drainTimeout: Timeout);
        var one = new FencedDisk(disk, fences.Claim("disk0", "V", 1), 1);
        var stop = new CancellationTokenSource();
        long ok = 0, refused = 0;
        var writers = Enumerable.Range(0, 3).Select(w => Task.Factory.StartNew(() =>
        {
            var reply = CallbackRef.ForBios(d => { if (d.Status == BioStatus.Ok) Interlocked.Increment(ref ok); else Interlocked.Increment(ref refused); });
            for (var i = 0; !stop.IsCancellationRequested; i++)
                one.Submit(Bio.Write(w * 300 + i % 300, new byte[512], reply));
        }, TaskCreationOptions.LongRunning)).ToArray();
        Poll.Until(() => Interlocked.Read(ref ok) > 1000, "epoch 1 writes to run");
        fences.Claim("disk0", "V", 2);
        Volatile.Write(ref claimed, 1);
        Poll.Until(() => Interlocked.Read(ref refused) > 1000, "epoch 1 writes to be refused");
        stop.Cancel();
        Assert.True(Task.WaitAll(writers, Timeout));
        Assert.Equal(0, Volatile.Read(ref late));
        Assert.Equal(0, one.InFlight);
    }

    /// <summary>A memory disk that calls <paramref name="onRun"/> as each bio starts on it.</summary>
    private sealed class WatchedDisk(string name, long sectors, Action onRun) : Disk(name, sectors, "7:9")
    {
        private readonly MemoryDisk _inner = new(name, sectors);
        public override bool HasVolatileCache => false;
        protected override void Run(Bio bio, Action<Bio, BioStatus> done)
        {
            onRun();
            _inner.Start(bio, done);
        }
    }
}
