using Akka.Actor;
using DmActors.Cluster;
using Prometheus;

namespace DmActors.Host.Metrics;

/// <summary>
/// In a cluster: how many volumes each member owns (`dmactors_cluster_volumes{node}`), from `cluster status`'s answer.
/// Asked of the local cluster manager at each scrape, off the IO path, with a short timeout: a scrape whose answer
/// does not come keeps the last counts rather than waiting.
/// </summary>
public sealed class ClusterMetrics(MetricFactory factory, IActorRef manager)
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(2);
    private readonly Gauge _volumes = factory.CreateGauge("dmactors_cluster_volumes", "Volumes placed on each cluster member.", ["node"]);
    private HashSet<string> _shown = new(StringComparer.Ordinal);

    public async Task UpdateAsync(CancellationToken cancel)
    {
        try
        {
            if (await manager.Ask<object>(ClusterCmd.Status.Instance, AskTimeout, cancel) is ClusterCmd.StatusReply reply) Update(reply);
        }
        catch (Exception e) when (e is AskTimeoutException or TaskCanceledException or OperationCanceledException) { }
    }

    /// <summary>Sets each member's count; members that left lose their series.</summary>
    public void Update(ClusterCmd.StatusReply reply)
    {
        var now = new HashSet<string>(StringComparer.Ordinal);
        foreach (var m in reply.Members)
        {
            now.Add(m.Node);
            _volumes.WithLabels(m.Node).Set(m.Volumes.Count);
        }
        foreach (var gone in _shown.Where(n => !now.Contains(n))) _volumes.RemoveLabelled(gone);
        _shown = now;
    }
}
