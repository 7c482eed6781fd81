using System.Collections.Concurrent;
using Akka.Actor;
using DmActors.Cluster;
using Xunit;
using Xunit.Abstractions;

namespace DmActors.Tests.Cluster;

/// <summary>
/// A move under IO over the real data channel (each node serves NBD; a node that does not own the volume serves it
/// through a proxy over an NBD client disk to the owner): the old owner answers what reaches its stopped device
/// with ESHUTDOWN, and the proxy sends it again to the new owner, so no write fails and none is lost.
/// </summary>
[Collection("cluster")]
public sealed class ClusterMoveTests(ITestOutputHelper output)
{
    private const int Block = 8; // sectors per write (4 KiB)
    private const int Writers = 4;
    private const int BlocksPerWriter = 64;

    [Fact]
    public void Writes_through_a_non_owner_all_succeed_and_read_back_across_moves()
    {
        using var c = new TestCluster(nbd: true);
        var (n1, n2, n3) = (c["n1"], c["n2"], c["n3"]);
        n1.Ok(new Dm.Create("v", $"0 {Writers * BlocksPerWriter * Block} linear disk0 0"));
        var proxy = n3.Open("v"); // n3 does not own v: a proxy over NBD to n1
        Assert.Equal("n1", n3.Info("v").Node);

        var acked = new ConcurrentDictionary<int, byte>();
        var failed = new ConcurrentQueue<string>();
        var answers = new ConcurrentDictionary<Bio, int>();
        long writes = 0;
        using var stop = new ManualResetEventSlim();
        var writers = Enumerable.Range(0, Writers).Select(w => Task.Factory.StartNew(() =>
        {
            for (var i = 0; !stop.IsSet; i++)
            {
                var block = w * BlocksPerWriter + i % BlocksPerWriter;
                var seed = (byte)(i % 250 + 1);
                var status = Write(proxy.Device, block, seed, answers);
                if (status == BioStatus.Ok) acked[block] = seed;
                else
                {
                    acked.TryRemove(block, out _); // its content is unknown now
                    failed.Enqueue($"block {block}: {status}");
                }
                Interlocked.Increment(ref writes);
            }
        }, TaskCreationOptions.LongRunning)).ToArray();

        TestCluster.Await(() => Interlocked.Read(ref writes) > 50, "writes flowing");
        long during = 0;
        // To another node, to the proxy's own node, and back: each time the proxy's owner stops under its writes.
        foreach (var to in new[] { "n2", "n3", "n1" })
        {
            var before = Interlocked.Read(ref writes);
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} move to {to}");
            n2.Ok(new ClusterCmd.Move("v", to));
            output.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} moved to {to}");
            during += Interlocked.Read(ref writes) - before;
            Assert.Equal(to, n1.Info("v").Node);
            var after = Interlocked.Read(ref writes);
            TestCluster.Await(() => Interlocked.Read(ref writes) > after + 20, $"writes flowing after the move to {to}");
        }
        stop.Set();
        Assert.True(Task.WaitAll(writers, TestCluster.Timeout), "the writers finished");
        output.WriteLine($"{writes} writes, {during} while a move ran, {failed.Count} failed: {string.Join(" | ", failed.Take(5))}");

        Assert.Empty(failed);
        Assert.All(answers, a => Assert.Equal(1, a.Value)); // every bio answered exactly once
        Assert.True(during > 0, "no write ran while a move did");
        // Every acknowledged write reads back: through the proxy, and on the owner itself.
        var owner = n1.Open("v");
        foreach (var device in new[] { proxy.Device, owner.Device })
            foreach (var (block, seed) in acked)
            {
                var back = new byte[Block * Bio.Sector512];
                Assert.Equal(BioStatus.Ok, ClusterVolumeTests.Io(device, Bio.Read(block * Block, back, ActorRefs.Nobody)));
                Assert.True(ClusterVolumeTests.Data(Block, seed).AsSpan().SequenceEqual(back), $"block {block} does not read back");
            }
        n1.Ok(new Dm.Close("v", owner.Device));
        n3.Ok(new Dm.Close("v", proxy.Device));
    }

    [Fact]
    public async Task A_move_that_does_not_finish_within_the_CLI_timeout_is_answered_by_the_manager_naming_the_volume_and_the_node()
    {
        using var c = new TestCluster();
        var n1 = c["n1"];
        // A write the disk holds keeps the handoff's suspend (with flush) waiting: the move cannot finish meanwhile.
        var gate = n1.Disks.Add(new Core.GateDisk("gate", 4096, new List<Core.IoEvent>(), n1.Disks.NextDevNo()) { Hold = b => b.Op == BioOp.Write });
        n1.Ok(new Dm.Create("slow", "0 4096 linear gate 0"));
        var opened = n1.Open("slow");
        var held = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        opened.Device.Tell(Bio.Write(0, new byte[4096], CallbackRef.ForBios(d => held.TrySetResult(d.Status))), ActorRefs.NoSender);
        TestCluster.Await(() => gate.HeldCount == 1, "the disk to hold the write");

        // The CLI's timeout (1 s) bounds the manager's wait; the CLI waits longer, so it hears the manager's answer.
        var args = DmActors.Host.Cli.DmsetupArgs.Parse(["cluster-move"], out _)!;
        args.Args.AddRange(["slow", "n2"]);
        var (stdout, stderr) = (new StringWriter { NewLine = "\n" }, new StringWriter { NewLine = "\n" });
        var code = await new DmActors.Host.Cli.Dmsetup(new DmActors.Host.Cli.ActorControlChannel(n1.Manager, TimeSpan.FromSeconds(1)),
            new StringReader(""), stdout, stderr) { MoveWithin = TimeSpan.FromSeconds(1) }.RunAsync(args);
        Assert.Equal(1, code);
        Assert.Equal("device-mapper: move ioctl on slow  failed: Connection timed out\n" +
            "volume slow does not serve on node n2 after 1 s; it is placed there and may still come up (see dmactors cluster status)\n" +
            "Command failed.\n", stderr.ToString());

        gate.Release(); // the handoff goes on, and the volume serves on n2
        Assert.Equal(BioStatus.Ok, await held.Task.WaitAsync(TestCluster.Timeout));
        TestCluster.Eventually(() => n1.Info("slow"), i => i.Node == "n2", "slow to serve on n2");
    }

    private static BioStatus Write(IActorRef device, int block, byte seed, ConcurrentDictionary<Bio, int> answers)
    {
        var done = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        var bio = Bio.Write(block * Block, ClusterVolumeTests.Data(Block, seed), ActorRefs.Nobody);
        answers[bio] = 0;
        bio.ReplyTo = CallbackRef.ForBios(d =>
        {
            answers.AddOrUpdate(d.Bio, 1, (_, n) => n + 1);
            done.TrySetResult(d.Status);
        });
        device.Tell(bio, ActorRefs.NoSender);
        Assert.True(done.Task.Wait(TestCluster.Timeout), $"write of block {block} was not answered");
        return done.Task.Result;
    }
}
