namespace DmActors.Tests.Support;

/// <summary>
/// Three `dmactors serve` processes on loopback joined in one cluster over one PostgreSQL database: n1 starts
/// the cluster, n2 and n3 join through it. Each node has its own data directory with a 64 MiB disk0. Failure
/// timings are short (stable-after 2 s), so a killed node is downed and its volumes move within seconds.
/// </summary>
public sealed class ClusterOfHosts : IAsyncDisposable
{
    private readonly List<TempDir> _dirs = new();
    private readonly string _journal;

    private ClusterOfHosts(string journal) => _journal = journal;

    public HostProcess[] Nodes { get; } = new HostProcess[3];
    public HostProcess this[int n] => Nodes[n - 1];

    /// <summary>The Akka settings every node gets: shorter failure detection than a production cluster.</summary>
    public const string FastFailover = "akka.cluster.failure-detector.heartbeat-interval = 500ms";

    public static async Task<ClusterOfHosts> StartAsync()
    {
        var cluster = new ClusterOfHosts(Postgres.NewDatabase());
        try
        {
            cluster.Nodes[0] = await cluster.StartNodeAsync(1, seed: null);
            var starts = new[] { 2, 3 }.Select(n => cluster.StartNodeAsync(n, cluster.Nodes[0].ControlPort)).ToArray();
            var rest = await Task.WhenAll(starts);
            cluster.Nodes[1] = rest[0];
            cluster.Nodes[2] = rest[1];
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>The cluster section of node <paramref name="n"/>'s configuration.</summary>
    public string Extra(int n, int? seed) => $$"""
        devices = []
        journal.postgres = "{{_journal}}"
        cluster {
          node = n{{n}}
          secret = "test-secret"
          stable-after = 2s
          heartbeat-pause = 2s
          rebalance-interval = 1s
          seed-nodes = [{{(seed is { } p ? $"\"127.0.0.1:{p}\"" : "")}}]
        }
        """;

    private async Task<HostProcess> StartNodeAsync(int n, int? seed)
    {
        var dir = new TempDir($"dmactors-n{n}-");
        lock (_dirs) _dirs.Add(dir);
        return await HostProcess.StartInAsync(dir.Path, Extra(n, seed), FastFailover);
    }

    /// <summary>Starts node <paramref name="n"/> again over its data directory (after a kill), joining through a live node.</summary>
    public async Task RestartAsync(int n, int through)
    {
        var dir = _dirs.Single(d => Path.GetFileName(d.Path).StartsWith($"dmactors-n{n}-"));
        Nodes[n - 1].Dispose();
        Nodes[n - 1] = await HostProcess.StartInAsync(dir.Path, Extra(n, this[through].ControlPort), FastFailover);
    }

    /// <summary>
    /// Stops every node at once (SIGTERM: each leaves the cluster and shuts down) and starts them all again over
    /// their data directories: n1 starts the cluster, n2 and n3 join through it, as at the first start.
    /// </summary>
    public async Task RestartAllAsync()
    {
        var codes = await Task.WhenAll(Nodes.Select(n => n.TerminateAsync()));
        Xunit.Assert.All(codes, code => Xunit.Assert.Equal(0, code));
        foreach (var node in Nodes) node.Dispose();
        string Dir(int n) => _dirs.Single(d => Path.GetFileName(d.Path).StartsWith($"dmactors-n{n}-")).Path;
        Nodes[0] = await HostProcess.StartInAsync(Dir(1), Extra(1, seed: null), FastFailover);
        // Each started node is in Nodes at once, so a failed start of the other one leaves none running after Dispose.
        await Task.WhenAll(new[] { 2, 3 }.Select(async n => Nodes[n - 1] = await HostProcess.StartInAsync(Dir(n), Extra(n, Nodes[0].ControlPort), FastFailover)));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes) node?.Dispose();
        foreach (var dir in _dirs) dir.Dispose();
        await Task.CompletedTask;
    }
}
