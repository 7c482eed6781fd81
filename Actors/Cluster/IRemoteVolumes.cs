namespace DmActors.Cluster;

/// <summary>
/// How a node serves a volume that runs on another node (location transparency): a block device whose bios reach
/// the owner's device over the data channel (an NBD client to the owner's export of the volume), never through
/// Akka. The manager facade maps it with a local proxy device (<c>0 N linear DEVICE 0</c>) and hands that out.
/// Throws <see cref="TargetException"/> with the reason when the owner cannot be reached.
/// </summary>
public interface IRemoteVolumes
{
    IBlockDevice Open(string volumeName, string ownerNode);
}

/// <summary>
/// What the volume entities and the manager facade of one node share: its disks (local and remote), the volumes
/// active on it, how it reaches volumes elsewhere, and the options its devices run with.
/// </summary>
/// <param name="AskTimeout">Bound on every Ask the facade makes (directory, volumes).</param>
/// <param name="WakeInterval">How often the directory wakes volumes that are not yet running where they are placed.</param>
/// <param name="RehomeAfterStart">A fresh directory waits this long after the last member joined or came up (since
/// its start) before it re-places stack groups whose node is not a member (a whole-cluster restart must not move
/// everything to the first node up). Default 20 s.</param>
/// <param name="RehomeDelay">How long after a member's removal the directory re-places its groups (the shard
/// coordinator lets go of the dead node's shards first).</param>
/// <param name="DirectorySnapshotEvery">The directory saves its state as a snapshot every this many events (default 200).</param>
/// <param name="OpenAckTimeout">An open that asked to be acknowledged (an NBD connection's) and is not within this
/// long is closed: its caller gave up before the reply came (default: the ask timeout).</param>
/// <param name="TableRetries">After a member comes up, the delays between tries to build again a table that does not
/// serve as recorded (default: 0, 1, 3, 10, 20, 30 s; tests shorten them).</param>
public sealed record ClusterNode(IClusterDisks Disks, IRemoteVolumes Remote, DeviceManager.Options? DeviceOptions = null,
    TimeSpan? AskTimeout = null, TimeSpan? WakeInterval = null, TimeSpan? RehomeAfterStart = null, TimeSpan? RehomeDelay = null,
    int? DirectorySnapshotEvery = null, TimeSpan? OpenAckTimeout = null, TimeSpan[]? TableRetries = null)
{
    public TimeSpan AckTimeout => OpenAckTimeout ?? Timeout;
    public int DirectorySnapshots => DirectorySnapshotEvery is { } n && n > 0 ? n : 200;
    public string Self => Disks.Self;
    public NodeVolumes Volumes { get; } = new();
    public DeviceManager.Options Options => DeviceOptions ?? new DeviceManager.Options();
    public TimeSpan Timeout => AskTimeout ?? TimeSpan.FromSeconds(30);
}
