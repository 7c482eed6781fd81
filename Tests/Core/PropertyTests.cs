using Akka.Actor;
using Akka.TestKit;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>
/// Randomized: thousands of batches of reads, writes (plain, FUA, barrier), empty flushes, suspends, resumes,
/// reloads and failing-disk windows against a device over a jittery disk. Checked against a model of the device:
/// every bio is answered exactly once; in ordered mode a barrier completes after everything sent before it and
/// before everything sent after it; and every sector reads back what the model says (or is unknown after a failure).
/// With several lanes (opens of the device, each bio to a random one), "before" and "after" are what one submitter
/// sees: the bios of the barrier's own lane, the bios another lane had taken before the barrier was sent (the test
/// settles a lane now and then: it has then taken what was sent to it), and every bio sent once the barrier's lane
/// was settled after it (the device has taken the barrier up). Suspends and resumes go to the device itself, as
/// dmsetup's do: sent through two different lanes they would be two openers' messages, in no order between them
/// (a resume could overtake the suspend it follows and leave the device suspended).
/// </summary>
public sealed class PropertyTests : DeviceHarness
{
    private const int Size = 2048;
    private const int BatchesPerSeed = 50;

    [Theory]
    [InlineData(BarrierMode.Ordered, 1, 30, 1)]
    [InlineData(BarrierMode.Flush, 1000, 30, 1)]
    [InlineData(BarrierMode.Ordered, 2000, 20, 3)]
    [InlineData(BarrierMode.Flush, 3000, 20, 3)]
    public void Random_sequences_answer_every_bio_once_keep_barrier_order_and_data(BarrierMode mode, int firstSeed, int seeds, int lanes)
    {
        var disk = Gate("d0", Size);
        for (var seed = firstSeed; seed < firstSeed + seeds; seed++)
            RunSeed(disk, mode, seed, lanes);
    }

    private void RunSeed(GateDisk disk, BarrierMode mode, int seed, int laneCount)
    {
        var rnd = new Random(seed);
        disk.Jitter = new Random(seed);
        disk.Fail = _ => null;
        var name = $"p{seed}";
        var dev = Create(name, IdentityTable(rnd), mode);
        var lanes = new List<IActorRef> { dev };
        while (lanes.Count < laneCount) lanes.Add(Open(name));
        var device = Sys.ActorSelection(dev.Path.Parent).ResolveOne(Wait).GetAwaiter().GetResult(); // the lanes' parent
        // One lane draws nothing, so the one-lane seeds run the sequences they always ran.
        int Pick() => lanes.Count == 1 ? 0 : rnd.Next(lanes.Count);

        // The model: which write last landed on each sector (0 = never written by this seed, -1 = unknown).
        var model = new long[Size];
        var initial = new byte[Size * 512];
        disk.Memory.ReadAt(0, initial);
        var writeId = 0L;
        var probe = CreateTestProbe();

        for (var batch = 0; batch < BatchesPerSeed; batch++)
        {
            var sent = new List<(Bio Bio, long Id)>();
            var laneOf = new List<int>();
            var settles = new List<(int Lane, int At)>(); // lane settled when sent.Count was At
            void Send(int lane, Bio bio, long id)
            {
                lanes[lane].Tell(bio);
                sent.Add((bio, id));
                laneOf.Add(lane);
                if (lanes.Count > 1 && rnd.Next(bio.IsBarrier || bio.Op == BioOp.Flush ? 2 : 6) == 0)
                {
                    Settle(lanes[lane]);
                    settles.Add((lane, sent.Count));
                }
            }
            var busy = new bool[Size];
            var failFrom = -1L; var failTo = -1L;
            if (rnd.Next(6) == 0)
            {
                failFrom = rnd.Next(Size); failTo = failFrom + rnd.Next(1, 64);
                disk.Fail = b => b.Op == BioOp.Write && b.Sector < failTo && b.Sector + b.Sectors > failFrom ? BioStatus.IoError : null;
            }
            else disk.Fail = _ => null;
            var suspended = false;
            var ops = rnd.Next(1, 10);
            for (var i = 0; i < ops; i++)
            {
                var kind = rnd.Next(100);
                if (kind < 8 && !suspended) { device.Tell(new Dm.Suspend(name, NoFlush: rnd.Next(2) == 0), probe.Ref); suspended = true; continue; }
                if (kind < 12 && suspended) { device.Tell(new Dm.Resume(name), probe.Ref); suspended = false; continue; }
                if (kind < 16)
                {
                    // reload: a different, equivalent identity table, swapped in by resume
                    Ok(new Dm.Load(name, IdentityTable(rnd)));
                    device.Tell(new Dm.Resume(name), probe.Ref);
                    suspended = false;
                    continue;
                }
                if (kind < 22) { Send(Pick(), Bio.Flush(probe.Ref), 0); continue; }
                var len = rnd.Next(1, 48);
                var sector = (long)rnd.Next(Size - len);
                if (Enumerable.Range((int)sector, len).Any(s => busy[s])) continue; // no overlaps within a batch
                for (var s = sector; s < sector + len; s++) busy[s] = true;
                if (kind < 60)
                {
                    var id = ++writeId + seed * 1_000_000L;
                    var flags = rnd.Next(10) switch { 0 => BioFlags.Barrier, 1 => BioFlags.Fua, _ => BioFlags.None };
                    Send(Pick(), Bio.Write(sector, Stamp(id, sector, len), probe.Ref, flags), id);
                }
                else Send(Pick(), new Bio(BioOp.Read, sector, len, new byte[len * 512], probe.Ref), 0);
            }
            if (suspended) device.Tell(new Dm.Resume(name), probe.Ref);

            // Collect: exactly one BioDone per bio, in an order that respects barriers (ordered mode).
            var order = new List<BioDone>();
            var deadline = DateTime.UtcNow + Wait;
            while (order.Count < sent.Count)
            {
                var m = probe.ReceiveOne(deadline - DateTime.UtcNow) ?? throw new Xunit.Sdk.XunitException(
                    $"seed {seed} batch {batch}: {sent.Count - order.Count} bios never answered");
                if (m is BioDone d) order.Add(d);
                else Assert.IsType<Dm.Done>(m);
            }
            Assert.Equal(sent.Count, order.Select(d => d.Bio).Distinct().Count());
            Assert.All(sent, s => Assert.Contains(order, d => ReferenceEquals(d.Bio, s.Bio)));
            if (mode == BarrierMode.Ordered) CheckBarrierOrder(sent.Select(s => s.Bio).ToList(), laneOf, settles, order, seed, batch);

            // Apply to the model, then check every read of this batch and, now and then, the whole device.
            foreach (var (bio, id) in sent.Where(s => s.Bio.Op == BioOp.Write))
            {
                var ok = order.First(d => d.Bio == bio).Status == BioStatus.Ok;
                for (var s = bio.Sector; s < bio.Sector + bio.Sectors; s++) model[s] = ok ? id : -1;
            }
            foreach (var (bio, _) in sent.Where(s => s.Bio.Op == BioOp.Read))
            {
                Assert.Equal(BioStatus.Ok, order.First(d => d.Bio == bio).Status);
                Check(bio.Data.Span, bio.Sector, model, initial, seed, batch);
            }
            while (probe.HasMessages) Assert.IsType<Dm.Done>(probe.ReceiveOne(TimeSpan.Zero)); // nothing answered twice
        }
        disk.Fail = _ => null;
        var all = ReadBack(dev, 0, Size);
        Check(all, 0, model, initial, seed, -1);
        foreach (var lane in lanes) Ok(new Dm.Close(name, lane));
        Ok(new Dm.Remove(name));
    }

