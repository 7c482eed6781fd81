namespace DmActors;

/// <summary>
/// The NBD export name under which a cluster node serves one of its disks to the owner of a volume (the data
/// channel between nodes): <c>.dmactors/TOKEN/disk/DISK/VOLUME/EPOCH</c>. The token is the cluster's secret, so
/// only members use internal exports; the volume and epoch let the disk's node fence an old owner: once an epoch
/// has claimed a disk for a volume, IO of older epochs is refused. Names never appear in export lists.
/// </summary>
public sealed record InternalExport(string Token, string Disk, string VolumeId, long Epoch)
{
    public const string Prefix = ".dmactors/";

    public string Format() => $"{Prefix}{Token}/disk/{Disk}/{VolumeId}/{Epoch}";

    public static bool IsInternal(string exportName) => exportName.StartsWith(Prefix, StringComparison.Ordinal);

    /// <summary>Parses an internal export name; null (with the reason) when it is not one or is malformed.</summary>
    public static InternalExport? TryParse(string exportName, out string? problem)
    {
        problem = null;
        if (!IsInternal(exportName)) { problem = "not an internal export"; return null; }
        var parts = exportName[Prefix.Length..].Split('/');
        if (parts.Length != 5 || parts[1] != "disk" || parts.Take(4).Any(p => p.Length == 0) ||
            !long.TryParse(parts[4], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var epoch) || epoch <= 0)
        {
            problem = $"malformed internal export name (want {Prefix}TOKEN/disk/DISK/VOLUME/EPOCH)";
            return null;
        }
        return new InternalExport(parts[0], parts[2], parts[3], epoch);
    }
}
