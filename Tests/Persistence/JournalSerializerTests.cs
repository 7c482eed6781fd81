using System.Collections.Immutable;
using System.Runtime.Serialization;
using System.Text;
using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>
/// The journal's format is a contract with every state.db ever written: each stored type has a fixed manifest and
/// fixed JSON, and reading goes by the manifest alone. A renamed record or property changes nothing here; a
/// changed manifest or field name fails here (old rows would no longer read).
/// </summary>
public sealed class JournalSerializerTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly DateTime At = new(2026, 1, 5, 10, 0, 0, 123, DateTimeKind.Utc);
    private const string AtJson = "\"at\":\"2026-01-05T10:00:00.1230000Z\"";

    private JournalSerializer Serializer => new((ExtendedActorSystem)Sys);

    [Fact]
    public void Every_stored_type_has_its_literal_manifest()
    {
        var expected = new Dictionary<Type, string>
        {
            [typeof(DeviceEvents.Created)] = "device-created.v1",
            [typeof(DeviceEvents.TableLoaded)] = "device-table-loaded.v1",
            [typeof(DeviceEvents.TableCleared)] = "device-table-cleared.v1",
            [typeof(DeviceEvents.Suspended)] = "device-suspended.v1",
            [typeof(DeviceEvents.Resumed)] = "device-resumed.v1",
            [typeof(DeviceEvents.Renamed)] = "device-renamed.v1",
            [typeof(DeviceEvents.UuidSet)] = "device-uuid-set.v1",
            [typeof(DeviceEvents.Removed)] = "device-removed.v1",
            [typeof(DeviceEvents.ConfigDevice)] = "device-config-device.v1",
            [typeof(HistoryEntry)] = "history-entry.v1",
            [typeof(DeviceRecord)] = "device-record.v1",
            [typeof(HostState)] = "host-state.v1",
            [typeof(ConfigDeviceRecord)] = "config-device-record.v1",
            [typeof(ConfigDeviceRecords)] = "config-device-records.v1",
            [typeof(HostSnapshot)] = "host-snapshot.v1",
            [typeof(DmActors.Cluster.VolumeEvents.Activated)] = "volume-activated.v1",
            [typeof(DmActors.Cluster.VolumeEvents.TargetRecorded)] = "volume-target-recorded.v1",
            [typeof(DmActors.Cluster.DirectoryEvents.Reserved)] = "directory-reserved.v1",
            [typeof(DmActors.Cluster.DirectoryEvents.Renamed)] = "directory-renamed.v1",
            [typeof(DmActors.Cluster.DirectoryEvents.UuidSet)] = "directory-uuid-set.v1",
            [typeof(DmActors.Cluster.DirectoryEvents.Released)] = "directory-released.v1",
            [typeof(DmActors.Cluster.DirectoryEvents.Placed)] = "directory-placed.v1",
            [typeof(DmActors.Cluster.DirectoryState)] = "directory-state.v1",
        };
        foreach (var (type, manifest) in expected) Assert.Equal(manifest, JournalSerializer.Manifests[type]);
        // A new stored type needs a manifest (and a line above), or persisting it would fail at run time.
        var stored = typeof(IPersistedEvent).Assembly.GetTypes().Where(t => typeof(IPersistedEvent).IsAssignableFrom(t) && !t.IsAbstract && !t.IsInterface);
        Assert.Equal(stored.OrderBy(t => t.FullName), JournalSerializer.Manifests.Keys.OrderBy(t => t.FullName));
        Assert.Equal(expected.Count, JournalSerializer.Manifests.Count);
    }

    public static IEnumerable<object[]> Payloads() => Samples().Select(s => s.Manifest).Distinct().Select(m => new object[] { m }); // each case checks every sample of its manifest

    /// <summary>Every manifest with a value and its exact stored form: the v1 format, field by field.</summary>
    private static IEnumerable<(string Manifest, object Value, string Json)> Samples()
    {
        var history = new HistoryEntry(At, "created (minor 3, flush barriers)");
        const string historyJson = AtJson + ",\"what\":\"created (minor 3, flush barriers)\"";
        var device = new DeviceRecord("b", 3, BarrierMode.Flush, true, "uuid-b", "0 8 zero", true, "0 16 error", false, true, [history]);
        const string deviceJson = "\"name\":\"b\",\"minor\":3,\"barrier-mode\":\"flush\",\"read-only\":true,\"uuid\":\"uuid-b\"," +
            "\"live\":\"0 8 zero\",\"live-read-only\":true,\"inactive\":\"0 16 error\",\"inactive-read-only\":false,\"suspended\":true," +
            "\"history\":[{" + historyJson + "}]";
        var state = new HostState(HostState.Empty.Devices.Add("b", device), 4);
        const string stateJson = "\"devices\":{\"b\":{" + deviceJson + "}},\"next-minor\":4";
        var config = new ConfigDeviceRecord("0 8 zero", false, BarrierMode.Ordered, "b");
        const string configJson = "\"table\":\"0 8 zero\",\"read-only\":false,\"barrier-mode\":\"ordered\",\"current\":\"b\"";
        var configs = new ConfigDeviceRecords(ConfigDeviceRecords.Empty.ByName.Add("c", config).Add("gone", config with { Current = null, Table = null }));
        const string configsJson = "\"by-name\":{\"c\":{" + configJson + "},\"gone\":{\"table\":null,\"read-only\":false,\"barrier-mode\":\"ordered\",\"current\":null}}";
        const string ev = "{\"name\":\"a\"," + AtJson;
        return
        [
            ("device-created.v1", new DeviceEvents.Created("a", At, 0, BarrierMode.Ordered, false, null),
                ev + ",\"minor\":0,\"barrier-mode\":\"ordered\",\"read-only\":false,\"uuid\":null}"),
            ("device-created.v1", new DeviceEvents.Created("a", At, 7, BarrierMode.Flush, true, "u-1"),
                ev + ",\"minor\":7,\"barrier-mode\":\"flush\",\"read-only\":true,\"uuid\":\"u-1\"}"),
            ("device-table-loaded.v1", new DeviceEvents.TableLoaded("a", At, "0 8 zero\n8 8 error", true),
                ev + ",\"table\":\"0 8 zero\\n8 8 error\",\"read-only\":true}"),
            ("device-table-cleared.v1", new DeviceEvents.TableCleared("a", At), ev + "}"),
            ("device-suspended.v1", new DeviceEvents.Suspended("a", At, true), ev + ",\"noflush\":true}"),
            ("device-resumed.v1", new DeviceEvents.Resumed("a", At), ev + "}"),
            ("device-renamed.v1", new DeviceEvents.Renamed("a", At, "b"), ev + ",\"new-name\":\"b\"}"),
            ("device-uuid-set.v1", new DeviceEvents.UuidSet("a", At, "u-2"), ev + ",\"uuid\":\"u-2\"}"),
            ("device-removed.v1", new DeviceEvents.Removed("a", At), ev + "}"),
            ("device-config-device.v1", new DeviceEvents.ConfigDevice("a", At, null, true, BarrierMode.Flush),
                ev + ",\"table\":null,\"read-only\":true,\"barrier-mode\":\"flush\"}"),
            ("history-entry.v1", history, "{" + historyJson + "}"),
            ("device-record.v1", device, "{" + deviceJson + "}"),
            ("host-state.v1", state, "{" + stateJson + "}"),
            ("config-device-record.v1", config, "{" + configJson + "}"),
            ("config-device-records.v1", configs, "{" + configsJson + "}"),
            ("host-snapshot.v1", new HostSnapshot(state, configs), "{\"state\":{" + stateJson + "},\"config-devices\":{" + configsJson + "}}"),
            ("volume-activated.v1", new DmActors.Cluster.VolumeEvents.Activated(3, "n2", At), "{\"epoch\":3,\"node\":\"n2\"," + AtJson + "}"),
            ("volume-target-recorded.v1", new DmActors.Cluster.VolumeEvents.TargetRecorded("mirror disk0@n2 0,disk0@n3 0", "disk0@n2 0", At),
                "{\"key\":\"mirror disk0@n2 0,disk0@n3 0\",\"value\":\"disk0@n2 0\"," + AtJson + "}"),
            ("directory-reserved.v1", new DmActors.Cluster.DirectoryEvents.Reserved("a", "g0:v0", null, 0),
                "{\"name\":\"a\",\"entity-id\":\"g0:v0\",\"uuid\":null,\"minor\":0}"),
            ("directory-reserved.v1", new DmActors.Cluster.DirectoryEvents.Reserved("b", "g0:v4", "u-b", 4),
                "{\"name\":\"b\",\"entity-id\":\"g0:v4\",\"uuid\":\"u-b\",\"minor\":4}"),
            ("directory-renamed.v1", new DmActors.Cluster.DirectoryEvents.Renamed("a", "b"), "{\"name\":\"a\",\"new-name\":\"b\"}"),
            ("directory-uuid-set.v1", new DmActors.Cluster.DirectoryEvents.UuidSet("a", "u-2"), "{\"name\":\"a\",\"uuid\":\"u-2\"}"),
            ("directory-released.v1", new DmActors.Cluster.DirectoryEvents.Released("a"), "{\"name\":\"a\"}"),
            ("directory-placed.v1", new DmActors.Cluster.DirectoryEvents.Placed("g0", "n3"), "{\"shard\":\"g0\",\"node\":\"n3\"}"),
            ("directory-state.v1", DmActors.Cluster.DirectoryState.Empty
                    .Apply(new DmActors.Cluster.DirectoryEvents.Reserved("a", "g0:v0", null, 0))
                    .Apply(new DmActors.Cluster.DirectoryEvents.Reserved("b", "g0:v4", "u-b", 4))
                    .Apply(new DmActors.Cluster.DirectoryEvents.Placed("g0", "n3")),
                "{\"volumes\":{\"a\":{\"entity-id\":\"g0:v0\",\"uuid\":null,\"minor\":0},\"b\":{\"entity-id\":\"g0:v4\",\"uuid\":\"u-b\",\"minor\":4}}," +
                "\"shards\":{\"g0\":\"n3\"},\"next-minor\":5}"),
        ];
    }

    [Theory]
    [MemberData(nameof(Payloads))]
    public void Each_manifest_has_a_fixed_format_read_by_manifest_alone(string manifest)
    {
        foreach (var (_, value, json) in Samples().Where(s => s.Manifest == manifest))
        {
            Assert.Equal(manifest, Serializer.Manifest(value));
            Assert.Equal(json, Encoding.UTF8.GetString(Serializer.ToBinary(value)));
            // Neither the manifest nor the stored bytes name a CLR type: the manifest alone picks the reader.
            Assert.DoesNotContain(value.GetType().Name, json + manifest);
            Assert.DoesNotContain("DmActors", json + manifest);
            var read = Serializer.FromBinary(Encoding.UTF8.GetBytes(json), manifest);
            Assert.IsType(value.GetType(), read);
            if (value is DeviceEvents.DeviceEvent or HistoryEntry or ConfigDeviceRecord or DmActors.Cluster.VolumeEvents.Activated or DmActors.Cluster.DirectoryEvents.DirectoryEvent) Assert.Equal(value, read); // no collections inside
            Assert.Equal(json, Encoding.UTF8.GetString(Serializer.ToBinary(read)));
        }
    }

    [Fact]
    public void Times_keep_their_ticks_and_kind()
    {
        var local = new DateTime(2026, 3, 1, 8, 30, 0, DateTimeKind.Local).AddTicks(7);
        var read = (HistoryEntry)Serializer.FromBinary(Serializer.ToBinary(new HistoryEntry(local, "x")), "history-entry.v1");
        Assert.Equal(local.Ticks, read.At.Ticks);
        Assert.Equal(DateTimeKind.Local, read.At.Kind);
    }

    [Fact]
    public void A_field_added_later_is_ignored_and_a_missing_one_is_named()
    {
        var read = Serializer.FromBinary(Encoding.UTF8.GetBytes("{\"name\":\"a\"," + AtJson + ",\"noflush\":false,\"reason\":\"later field\"}"), "device-suspended.v1");
        Assert.Equal(new DeviceEvents.Suspended("a", At, false), read);
        var e = Assert.Throws<SerializationException>(() => Serializer.FromBinary(Encoding.UTF8.GetBytes("{\"name\":\"a\"," + AtJson + "}"), "device-suspended.v1"));
        Assert.Equal("journal entry 'device-suspended.v1' is unreadable: field 'noflush' is missing", e.Message);
    }

    [Fact]
    public void An_unknown_manifest_is_refused_by_name()
    {
        var e = Assert.Throws<SerializationException>(() => Serializer.FromBinary(Encoding.UTF8.GetBytes("{}"), "device-exploded.v1"));
        Assert.Equal("unknown journal entry 'device-exploded.v1' (written by a newer dmactors?)", e.Message);
    }
}
