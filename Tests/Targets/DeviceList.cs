using DmActors;

namespace DmActors.Tests;

/// <summary>A table's device lookup over a fixed set of devices, for building tables without a device manager.</summary>
public sealed class DeviceList(params IBlockDevice[] devices) : IDeviceLookup
{
    public IBlockDevice? Find(string name) => devices.FirstOrDefault(d => d.Name == name);
}
