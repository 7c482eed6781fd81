using System.Collections.Concurrent;
using System.Net;
using Akka.Actor;
using Akka.Cluster;
using DmActors.Cluster;
using DmActors.Host.Configuration;

namespace DmActors.Host.Cluster;

/// <summary>
/// How this node opens <c>DISK@NODE</c> for a volume it owns: its own disks behind their fence (the claim of the
/// volume's epoch is recorded before IO may start), other nodes' disks over NBD as internal exports, whose node
/// claims the fence the same way. Where a node's NBD server listens it learns from the node's hello.
/// </summary>
public sealed class ClusterDisks : IClusterDisks
{
    private readonly ActorSystem _system;
    private readonly DiskRegistry _disks;
    private readonly FenceTable _fences;
    private readonly string _token;
    private readonly NbdDiskOptions _options;
    private readonly ConcurrentDictionary<string, EndPoint> _endpoints = new(StringComparer.Ordinal);
    /// <summary>Every open connection to another node's disk, and that node (dropped when it is removed).</summary>
    private readonly ConcurrentDictionary<ClosesWithLastUser, string> _toDisks = new();
    private volatile string? _revoked;

    public ClusterDisks(ActorSystem system, string self, DiskRegistry disks, FenceTable fences, string token, NbdDiskOptions? options = null)
    {
        _system = system; Self = self; _disks = disks; _fences = fences; _token = token; _options = options ?? new NbdDiskOptions { ConnectTimeout = ConnectTimeout };
    }

    public string Self { get; }

    /// <summary>
    /// A live node answers at once; a loaded one (several hosts on a small machine) can take seconds. A dead node
    /// on a LAN refuses at once too, so a generous bound costs nothing there.
    /// </summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(10);

    public IBlockDevice Open(string disk, string node, string volumeId, long epoch)
    {
        if (_revoked is { } why) throw new TargetException($"{disk}@{node}: {why}");
        if (node == Self)
        {
            var local = _disks.Find(disk) ?? throw new TargetException($"{disk}@{node}: node {node} has no disk {disk}");
            try { return new FencedDisk(local, _fences.Claim(disk, volumeId, epoch), epoch); }
            // A claim refused, or one that could not be recorded or drain the older epoch's IO in time: the table fails.
            catch (Exception e) when (e is FencedException or TimeoutException or IOException or UnauthorizedAccessException)
            {
                throw new TargetException($"{disk}@{node}: {e.Message}");
            }
        }
        // Not a member (joining, downed, removed): a mirror rebuilt over it may start without that leg.
        if (!IsMember(node))
            throw new DeviceUnreachableException($"{disk}@{node}: node {node} is not a member of the cluster");
        var export = new InternalExport(_token, disk, volumeId, epoch).Format();
        var connection = (ClosesWithLastUser)Connect($"{disk}@{node}", new NbdDiskTarget(() => Endpoint(node, fresh: true), export));
        connection.Disposed = () => _toDisks.TryRemove(connection, out _);
        _toDisks[connection] = node;
        // Removed while this connected: nobody would drop it, and it would hold its requests for a node that is gone.
        if (NodeCard.Members(_system).All(m => m.Node != node) || _revoked != null)
        {
            connection.Dispose();
            throw new TargetException($"{disk}@{node}: {_revoked ?? $"node {node} was removed from the cluster"}");
        }
        return connection;
    }

    /// <summary>A member that serves its disks: up (or leaving); not one still joining, nor one downed or gone.</summary>
    private bool IsMember(string node) => Akka.Cluster.Cluster.Get(_system).State.Members.Any(m => ClusterDefaults.NodeOf(m.Roles) == node
        && m.Status is MemberStatus.Up or MemberStatus.WeaklyUp or MemberStatus.Leaving or MemberStatus.Exiting);

