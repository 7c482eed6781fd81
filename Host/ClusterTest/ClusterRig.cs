using System.Net;
using System.Text.RegularExpressions;
using DmActors.Host.CommandLine;
using Npgsql;

namespace DmActors.Host.ClusterTest;

/// <summary>
/// The cluster under test: N `dmactors serve` processes on loopback over one fresh PostgreSQL database, each with
/// one write-back-cache disk. Commands go to it as `dmactors dmsetup --config NODE ...`, run in this process.
/// </summary>
public sealed partial class ClusterRig : IAsyncDisposable
{
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);
    private readonly Random _pick;

    private ClusterRig(ServeNode[] nodes, Random pick) { Nodes = nodes; _pick = pick; }

    public ServeNode[] Nodes { get; }
    public ServeNode this[string name] => Nodes.Single(n => n.Name == name);
    public IEnumerable<ServeNode> Serving => Nodes.Where(n => n.Serving);

    public static async Task<ClusterRig> StartAsync(ClusterTestOptions o, string root, TextWriter log)
    {
        var journal = NewDatabase(o.JournalServer!);
        var nodes = Enumerable.Range(1, o.Nodes)
            .Select(i => new ServeNode($"n{i}", Path.Combine(root, $"n{i}"), o.DiskMiB, journal, o.AckAfterFirstLeg)).ToArray();
        var rig = new ClusterRig(nodes, new Random(o.Seed));
        try
        {
            await nodes[0].StartAsync(null, StartTimeout);
            await Task.WhenAll(nodes.Skip(1).Select(n => n.StartAsync(nodes[0].ControlPort, StartTimeout)));
            log.WriteLine($"clustertest: {o.Nodes} nodes up ({string.Join(", ", nodes.Select(n => $"{n.Name} nbd {n.NbdPort}"))}), journal {Describe(journal)}, in {root}");
            return rig;
        }
        catch
        {
            await rig.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts a node that is down again, joining through a node that serves.</summary>
    public async Task RestartAsync(ServeNode node)
    {
        if (node.Paused) node.Continue();
        node.Kill();
        // Until the cluster has removed the dead incarnation, a new one with its name is refused: try again.
        var until = DateTime.UtcNow + StartTimeout;
        while (true)
        {
            var through = Serving.FirstOrDefault(n => n != node) ?? throw new ClusterTestException($"no node serves to rejoin {node.Name} through");
            try { await node.StartAsync(through.ControlPort, StartTimeout); return; }
            catch (ClusterTestException) when (DateTime.UtcNow < until && node.LastStartRefused) { await Task.Delay(1000); }
        }
    }

    /// <summary>An NBD endpoint of a serving node: <paramref name="preferred"/> while it serves, else any other.</summary>
    public EndPoint Endpoint(Func<ServeNode?> preferred)
    {
        var p = preferred();
        var node = p is { Serving: true } ? p : Serving.OrderBy(_ => _pick.Next()).FirstOrDefault();
        return new IPEndPoint(IPAddress.Loopback, node?.NbdPort ?? 1);
    }

    /// <summary>`dmactors dmsetup --config NODE args...` through the first serving node: exit code and output.</summary>
    public async Task<(int Code, string Out)> Dmsetup(params string[] args)
    {
        var through = Serving.FirstOrDefault() ?? throw new ClusterTestException("no node serves");
        return await Run(["dmsetup", "--config", through.ConfigFile, "--timeout", "30", .. args]);
    }

    public async Task<(int Code, string Out)> Move(string volume, string node)
    {
        var through = Serving.FirstOrDefault() ?? throw new ClusterTestException("no node serves");
        return await Run(["cluster", "move", volume, node, "--config", through.ConfigFile, "--timeout", "120"]);
    }

    private static async Task<(int, string)> Run(string[] args)
    {
        var output = new StringWriter();
        var code = await CommandRunner.RunAsync(Program.Root(), args, output, output);
        return (code, output.ToString());
    }

    /// <summary>Runs a command that must succeed.</summary>
    public async Task<string> Must(params string[] args)
    {
        var (code, text) = await Dmsetup(args);
        return code == 0 ? text : throw new ClusterTestException($"dmsetup {string.Join(' ', args)}: exit {code}: {text.Trim()}");
    }

    /// <summary>The node that owns <paramref name="volume"/> now, or null while `info` cannot tell.</summary>
    public async Task<string?> OwnerAsync(string volume)
    {
        var (code, text) = await Dmsetup("info", volume);
        return code == 0 && OwnerLine().Match(text) is { Success: true } m ? m.Groups[1].Value : null;
    }

    /// <summary>True when `info` says the volume is active with no error.</summary>
    public async Task<bool> ServesAsync(string volume)
    {
        var (code, text) = await Dmsetup("info", volume);
        return code == 0 && text.Contains("ACTIVE") && !text.Contains("Error:");
    }

    /// <summary>The mirror's in-sync regions, regions and leg health, or null.</summary>
    public async Task<(long InSync, long Regions, string Health)?> MirrorStatusAsync(string volume)
    {
        var (code, text) = await Dmsetup("status", volume);
        if (code != 0 || MirrorStatus().Match(text) is not { Success: true } m) return null;
        return (long.Parse(m.Groups[1].Value), long.Parse(m.Groups[2].Value), m.Groups[3].Value);
    }

    [GeneratedRegex(@"Node:\s+(\S+)")]
    private static partial Regex OwnerLine();

    [GeneratedRegex(@" mirror \d+ (?:\S+ )+?(\d+)/(\d+) 1 ([A-Z]+) ")]
    private static partial Regex MirrorStatus();

    /// <summary>A fresh, empty database on the server, so no earlier run's volumes are replayed.</summary>
    private static string NewDatabase(string server)
    {
        try { return Configuration.JournalDatabase.Create(server, "clustertest_"); }
        catch (Exception e) when (e is NpgsqlException or System.Net.Sockets.SocketException or ArgumentException)
        {
            throw new ClusterTestException($"journal postgres ({Describe(server)}): cannot create a database: {e.Message}");
        }
    }

    private static string Describe(string cs)
    {
        var b = new NpgsqlConnectionStringBuilder(cs);
        return $"host={b.Host} port={b.Port} db={b.Database}";
    }

    public ValueTask DisposeAsync()
    {
        foreach (var n in Nodes) n.Dispose();
        return ValueTask.CompletedTask;
    }
}
