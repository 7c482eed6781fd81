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
    /// Fails on today's main (found by this tool): after kill -9 of the node holding the first leg (a `delay` volume
    /// over that node's disk) the mirror marks the leg failed; once the node is back and `return_leg` is sent, the
    /// resync fails (leg health S) and the mirror stays partly out of sync, so the recovery never completes. With
    /// kill-two, a leg whose node died with no IO failing on it loses its write-back cache unnoticed: status says every
    /// region is in sync while the legs' files differ. Unskip once the mirror failover work has landed.
    /// </summary>
    [Fact(Skip = "known failure on main: a killed leg node's return is not resynced (see summary); reproduce: dmactors clustertest --seed 3 --trials 1 --faults-per-trial 1 --faults kill-leg")]
    public async Task A_short_clustertest_of_leg_node_kills_finds_every_durable_write_and_equal_legs()
    {
        var (code, text) = await RunAsync("--seed", "3", "--trials", "1", "--faults-per-trial", "2", "--faults", "kill-leg,kill-two");
        Assert.Matches(@"clustertest: 1 trials, 2 faults \(\d+ node kills\), [1-9]\d* writes checked, 0 violations \(seed 3\)", text);
        Assert.Equal(0, code);
    }

    [Fact]
    public async Task A_mirror_that_acknowledges_once_the_first_leg_has_a_write_is_caught_when_its_owner_is_killed()
    {
        var (code, text) = await RunAsync("--seed", "1", "--trials", "1", "--faults-per-trial", "1", "--faults", "kill-owner", "--ack-after-first-leg");
        Assert.Matches(@"clustertest: 1 trials, 1 faults \(1 node kills\), \d+ writes checked, [1-9]\d* violations \(seed 1\)", text);
        Assert.Matches(@"VIOLATION seed=1 trial=1 .* after fault 1: kill -9 n\d \(owner", text);
        Assert.Matches(@"sector \d+: expected (fua-)?write #\d+ .*\(durable: ", text);
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
