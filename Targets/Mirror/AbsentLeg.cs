namespace DmActors.Targets;

/// <summary>
/// A leg that could not be reached when the table was built (its node is not a member): the mirror starts without
/// it, with the leg failed, so it is never read, written or copied from. Any bio that still reaches it fails.
/// Remote and gone, so the table that replaces this one when the node is back copies to that leg, never from it.
/// </summary>
internal sealed class AbsentLeg(string name, long sectors, string reason) : IBlockDevice
{
    public string Name => name;
    /// <summary>No device behind it: 0:0, as a numbered device it is listed among the table's dependencies.</summary>
    public string DevNo => "0:0";
    public long Sectors => sectors;
    public bool HasVolatileCache => false;
    public bool IsRemote => true;
    public bool IsGone => true;
    public string Reason => reason;
    public void Submit(Bio bio) => bio.Complete(BioStatus.IoError);
}

public sealed partial class Mirror
{
    /// <summary>dm_get_device for a leg; one that cannot be reached now is an <see cref="AbsentLeg"/>.</summary>
    private static IBlockDevice OpenLeg(TargetArgs a, string arg, long offset)
    {
        try { return a.GetDevice(arg, offset, a.Length, "Device lookup failure"); }
        catch (DeviceUnreachableException e) { return new AbsentLeg(a.Lookup.Identity(arg), offset + a.Length, e.Message); }
    }
}
