using Akka.Actor;

namespace DmActors;

/// <summary>A device in the manager's directory: its actor, what it shares with the IO path, and what its tables use.</summary>
internal sealed record ManagedDevice(IActorRef Actor, DeviceShared Shared, MappedDeviceHandle Handle)
{
    /// <summary>Names of the mapped devices this device's tables use (for loop detection).</summary>
    public HashSet<string> Uses { get; } = new();

    /// <summary>Why the recorded live table could not be rebuilt at recovery (a missing disk); named by devices stacked on it.</summary>
    public string? Error { get; set; }
}

/// <summary>A table built for a device, with the mapped devices it uses.</summary>
/// <param name="Unreachable">Devices the table goes without for now (a mirror leg whose node is not a member).</param>
/// <param name="MayLackCachedWrites">Some device of the table may lack what the previous owner's cache held (<see cref="IDeviceLookup.MayLackCachedWrites"/>).</param>
internal sealed record BuiltTable(Table Table, IReadOnlyCollection<string> Uses, IReadOnlyCollection<string>? Unreachable = null,
    bool MayLackCachedWrites = false);

/// <summary>
/// Resolves a table's device arguments for the manager (dm-table's dm_get_device): mapped devices by name or
/// major:minor, then disks by name, devno or path. A table that would map a device onto itself, directly or through
/// the devices stacked below it, is refused.
/// </summary>
internal sealed class DeviceLookup : IDeviceLookup
{
    private readonly IReadOnlyDictionary<string, ManagedDevice> _devices;
    private readonly DiskRegistry _disks;
    private readonly string _self;
    private readonly HashSet<string> _used = new();

    private DeviceLookup(IReadOnlyDictionary<string, ManagedDevice> devices, DiskRegistry disks, string self, ITargetRecords? records)
    {
        _devices = devices; _disks = disks; _self = self; Records = records;
    }

    public ITargetRecords? Records { get; }

    /// <summary>Builds <paramref name="text"/> as the table of device <paramref name="self"/>; throws <see cref="TableException"/>.</summary>
    public static BuiltTable Build(IReadOnlyDictionary<string, ManagedDevice> devices, DiskRegistry disks, IClock? clock,
        string self, string text, bool readOnly, ITargetRecords? records = null)
    {
        var lookup = new DeviceLookup(devices, disks, self, records);
        var lines = Table.Parse(text);
        return new BuiltTable(Table.Build(lines, lookup, readOnly, clock), lookup._used);
    }

    public IBlockDevice? Find(string name)
    {
        var dev = _devices.FirstOrDefault(d => d.Key == name || d.Value.Shared.DevNo == name);
        if (dev.Value != null)
        {
            if (dev.Key == _self || DependsOn(dev.Key, _self)) throw new TargetException($"{name}: a device cannot map onto itself");
            // Rather than "too small ... dev_size=0": say why the device below has no table.
            if (dev.Value.Error is { } error && dev.Value.Shared.Sectors == 0)
                throw new TargetException($"lower device '{dev.Key}' has no live table ({error})");
            _used.Add(dev.Key);
            return dev.Value.Handle;
        }
        return _disks.Find(name) ?? _disks.All.FirstOrDefault(d => d.DevNo == name);
    }

    private bool DependsOn(string device, string on) =>
        _devices.TryGetValue(device, out var e) && e.Uses.Any(u => u == on || DependsOn(u, on));
}
