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

    /// <summary>The log device: a mirror never starts without it (it says which regions the legs may differ in).</summary>
    private static IBlockDevice OpenLog(TargetArgs a, string arg)
    {
        try { return a.GetWholeDevice(arg, "Error creating mirror dirty log: Device lookup failed"); }
        catch (DeviceUnreachableException e) { throw new TargetException($"Error creating mirror dirty log: {e.Message}; a mirror does not start without its log"); }
    }

    /// <summary>
    /// Legs that cannot be reached now: the mirror starts without them only while at least `min_legs` others remain,
    /// and (a `core` log) while one of those is not recorded as lacking acknowledged writes; else the table fails.
    /// </summary>
    private void CheckAbsentLegs(TargetArgs a, bool coreLog)
    {
        var absent = _legs.Select(l => l.Dev is AbsentLeg).ToArray();
        if (!absent.Any(x => x)) return;
        var why = string.Join("; ", _legs.Select(l => l.Dev).OfType<AbsentLeg>().Select(l => l.Reason));
        var reached = absent.Count(x => !x);
        if (reached < _minLegs) throw new TargetException($"only {reached} of {_legs.Length} legs can be reached (min_legs {_minLegs}): {why}");
        if (!coreLog) return;
        var behind = CoreLog.Behind(a.Lookup.Records, LegIds);
        if (Enumerable.Range(0, _legs.Length).Any(i => absent[i] && !behind[i]) && Enumerable.Range(0, _legs.Length).All(i => absent[i] || behind[i]))
            throw new TargetException($"the legs that can be reached may lack acknowledged writes (recorded), the leg that has them cannot: {why}");
    }

    /// <summary>How the journal knows the legs (a `core` log's key).</summary>
    private string[] LegIds => _legs.Select(l => $"{l.Identity} {l.Offset}").ToArray();
}
