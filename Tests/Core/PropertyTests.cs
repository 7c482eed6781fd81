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
/// </summary>
public sealed class PropertyTests : DeviceHarness
{
    private const int Size = 2048;
    private const int BatchesPerSeed = 50;

    [Theory]
    [InlineData(BarrierMode.Ordered, 1, 30)]
    [InlineData(BarrierMode.Flush, 1000, 30)]
    public void Random_sequences_answer_every_bio_once_keep_barrier_order_and_data(BarrierMode mode, int firstSeed, int seeds)
    {
        var disk = Gate("d0", Size);
        for (var seed = firstSeed; seed < firstSeed + seeds; seed++)
            RunSeed(disk, mode, seed);
    }

    private void RunSeed(GateDisk disk, BarrierMode mode, int seed)
    {
        var rnd = new Random(seed);
        disk.Jitter = new Random(seed);
        disk.Fail = _ => null;
        var name = $"p{seed}";
        var dev = Create(name, IdentityTable(rnd), mode);

        // The model: which write last landed on each sector (0 = never written by this seed, -1 = unknown).
        var model = new long[Size];
        var initial = new byte[Size * 512];
        disk.Memory.ReadAt(0, initial);
        var writeId = 0L;
        var probe = CreateTestProbe();

        for (var batch = 0; batch < BatchesPerSeed; batch++)
        {
            var sent = new List<(Bio Bio, long Id)>();
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
                if (kind < 8 && !suspended) { dev.Tell(new Dm.Suspend(name, NoFlush: rnd.Next(2) == 0), probe.Ref); suspended = true; continue; }
                if (kind < 12 && suspended) { dev.Tell(new Dm.Resume(name), probe.Ref); suspended = false; continue; }
                if (kind < 16)
                {
                    // reload: a different, equivalent identity table, swapped in by resume
                    Ok(new Dm.Load(name, IdentityTable(rnd)));
                    dev.Tell(new Dm.Resume(name), probe.Ref);
                    suspended = false;
                    continue;
                }
                if (kind < 22) { var f = Bio.Flush(probe.Ref); dev.Tell(f); sent.Add((f, 0)); continue; }
                var len = rnd.Next(1, 48);
                var sector = (long)rnd.Next(Size - len);
                if (Enumerable.Range((int)sector, len).Any(s => busy[s])) continue; // no overlaps within a batch
                for (var s = sector; s < sector + len; s++) busy[s] = true;
                if (kind < 60)
                {
                    var id = ++writeId + seed * 1_000_000L;
                    var flags = rnd.Next(10) switch { 0 => BioFlags.Barrier, 1 => BioFlags.Fua, _ => BioFlags.None };
                    var w = Bio.Write(sector, Stamp(id, sector, len), probe.Ref, flags);
                    dev.Tell(w);
                    sent.Add((w, id));
                }
                else
                {
                    var r = new Bio(BioOp.Read, sector, len, new byte[len * 512], probe.Ref);
                    dev.Tell(r);
                    sent.Add((r, 0));
                }
            }
            if (suspended) dev.Tell(new Dm.Resume(name), probe.Ref);

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
            if (mode == BarrierMode.Ordered) CheckBarrierOrder(sent.Select(s => s.Bio).ToList(), order, seed, batch);

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
        Ok(new Dm.Close(name));
        Ok(new Dm.Remove(name));
    }

    private static void CheckBarrierOrder(List<Bio> sent, List<BioDone> order, int seed, int batch)
    {
        int Pos(Bio b) => order.FindIndex(d => ReferenceEquals(d.Bio, b));
        for (var i = 0; i < sent.Count; i++)
        {
            if (!(sent[i].IsBarrier || sent[i].Op == BioOp.Flush)) continue;
            for (var j = 0; j < sent.Count; j++)
            {
                if (j < i) Assert.True(Pos(sent[j]) < Pos(sent[i]), $"seed {seed} batch {batch}: bio {j} finished after barrier {i}");
                if (j > i) Assert.True(Pos(sent[j]) > Pos(sent[i]), $"seed {seed} batch {batch}: bio {j} finished before barrier {i}");
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
