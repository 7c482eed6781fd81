using System.Buffers;
using System.Collections.Immutable;
using System.Globalization;
using System.Runtime.Serialization;
using System.Text.Encodings.Web;
using System.Text.Json;
using Akka.Actor;
using Akka.Serialization;

namespace DmActors;

/// <summary>
/// How the journal stores events and snapshots (<see cref="IPersistedEvent"/>): each type under a manifest of its
/// own ("device-created.v1"), never a CLR name, as JSON written and read field by field here. A row names this
/// serializer by <see cref="SerializerId"/> and its type by the manifest, so renaming a record or a property, or
/// moving it to another namespace, changes nothing stored. JSON rather than Hyperion: Hyperion's payload names the
/// CLR type and its backing fields ("&lt;Minor&gt;k__BackingField") even under a stable manifest, so a rename would
/// still break reading; JSON is also readable with the sqlite3 shell.
///
/// Rules: a manifest and its field names never change and are never reused. A new field that old rows lack is read
/// with a default; a change old rows cannot be read into gets a new manifest (".v2") and the ".v1" reader stays.
///
/// Rows written before this serializer carry Hyperion's id (-5) and an empty manifest: Akka picks the serializer
/// by the id a row carries, so Hyperion stays registered (akka.hocon) and reads them. Hyperion finds their types by
/// CLR name, so before renaming a type those rows use (DeviceEvents.*, HostState, HostSnapshot, DeviceRecord,
/// HistoryEntry, ConfigDeviceRecord(s)), keep the old type under its old name and fields as an alias (an
/// [Obsolete] record) and turn it into the new one where DeviceJournal recovers. Tests/Persistence/Data holds
/// such journals; JournalFixtureTests fails until that is done.
/// </summary>
public sealed class JournalSerializer(ExtendedActorSystem system) : SerializerWithStringManifest(system)
{
    /// <summary>Stored in every row: never change it (dm's major number, outside Akka's reserved 0-100).</summary>
    public const int SerializerId = 253;

    public override int Identifier => SerializerId;

    public override string Manifest(object o) => CodecOf(o).Manifest;

