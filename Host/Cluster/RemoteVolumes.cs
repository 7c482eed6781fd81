using System.Net;
using Akka.Actor;
using DmActors.Cluster;

namespace DmActors.Host.Cluster;

/// <summary>
/// A volume owned by another node, served here: an NBD client to the owner's export of the volume (the data
/// channel, never Akka). When the connection breaks, or the owner answers ESHUTDOWN (the volume is moving away),
/// it asks this node's manager who owns the volume now, so a proxy follows a volume that failed over or moved.
/// </summary>
/// <param name="connect">Opens the NBD client disk (a name for logs, the target).</param>
/// <param name="endpointOf">Where a node's NBD server listens, asked afresh.</param>
public sealed class RemoteVolumes(Func<string, NbdDiskTarget, IBlockDevice> connect, Func<string, EndPoint> endpointOf,
    Func<IActorRef> manager, TimeSpan askTimeout) : IRemoteVolumes
{
    public RemoteVolumes(ClusterDisks disks, Func<IActorRef> manager, TimeSpan askTimeout)
        : this(disks.Connect, node => disks.Endpoint(node, fresh: true), manager, askTimeout) { }

    /// <summary>
    /// A question about the owner lost in a shard's handoff (Akka drops what a region buffered for it) must not
    /// cost the whole ask timeout: the reconnect asks again after its backoff instead.
    /// </summary>
    private static readonly TimeSpan OwnerAsk = TimeSpan.FromSeconds(5);

    public IBlockDevice Open(string volumeName, string ownerNode)
    {
        var first = true; // the caller just learned the owner: the first connect goes there without asking again
        return connect($"{volumeName}@{ownerNode}", new NbdDiskTarget(() =>
        {
            if (first) { first = false; return endpointOf(ownerNode); }
            // Unknown for now (moving, or the answer was lost): this attempt fails and the next one asks again.
            return endpointOf(OwnerOf(volumeName) ?? throw new TargetException($"where {volumeName} runs is not known yet"));
        }, volumeName));
    }

    private string? OwnerOf(string volumeName)
    {
        try
        {
            var wait = askTimeout < OwnerAsk ? askTimeout : OwnerAsk;
            return manager().Ask<object>(new Dm.GetInfo(volumeName), wait).GetAwaiter().GetResult() is Dm.DeviceInfo { Node: { } node }
                ? node : null;
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException) { return null; }
    }
}
