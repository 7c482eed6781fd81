using Akka.Actor;
using DmActors.Cluster;

namespace DmActors.Host.Cluster;

/// <summary>
/// A volume owned by another node, served here: an NBD client to the owner's export of the volume (the data
/// channel, never Akka). When the connection breaks, it asks this node's manager who owns the volume now, so a
/// proxy follows a volume that failed over or moved.
/// </summary>
public sealed class RemoteVolumes(ClusterDisks disks, Func<IActorRef> manager, TimeSpan askTimeout) : IRemoteVolumes
{
    public IBlockDevice Open(string volumeName, string ownerNode) =>
        disks.Connect($"{volumeName}@{ownerNode}", new NbdDiskTarget(() => disks.Endpoint(OwnerOf(volumeName) ?? ownerNode, fresh: true), volumeName));

    private string? OwnerOf(string volumeName)
    {
        try
        {
            return manager().Ask<object>(new Dm.GetInfo(volumeName), askTimeout).GetAwaiter().GetResult() is Dm.DeviceInfo { Node: { } node }
                ? node : null;
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException) { return null; }
    }
}
