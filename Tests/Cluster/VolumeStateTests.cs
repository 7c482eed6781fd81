using DmActors.Cluster;
using Xunit;

namespace DmActors.Tests.Cluster;

/// <summary>The pure folds of the cluster: a volume's state and the directory's.</summary>
public sealed class VolumeStateTests
{
    private static readonly DateTime At = new(2026, 1, 5, 10, 0, 0, DateTimeKind.Utc);

    [Fact]
    public void A_volume_keeps_its_device_as_a_host_would_and_each_activation_raises_the_epoch()
    {
        var events = new DeviceEvents.DeviceEvent[]
        {
            new DeviceEvents.Created("a", At, 7, BarrierMode.Flush, false, "u"),
            new DeviceEvents.TableLoaded("a", At, "0 8 linear disk0@n1 0", false),
            new DeviceEvents.Resumed("a", At),
            new DeviceEvents.Suspended("a", At, false),
            new DeviceEvents.Renamed("a", At, "b"),
        };
        var state = VolumeState.Empty("g7:v7").Apply(new VolumeEvents.Activated(1, "n1", At));
        var host = HostState.Empty;
        foreach (var e in events) (state, host) = (state.Apply(e), host.Apply(e));
        AssertSame(host.Devices["b"], state.Device!);
        Assert.Equal((1L, "n1", 7, "g7"), (state.Epoch, state.Node, state.Minor, state.Shard));
        state = state.Apply(new VolumeEvents.Activated(2, "n3", At));
        Assert.Equal((2L, "n3"), (state.Epoch, state.Node));
        AssertSame(host.Devices["b"], state.Device!); // an activation changes nothing recorded about the device
        Assert.Equal(new[] { "b" }, state.AsHost().Devices.Keys); // commands decide against the one device
        Assert.Null(state.Apply(new DeviceEvents.Removed("b", At)).Device);
    }

    private static void AssertSame(DeviceRecord expected, DeviceRecord actual)
    {
        Assert.Equal(expected with { History = [] }, actual with { History = [] });
        Assert.Equal(expected.History, actual.History);
    }

    [Fact]
    public void The_directory_finds_volumes_by_name_or_device_number_and_follows_renames()
    {
        var d = DirectoryState.Empty;
        foreach (var e in new DirectoryEvents.DirectoryEvent[]
                 {
                     new DirectoryEvents.Reserved("a", "g0:v0", null, 0), new DirectoryEvents.Placed("g0", "n1"),
                     new DirectoryEvents.Reserved("b", "g0:v1", "u-b", 1),
                     new DirectoryEvents.Reserved("c", "g2:v2", null, 2), new DirectoryEvents.Placed("g2", "n2"),
                     new DirectoryEvents.Renamed("a", "a2"), new DirectoryEvents.Released("c"), new DirectoryEvents.Placed("g0", "n3"),
                 })
            d = d.Apply(e);
        Assert.Equal(new[] { "a2", "b" }, d.Volumes.Keys);
        Assert.Equal("a2", d.Named("253:0")!.Value.Name);
        Assert.Equal("g0:v1", d.Named("b")!.Value.Entry.EntityId);
        Assert.Null(d.Named("c"));
        Assert.Equal("n3", d.NodeOf("g0"));
        Assert.Equal(new[] { "a2", "b" }, d.InShard("g0").Select(v => v.Name));
        Assert.Equal(3, d.NextMinor); // a released minor is not handed out again
    }
}
