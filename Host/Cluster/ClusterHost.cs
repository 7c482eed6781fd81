using Akka;
using Akka.Actor;
using Akka.Event;
using DmActors.Cluster;
using DmActors.Host.Configuration;

namespace DmActors.Host.Cluster;

/// <summary>
/// The cluster side of a host: the volume manager at /user/devices (sharded volumes over the shared journal),
/// the fences of this node's disks, and how this node reaches other nodes' disks and volumes (NBD).
/// </summary>
public sealed class ClusterHost
{
    private readonly ActorSystem _system;
    private readonly ClusterSpec _spec;
    private readonly ClusterDisks _disks;
    private readonly TaskCompletionSource<string> _removed = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private ClusterHost(ActorSystem system, ClusterSpec spec, IActorRef manager, FenceTable fences, Nbd.DiskExports exports, ClusterDisks disks)
    {
        _system = system; _spec = spec; Manager = manager; Fences = fences; Exports = exports; _disks = disks;
    }

    /// <summary>
    /// Completes (with why) when the cluster downed this node: it has stopped writing for anyone, and the host
    /// must stop serving and exit, because its volumes now run on other nodes.
    /// </summary>
    public Task<string> Removed => _removed.Task;

    public IActorRef Manager { get; }

    /// <summary>The epochs that claimed this node's disks (data-dir/fences.json): an older owner's IO is refused.</summary>
    public FenceTable Fences { get; }

    /// <summary>This node's disks as internal NBD exports, for the owners of volumes over them.</summary>
    public Nbd.DiskExports Exports { get; }

    /// <summary>The fence file in a data directory.</summary>
    public static string FencePath(string dataDir) => Path.Combine(dataDir, "fences.json");

