using System.Net;
using Akka.Actor;
using Akka.Cluster;
using Akka.Cluster.Sharding;
using DmActors.Cluster;
using DmActors.Host.Cluster;
using DmActors.Host.Nbd;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Cluster;

/// <summary>
/// Three cluster nodes in the test process (like Akka's own sharding specs): actor systems of one name on loopback
/// port 0, joined to the first, each with its own memory disks, sharing one SQLite journal file. Disks of other
/// nodes are reached in process (<see cref="InProcessDisks"/>), and so are volumes running elsewhere
/// (<see cref="InProcessVolumes"/>): what is tested there is the control plane. With <c>nbd</c>, each node also
/// serves NBD on a loopback port and reaches volumes elsewhere over the real data channel (<see cref="RemoteVolumes"/>
/// over <see cref="NbdDisk"/>), as a host does.
/// </summary>
public sealed class TestCluster : IDisposable
{
    public const long DiskSectors = 16384;
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    /// <summary>How long an open that asked to be acknowledged (as the NBD server's do) stays unacknowledged before it is closed.</summary>
    public static readonly TimeSpan OpenAckTimeout = TimeSpan.FromSeconds(5);

    private readonly TempDir _dir = new("dmactors-cluster");
    private readonly List<Node> _nodes = new();
    private readonly List<Node> _dead = new();
    private readonly TimeSpan _rebalance;
    private readonly int? _directorySnapshotEvery;
    private readonly bool _nbd;
    private readonly string? _journal;
    private readonly TimeSpan[]? _tableRetries;
    private readonly TimeSpan _handOffTimeout;
    private readonly TimeSpan _rehomeAfterStart;
    private readonly TimeSpan _rehomeDelay;
    private readonly HashSet<string> _notJoined;

    /// <summary>The journal (and snapshot store) file all nodes share.</summary>
    public string JournalFile => _journal ?? _dir["journal.db"];

    public sealed class Node
    {
        public required string Name { get; init; }
        public required ActorSystem System { get; init; }
        public required DiskRegistry Disks { get; init; }
        public required ClusterNode Cluster { get; init; }
        /// <summary>Null on a node whose volume machinery is not started yet (<see cref="StartVolumes"/>).</summary>
        public IActorRef Manager { get; set; } = null!;
        public IActorRef Directory { get; set; } = null!;
        /// <summary>Its NBD server (with <c>nbd</c> only).</summary>
        public NbdServer? Nbd { get; set; }
        public volatile bool Alive = true;
        public Address Address => Akka.Cluster.Cluster.Get(System).SelfAddress;

        public object Command(object message) => Manager.Ask<object>(message, Timeout).GetAwaiter().GetResult();

        public Dm.Done Ok(object message) => Command(message) as Dm.Done ?? throw new Xunit.Sdk.XunitException($"{message} on {Name} failed: {Command(message)}");

        public Dm.Failed Fails(object message)
        {
            var reply = Command(message);
            return reply as Dm.Failed ?? throw new Xunit.Sdk.XunitException($"{message} on {Name} was expected to fail but answered {reply}");
        }

        public Dm.DeviceInfo Info(string name) => Command(new Dm.GetInfo(name)) as Dm.DeviceInfo ?? throw new Xunit.Sdk.XunitException($"no info for {name} on {Name}");

        public string[] Table(string name, bool inactive = false) => Ok(new Dm.GetTable(name, inactive)).Lines.ToArray();

        public Dm.Opened Open(string name) => Command(new Dm.Open(name)) as Dm.Opened ?? throw new Xunit.Sdk.XunitException($"cannot open {name} on {Name}");

        /// <summary>The volume's immutable entity id, from the directory.</summary>
        public string EntityId(string name) =>
            ((DirectoryCmd.Resolved)Directory.Ask<object>(new DirectoryCmd.Resolve("info", name), Timeout).GetAwaiter().GetResult()).EntityId;

        public string[] List() => ((Dm.DeviceList)Command(Dm.List.Instance)).Devices.Select(d => d.Name).ToArray();
    }

