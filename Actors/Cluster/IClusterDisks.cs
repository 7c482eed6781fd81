namespace DmActors.Cluster;

/// <summary>
/// How a cluster node opens a disk named <c>DISK@NODE</c> for a volume it owns, at the volume's epoch: its own
/// disks through the local fence (<see cref="FencedDisk"/>), other nodes' disks over NBD (<see cref="NbdDisk"/>,
/// export <see cref="InternalExport"/>). Called while a table is built; throws <see cref="TargetException"/> with
/// the reason when the disk cannot be opened (unknown node, node down, fenced by a newer epoch).
/// </summary>
public interface IClusterDisks
{
    /// <summary>This node's name.</summary>
    string Self { get; }

    IBlockDevice Open(string disk, string node, string volumeId, long epoch);
}