    public override byte[] ToBinary(object obj)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var w = new Utf8JsonWriter(buffer, Options)) CodecOf(obj).Write(w, obj);
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Text as it is (tables, names), not escaped for HTML: the rows are read by the sqlite3 shell, not a browser.</summary>
    private static readonly JsonWriterOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public override object FromBinary(byte[] bytes, string manifest)
    {
        if (!ByManifest.TryGetValue(manifest, out var codec))
            throw new SerializationException($"unknown journal entry '{manifest}' (written by a newer dmactors?)");
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            return codec.Read(doc.RootElement);
        }
        catch (Exception e) when (e is JsonException or FormatException or InvalidOperationException or KeyNotFoundException)
        {
            throw new SerializationException($"journal entry '{manifest}' is unreadable: {e.Message}", e);
        }
    }

    /// <summary>The manifest of every stored type (the test asserts each one as a literal).</summary>
    public static IReadOnlyDictionary<Type, string> Manifests { get; } = Codecs().ToDictionary(c => c.Type, c => c.Manifest);

    private static readonly Dictionary<Type, Codec> ByType = Codecs().ToDictionary(c => c.Type);
    private static readonly Dictionary<string, Codec> ByManifest = Codecs().ToDictionary(c => c.Manifest, StringComparer.Ordinal);

    private static Codec CodecOf(object o) => ByType.TryGetValue(o.GetType(), out var c) ? c
        : throw new SerializationException($"{o.GetType()} has no journal manifest: add it to JournalSerializer");

    private static IEnumerable<Codec> Codecs() =>
    [
        Event<DeviceEvents.Created>("device-created.v1", (w, e) =>
        {
            w.WriteNumber("minor", e.Minor); WriteMode(w, e.Mode); w.WriteBoolean("read-only", e.ReadOnly); w.WriteString("uuid", e.Uuid);
        }, (j, name, at) => new(name, at, j.Int("minor"), j.Mode(), j.Bool("read-only"), j.OptionalString("uuid"))),
        Event<DeviceEvents.TableLoaded>("device-table-loaded.v1", (w, e) => { w.WriteString("table", e.Table); w.WriteBoolean("read-only", e.ReadOnly); },
            (j, name, at) => new(name, at, j.String("table"), j.Bool("read-only"))),
        Event<DeviceEvents.TableCleared>("device-table-cleared.v1", (_, _) => { }, (_, name, at) => new(name, at)),
        Event<DeviceEvents.Suspended>("device-suspended.v1", (w, e) => w.WriteBoolean("noflush", e.NoFlush), (j, name, at) => new(name, at, j.Bool("noflush"))),
        Event<DeviceEvents.Resumed>("device-resumed.v1", (_, _) => { }, (_, name, at) => new(name, at)),
        Event<DeviceEvents.Renamed>("device-renamed.v1", (w, e) => w.WriteString("new-name", e.NewName), (j, name, at) => new(name, at, j.String("new-name"))),
        Event<DeviceEvents.UuidSet>("device-uuid-set.v1", (w, e) => w.WriteString("uuid", e.Uuid), (j, name, at) => new(name, at, j.String("uuid"))),
        Event<DeviceEvents.Removed>("device-removed.v1", (_, _) => { }, (_, name, at) => new(name, at)),
        Event<DeviceEvents.ConfigDevice>("device-config-device.v1", (w, e) =>
        {
            w.WriteString("table", e.Table); w.WriteBoolean("read-only", e.ReadOnly); WriteMode(w, e.Mode);
        }, (j, name, at) => new(name, at, j.OptionalString("table"), j.Bool("read-only"), j.Mode())),
        new Codec<HistoryEntry>("history-entry.v1", WriteHistory, ReadHistory),
        new Codec<DeviceRecord>("device-record.v1", WriteDevice, ReadDevice),
        new Codec<HostState>("host-state.v1", WriteHostState, ReadHostState),
        new Codec<ConfigDeviceRecord>("config-device-record.v1", WriteConfigDevice, ReadConfigDevice),
        new Codec<ConfigDeviceRecords>("config-device-records.v1", WriteConfigDevices, ReadConfigDevices),
        new Codec<HostSnapshot>("host-snapshot.v1", (w, s) =>
        {
            w.WritePropertyName("state"); WriteObject(w, s.State, WriteHostState);
            w.WritePropertyName("config-devices"); WriteObject(w, s.ConfigDevices, WriteConfigDevices);
        }, j => new(ReadHostState(j.GetProperty("state")), ReadConfigDevices(j.GetProperty("config-devices")))),
        // Cluster: a volume entity's activations, the volume directory's names and placements.
        new Codec<Cluster.VolumeEvents.Activated>("volume-activated.v1", (w, a) =>
        {
            w.WriteNumber("epoch", a.Epoch); w.WriteString("node", a.Node); WriteTime(w, "at", a.At);
        }, j => new(j.Long("epoch"), j.String("node"), j.Time("at"))),
        new Codec<Cluster.VolumeEvents.TargetRecorded>("volume-target-recorded.v1", (w, t) =>
        {
            w.WriteString("key", t.Key); w.WriteString("value", t.Value); WriteTime(w, "at", t.At);
        }, j => new(j.String("key"), j.String("value"), j.Time("at"))),
        new Codec<Cluster.DirectoryEvents.Reserved>("directory-reserved.v1", (w, r) =>
        {
            w.WriteString("name", r.Name); w.WriteString("entity-id", r.EntityId); w.WriteString("uuid", r.Uuid); w.WriteNumber("minor", r.Minor);
        }, j => new(j.String("name"), j.String("entity-id"), j.OptionalString("uuid"), j.Int("minor"))),
        new Codec<Cluster.DirectoryEvents.Renamed>("directory-renamed.v1", (w, r) => { w.WriteString("name", r.Name); w.WriteString("new-name", r.NewName); },
            j => new(j.String("name"), j.String("new-name"))),
        new Codec<Cluster.DirectoryEvents.UuidSet>("directory-uuid-set.v1", (w, u) => { w.WriteString("name", u.Name); w.WriteString("uuid", u.Uuid); },
            j => new(j.String("name"), j.String("uuid"))),
        new Codec<Cluster.DirectoryEvents.Released>("directory-released.v1", (w, r) => w.WriteString("name", r.Name), j => new(j.String("name"))),
        new Codec<Cluster.DirectoryEvents.Placed>("directory-placed.v1", (w, p) => { w.WriteString("shard", p.Shard); w.WriteString("node", p.Node); },
            j => new(j.String("shard"), j.String("node"))),
        new Codec<Cluster.DirectoryState>("directory-state.v1", WriteDirectory, ReadDirectory), // the directory's snapshot
    ];

    /// <summary>A device event: its name and time, then its own fields.</summary>
    private static Codec Event<T>(string manifest, Action<Utf8JsonWriter, T> fields, Func<JsonElement, string, DateTime, T> read)
        where T : DeviceEvents.DeviceEvent =>
        new Codec<T>(manifest, (w, e) => { w.WriteString("name", e.Name); WriteTime(w, "at", e.At); fields(w, e); },
            j => read(j, j.String("name"), j.Time("at")));

    private static void WriteHistory(Utf8JsonWriter w, HistoryEntry h) { WriteTime(w, "at", h.At); w.WriteString("what", h.What); }
    private static HistoryEntry ReadHistory(JsonElement j) => new(j.Time("at"), j.String("what"));

    private static void WriteDevice(Utf8JsonWriter w, DeviceRecord d)
    {
        w.WriteString("name", d.Name); w.WriteNumber("minor", d.Minor); WriteMode(w, d.Mode);
        w.WriteBoolean("read-only", d.ReadOnly); w.WriteString("uuid", d.Uuid);
        w.WriteString("live", d.Live); w.WriteBoolean("live-read-only", d.LiveReadOnly);
        w.WriteString("inactive", d.Inactive); w.WriteBoolean("inactive-read-only", d.InactiveReadOnly);
        w.WriteBoolean("suspended", d.Suspended);
        w.WriteStartArray("history");
        foreach (var h in d.History) WriteObject(w, h, WriteHistory);
        w.WriteEndArray();
    }

    private static DeviceRecord ReadDevice(JsonElement j) => new(j.String("name"), j.Int("minor"), j.Mode(), j.Bool("read-only"),
        j.OptionalString("uuid"), j.OptionalString("live"), j.Bool("live-read-only"), j.OptionalString("inactive"),
        j.Bool("inactive-read-only"), j.Bool("suspended"), j.GetProperty("history").EnumerateArray().Select(ReadHistory).ToImmutableList());

    private static void WriteHostState(Utf8JsonWriter w, HostState s)
    {
        w.WriteStartObject("devices");
        foreach (var (name, d) in s.Devices) { w.WritePropertyName(name); WriteObject(w, d, WriteDevice); }
        w.WriteEndObject();
        w.WriteNumber("next-minor", s.NextMinor);
    }

    private static HostState ReadHostState(JsonElement j) => new(
        j.GetProperty("devices").EnumerateObject().Aggregate(HostState.Empty.Devices, (all, p) => all.Add(p.Name, ReadDevice(p.Value))),
        j.Int("next-minor"));

    private static void WriteDirectory(Utf8JsonWriter w, Cluster.DirectoryState s)
    {
        w.WriteStartObject("volumes");
        foreach (var (name, v) in s.Volumes)
        {
            w.WriteStartObject(name);
            w.WriteString("entity-id", v.EntityId); w.WriteString("uuid", v.Uuid); w.WriteNumber("minor", v.Minor);
            w.WriteEndObject();
        }
        w.WriteEndObject();
        w.WriteStartObject("shards");
        foreach (var (shard, node) in s.Shards) w.WriteString(shard, node);
        w.WriteEndObject();
        w.WriteNumber("next-minor", s.NextMinor);
    }

    private static Cluster.DirectoryState ReadDirectory(JsonElement j) => new(
        j.GetProperty("volumes").EnumerateObject().Aggregate(Cluster.DirectoryState.Empty.Volumes,
            (all, p) => all.Add(p.Name, new Cluster.VolumeEntry(p.Value.String("entity-id"), p.Value.OptionalString("uuid"), p.Value.Int("minor")))),
        j.GetProperty("shards").EnumerateObject().Aggregate(Cluster.DirectoryState.Empty.Shards, (all, p) => all.Add(p.Name, p.Value.GetString()!)),
        j.Int("next-minor"));

    private static void WriteConfigDevice(Utf8JsonWriter w, ConfigDeviceRecord c)
    {
        w.WriteString("table", c.Table); w.WriteBoolean("read-only", c.ReadOnly); WriteMode(w, c.Mode); w.WriteString("current", c.Current);
    }

    private static ConfigDeviceRecord ReadConfigDevice(JsonElement j) =>
        new(j.OptionalString("table"), j.Bool("read-only"), j.Mode(), j.OptionalString("current"));

    private static void WriteConfigDevices(Utf8JsonWriter w, ConfigDeviceRecords c)
    {
        w.WriteStartObject("by-name");
        foreach (var (name, d) in c.ByName) { w.WritePropertyName(name); WriteObject(w, d, WriteConfigDevice); }
        w.WriteEndObject();
    }

    private static ConfigDeviceRecords ReadConfigDevices(JsonElement j) => new(
        j.GetProperty("by-name").EnumerateObject().Aggregate(ConfigDeviceRecords.Empty.ByName, (all, p) => all.Add(p.Name, ReadConfigDevice(p.Value))));

    private static void WriteObject<T>(Utf8JsonWriter w, T value, Action<Utf8JsonWriter, T> fields)
    {
        w.WriteStartObject();
        fields(w, value);
        w.WriteEndObject();
    }

    /// <summary>Round-trip form ("O"): every tick and the kind (UTC times end in Z).</summary>
    private static void WriteTime(Utf8JsonWriter w, string key, DateTime t) => w.WriteString(key, t.ToString("O", CultureInfo.InvariantCulture));

    /// <summary>Barrier modes by their own names, so renaming the enum's members changes nothing stored.</summary>
    private static void WriteMode(Utf8JsonWriter w, BarrierMode mode) => w.WriteString("barrier-mode", mode switch
    {
        BarrierMode.Ordered => "ordered",
        BarrierMode.Flush => "flush",
        _ => throw new SerializationException($"barrier mode {mode} has no journal name"),
    });

    private abstract class Codec(Type type, string manifest)
    {
        public Type Type { get; } = type;
        public string Manifest { get; } = manifest;
        public abstract void Write(Utf8JsonWriter w, object value);
        public abstract object Read(JsonElement j);
    }

    private sealed class Codec<T>(string manifest, Action<Utf8JsonWriter, T> fields, Func<JsonElement, T> read) : Codec(typeof(T), manifest)
        where T : notnull
    {
        public override void Write(Utf8JsonWriter w, object value) => WriteObject(w, (T)value, fields);
        public override object Read(JsonElement j) => read(j);
    }
}

/// <summary>Field readers that name the missing or mistyped field.</summary>
internal static class JournalJson
{
    public static string String(this JsonElement j, string key) =>
        Field(j, key).GetString() ?? throw new FormatException($"field '{key}' is null");

    public static string? OptionalString(this JsonElement j, string key) => Field(j, key).GetString();

    public static int Int(this JsonElement j, string key) => Field(j, key).GetInt32();

    public static long Long(this JsonElement j, string key) => Field(j, key).GetInt64();

    public static bool Bool(this JsonElement j, string key) => Field(j, key).GetBoolean();

    public static DateTime Time(this JsonElement j, string key) =>
        DateTime.Parse(j.String(key), CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind);

    public static BarrierMode Mode(this JsonElement j) => j.String("barrier-mode") switch
    {
        "ordered" => BarrierMode.Ordered,
        "flush" => BarrierMode.Flush,
        var other => throw new FormatException($"barrier-mode '{other}' is not ordered or flush"),
    };

    private static JsonElement Field(JsonElement j, string key) =>
        j.TryGetProperty(key, out var v) ? v : throw new FormatException($"field '{key}' is missing");
}