    /// <param name="journal">A journal file of an earlier cluster (a whole-cluster restart); else one of its own.</param>
    /// <param name="lateVolumes">Nodes that join as members but start their volume machinery (shard region,
    /// directory singleton manager, facade) only at <see cref="StartVolumes"/>: a region that registers late.</param>
    /// <param name="handOffTimeout">Akka's bound on a shard's handoff (<c>sharding.handoff-timeout</c>; default 20 s).</param>
    /// <param name="joinLater">Nodes that start (volume machinery too) but join only at <see cref="Join"/>.</param>
    /// <param name="rehomeAfterStart">The directory's grace period at its start (<see cref="ClusterNode.RehomeAfterStart"/>; default 3 s).</param>
    /// <param name="rehomeDelay">How long after a removal the directory re-places the node's groups (default 1 s).</param>
    /// <param name="writeBackCache">Each node's disk0 keeps answered writes in a cache until a flush; <see cref="Kill"/> loses it.</param>
    public TestCluster(int nodes = 3, TimeSpan? rebalance = null, int? directorySnapshotEvery = null, bool nbd = false,
        string? journal = null, IReadOnlyCollection<string>? lateVolumes = null, TimeSpan[]? tableRetries = null,
        TimeSpan? handOffTimeout = null, IReadOnlyCollection<string>? joinLater = null, TimeSpan? rehomeAfterStart = null,
        TimeSpan? rehomeDelay = null, bool writeBackCache = false)
    {
        _writeBackCache = writeBackCache;
        _rehomeDelay = rehomeDelay ?? TimeSpan.FromSeconds(1);
        _handOffTimeout = handOffTimeout ?? TimeSpan.FromSeconds(20);
        _rehomeAfterStart = rehomeAfterStart ?? TimeSpan.FromSeconds(3);
        _notJoined = joinLater?.ToHashSet() ?? new HashSet<string>();
        _nbd = nbd;
        _journal = journal;
        _tableRetries = tableRetries;
        _late = lateVolumes?.ToHashSet() ?? new HashSet<string>();
        var db = JournalFile;
        _rebalance = rebalance ?? TimeSpan.FromMilliseconds(500);
        _directorySnapshotEvery = directorySnapshotEvery;
        for (var i = 1; i <= nodes; i++) _nodes.Add(StartNode($"n{i}", db, _rebalance));
        // A node with its volumes late joins last: the youngest member, it never runs the directory singleton.
        var joining = _nodes.Where(n => !_notJoined.Contains(n.Name)).ToList();
        foreach (var n in joining.Where(n => !_late.Contains(n.Name))) Akka.Cluster.Cluster.Get(n.System).Join(_nodes[0].Address);
        Await(() => _nodes[0].System is var first && Akka.Cluster.Cluster.Get(first).State.Members.Count(m => m.Status == MemberStatus.Up) == joining.Count - _late.Count,
            "the members without late volumes up");
        foreach (var n in joining.Where(n => _late.Contains(n.Name))) Akka.Cluster.Cluster.Get(n.System).Join(_nodes[0].Address);
        Await(() => joining.All(n => Akka.Cluster.Cluster.Get(n.System).State.Members.Count(m => m.Status == MemberStatus.Up) == joining.Count),
            "all members up");
    }

    /// <summary>A node of <c>joinLater</c> joins now (through the first node); returns once every member sees it up.</summary>
    public void Join(string name)
    {
        Assert.True(_notJoined.Remove(name), $"{name} was not left out of the cluster");
        var address = this[name].Address;
        Akka.Cluster.Cluster.Get(this[name].System).Join(_nodes[0].Address);
        Await(() => _nodes.Where(n => !_notJoined.Contains(n.Name)).All(n =>
            Akka.Cluster.Cluster.Get(n.System).State.Members.Any(m => m.Address == address && m.Status == MemberStatus.Up)), $"{name} up");
    }

    /// <summary>Every node stops at once, the first one (the directory's) first, none leaving: a whole-cluster crash.</summary>
    public void Halt()
    {
        foreach (var n in _nodes.Where(n => n.Alive))
        {
            n.Alive = false;
            n.Nbd?.StopAsync().Wait(Timeout);
            Assert.True(n.System.Terminate().Wait(Timeout), $"{n.Name} did not terminate");
        }
    }

    /// <summary>Every disk open: the volume's entity id, the node that opened it, the epoch.</summary>
    public readonly List<(string Volume, string By, long Epoch)> Epochs = new();

    public long LatestEpoch(string entityId)
    {
        lock (Epochs) return Epochs.Where(e => e.Volume == entityId).Select(e => e.Epoch).DefaultIfEmpty(0).Max();
    }

    /// <summary>Sees (and may hold up or refuse) every disk open: the volume's entity id, the node that opens it, the disk's node.</summary>
    public Action<string, string, string>? DiskOpening { get; set; }

    /// <summary>Sees (and may hold up or wrap) every device a node gets for a volume on another node.</summary>
    public Func<string, IBlockDevice, IBlockDevice>? RemoteOpening { get; set; }

    public Node this[string name] => _nodes.Single(n => n.Name == name);
    public IReadOnlyList<Node> Nodes => _nodes;