    /// <summary>
    /// Member <paramref name="node"/> was removed (downed or left): the connections to its disks are dropped, so
    /// their bios, held for a reconnect, and every later one are answered with an error at once instead of after
    /// <see cref="NbdDiskOptions.ReconnectFor"/>. The volumes over them say why (their entities watch removals too)
    /// and build new connections when the node is a member again. Connections to volumes (proxies) are not
    /// dropped: they follow their volume to its new owner. Blocks while connections close (off any actor).
    /// </summary>
    public int Drop(string node, string reason)
    {
        var dropped = 0;
        foreach (var (connection, at) in _toDisks)
            if (at == node && _toDisks.TryRemove(connection, out _)) { connection.Abort(reason); dropped++; }
        return dropped;
    }

    /// <summary>
    /// This node was removed from the cluster: every connection to another node's disk is dropped (its bios fail
    /// at once) and no disk opens any more, so nothing this node still holds reaches a disk elsewhere.
    /// </summary>
    public int Revoke(string reason)
    {
        _revoked = reason;
        var dropped = 0;
        foreach (var (connection, _) in _toDisks)
            if (_toDisks.TryRemove(connection, out _)) { connection.Abort(reason); dropped++; }
        return dropped;
    }

    /// <summary>An NBD client to another node, closed (its connection too) when the last table using it lets go.</summary>
    public IBlockDevice Connect(string name, NbdDiskTarget target)
    {
        var where = target.Endpoint(); // an unknown node or one without NBD is refused before any connect
        var first = true;
        try
        {
            return new ClosesWithLastUser(NbdDisk.Connect(name, _disks.NextDevNo(), target with
            {
                // The first connect reuses the endpoint just found; reconnects ask again (the node may have moved).
                Endpoint = () => { if (first) { first = false; return where; } return target.Endpoint(); },
            }, _options));
        }
        catch (TargetException e) when (e.Message.Contains(InternalExport.Prefix + _token + "/", StringComparison.Ordinal))
        {
            // An internal export's name carries the cluster's secret: it never goes into a message.
            throw new TargetException(e.Message.Replace(InternalExport.Prefix + _token + "/", InternalExport.Prefix + "-/", StringComparison.Ordinal));
        }
    }

    /// <summary>
    /// A device that is disposed when its last user closes it: tables open what they use and close it when they
    /// are destroyed, so a connection to another node lives exactly as long as the tables over it.
    /// </summary>
    private sealed class ClosesWithLastUser(Disk inner) : DelegatingBlockDevice(inner), IDisposable
    {
        private int _users;
        private int _disposed;
        public Action? Disposed { get; set; }
        public override void Open() { Interlocked.Increment(ref _users); inner.Open(); }
        public override void Close()
        {
            inner.Close();
            if (Interlocked.Decrement(ref _users) == 0) Dispose();
        }

        /// <summary>Also for a holder that never opened it (a proxy whose table was refused): once only.</summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            Disposed?.Invoke();
            inner.Dispose();
        }

        /// <summary>The node is gone: held and later bios fail now, naming why; the tables over it still close it as usual.</summary>
        public void Abort(string reason)
        {
            (inner as NbdDisk)?.Abort(reason); // first, so nothing waits out a reconnect or a request timeout
            Dispose();
        }
    }

    /// <summary>The NBD endpoint of member <paramref name="node"/> (asked again when <paramref name="fresh"/>: it may have restarted elsewhere).</summary>
    public EndPoint Endpoint(string node, bool fresh = false)
    {
        if (!fresh && _endpoints.TryGetValue(node, out var known)) return known;
        var member = NodeCard.Members(_system).FirstOrDefault(m => m.Node == node)
            ?? throw new TargetException($"no cluster member named {node}");
        var address = Address.Parse(member.Address);
        var (reply, problem) = ClusterJoin.HelloAsync(_system, new SeedNode(address.Host!, address.Port!.Value)).GetAwaiter().GetResult();
        if (reply?.Nbd is not { } nbd || !IPEndPoint.TryParse(nbd, out var endpoint))
            throw new TargetException($"node {node} has no NBD endpoint{(problem != null ? $" ({problem})" : " (it does not serve NBD)")}");
        return _endpoints[node] = endpoint;
    }
}
