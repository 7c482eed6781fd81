using System.Collections;
using System.Collections.Immutable;
using System.Reflection;
using Akka.Actor;
using Akka.Serialization;
using DmActors;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>
/// Every message that may cross a process boundary (IControlMessage) and everything the journal stores
/// (IPersistedEvent) round-trips through the serializer the host binds for it: Hyperion for control messages, the
/// journal's own serializer for what the journal stores.
/// Instances are built by reflection so that a new message type is covered without touching this test.
/// </summary>
public sealed class SerializationTests : Akka.TestKit.Xunit2.TestKit
{
    public SerializationTests() : base(Akka.Configuration.ConfigurationFactory.ParseString("akka.actor.provider = local").WithFallback(DmActors.Host.Configuration.HostConfig.Embedded())) { }

    public static IEnumerable<object[]> Types() =>
        new[] { typeof(IControlMessage).Assembly, typeof(DmActors.Host.DmHost).Assembly }.SelectMany(a => a.GetTypes())
            .Where(t => !t.IsAbstract && !t.IsInterface && (typeof(IControlMessage).IsAssignableFrom(t) || typeof(IPersistedEvent).IsAssignableFrom(t)))
            .OrderBy(t => t.FullName)
            .Select(t => new object[] { t });

    [Theory]
    [MemberData(nameof(Types))]
    public void Round_trips_through_the_serializer_bound_for_it(Type type)
    {
        var original = Sample(type);
        var serializer = Sys.Serialization.FindSerializerFor(original);
        // Control messages: Hyperion. The journal's entries: stable manifests (JournalSerializerTests).
        if (original is IPersistedEvent) Assert.IsType<JournalSerializer>(serializer);
        else Assert.IsType<Akka.Serialization.HyperionSerializer>(serializer);
        var bytes = serializer.ToBinary(original);
        // As the journal reads a row: by the serializer id and manifest stored with it.
        var copy = Sys.Serialization.Deserialize(bytes, serializer.Identifier, Akka.Serialization.Serialization.ManifestFor(serializer, original));
        Assert.IsType(type, copy);
        Assert.Equal(Describe(original), Describe(copy));
    }

    [Fact]
    public void Every_message_type_is_covered()
    {
        var names = Types().Select(t => ((Type)t[0]).Name).ToList();
        Assert.Contains(nameof(Dm.Create), names);
        Assert.Contains(nameof(Dm.DeviceList), names);
        Assert.Contains(nameof(DmActors.Host.Crash.PowerCut), names);
        Assert.Contains(nameof(DeviceEvents.TableLoaded), names);
        Assert.Contains(nameof(HostState), names);
        Assert.True(names.Count >= 30, $"only {names.Count} types found");
    }

    /// <summary>A value-by-value description (records print collections as type names, so walk them).</summary>
    private static string Describe(object? o) => o switch
    {
        null => "null",
        string s => $"\"{s}\"",
        IActorRef a => a.Path.ToString(),
        IDictionary d => "{" + string.Join(",", d.Keys.Cast<object>().Select(k => $"{Describe(k)}:{Describe(d[k])}")) + "}",
        IEnumerable e => "[" + string.Join(",", e.Cast<object>().Select(Describe)) + "]",
        _ when o.GetType().IsPrimitive || o is Enum || o is DateTime || o is decimal => o.ToString()!,
        _ => o.GetType().Name + "(" + string.Join(",", o.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.GetIndexParameters().Length == 0 && p.Name != "EqualityContract")
            .Select(p => $"{p.Name}={Describe(p.GetValue(o))}")) + ")",
    };

    private object Sample(Type type)
    {
        var field = type.GetField("Instance", BindingFlags.Public | BindingFlags.Static);
        if (field?.GetValue(null) is { } singleton) return singleton;
        var ctor = type.GetConstructors().OrderByDescending(c => c.GetParameters().Length).First();
        return ctor.Invoke(ctor.GetParameters().Select((p, i) => Value(p.ParameterType, i)).ToArray());
    }

    private object? Value(Type t, int i)
    {
        if (t == typeof(string)) return $"v{i}";
        if (t == typeof(int)) return 10 + i;
        if (t == typeof(long)) return 1000L + i;
        if (t == typeof(bool)) return i % 2 == 0;
        if (t == typeof(DateTime)) return new DateTime(2026, 11, 24, 12, 0, i, DateTimeKind.Utc);
        if (t.IsEnum) return Enum.GetValues(t).GetValue(Enum.GetValues(t).Length - 1);
        if (t == typeof(string[])) return new[] { "a", $"b{i}" };
        if (t == typeof(IReadOnlyList<string>)) return new[] { "line one", $"line {i}" };
        if (t == typeof(IActorRef)) return TestActor;
        if (Nullable.GetUnderlyingType(t) is { } inner) return Value(inner, i);
        if (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(IReadOnlyList<>) && t.GetGenericArguments()[0] is var item)
        {
            var list = Array.CreateInstance(item, 1);
            list.SetValue(Value(item, i), 0);
            return list;
        }
        if (t == typeof(ImmutableList<HistoryEntry>)) return ImmutableList.Create(new HistoryEntry(new DateTime(2026, 1, 1), "created"));
        if (t == typeof(ImmutableSortedDictionary<string, DeviceRecord>))
            return ImmutableSortedDictionary.Create<string, DeviceRecord>(StringComparer.Ordinal).Add("demo", (DeviceRecord)Sample(typeof(DeviceRecord)));
        if (t == typeof(ImmutableSortedDictionary<string, ConfigDeviceRecord>))
            return ImmutableSortedDictionary.Create<string, ConfigDeviceRecord>(StringComparer.Ordinal).Add("demo", (ConfigDeviceRecord)Sample(typeof(ConfigDeviceRecord)));
        if (t == typeof(ImmutableSortedDictionary<string, DmActors.Cluster.VolumeEntry>))
            return ImmutableSortedDictionary.Create<string, DmActors.Cluster.VolumeEntry>(StringComparer.Ordinal).Add("demo", new("g0:v0", "u-1", 0));
        if (t == typeof(ImmutableSortedDictionary<string, string>))
            return ImmutableSortedDictionary.Create<string, string>(StringComparer.Ordinal).Add("g0", "n1");
        if (!t.IsAbstract && t.GetConstructors().Length > 0) return Sample(t);
        throw new NotSupportedException($"no sample value for {t}");
    }
}