    private Node StartNode(string name, string db, TimeSpan rebalance, DiskRegistry? keptDisks = null)
    {
        var config = ClusterDefaults.Hocon(name, stableAfter: TimeSpan.FromSeconds(2), rebalanceInterval: rebalance) + "\n" +
            JournalConfig.Sqlite(db) + $$"""

            akka.loglevel = WARNING
            akka.persistence.journal.sql.recovery-event-timeout = 30s
            akka.coordinated-shutdown.run-by-actor-system-terminate = off
            akka.remote.dot-netty.tcp { hostname = "127.0.0.1", port = 0 }
            akka.cluster {
              failure-detector.heartbeat-interval = 500ms
              failure-detector.acceptable-heartbeat-pause = 2s
              down-removal-margin = 1s
              gossip-interval = 300ms
              leader-actions-interval = 300ms
              sharding.handoff-timeout = {{(long)_handOffTimeout.TotalSeconds}}s
              singleton.hand-over-retry-interval = 500ms
            }
            akka.cluster.distributed-data.gossip-interval = 300ms
            """;
        // The coordinator writes its state to every node by default (a majority plus 3, at least 5): a node whose
        // region has not started has no sharding replicator yet, so a majority of the others must do.
        if (_late.Count > 0)
            config += "\nakka.cluster.sharding { distributed-data.majority-min-cap = 0, coordinator-state { write-majority-plus = 0, read-majority-plus = 0 } }";
        var system = ActorSystem.Create("dmactors", Engine.AkkaConfig(config));
        var disks = keptDisks ?? new DiskRegistry();
        if (keptDisks == null && _writeBackCache) disks.Add(new CachedDisk(new MemoryDisk("disk0", DiskSectors, disks.NextDevNo())));
        else if (keptDisks == null) disks.AddMemory("disk0", DiskSectors);
        IActorRef? manager = null;
        IRemoteVolumes remote = _nbd
            ? new RemoteVolumes((disk, target) => NbdDisk.Connect(disk, "254:0", target), NbdEndpoint, () => manager!, Timeout)
            : new InProcessVolumes(this);
        var node = new ClusterNode(new InProcessDisks(name, this), remote, WakeInterval: TimeSpan.FromMilliseconds(300),
            RehomeAfterStart: _rehomeAfterStart, RehomeDelay: _rehomeDelay, AskTimeout: Timeout,
            DirectorySnapshotEvery: _directorySnapshotEvery, OpenAckTimeout: OpenAckTimeout, TableRetries: _tableRetries);
        var n = new Node { Name = name, System = system, Disks = disks, Cluster = node };
        if (!_late.Contains(name)) StartVolumes(n, m => manager = m);
        else
        {
            // Running, with sharding's distributed data (the coordinator writes its state to every node), but no
            // shard region registered yet: only a proxy, which the coordinator never gives a shard to.
            ClusterSharding.Get(system).StartProxy(ClusterDefaults.VolumeType, null, new VolumeMessageExtractor());
            Akka.DistributedData.DistributedData.Get(system);
            _starters[name] = () => StartVolumes(n, m => manager = m);
        }
        return n;
    }

    private readonly HashSet<string> _late;
    private readonly bool _writeBackCache;
    private readonly Dictionary<string, Action> _starters = new();

    /// <summary>Starts the volume machinery of a node named in <c>lateVolumes</c>: its shard region registers now.</summary>
    public void StartVolumes(string name)
    {
        Assert.True(_starters.Remove(name, out var start), $"{name} was not started without its volumes");
        start!();
    }

    private void StartVolumes(Node n, Action<IActorRef> manager)
    {
        var started = ClusterVolumes.Start(n.System, n.Cluster);
        manager(started.Manager);
        n.Manager = started.Manager;
        n.Directory = started.Directory;
        if (_nbd)
        {
            n.Nbd = new NbdServer(n.System, started.Manager, new NbdServerOptions { Tcp = new IPEndPoint(IPAddress.Loopback, 0) });
            n.Nbd.StartAsync().GetAwaiter().GetResult();
        }
    }

    private EndPoint NbdEndpoint(string node) =>
        _nodes.FirstOrDefault(n => n.Name == node && n.Alive)?.Nbd?.TcpEndpoint ?? throw new TargetException($"node {node} serves no NBD");

