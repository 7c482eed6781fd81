using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>The write-back cache disk's own ordering rules (its flush and power-cut rules are proven by the flush tests).</summary>
public sealed class CachedDiskTests
{
    private static Task<BioStatus> Start(Disk disk, Bio bio)
    {
        var done = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        bio.ReplyTo = CallbackRef.ForBios(d => { if (!done.TrySetResult(d.Status)) throw new InvalidOperationException("answered twice"); });
        disk.Submit(bio);
        return done.Task;
    }

    private static BioStatus Wait(Task<BioStatus> t) =>
        t.Wait(TimeSpan.FromSeconds(30)) ? t.Result : throw new TimeoutException("no answer");

    [Fact]
    public void A_discard_answered_while_it_waited_its_turn_never_reaches_the_disk_below()
    {
        var log = new List<IoEvent>();
        var below = new GateDisk("c0", 1024, log, "7:40");
        var disk = new CachedDisk(below);
        var data = Enumerable.Repeat((byte)0x5a, 8 * Bio.Sector512).ToArray();
        Assert.Equal(BioStatus.Ok, Wait(Start(disk, Bio.Write(0, data, Akka.Actor.ActorRefs.Nobody))));
        Assert.Equal(BioStatus.Ok, Wait(Start(disk, Bio.Flush(Akka.Actor.ActorRefs.Nobody))));   // on the disk below

        // A FUA write held below keeps the serial queue busy; the discard behind it waits, and is abandoned.
        below.Hold = b => b.Op == BioOp.Write;
        var fua = Start(disk, new Bio(BioOp.Write, 512, 8, new byte[8 * Bio.Sector512], Akka.Actor.ActorRefs.Nobody, BioFlags.Fua));
        var discard = new Bio(BioOp.Discard, 0, 8, Memory<byte>.Empty, Akka.Actor.ActorRefs.Nobody);
        var discarded = Start(disk, discard);
        Assert.False(discarded.Wait(200), "the discard ran before the FUA write ahead of it");
        discard.Abandon();   // its submitter was answered meanwhile (a crashed target actor)
        below.Hold = _ => false;
        below.Release();
        Assert.Equal(BioStatus.Ok, Wait(fua));
        Assert.Equal(BioStatus.IoError, Wait(discarded));
        lock (log) Assert.DoesNotContain(log, e => e.Op == BioOp.Discard);
        var back = new byte[8 * Bio.Sector512];
        Assert.Equal(BioStatus.Ok, Wait(Start(disk, Bio.Read(0, back, Akka.Actor.ActorRefs.Nobody))));
        Assert.Equal(data, back);
    }
}
