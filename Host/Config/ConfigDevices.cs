namespace DmActors.Host.Configuration;

/// <summary>
/// What a start does with each device of <c>dmactors.devices</c>. The rule: the configuration creates a device
/// once, when the journal has never seen it; from then on the journal wins, as it does for any device, so what was
/// done with dmsetup (a reload, a rename, a remove) survives restarts. Each device left other than the
/// configuration says gets one line explaining why.
/// </summary>
public static class ConfigDevices
{
    public enum Action
    {
        /// <summary>Never seen: create it from the configuration.</summary>
        Create,
        /// <summary>Recorded but not yet known as the configuration's (created with dmsetup first): record it as such.</summary>
        Adopt,
        /// <summary>Already the configuration's: leave it as recorded.</summary>
        Keep,
    }

    /// <param name="Note">Why the device is not as the configuration declares it; null if it is.</param>
    public sealed record Step(DeviceSpec Device, Action Action, string? Note);

    public static IReadOnlyList<Step> Plan(HostState recorded, ConfigDeviceRecords configDevices, IEnumerable<DeviceSpec> devices) => devices.Select(d =>
    {
        configDevices.ByName.TryGetValue(d.Name, out var config);
        recorded.Devices.TryGetValue(d.Name, out var device);
        if (device == null)
        {
            if (config == null) return new Step(d, Action.Create, null);
            return new Step(d, Action.Keep, config.Current == null ? "removed with dmsetup" : $"renamed to '{config.Current}' with dmsetup");
        }
        var action = config == null ? Action.Adopt : Action.Keep;
        var baseline = config ?? new ConfigDeviceRecord(device.Live, device.ReadOnly, device.Mode, d.Name);
        if (Differs(device.Live, device.ReadOnly, device.Mode, d.Table, d.ReadOnly, d.Mode) is not { } differs)
            return new Step(d, action, device.Suspended ? $"suspended with dmsetup (dmsetup resume {d.Name} runs it)" : null);
        if (Differs(device.Live, device.ReadOnly, device.Mode, baseline.Table, baseline.ReadOnly, baseline.Mode) == "table")
            return new Step(d, action, "table changed with dmsetup");
        return new Step(d, action, differs == "table"
            ? "the configuration's table differs from the recorded one (dmsetup load and resume apply it)"
            : $"the configuration's {differs} differs from the recorded one (dmsetup remove and create apply it)");
    }).ToList();

    /// <summary>The first of table, read-only flag and barrier mode that differs; null if none.</summary>
    private static string? Differs(string? table, bool readOnly, BarrierMode mode, string? otherTable, bool otherReadOnly, BarrierMode otherMode) =>
        Normalize(table) != Normalize(otherTable) ? "table"
        : readOnly != otherReadOnly ? "read-only flag"
        : mode != otherMode ? "barrier mode"
        : null;

    /// <summary>A table's lines with whitespace collapsed: spacing is not a change.</summary>
    private static string? Normalize(string? table) =>
        string.IsNullOrWhiteSpace(table) ? null
        : string.Join('\n', table.Split('\n').Select(l => string.Join(' ', l.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))).Where(l => l.Length > 0));
}