    public static ClusterHost Start(ActorSystem system, DiskRegistry disks, HostSettings s, ClusterSpec spec)
    {
        FenceTable fences;
        try { fences = new FenceTable(FencePath(s.DataDir)); }
        catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{s.Source}: fences {FencePath(s.DataDir)}: {e.Message}");
        }
        var exports = new Nbd.DiskExports(system, disks, fences, spec.Token);
        // With NBD TLS on, the data channel to other nodes' disks uses it too (their servers may require it).
        NbdDiskOptions? channel = s.NbdTls is { } tls
            ? new NbdDiskOptions { ConnectTimeout = ClusterDisks.ConnectTimeout, Tls = () => tls.ClientOptions("dmactors-node") }
            : null;
        // No ca-cert.pem: a start error now, not at the first remote IO.
        try { _ = s.NbdTls?.ClientOptions("check"); }
        catch (InvalidOperationException e) { throw new ConfigException($"{s.Source}: {e.Message}"); }
        var clusterDisks = new ClusterDisks(system, spec.Node, disks, fences, spec.Token, channel);
        IActorRef? manager = null;
        var node = new ClusterNode(clusterDisks, new RemoteVolumes(clusterDisks, () => manager!, s.AskTimeout),
            new DeviceManager.Options(), AskTimeout: s.AskTimeout, RehomeAfterStart: spec.RehomeAfterStart);
        var volumes = ClusterVolumes.Start(system, node, HostConfig.ManagerName);
        manager = volumes.Manager;
        _ = PruneFencesAsync(system, volumes.Directory, fences, s.AskTimeout);
        system.ActorOf(RemovedMembers.Props(clusterDisks), "removed-members");
        var host = new ClusterHost(system, spec, manager, fences, exports, clusterDisks);
        // A node downed by the cluster (it was paused or cut off, and the others took its volumes over) runs the
        // coordinated shutdown (run-coordinated-shutdown-when-down): its first phase ends every write it holds.
        var shutdown = CoordinatedShutdown.Get(system);
        // Dropping connections waits for their threads: off the caller's thread.
        shutdown.AddTask(CoordinatedShutdown.PhaseBeforeServiceUnbind, "dmactors-downed", () => Task.Run(() =>
        {
            if (shutdown.ShutdownReason is CoordinatedShutdown.ClusterDowningReason) host.StopWriting("this node was removed from the cluster");
            return Done.Instance;
        }));
        // A node that wakes after the others removed it may never hear that it was downed: they quarantined it and
        // drop its gossip, and its own resolver, seeing them unreachable, may down *them* and keep serving alone.
        // Being quarantined by a peer is final until this process restarts, so it stops as a downed node does.
        system.ActorOf(Props.Create(() => new QuarantineWatch(host)), "quarantine-watch");
        return host;
    }

    /// <summary>
    /// Once the directory answers (after the join), the fences of volumes the cluster no longer has are dropped from
    /// the fence file (<see cref="FenceTable.Prune"/>): once per start, so the file does not grow for ever.
    /// </summary>
    private static async Task PruneFencesAsync(ActorSystem system, IActorRef directory, FenceTable fences, TimeSpan timeout)
    {
        for (var attempt = 0; attempt < 20 && !system.WhenTerminated.IsCompleted; attempt++)
        {
            object reply;
            try { reply = await directory.Ask<object>(DirectoryCmd.List.Instance, timeout); }
            catch (AskTimeoutException) { continue; } // not a member yet, or the directory is moving: ask again
            catch (Exception) { return; } // the node is stopping: the next start prunes
            if (reply is not DirectoryCmd.Listing listing) return;
            try
            {
                // The file write blocks: off the caller's thread.
                var gone = await Task.Run(() => fences.Prune(listing.Volumes.Select(v => v.EntityId).ToHashSet()));
                if (gone.Count > 0)
                    system.Log.Info("fences of {0} removed volume(s) dropped: {1}", gone.Count, string.Join(", ", gone));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                system.Log.Warning("fences of removed volumes not dropped: {0}", e.Message);
            }
            return;
        }
    }

    /// <summary>Stops the node's writing when a peer quarantined it (no association with that peer comes back).</summary>
    private sealed class QuarantineWatch : ReceiveActor
    {
        public QuarantineWatch(ClusterHost host)
        {
            Receive<Akka.Remote.ThisActorSystemQuarantinedEvent>(e =>
            {
                Context.System.Log.Warning("{0} quarantined this node: it was removed from the cluster", e.RemoteAddress);
                // The same words as a downing: it is one, heard from a peer. Dropping connections waits for threads.
                Task.Run(() => host.StopWriting("this node was removed from the cluster"));
            });
        }

        protected override void PreStart() =>
            Context.System.EventStream.Subscribe(Self, typeof(Akka.Remote.ThisActorSystemQuarantinedEvent));
    }

    /// <summary>
    /// From now on no bio of this node reaches a disk: its own disks' fences refuse every epoch (and every claim),
    /// connections to other nodes' disks are dropped and none opens, so what its devices and NBD connections still
    /// hold is answered with an error. Then <see cref="Removed"/> completes.
    /// </summary>
    public void StopWriting(string reason)
    {
        if (_removed.Task.IsCompleted) return;
        Fences.Revoke(reason);
        var dropped = _disks.Revoke(reason);
        _system.Log.Warning("{0}: fences revoked, {1} connection(s) to other nodes' disks dropped", reason, dropped);
        _removed.TrySetResult(reason);
    }

    /// <summary>
    /// The configuration's devices in a cluster: each one the cluster does not have yet is created on this node;
    /// one that exists (here or elsewhere) is left as it is.
    /// </summary>
    public async Task CreateDevicesAsync(HostSettings s, TextWriter log)
    {
        foreach (var d in s.Devices)
        {
            if (await Manager.Ask<object>(new Dm.GetInfo(d.Name), s.AskTimeout) is Dm.DeviceInfo info)
            {
                if (info.Node != null && info.Node != _spec.Node)
                    log.WriteLine($"dmactors: config device '{d.Name}' left as it is: the cluster has it on node {info.Node}");
                continue;
            }
            var reply = await Manager.Ask<object>(new Dm.Create(d.Name, string.IsNullOrWhiteSpace(d.Table) ? null : d.Table,
                d.ReadOnly, null, d.Mode, _spec.Node), s.AskTimeout);
            if (reply is Dm.Failed f)
                throw new ConfigException($"{s.Source}: device {d.Name}: {(f.Reason.Length > 0 ? f.Reason : f.Error)}");
        }
    }

    /// <summary>Leaves the cluster (its volumes start on the survivors), waiting at most <paramref name="timeout"/>.</summary>
    public async Task LeaveAsync(TimeSpan timeout)
    {
        var cluster = Akka.Cluster.Cluster.Get(_system);
        // A node that never became a member (its start failed) has nothing to leave.
        if (cluster.IsTerminated || cluster.SelfMember.Status is not (Akka.Cluster.MemberStatus.Up or Akka.Cluster.MemberStatus.Joining
            or Akka.Cluster.MemberStatus.WeaklyUp)) return;
        var removed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        cluster.RegisterOnMemberRemoved(() => removed.TrySetResult());
        cluster.Leave(cluster.SelfAddress);
        await Task.WhenAny(removed.Task, Task.Delay(timeout));
    }
}
