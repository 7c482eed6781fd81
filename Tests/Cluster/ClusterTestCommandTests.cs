using System.Text.RegularExpressions;
using DmActors.Host;
using DmActors.Host.ClusterTest;
using DmActors.Host.CommandLine;
using DmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace DmActors.Tests.Cluster;

/// <summary>
/// `dmactors clustertest` end to end: three `dmactors serve` processes over PostgreSQL, a mirrored volume with legs
/// on two nodes and its log on the third, node kills under IO over NBD, and the checks. Short runs for CI; long
/// runs are the command itself (README, "Breaking it on purpose").
/// </summary>
[Collection("cluster")]
public sealed class ClusterTestCommandTests(ITestOutputHelper output)
{
    [Fact]
    public async Task A_short_clustertest_of_owner_kills_finds_every_durable_write_and_equal_legs()
    {
        var (code, text) = await RunAsync("--seed", "1", "--trials", "2", "--faults-per-trial", "1", "--faults", "kill-owner");
        Assert.Matches(@"clustertest: 2 trials, 2 faults \(2 node kills\), [1-9]\d* writes checked, 0 violations \(seed 1\)", text);
        Assert.Equal(0, code);
    }

    /// <summary>
    /// Found by this tool: after kill -9 of the node holding the first leg (a `delay` volume over that node's disk),
    /// the leg's volume is rebuilt over a new connection while the old one, with the mirror's unflushed writes, is
    /// gone; every flush through it failed, so the resync after `return_leg` failed (S) for ever.
    /// </summary>
    [Fact]
    public async Task A_short_clustertest_of_a_stacked_legs_node_kill_finds_every_durable_write_and_equal_legs()
    {
        var (code, text) = await RunAsync("--seed", "3", "--trials", "1", "--faults-per-trial", "1", "--faults", "kill-leg");
        Assert.Matches(@"clustertest: 1 trials, 1 faults \(1 node kills\), [1-9]\d* writes checked, 0 violations \(seed 3\)", text);
        Assert.Equal(0, code);
    }

    /// <summary>
    /// Found by this tool: a mirror with a leg directly on another node's disk, rebuilt over a new connection after
    /// that node was killed twice, said every region was in sync but failed every flush (the old connection, gone,
    /// was flushed with each one).
    /// </summary>
    [Fact]
    public async Task A_short_clustertest_of_a_direct_legs_node_kills_finds_every_durable_write_and_equal_legs()
    {
        var (code, text) = await RunAsync("--seed", "3", "--trials", "3", "--faults-per-trial", "2", "--faults", "kill-two,kill-leg",
            "--leg-delay-ms", "0", "--trial", "1", "--steps", "1,2");
        Assert.Matches(@"clustertest: 1 trials, 2 faults \(2 node kills\), [1-9]\d* writes checked, 0 violations \(seed 3\)", text);
        Assert.Equal(0, code);
    }

    /// <summary>
    /// With the first leg behind a stacked `delay`: kill -9 of the stacked leg's node, then kill -9 of the owner,
    /// restart, and kill -9 of the stacked leg's node while the owner's own leg is resynced from it. This tool found
    /// durable writes lost there (a flush answered Ok by the stale leg alone, and a resync source never flushed).
    /// </summary>
    [Fact]
    public async Task A_short_clustertest_of_leg_node_kills_finds_every_durable_write_and_equal_legs()
    {
        var (code, text) = await RunAsync("--seed", "3", "--trials", "1", "--faults-per-trial", "2", "--faults", "kill-leg,kill-two");
        Assert.Matches(@"clustertest: 1 trials, 2 faults \(\d+ node kills\), [1-9]\d* writes checked, 0 violations \(seed 3\)", text);
        Assert.Equal(0, code);
    }

    /// <summary>
    /// The owner stopped for 8 s is downed by the cluster; on SIGCONT it must exit by itself (it is restarted) and its
    /// volume must serve again with every durable write. The seed is the first whose one fault is the long stop.
    /// </summary>
    [Fact]
    public async Task A_short_clustertest_of_a_long_sigstop_of_the_owner_finds_it_stopped_and_every_durable_write()
    {
        var seed = Enumerable.Range(1, 100).First(s => ClusterTestPlan.Plan(new ClusterTestOptions(Seed: s, Trials: 1, FaultsPerTrial: 1,
            Faults: [FaultKind.StopOwner]), ["n1", "n2", "n3"]).First().Faults[0].LongStop);
        var (code, text) = await RunAsync("--seed", $"{seed}", "--trials", "1", "--faults-per-trial", "1", "--faults", "stop-owner");
        Assert.Contains("(owner) for 8s, SIGCONT", text);
        Assert.Matches($@"clustertest: 1 trials, 1 faults \(0 node kills\), [1-9]\d* writes checked, 0 violations \(seed {seed}\)", text);
        Assert.Equal(0, code);
    }

    [Fact]
    public async Task A_mirror_that_acknowledges_once_the_first_leg_has_a_write_is_caught_when_its_owner_is_killed()
    {
        var (code, text) = await RunAsync("--seed", "1", "--trials", "1", "--faults-per-trial", "1", "--faults", "kill-owner", "--ack-after-first-leg");
        Assert.Matches(@"clustertest: 1 trials, 1 faults \(1 node kills\), \d+ writes checked, [1-9]\d* violations \(seed 1\)", text);
        Assert.Matches(@"VIOLATION seed=1 trial=1 .* after fault 1: kill -9 n\d \(owner", text);
        // Caught as a promised write lost, or (when the new owner reads and resyncs from the leg that has it) as legs
        // that differ while the mirror says they are in sync: which one depends on timing.
        Assert.Matches(@"sector \d+: expected (fua-)?write #\d+ .*\(durable: |legs differ at sector \d+: ", text);
        Assert.Contains("reproduce: dmactors clustertest --seed 1 --trials 1 --faults-per-trial 1 --faults kill-owner --trial 1 --steps 1 --ack-after-first-leg", text);
        Assert.Equal(CommandRunner.Failure, code);
    }

    [Fact]
    public async Task Bad_options_are_refused_naming_them()
    {
        var (code, text) = await RunAsync("--faults", "kill-everything");
        Assert.Equal(CommandRunner.BadUsage, code);
        Assert.Contains("--faults: 'kill-everything' is not one of kill-owner", text);
    }

    private async Task<(int Code, string Text)> RunAsync(params string[] args)
    {
        var dir = new TempDir("dmactors-clustertest-");
        var writer = new StringWriter();
        int code;
        try
        {
            code = await CommandRunner.RunAsync(Program.Root(),
                ["clustertest", "--journal-pg", Postgres.Server, "--dir", dir.Path, "--no-shrink", .. args], writer, writer);
        }
        finally
        {
            output.WriteLine(writer.ToString());
            // A failed run keeps the nodes' logs: show the tail of each before the directory goes.
            foreach (var log in Directory.Exists(dir.Path) ? Directory.GetFiles(dir.Path, "serve.log", SearchOption.AllDirectories) : [])
                if (!Regex.IsMatch(writer.ToString(), @" 0 violations")) output.WriteLine($"---- {log}\n{string.Join('\n', File.ReadLines(log).TakeLast(15))}");
            dir.Dispose();
        }
        return (code, writer.ToString());
    }
}
