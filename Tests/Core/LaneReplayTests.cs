using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>
/// Lanes and the device's deferred bios (docs/threading.md, "Lanes"): when a barrier or a suspend ends, the bios it
/// deferred replay through the device; a barrier among them must take the lanes back before any lane maps a bio
/// that was sent after it.
/// </summary>
public sealed class LaneReplayTests : DeviceHarness
{
    private const int Deferred = 1000;
    private const int Later = 1000;
    private const int Rounds = 10;
    private const int MaxPoured = 50_000;

    /// <summary>
    /// Barrier B0 waits at the disk; behind it the device defers many reads and then barrier B1, all sent on lane A.
    /// Once A is settled the device has B1, so every read then sent on lane C comes after B1 and must finish after
    /// it. B0 is let go on another thread while reads pour into C: the replay of the deferred reads is long, and a
    /// lane released at B0's end (before the device reached B1) would map C's reads meanwhile, and B1 would then
    /// wait for them instead of them for B1.
    /// </summary>
    [Fact]
    public void A_barrier_replayed_after_another_holds_back_the_io_sent_after_it_on_every_lane()
    {
        var d0 = Gate("d0");
        var c = Create("rp", "0 8192 linear d0 0");
        var a = Open("rp");
        // The overlap is a race (which thread runs the replay), so a few rounds make it all but certain.
        for (var round = 0; round < Rounds; round++) Round(d0, a, c, round);
    }

    private void Round(GateDisk d0, IActorRef a, IActorRef c, int round)
    {
        var p = CreateTestProbe();
        var early = CreateTestProbe();
        var first = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(a, Write(4000, Pattern(8, (byte)round), p))); // so B0's flush is not skipped
        d0.Hold = b => b.Op == BioOp.Flush;

        var b0 = Bio.Flush(first.Ref);                // an empty barrier: drain, then a flush that waits at the disk
        a.Tell(b0);
        Eventually(() => d0.HeldCount == 1, "B0's flush at the disk");
        for (var i = 0; i < Deferred; i++) a.Tell(Read(i % 4096, 1, early));
        var b1 = Write(5000, Pattern(8, (byte)round), p, BioFlags.Barrier);
        a.Tell(b1);
        Settle(a);                                    // the device has B1 (deferred behind B0)

        // Reads pour into lane C from before B0 ends until well after: some reach C while the device replays.
        var later = new List<Bio>();
        void SendLater()
        {
            var r = Read(6000 + later.Count % 1000, 1, p);
            later.Add(r);
            c.Tell(r);
            Thread.SpinWait(100); // leave the device to the releasing thread now and then
        }
        var release = Task.Run(() => { d0.Hold = _ => false; d0.Release(); });
        var deadline = DateTime.UtcNow + Wait;
        // Fewer than the device defers (MaxDeferred, 65536, with the 1000 above): more would be answered EAGAIN at
        // once, before B1, when the release thread is slow to run (a busy machine).
        while (!first.HasMessages && DateTime.UtcNow < deadline && later.Count < MaxPoured) SendLater();
        for (var i = 0; i < Later; i++) SendLater();
        Assert.True(release.Wait(Wait), "B0's flush released");
        Assert.Same(b0, first.ExpectMsg<BioDone>(Wait).Bio);

        var answers = p.ReceiveN(1 + later.Count, TimeSpan.FromSeconds(30)).Cast<BioDone>().ToList();
        Assert.All(answers, d => Assert.Equal(BioStatus.Ok, d.Status));
        var order = answers.Select(d => d.Bio).ToList();
        early.ReceiveN(Deferred, TimeSpan.FromSeconds(30));
        var pos = new Dictionary<Bio, int>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < order.Count; i++) pos.Add(order[i], i); // each answered once
        var before = later.Count(r => pos[r] < pos[b1]);
        Assert.True(before == 0, $"round {round}: {before} reads sent on lane C after B1 was taken up finished before B1");
    }
}
