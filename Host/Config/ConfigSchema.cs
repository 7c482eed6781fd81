namespace DmActors.Host.Configuration;

/// <summary>
/// The keys the host knows, taken from the embedded akka.hocon: every setting of the <c>dmactors</c> section is
/// written there with its default, and the keys of the first <c>disks</c> and <c>devices</c> entries are the keys
/// of every entry. A key in a file that the default does not have is a typo (`write-back-cahce`) that would
/// otherwise be dropped without a word. The <c>akka</c> section belongs to Akka and is not checked.
/// </summary>
public sealed class ConfigSchema
{
    private readonly List<string> _order = new();
    private readonly Dictionary<string, ConfigSchema> _keys = new(StringComparer.Ordinal);
    /// <summary>For a list: what each element holds.</summary>
    private ConfigSchema? _element;
    /// <summary>Any key goes (Akka's section).</summary>
    private bool _open;

    private bool IsValue => _keys.Count == 0 && _element == null && !_open;

    public static ConfigSchema From(HoconObject defaults)
    {
        var root = new ConfigSchema();
        root.Merge(defaults);
        if (root._keys.TryGetValue("akka", out var akka)) akka._open = true;
        return root;
    }

    /// <summary>The first key of <paramref name="file"/> the defaults do not know, and what to say about it; null if none.</summary>
    public (HoconKey Key, string Problem)? FirstUnknown(HoconObject file) => Check(file, "");

    private (HoconKey, string)? Check(HoconObject obj, string where)
    {
        foreach (var field in obj.Fields)
        {
            var node = this;
            var path = where;
            foreach (var key in field.Path)
            {
                if (node._open || node.IsValue) { node = null; break; } // a wrong type is for the value checks to name
                if (!node._keys.TryGetValue(key.Name, out var next))
                    return (key, path.Length == 0
                        ? $"unknown top-level key '{key.Name}' (known: {string.Join(", ", node._order)})"
                        : $"unknown key '{key.Name}' in {path} (known: {string.Join(", ", node._order)})");
                node = next;
                path = path.Length == 0 ? key.Name : $"{path}.{key.Name}";
            }
            if (node == null || node._open) continue;
            switch (field.Value)
            {
                case HoconObject o when node._keys.Count > 0:
                    if (node.Check(o, path) is { } inner) return inner;
                    break;
                case HoconArray a when node._element != null:
                    for (var i = 0; i < a.Items.Count; i++)
                        if (a.Items[i] is HoconObject item && node._element.Check(item, $"{path}[{i}]") is { } bad) return bad;
                    break;
            }
        }
        return null;
    }

    private void Merge(HoconObject obj)
    {
        foreach (var field in obj.Fields)
        {
            var node = this;
            foreach (var key in field.Path) node = node.Child(key.Name);
            switch (field.Value)
            {
                case HoconObject o: node.Merge(o); break;
                case HoconArray a:
                    node._element ??= new ConfigSchema();
                    foreach (var item in a.Items.OfType<HoconObject>()) node._element.Merge(item);
                    break;
            }
        }
    }

    private ConfigSchema Child(string name)
    {
        if (_keys.TryGetValue(name, out var child)) return child;
        _order.Add(name);
        return _keys[name] = new ConfigSchema();
    }
}
