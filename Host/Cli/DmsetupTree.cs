using System.Text;

namespace DmActors.Host.Cli;

/// <summary>
/// `ls --tree`: the devices and what they use, drawn as dmsetup draws libdm's dependency tree (dmsetup.c
/// _display_tree, libdm-deptree.c). Devices no other device uses are the roots, in name order; under each, the
/// devices its live table uses in deps order; a device used twice is drawn under each user. `-o inverted` draws
/// it bottom-up. Lines are cut at the terminal's width less 3 (80 when not a terminal) unless `notrunc`.
/// </summary>
public sealed class DmsetupTree
{
    /// <summary>pstree's drawing characters as dmsetup takes them: empty, branch, vertical, last, single, first.</summary>
    public sealed record Symbols(string Empty, string Branch, string Vert, string Last, string Single, string First)
    {
        public static readonly Symbols Ascii = new("  ", "|-", "| ", "`-", "---", "-+-");
        public static readonly Symbols Utf = new("  ", "\u251c\u2500", "\u2502 ", "\u2514\u2500", "\u2500\u2500\u2500", "\u2500\u252c\u2500");
        public static readonly Symbols Vt100 = new("  ", "\x1b(0\x0ftq\x1b(B", "\x1b(0\x0fx\x1b(B ", "\x1b(0\x0fmq\x1b(B", "\x1b(0\x0fqqq\x1b(B", "\x1b(0\x0fqwq\x1b(B");
    }

    public Symbols Sym { get; private set; }
    public bool Device { get; private set; } = true;
    public bool BlkDevName { get; private set; }
    public bool Active { get; private set; }
    public bool Rw { get; private set; }
    public bool Open { get; private set; }
    public bool Uuid { get; private set; }
    public bool Compact { get; private set; }
    public bool Inverted { get; private set; }
    public bool Truncate { get; private set; } = true;
    /// <summary>table, status: taken; dmsetup draws nothing for them yet, but they turn compact off.</summary>
    private bool _targets;
    public int Width { get; set; } = 80;

    private DmsetupTree(Symbols sym) => Sym = sym;

    /// <summary>The tree options of `-o` (null: the defaults); null and dmsetup's error line for one it does not know.</summary>
    public static DmsetupTree? Parse(string? options, Symbols defaultSymbols, out string? error)
    {
        error = null;
        var t = new DmsetupTree(defaultSymbols);
        foreach (var o in (options ?? "").Split(',').Where(s => s.Length > 0))
        {
            switch (o)
            {
                case "active": t.Active = true; break;
                case "ascii": t.Sym = Symbols.Ascii; break;
                case "blkdevname": t.BlkDevName = true; break;
                case "compact": t.Compact = true; break;
                case "device": t.Device = true; break;
                case "inverted": t.Inverted = true; break;
                case "nodevice": t.Device = false; break;
                case "notrunc": t.Truncate = false; break;
                case "open": t.Open = true; break;
                case "rw": t.Rw = true; break;
                case "status" or "table": t._targets = true; break;
                case "utf": t.Sym = Symbols.Utf; break;
                case "uuid": t.Uuid = true; break;
                case "vt100": t.Sym = Symbols.Vt100; break;
                default: error = $"Tree options not recognised: {o}."; return null;
            }
        }
        return t;
    }

    /// <summary>UTF-8 drawing when the locale's character set is UTF-8 (as nl_langinfo(CODESET) says), else ASCII.</summary>
    public static Symbols LocaleSymbols(Func<string, string?> env)
    {
        var locale = new[] { "LC_ALL", "LC_CTYPE", "LANG" }.Select(env).FirstOrDefault(v => !string.IsNullOrEmpty(v)) ?? "";
        return locale.Contains("UTF-8", StringComparison.OrdinalIgnoreCase) || locale.Contains("utf8", StringComparison.OrdinalIgnoreCase)
            ? Symbols.Utf : Symbols.Ascii;
    }

    private bool PrintAttributes => Active || Rw || Open || Uuid;
    private bool PrintCompact => Compact && !PrintAttributes && !_targets;

    // ---- the dependency tree (libdm-deptree's uses/used_by lists, with the root node linked as they link it) ----

    private sealed class Node(Dm.DeviceInfo? info, Dm.Dependency? dep)
    {
        public readonly Dm.DeviceInfo? Info = info;
        public readonly Dm.Dependency? Dep = dep;
        public readonly List<Node> Uses = new(), UsedBy = new();
        public string Name => Info?.Name ?? (Dep is { Mapped: true } d ? d.Name : "");
        public int Major => Info?.Major ?? Dep!.Major;
        public int Minor => Info?.Minor ?? Dep!.Minor;
    }

    private static void Link(Node parent, Node child)
    {
        if (parent.Uses.Contains(child)) return;
        parent.Uses.Add(child);
        child.UsedBy.Add(parent);
    }

    private static void Unlink(Node parent, Node child)
    {
        parent.Uses.Remove(child);
        child.UsedBy.Remove(parent);
    }

