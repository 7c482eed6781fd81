using Akka.Actor;
using DmActors.Cluster;
using DmActors.Host.Configuration;

namespace DmActors.Host.Cluster;

/// <summary>
/// A node's way into its cluster. Before joining it says hello to each seed's control gate: a seed of another
/// cluster, or a member that already has this node's name at another address, stops the start with a line that
/// says so (Akka would join either without a word). The first seed alone may start a new cluster, and only when
/// no other seed answers: nodes started together then form one cluster, not several.
/// </summary>
public static class ClusterJoin
{
    private static readonly TimeSpan HelloTimeout = TimeSpan.FromSeconds(3);

    public static async Task JoinAsync(ActorSystem system, HostSettings s, ClusterSpec c, TextWriter log)
    {
        var cluster = Akka.Cluster.Cluster.Get(system);
        var self = cluster.SelfAddress;
        var seeds = c.Seeds.Where(seed => !IsSelf(seed, s)).ToList();
        var mayStart = c.Seeds.Count == 0 || IsSelf(c.Seeds[0], s);
        var deadline = DateTime.UtcNow + c.JoinTimeout;
        var silent = new Dictionary<SeedNode, string>();
        while (true)
        {
            var members = new List<Address>();
            foreach (var seed in seeds)
            {
                var reply = await HelloAsync(system, seed);
                if (reply.Problem != null) { silent[seed] = reply.Problem; continue; }
                var hello = reply.Reply!;
                if (hello.Cluster != c.Name)
                    throw new ConfigException(hello.Cluster == null
                        ? $"{s.Source}: seed node {seed} is a single host, not a member of cluster '{c.Name}'"
                        : $"{s.Source}: seed node {seed} belongs to cluster '{hello.Cluster}', not '{c.Name}' (dmactors.cluster.name)");
                if (hello.Members.FirstOrDefault(m => m.Node == c.Node && !SameEndpoint(m.Address, self)) is { } taken)
                    throw new ConfigException($"{s.Source}: node name {c.Node} is taken by the member at {taken.Address} (dmactors.cluster.node)");
                members.Add(Address.Parse(HostSettings.ControlPathAt(seed.Host, seed.Port).Replace($"/user/{HostConfig.ControlName}", "")));
            }
            if (members.Count > 0)
            {
                log.WriteLine($"dmactors: joining cluster {c.Name} through {string.Join(", ", members)}");
                cluster.JoinSeedNodes(members);
                break;
            }
            if (mayStart)
            {
                log.WriteLine($"dmactors: starting cluster {c.Name} (no other seed node answered)");
                cluster.Join(self);
                break;
            }
            if (DateTime.UtcNow > deadline)
                throw new ConfigException($"{s.Source}: cannot join cluster {c.Name}: no seed node answered within {c.JoinTimeout.TotalSeconds:0}s " +
                    $"({string.Join("; ", silent.Select(p => $"{p.Key}: {p.Value}"))})");
            await Task.Delay(TimeSpan.FromMilliseconds(500));
        }
        var up = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        cluster.RegisterOnMemberUp(() => up.TrySetResult());
        var left = deadline - DateTime.UtcNow;
        if (await Task.WhenAny(up.Task, Task.Delay(left > TimeSpan.FromSeconds(5) ? left : TimeSpan.FromSeconds(5))) != up.Task)
            throw new ConfigException($"{s.Source}: cannot join cluster {c.Name}: not a member after {c.JoinTimeout.TotalSeconds:0}s (is another node's join-timeout or name different?)");
        log.WriteLine($"dmactors: node {c.Node} is up in cluster {c.Name} at {self}");
    }

    /// <summary>A seed's hello, or why there is none.</summary>
    public static async Task<(ClusterCmd.HelloReply? Reply, string? Problem)> HelloAsync(ActorSystem system, SeedNode seed)
    {
        try
        {
            var gate = system.ActorSelection(HostSettings.ControlPathAt(seed.Host, seed.Port));
            return await gate.Ask<object>(ClusterCmd.Hello.Instance, HelloTimeout) is ClusterCmd.HelloReply r
                ? (r, null) : (null, "not a dmactors host");
        }
        catch (AskTimeoutException) { return (null, $"no answer within {HelloTimeout.TotalSeconds:0}s"); }
        catch (Exception e) { return (null, e.Message); }
    }

    private static bool IsSelf(SeedNode seed, HostSettings s) =>
        seed.Port == s.ControlPort && (seed.Host == s.ControlHost || ResolvesTo(seed.Host, s.ControlHost));

    private static bool ResolvesTo(string host, string address)
    {
        try { return global::System.Net.Dns.GetHostAddresses(host).Any(a => a.ToString() == address); }
        catch (global::System.Net.Sockets.SocketException) { return false; }
    }

    private static bool SameEndpoint(string address, Address self) =>
        Address.Parse(address) is var a && a.Host == self.Host && a.Port == self.Port;
}
