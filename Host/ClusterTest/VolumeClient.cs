using System.Net;
using Akka.Actor;
using DmActors.Host.Crash;

namespace DmActors.Host.ClusterTest;

/// <summary>
/// The workload's NBD client of the mirrored volume: an <see cref="NbdDisk"/> (the cluster's own data channel
/// client) whose endpoint is asked again at every reconnect, so it follows the nodes that serve. Every op is
/// recorded in the trial's <see cref="IoLedger"/>: sent before it goes out, answered once.
/// </summary>
public sealed class VolumeClient : IDisposable
{
    private static readonly NbdDiskOptions Options = new()
    {
        ReconnectFor = TimeSpan.FromSeconds(60), RequestTimeout = TimeSpan.FromSeconds(45), ConnectTimeout = TimeSpan.FromSeconds(5),
    };
    private static long _opened;
    private readonly NbdDisk _disk;

    private VolumeClient(NbdDisk disk) => _disk = disk;

    public string Via => _disk.LastFailure ?? "connected";

    /// <summary>Connects to <paramref name="volume"/> through <paramref name="endpoint"/>, retrying until <paramref name="timeout"/>.</summary>
    public static async Task<VolumeClient> OpenAsync(string volume, Func<EndPoint> endpoint, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (true)
        {
            try
            {
                var n = Interlocked.Increment(ref _opened);
                var disk = await Task.Run(() => NbdDisk.Connect($"clustertest-{n}", $"250:{n}", new NbdDiskTarget(endpoint, volume), Options));
                return new VolumeClient(disk);
            }
            catch (TargetException e) when (DateTime.UtcNow < until)
            {
                _ = e;
                await Task.Delay(500);
            }
            catch (TargetException e) { throw new ClusterTestException($"no NBD connection to {volume} within {timeout.TotalSeconds:0}s: {e.Message}"); }
        }
    }

    /// <summary>Sends op <paramref name="index"/> (a write or a flush) and records it; the task completes with its answer.</summary>
    public Task<BioStatus> Send(IoLedger ledger, int index, CrashOp op)
    {
        var answered = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        Bio bio = op switch
        {
            CrashOp.Write w => Bio.Write(w.Sector, SectorStamp.Make(w.Id, w.Sector, w.Sectors), ActorRefs.Nobody, w.Flags, index),
            CrashOp.ClientFlush => Bio.Flush(ActorRefs.Nobody, index),
            _ => throw new ArgumentException($"not a bio: {op}"),
        };
        ledger.Sent(index);
        _disk.Start(bio, (b, st) =>
        {
            ledger.Answered((int)b.Tag!, st);
            answered.TrySetResult(st);
        });
        return answered.Task;
    }

    /// <summary>One bio, waited for: Ok or the status.</summary>
    private async Task<BioStatus> OneAsync(Bio bio, TimeSpan timeout)
    {
        var done = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        _disk.Start(bio, (_, st) => done.TrySetResult(st));
        if (await Task.WhenAny(done.Task, Task.Delay(timeout)) != done.Task)
            throw new ClusterTestException($"a {bio.Op} of {bio.Sectors} sectors at {bio.Sector} was not answered within {timeout.TotalSeconds:0}s");
        return done.Task.Result;
    }

    public async Task<BioStatus> FlushAsync(TimeSpan timeout) => await OneAsync(Bio.Flush(ActorRefs.Nobody), timeout);

    /// <summary>The whole volume, read in 128 KiB pieces; a piece that fails is read again until <paramref name="timeout"/>.</summary>
    public async Task<byte[]> ReadAllAsync(long sectors, TimeSpan timeout)
    {
        var image = new byte[sectors * Bio.Sector512];
        var until = DateTime.UtcNow + timeout;
        const int piece = 256;
        for (long at = 0; at < sectors; at += piece)
        {
            var n = (int)Math.Min(piece, sectors - at);
            while (true)
            {
                var st = await OneAsync(Bio.Read(at, image.AsMemory((int)(at * Bio.Sector512), n * Bio.Sector512), ActorRefs.Nobody), timeout);
                if (st == BioStatus.Ok) break;
                if (DateTime.UtcNow > until) throw new ClusterTestException($"the read-back at sector {at} failed: {st}");
                await Task.Delay(500);
            }
        }
        return image;
    }

    public void Dispose() => _disk.Dispose();
}
