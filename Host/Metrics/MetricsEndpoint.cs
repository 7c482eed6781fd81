using System.Net;
using System.Net.Sockets;
using Prometheus;

namespace DmActors.Host.Metrics;

/// <summary>
/// The Prometheus endpoint (`dmactors.metrics.listen`, off by default): prometheus-net's standalone MetricServer on
/// its own registry. The devices' counters are read at each scrape from the <see cref="IoStatsBoard"/> (no actor is
/// asked, nothing on the IO path waits); NBD's from the server's connections; the journal's write latency is
/// observed as changes are recorded.
/// </summary>
public sealed class MetricsEndpoint : IDisposable
{
    private readonly MetricServer _server;
    private readonly DeviceMetrics _devices;

    private MetricsEndpoint(MetricServer server, DeviceMetrics devices, IPEndPoint at)
    {
        _server = server; _devices = devices; Endpoint = at;
    }

    /// <summary>Where it listens (the real port when 0 was asked for).</summary>
    public IPEndPoint Endpoint { get; }
    public string Url => $"http://{(Endpoint.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{Endpoint.Address}]" : Endpoint.Address)}:{Endpoint.Port}/metrics";

    /// <param name="nbd">The NBD server, once there is one (read at each scrape).</param>
    /// <param name="clusterManager">In a cluster: this node's cluster device manager, asked for the volumes per member.</param>
    public static MetricsEndpoint Start(IPEndPoint listen, Akka.Actor.ActorSystem system, Func<Nbd.NbdServer?> nbd,
        Akka.Actor.IActorRef? clusterManager = null)
    {
        var registry = Prometheus.Metrics.NewCustomRegistry();
        var factory = Prometheus.Metrics.WithCustomRegistry(registry);
        var devices = new DeviceMetrics(factory, IoStatsBoard.Get(system));

        var connections = factory.CreateGauge("dmactors_nbd_connections", "NBD connections being served.");
        var bytesIn = factory.CreateCounter("dmactors_nbd_received_bytes_total", "Bytes received over NBD (requests and write payloads).");
        var bytesOut = factory.CreateCounter("dmactors_nbd_sent_bytes_total", "Bytes sent over NBD (replies and read data).");
        var journal = factory.CreateHistogram("dmactors_journal_write_seconds", "Time to record one change in the journal, write to acknowledgement.",
            new HistogramConfiguration { Buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] });
        JournalTiming.Get(system).Listener = t => journal.Observe(t.TotalSeconds);

        registry.AddBeforeCollectCallback(() =>
        {
            devices.Update();
            if (nbd() is not { } server) return;
            connections.Set(server.ConnectionCount);
            var (i, o) = server.Traffic;
            bytesIn.IncTo(i);
            bytesOut.IncTo(o);
        });

        if (clusterManager != null) registry.AddBeforeCollectCallback(new ClusterMetrics(factory, clusterManager).UpdateAsync);

        // HttpListener cannot take port 0: a free port is found first (the listener takes it right after).
        var port = listen.Port != 0 ? listen.Port : FreePort(listen.Address);
        var host = listen.Address.Equals(IPAddress.Any) || listen.Address.Equals(IPAddress.IPv6Any) ? "+"
            : listen.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{listen.Address}]" : listen.Address.ToString();
        var metricServer = new MetricServer(host, port, "metrics/", registry);
        metricServer.Start();
        return new MetricsEndpoint(metricServer, devices, new IPEndPoint(listen.Address, port));
    }

    private static int FreePort(IPAddress address)
    {
        using var probe = new TcpListener(address, 0);
        probe.Start();
        var port = ((IPEndPoint)probe.LocalEndpoint).Port;
        probe.Stop();
        return port;
    }

    public void Dispose() => _server.Dispose();
}