    /// <summary>The node dies: downed by a survivor, its actor system terminated (its disks gone with it; what their caches held is lost).</summary>
    public void Kill(string name)
    {
        var victim = this[name];
        var survivor = _nodes.First(n => n.Alive && n != victim);
        var address = victim.Address;
        victim.Alive = false;
        victim.Nbd?.StopAsync().Wait(Timeout);
        // Like kill -9: gone at once, no leaving, no handoff (coordinated shutdown does not run on terminate);
        // then a survivor downs it, as the split brain resolver would after stable-after.
        Assert.True(victim.System.Terminate().Wait(Timeout), $"{name} did not terminate");
        foreach (var d in victim.Disks.All) d.PowerCut();
        Akka.Cluster.Cluster.Get(survivor.System).Down(address);
        Await(() => _nodes.Where(n => n.Alive).All(n => Akka.Cluster.Cluster.Get(n.System).State.Members.All(m => m.Address != address)),
            $"{name} removed");
    }

    /// <summary>
    /// A dead node comes back under its name: a new actor system (new address) joins, with empty disks or, with
    /// <paramref name="keepDisks"/>, the disks it had (a host restarted over its disk files).
    /// </summary>
    public Node Restart(string name, bool keepDisks = false)
    {
        var old = this[name];
        Assert.False(old.Alive);
        var node = StartNode(name, JournalFile, _rebalance, keepDisks ? old.Disks : null);
        if (!keepDisks) _dead.Add(old);
        _nodes[_nodes.IndexOf(old)] = node;
        Akka.Cluster.Cluster.Get(node.System).Join(_nodes.First(n => n.Alive && n != node).Address);
        Await(() => _nodes.Where(n => n.Alive).All(n => Akka.Cluster.Cluster.Get(n.System).State.Members.Count(m => m.Status == MemberStatus.Up) == _nodes.Count(x => x.Alive)),
            $"{name} up again");
        return node;
    }

    public static void Await(Func<bool> condition, string what, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? Timeout);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"timed out waiting for: {what}");
            Thread.Sleep(100);
        }
    }

    /// <summary>Waits until <paramref name="probe"/> answers without throwing and <paramref name="until"/> holds; returns the answer.</summary>
    public static T Eventually<T>(Func<T> probe, Func<T, bool> until, string what, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? Timeout);
        Exception? last = null;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                var v = probe();
                if (until(v)) return v;
                last = new Exception($"last answer: {v}");
            }
            catch (Exception e) { last = e; }
            Thread.Sleep(200);
        }
        throw new TimeoutException($"timed out waiting for: {what} ({last?.Message})");
    }

    public void Dispose()
    {
        foreach (var n in _nodes.Where(n => n.Alive)) n.Nbd?.StopAsync().Wait(Timeout);
        foreach (var n in _nodes.Where(n => n.Alive)) Akka.Cluster.Cluster.Get(n.System).Leave(n.Address);
        Task.WaitAll(_nodes.Select(n => n.System.Terminate()).ToArray(), Timeout);
        foreach (var n in _nodes.Concat(_dead)) n.Disks.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _dir.Dispose();
    }

    /// <summary>The disks of every node, reached in process; a dead node's are unreachable.</summary>
    private sealed class InProcessDisks(string self, TestCluster cluster) : IClusterDisks
    {
        public string Self => self;

        public IBlockDevice Open(string disk, string node, string volumeId, long epoch)
        {
            lock (cluster.Epochs) cluster.Epochs.Add((volumeId, self, epoch));
            cluster.DiskOpening?.Invoke(volumeId, self, node);
            var owner = cluster._nodes.FirstOrDefault(n => n.Name == node) ?? throw new TargetException($"no cluster member named {node}");
            if (!owner.Alive) throw new DeviceUnreachableException($"{disk}@{node}: node {node} is not reachable");
            // As ClusterDisks: a node that this one does not see up (a returning node still joining) is not a member yet.
            if (node != self && cluster._nodes.FirstOrDefault(n => n.Name == self && n.Alive) is { } opener
                && !Akka.Cluster.Cluster.Get(opener.System).State.Members.Any(m => m.Status == MemberStatus.Up && m.HasRole(ClusterDefaults.RolePrefix + node)))
                throw new DeviceUnreachableException($"{disk}@{node}: node {node} is not a member of the cluster");
            return owner.Disks.Find(disk) ?? throw new TargetException($"no disk {disk} on {node}");
        }
    }

    /// <summary>A volume on another node, reached in process: the owner's device itself (the lead's is an NBD client).</summary>
    private sealed class InProcessVolumes(TestCluster cluster) : IRemoteVolumes
    {
        public IBlockDevice Open(string volumeName, string ownerNode)
        {
            var owner = cluster._nodes.FirstOrDefault(n => n.Name == ownerNode && n.Alive) ?? throw new TargetException($"node {ownerNode} is not reachable");
            IBlockDevice device = owner.Cluster.Volumes.Handle(volumeName) ?? throw new TargetException($"{volumeName} does not run on {ownerNode}");
            return cluster.RemoteOpening?.Invoke(volumeName, device) ?? device;
        }
    }
}
