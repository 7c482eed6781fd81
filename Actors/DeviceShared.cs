using Akka.Actor;

namespace DmActors;

/// <summary>
/// The few facts about a mapped device that other local code reads without asking it (like the kernel's
/// gendisk): its size, open count and cache. Written only by the device actor, except the open count.
/// </summary>
public sealed class DeviceShared
{
    public DeviceShared(string name, int minor) { Name = name; Minor = minor; }

    public volatile string Name;
    public readonly int Minor;
    private long _sectors;
    private int _openCount;
    public volatile bool HasVolatileCache;
    public volatile bool ReadOnly;
    /// <summary>Its live table may lack what a previous owner's cache held (a stacked mirror's leg over it: IDeviceLookup.MayLackCachedWrites).</summary>
    public volatile bool MayLackCachedWrites;

    public long Sectors { get => Volatile.Read(ref _sectors); set => Volatile.Write(ref _sectors, value); }
    public int OpenCount => Volatile.Read(ref _openCount);
    public void Open() => Interlocked.Increment(ref _openCount);
    /// <summary>Undoes one open; a stray close never takes the count below zero.</summary>
    public void Close()
    {
        int seen;
        do { seen = Volatile.Read(ref _openCount); if (seen == 0) return; }
        while (Interlocked.CompareExchange(ref _openCount, seen - 1, seen) != seen);
    }
    public string DevNo => $"{MappedDevice.Major}:{Minor}";

    /// <summary>The live table's devices, and what the devices of tables swapped out had lost: one reference, so a reader sees either whole.</summary>
    private sealed record Losses(long Before, IBlockDevice[] Devices);
    private volatile Losses _losses = new(0, []);

    /// <summary><see cref="IBlockDevice.WritesLost"/> of the device: every loss below it, in any table it had; it never goes down.</summary>
    public long WritesLost
    {
        get
        {
            var l = _losses;
            var sum = l.Before;
            foreach (var d in l.Devices) sum += d.WritesLost;
            return sum;
        }
    }

    /// <summary>A table went live with <paramref name="devices"/>: the losses of the devices it no longer uses are kept.</summary>
    public void LiveDevices(IReadOnlyList<IBlockDevice> devices)
    {
        var old = _losses;
        var before = old.Before;
        foreach (var d in old.Devices) if (!devices.Contains(d)) before += d.WritesLost;
        _losses = new Losses(before, devices.ToArray());
    }
}

/// <summary>A mapped device as a table argument of another (stacking): bios go to its actor.</summary>
public sealed class MappedDeviceHandle(IActorRef device, DeviceShared shared) : IBlockDevice
{
    public IActorRef Actor { get; } = device;
    public DeviceShared Shared { get; } = shared;
    public string Name => Shared.Name;
    public string DevNo => Shared.DevNo;
    public long Sectors => Shared.Sectors;
    public bool HasVolatileCache => Shared.HasVolatileCache;
    public long WritesLost => Shared.WritesLost;
    public void Submit(Bio bio) => Actor.Tell(bio, ActorRefs.NoSender);
    public void Open() => Shared.Open();
    public void Close() => Shared.Close();
}
