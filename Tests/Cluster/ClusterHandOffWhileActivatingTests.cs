using Akka.Actor;
using Akka.Persistence;
using DmActors.Cluster;
using Xunit;
using Xunit.Abstractions;

namespace DmActors.Tests.Cluster;

/// <summary>
/// A stack group handed off while its volumes are still activating: the upper volume waits for the lower one, whose
/// build waits for its disk (as for a fence claim that waits for an old owner's bios). Before the fix the upper one
/// held the handoff until it gave up waiting for a lower volume that had stopped (about a minute; Akka's handoff
/// timeout, 55 s on a host, then gave the shard to the next node anyway).
/// </summary>
[Collection("cluster")]
public sealed class ClusterHandOffWhileActivatingTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Prompt = TimeSpan.FromSeconds(40); // well below the handoff timeout below

    [Fact]
    public async Task A_group_handed_off_while_its_upper_volume_waits_for_the_lower_one_moves_without_waiting_for_the_handoff_timeout()
    {
        using var hold = new ManualResetEventSlim();
        using var holding = new ManualResetEventSlim();
        using var c = new TestCluster(handOffTimeout: TimeSpan.FromSeconds(120));
        try
        {
            var (n1, n2, n3) = (c["n1"], c["n2"], c["n3"]);
            n1.Ok(new Dm.Create("low", "0 2048 linear disk0 0"));
            n1.Ok(new Dm.Create("up", "0 1024 linear low 0"));
            var (lowId, upId) = (n1.EntityId("low"), n1.EntityId("up"));
            var written = n1.Open("up");
            Assert.Equal(BioStatus.Ok, ClusterVolumeTests.Io(written.Device, Bio.Write(8, ClusterVolumeTests.Data(8, 7), ActorRefs.Nobody)));
            n1.Ok(new Dm.Close("up", written.Device));

            // On n2 the lower volume's build waits for its disk; the upper one waits for the lower one meanwhile.
            c.DiskOpening = (volume, by, _) =>
            {
                if (volume != lowId || by != "n2") return;
                holding.Set();
                hold.Wait(TestCluster.Timeout * 3);
            };
            _ = n1.Manager.Ask<object>(new ClusterCmd.Move("low", "n2"), TestCluster.Timeout * 3); // done only once both serve
            Assert.True(holding.Wait(TestCluster.Timeout), "the lower volume's build on n2 to open its disk");
            TestCluster.Eventually(() => LastActivation(n1.System, upId), a => a?.Node == "n2", "the upper volume to activate on n2");
            var upper = EntityOn(n2, upId);
            output.WriteLine($"upper volume activating on n2 as {upper.Path}");

            // Back to n1 while n2 still builds: each entity there gets HandOff.
            var inbox = Inbox.Create(n2.System);
            inbox.Watch(upper);
            var back = n3.Manager.Ask<object>(new ClusterCmd.Move("low", "n1", Within: Prompt), Prompt + TimeSpan.FromSeconds(10));
            // The upper volume stops though the lower one has not come: nothing of it was built yet.
            Assert.True(Stops(inbox), "the upper volume on n2 stops at the handoff though the lower one has not come");
            Assert.DoesNotContain("up", n2.Cluster.Volumes.Names);
            hold.Set(); // the lower volume's build ends; it hands over as any running volume

            Assert.IsType<Dm.Done>(await back);
            var info = n1.Info("up");
            Assert.Equal(("n1", true), (info.Node, info.LiveTable));
            Assert.Equal("n1", n1.Info("low").Node);
            Assert.Empty(n2.Cluster.Volumes.Names);
            // The epoch recorded on n2 is behind: n1 recorded a newer one for both volumes.
            var n2Epoch = Activations(n1.System, upId).Single(a => a.Node == "n2").Epoch;
            Assert.Equal(("n1", n2Epoch + 1), (LastActivation(n1.System, upId)!.Node, LastActivation(n1.System, upId)!.Epoch));
            Assert.Equal("n1", LastActivation(n1.System, lowId)!.Node);
            var read = n1.Open("up");
            var back8 = new byte[8 * Bio.Sector512];
            Assert.Equal(BioStatus.Ok, ClusterVolumeTests.Io(read.Device, Bio.Read(8, back8, ActorRefs.Nobody)));
            Assert.True(ClusterVolumeTests.Data(8, 7).AsSpan().SequenceEqual(back8), "the write before the moves reads back");
            n1.Ok(new Dm.Close("up", read.Device));
        }
        finally { hold.Set(); }
    }

    private static bool Stops(Inbox watching)
    {
        try { return watching.Receive(Prompt) is Terminated; }
        catch (TimeoutException) { return false; }
    }

    /// <summary>The volume entity's actor on <paramref name="node"/> (sharding names entities by their escaped id).</summary>
    private static IActorRef EntityOn(TestCluster.Node node, string entityId)
    {
        var inbox = Inbox.Create(node.System);
        node.System.ActorSelection($"/system/sharding/{ClusterDefaults.VolumeType}/{VolumeState.ShardOf(entityId)}/*").Tell(new Identify(entityId), inbox.Receiver);
        while (true)
        {
            if (inbox.Receive(TestCluster.Timeout) is ActorIdentity { Subject: { } found } && Uri.UnescapeDataString(found.Path.Name) == entityId)
                return found;
        }
    }

    private static VolumeEvents.Activated? LastActivation(ActorSystem system, string entityId) => Activations(system, entityId).LastOrDefault();

    /// <summary>The volume's activations as its journal holds them.</summary>
    private static List<VolumeEvents.Activated> Activations(ActorSystem system, string entityId)
    {
        var done = new TaskCompletionSource<List<object>>(TaskCreationOptions.RunContinuationsAsynchronously);
        var reader = system.ActorOf(Props.Create(() => new JournalReader(done)));
        Akka.Persistence.Persistence.Instance.Apply(system).JournalFor(null).Tell(new ReplayMessages(1, long.MaxValue, long.MaxValue, "volume-" + entityId, reader));
        return done.Task.WaitAsync(TestCluster.Timeout).GetAwaiter().GetResult().OfType<VolumeEvents.Activated>().ToList();
    }

    private sealed class JournalReader : ReceiveActor
    {
        public JournalReader(TaskCompletionSource<List<object>> done)
        {
            var events = new List<object>();
            Receive<ReplayedMessage>(m => events.Add(m.Persistent.Payload));
            Receive<RecoverySuccess>(_ => { done.TrySetResult(events); Context.Stop(Self); });
            Receive<ReplayMessagesFailure>(f => { done.TrySetException(f.Cause); Context.Stop(Self); });
        }
    }
}
