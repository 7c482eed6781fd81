using Akka.Actor;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>What a swapped-out table leaves behind for the next flush: its cached devices, held open until flushed.</summary>
public sealed class FlushTrackerStaleDeviceTests
{
    /// <summary>A cached device that is not a Disk (a cluster node's fenced disk, an NBD client behind its owner).</summary>
    private sealed class CachedDevice(string name) : IBlockDevice
    {
        public int Opens;
        public string Name => name;
        public string DevNo => "9:9";
        public long Sectors => 1024;
        public bool HasVolatileCache => true;
        public void Submit(Bio bio) => bio.Complete(Opens > 0 ? BioStatus.Ok : BioStatus.IoError); // closed: gone
        public void Open() => Opens++;
        public void Close() => Opens--;
    }

    private sealed class Lookup(IBlockDevice device) : IDeviceLookup
    {
        public IBlockDevice? Find(string name) => name == device.Name ? device : null;
    }

    private static Table Over(CachedDevice d) => Table.Build(Table.Parse($"0 1024 linear {d.Name} 0"), new Lookup(d));

    [Fact]
    public void A_cached_device_of_a_swapped_out_table_stays_open_until_a_flush_reached_it_even_when_it_is_not_a_disk()
    {
        var (first, second) = (new CachedDevice("a"), new CachedDevice("b"));
        var (old, next) = (Over(first), Over(second));
        var tracker = new FlushTracker();
        tracker.WriteCompleted(Bio.Write(0, new byte[512], ActorRefs.Nobody));
        tracker.Swap(old, next);
        old.Destroy(); // the old table lets go of its devices
        Assert.Equal(1, first.Opens);

        var io = new DmIo(Bio.Flush(ActorRefs.Nobody), DmIo.Kinds.Normal, 0);
        var stale = Assert.Single(tracker.Begin(io)!);
        Assert.Same(first, stale);
        tracker.Flushed(io, BioStatus.Ok);
        Assert.Equal(0, first.Opens);
        Assert.False(tracker.HasStale);
        next.Destroy();
    }
}