    private int Children(Node n, Node root, bool inverted) =>
        inverted ? (root.Uses.Contains(n) ? 0 : n.UsedBy.Count) : (n.Uses.Contains(root) ? 0 : n.Uses.Count);

    /// <summary>The lines of the tree of <paramref name="devices"/> (in name order, as dm lists them).</summary>
    public IEnumerable<string> Draw(IReadOnlyList<Dm.DeviceInfo> devices)
    {
        var root = new Node(null, null);
        var nodes = new Dictionary<(int, int), Node>();
        var byDevNo = devices.ToDictionary(d => (d.Major, d.Minor));

        Node Add(Node parent, int major, int minor, Dm.Dependency? dep)
        {
            var isNew = !nodes.TryGetValue((major, minor), out var node);
            if (isNew) nodes[(major, minor)] = node = new Node(byDevNo.GetValueOrDefault((major, minor)), dep);
            // _link_tree_nodes: a device stays off the top level once something uses it.
            if (parent == root) { if (Children(node!, root, true) == 0) Link(root, node!); }
            else
            {
                Unlink(root, node!);
                Unlink(parent, root);
                Link(parent, node!);
            }
            if (!isNew) return node!;
            var deps = node!.Info?.Deps ?? [];
            if (deps.Count == 0) Link(node, root); // the bottom level
            foreach (var d in deps) Add(node, d.Major, d.Minor, d);
            return node;
        }

        foreach (var d in devices) Add(root, d.Major, d.Minor, null);
        var output = new Output(this);
        Walk(root, root, 0, output);
        return output.Lines;
    }

    private void Walk(Node node, Node root, int depth, Output o)
    {
        var children = (Inverted ? node.UsedBy : node.Uses).Where(c => c != root).ToList();
        for (var k = 0; k < children.Count; k++)
        {
            var child = children[k];
            var hasChildren = Children(child, root, Inverted) > 0;
            DrawNode(child, depth, k == children.Count - 1, hasChildren, o);
            if (hasChildren) Walk(child, root, depth + 1, o);
        }
    }

    // ---- drawing (dmsetup's _display_tree_node, _out_prefix) ----------------------------------------------------

    private readonly int[] _width = new int[100];
    private readonly bool[] _more = new bool[100];

    private void DrawNode(Node node, int depth, bool last, bool hasChildren, Output o)
    {
        if (depth + 2 > 100) return;
        var name = node.Name;
        if (name.Length == 0 && !Device && !BlkDevName) return;
        _more[depth] = !last;
        _width[depth] = 0;
        var firstOnLine = o.X == 1;
        if (!PrintCompact || firstOnLine) Prefix(depth, o);
        var offset = o.X;
        if (PrintCompact && !firstOnLine) o.Put(_more[depth] ? Sym.First : Sym.Single);
        o.Put(name);
        // A disk's node has the empty name, not none: dmsetup still puts the space before its number.
        if (BlkDevName) o.Put($" <{(node.Dep is { Mapped: false } d ? d.Name : DmsetupReport.BlkDevName(node.Minor))}>");
        if (Device) o.Put($" ({node.Major}:{node.Minor})");
        if (PrintAttributes && node.Info is { } i)
        {
            var attributes = new List<string>();
            if (Active) attributes.Add(i.Suspended ? "SUSPENDED" : "ACTIVE");
            if (Rw) attributes.Add(i.ReadOnly ? "RO" : "RW");
            if (Open) attributes.Add(i.OpenCount.ToString());
            if (Uuid) attributes.Add(i.Uuid ?? "");
            o.Put(" [" + string.Join(", ", attributes) + "]");
        }
        if (PrintCompact) _width[depth] = o.X - offset;
        if (!PrintCompact || !hasChildren) o.NewLine();
    }

    private void Prefix(int depth, Output o)
    {
        for (var d = 0; d < depth; d++)
        {
            o.Put(new string(' ', _width[d] + 1));
            o.Put(d == depth - 1 ? (!_more[depth] ? Sym.Last : Sym.Branch) : _more[d + 1] ? Sym.Vert : Sym.Empty);
        }
    }

    /// <summary>dmsetup's _out_char: counts columns, cuts a line longer than the width to width-1 characters and "...".</summary>
    private sealed class Output(DmsetupTree tree)
    {
        private readonly StringBuilder _line = new();
        private char _last;
        public int X { get; private set; } = 1;
        public List<string> Lines { get; } = new();

        public void Put(string s)
        {
            foreach (var c in s) Put(c);
        }

        private void Put(char c)
        {
            X++;
            if (!tree.Truncate) { _line.Append(c); return; }
            var w = tree.Width;
            if (X <= w) _line.Append(c);
            if (X == w + 1)
            {
                if (_last != 0 || c > 0x7f) _line.Append("...");
                else { _last = c; X--; }
            }
        }

        public void NewLine()
        {
            if (_last != 0 && X == tree.Width) _line.Append(_last);
            _last = '\0';
            Lines.Add(_line.ToString());
            _line.Clear();
            X = 1;
        }
    }
}
