using System.Diagnostics;
using Akka.Actor;

namespace DmActors.Host.Bench;

/// <summary>
/// `dmactors bench --mirror`'s resync figures. A two-leg mirror with a `disk` log over files of the bench's size; leg b
/// is failed (`fail_leg`, as when its node is away), writes go on to leg a alone, leg b comes back (`return_leg`) and
/// the copy is timed until `dmsetup status` shows every region in sync. Two cases: scattered 4 KiB writes and one
/// 8 MiB run (what resync copies against what was written meanwhile and against the volume: the goal is only the
/// regions written), then one write in every region (the whole volume is copied: the resync's throughput).
/// </summary>
public static class ResyncBench
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);
    private const int RegionSectors = 1024; // 512 KiB, dm's default region size
    private const long RegionBytes = RegionSectors << Bio.SectorShift;

    /// <param name="WrittenBytes">Bytes written while leg b was away.</param>
    /// <param name="CopiedBytes">What resync copied: the regions out of sync when leg b came back.</param>
    public sealed record Result(string Case, long WrittenBytes, long CopiedBytes, long VolumeBytes, double Seconds)
    {
        public double CopiedPerWritten => WrittenBytes > 0 ? (double)CopiedBytes / WrittenBytes : 0;
        public double CopiedPerVolume => (double)CopiedBytes / VolumeBytes;
        public double MBps => Seconds > 0 ? CopiedBytes / Seconds / 1e6 : 0;
    }

    /// <summary>The writes of one case, as (byte offset, length) pairs.</summary>
    private static IEnumerable<(long Offset, int Length)> Writes(string name, long bytes, Random random) => name switch
    {
        "scattered 4k x 64" => Enumerable.Range(0, 64).Select(_ => (random.NextInt64(bytes >> 12) << 12, 4096)),
        "one 8 MiB run" => Enumerable.Range(0, 8).Select(i => ((bytes / 3 & ~(RegionBytes - 1)) + ((long)i << 20), 1 << 20)),
        "every region" => Enumerable.Range(0, (int)(bytes / RegionBytes)).Select(r => (r * RegionBytes, 4096)),
        _ => throw new ArgumentException(name),
    };

    public static readonly string[] Cases = ["scattered 4k x 64", "one 8 MiB run", "every region"];

    public static async Task<IReadOnlyList<Result>> RunAsync(BenchRig rig, long bytes, Action<string> progress)
    {
        var sectors = bytes >> Bio.SectorShift;
        var (a, b, log) = rig.MirrorFiles("resync", bytes);
        var manager = rig.Manager;
        var table = $"0 {sectors} mirror disk 2 {log.Name} {RegionSectors} 2 {a.Name} 0 {b.Name} 0 1 handle_errors";
        await Ok(manager, new Dm.Create("resync", table), "create");
        var device = await manager.Ask<object>(new Dm.Open("resync"), AskTimeout) is Dm.Opened o ? o.Device
            : throw new InvalidOperationException("open resync failed");
        await WaitInSyncAsync(manager, TimeSpan.FromMinutes(10)); // the first full copy: the legs were written alike, but the log does not know

        var results = new List<Result>();
        var random = new Random(24);
        var buffer = new byte[1 << 20];
        random.NextBytes(buffer);
        foreach (var name in Cases)
        {
            await Ok(manager, new Dm.Message("resync", 0, ["fail_leg", b.Name]), "fail_leg");
            long written = 0;
            foreach (var (offset, length) in Writes(name, bytes, random))
            {
                await WriteAsync(device, offset, buffer.AsMemory(0, length));
                written += length;
            }
            await SubmitAsync(device, Bio.Flush(ActorRefs.Nobody));
            var (inSync, regions) = await InSyncAsync(manager);
            var copied = (regions - inSync) * RegionBytes;
            rig.SyncFiles();
            var clock = Stopwatch.StartNew();
            await Ok(manager, new Dm.Message("resync", 0, ["return_leg", b.Name]), "return_leg");
            await WaitInSyncAsync(manager, TimeSpan.FromMinutes(10));
            var r = new Result(name, written, copied, bytes, clock.Elapsed.TotalSeconds);
            results.Add(r);
            progress($"resync {name,-18} wrote {written >> 10} KiB while leg b was away, copied {copied >> 10} KiB in {r.Seconds:F2} s");
        }
        await manager.Ask<object>(new Dm.Close("resync", device), AskTimeout);
        await Ok(manager, new Dm.Remove("resync"), "remove");
        return results;
    }

    public static string Table(IReadOnlyList<Result> results, int regionKiB = (int)(RegionBytes >> 10))
    {
        var w = new StringWriter();
        w.WriteLine($"resync of a two-leg mirror (disk log, {regionKiB} KiB regions) after leg b was away:");
        w.WriteLine($"{"case",-20} {"written",10} {"copied",10} {"copied/written",15} {"copied/volume",14} {"time",8} {"MB/s",8}");
        foreach (var r in results)
            w.WriteLine($"{r.Case,-20} {Size(r.WrittenBytes),10} {Size(r.CopiedBytes),10} {r.CopiedPerWritten,15:F1} {r.CopiedPerVolume,14:P2} {r.Seconds,7:F2}s {r.MBps,8:F0}");
        return w.ToString();
    }

    private static string Size(long bytes) => bytes >= 1 << 20 ? $"{bytes / (double)(1 << 20):0.#} MiB" : $"{bytes >> 10} KiB";

    private static async Task Ok(ICanTell manager, object command, string op)
    {
        var reply = await manager.Ask<object>(command, AskTimeout);
        if (reply is not Dm.Done) throw new InvalidOperationException($"resync bench: {op}: {reply}");
    }

    /// <summary>The mirror's `in-sync/regions` field (status: `2 a b 1024/1024 1 AA 3 disk log A`).</summary>
    private static async Task<(long InSync, long Regions)> InSyncAsync(ICanTell manager)
    {
        var reply = await manager.Ask<object>(new Dm.GetStatus("resync"), AskTimeout);
        var line = reply is Dm.Done { Lines.Count: > 0 } d ? d.Lines[0] : throw new InvalidOperationException($"resync bench: status: {reply}");
        var field = line.Split(' ').First(f => f.Contains('/'));
        var parts = field.Split('/');
        return (long.Parse(parts[0]), long.Parse(parts[1]));
    }

    private static async Task WaitInSyncAsync(ICanTell manager, TimeSpan timeout)
    {
        var until = Stopwatch.StartNew();
        while (true)
        {
            var (inSync, regions) = await InSyncAsync(manager);
            if (inSync == regions) return;
            if (until.Elapsed > timeout) throw new TimeoutException($"resync bench: {inSync}/{regions} regions in sync after {timeout}");
            await Task.Delay(2);
        }
    }

    private static Task WriteAsync(IActorRef device, long offset, Memory<byte> data) =>
        SubmitAsync(device, Bio.Write(offset >> Bio.SectorShift, data, ActorRefs.Nobody));

    private static async Task SubmitAsync(IActorRef device, Bio bio)
    {
        var done = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        bio.ReplyTo = CallbackRef.ForBios(d => done.TrySetResult(d.Status));
        device.Tell(bio, ActorRefs.NoSender);
        var st = await done.Task.WaitAsync(AskTimeout);
        if (st != BioStatus.Ok) throw new InvalidOperationException($"resync bench: {bio.Op} at sector {bio.Sector}: {st}");
    }
}
