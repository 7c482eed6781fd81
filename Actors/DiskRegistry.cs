using System.Collections.Concurrent;

namespace DmActors;

/// <summary>
/// The disks of a host, by name: configured file disks, memory disks for tests, and files named by path in a
/// table (opened on first use, like losetup). Disks are node-local: they never move between hosts.
/// </summary>
public sealed class DiskRegistry : IDisposable
{
    private readonly ConcurrentDictionary<string, Disk> _disks = new(StringComparer.Ordinal);
    private int _nextMinor = -1;

    public DiskRegistry(DiskIoPool? pool = null) => Pool = pool ?? DiskIoPool.Shared;

    public DiskIoPool Pool { get; }
    public IEnumerable<Disk> All => _disks.Values.Distinct();

    /// <summary>Loop devices are major 7; disks get their minors in the order they are added.</summary>
    public string NextDevNo() => $"7:{Interlocked.Increment(ref _nextMinor)}";

    public T Add<T>(T disk) where T : Disk
    {
        if (!_disks.TryAdd(disk.Name, disk)) throw new InvalidOperationException($"disk {disk.Name} already exists");
        return disk;
    }

    public Disk AddFile(string name, string path, long createSectors = 0, bool writeBackCache = false)
    {
        Disk disk = FileDisk.Open(name, path, NextDevNo(), createSectors, Pool);
        if (writeBackCache) disk = new CachedDisk(disk);
        return Add(disk);
    }

    public MemoryDisk AddMemory(string name, long sectors) => Add(new MemoryDisk(name, sectors, NextDevNo()));

    /// <summary>
    /// A disk by name; an existing file named by an absolute or ./ path is opened as a disk, held open (and locked)
    /// only while tables use it. A file another process holds is refused with a <see cref="TargetException"/>.
    /// </summary>
    public Disk? Find(string name)
    {
        if (_disks.TryGetValue(name, out var d)) return d;
        if ((name.StartsWith('/') || name.StartsWith("./")) && File.Exists(name))
        {
            lock (_disks)
            {
                if (_disks.TryGetValue(name, out d)) return d;
                FileDisk disk;
                try { disk = FileDisk.Open(name, name, NextDevNo(), 0, Pool); }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException) { throw new TargetException(e.Message); }
                disk.CloseWhenUnused();
                return Add(disk);
            }
        }
        return null;
    }

    public void Dispose()
    {
        foreach (var d in All) d.Dispose();
    }
}