    private static void CheckBarrierOrder(List<Bio> sent, List<int> laneOf, List<(int Lane, int At)> settles, List<BioDone> order,
        int seed, int batch)
    {
        int Pos(Bio b) => order.FindIndex(d => ReferenceEquals(d.Bio, b));
        // Bio j had been taken by its lane before bio i was sent: that lane was settled in between.
        bool TakenBefore(int j, int i) => settles.Any(s => s.Lane == laneOf[j] && s.At > j && s.At <= i);
        for (var i = 0; i < sent.Count; i++)
        {
            if (!(sent[i].IsBarrier || sent[i].Op == BioOp.Flush)) continue;
            // From here on, every bio sent (to any lane) comes after the barrier: the device has taken it up.
            var takenUp = settles.Where(s => s.Lane == laneOf[i] && s.At > i).Select(s => s.At).DefaultIfEmpty(int.MaxValue).Min();
            for (var j = 0; j < sent.Count; j++)
            {
                var sameLane = laneOf[j] == laneOf[i];
                if (j < i && (sameLane || TakenBefore(j, i)))
                    Assert.True(Pos(sent[j]) < Pos(sent[i]), $"seed {seed} batch {batch}: bio {j} finished after barrier {i}");
                if (j > i && (sameLane || j >= takenUp))
                    Assert.True(Pos(sent[j]) > Pos(sent[i]), $"seed {seed} batch {batch}: bio {j} finished before barrier {i}");
            }
        }
    }

    private static void Check(ReadOnlySpan<byte> data, long sector, long[] model, byte[] initial, int seed, int batch)
    {
        for (var i = 0; i < data.Length / 512; i++)
        {
            var s = sector + i;
            var id = model[s];
            if (id < 0) continue; // a failed write may have landed in part
            var expected = id == 0 ? initial.AsSpan((int)s * 512, 512) : Stamp(id, s, 1);
            if (!data.Slice(i * 512, 512).SequenceEqual(expected))
                throw new Xunit.Sdk.XunitException($"seed {seed} batch {batch}: sector {s} does not hold write {id}");
        }
    }

    /// <summary>Sector contents that name the write and the sector, so a misplaced or stale sector is caught.</summary>
    private static byte[] Stamp(long id, long sector, int sectors)
    {
        var data = new byte[sectors * 512];
        for (var i = 0; i < sectors; i++)
        {
            BitConverter.TryWriteBytes(data.AsSpan(i * 512), id);
            BitConverter.TryWriteBytes(data.AsSpan(i * 512 + 8), sector + i);
            data.AsSpan(i * 512 + 16, 496).Fill((byte)(id ^ (sector + i)));
        }
        return data;
    }

    /// <summary>The identity mapping of d0, cut into 1 to 4 linear segments at random points.</summary>
    private static string IdentityTable(Random rnd)
    {
        var cuts = Enumerable.Range(0, rnd.Next(0, 4)).Select(_ => (long)rnd.Next(1, Size)).Append(0).Append(Size).Distinct().Order().ToList();
        return string.Join('\n', cuts.Zip(cuts.Skip(1), (a, b) => $"{a} {b - a} linear d0 {a}"));
    }
}
