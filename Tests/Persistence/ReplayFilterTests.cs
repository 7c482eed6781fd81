using Akka.Actor;
using Akka.Configuration;
using Akka.Persistence;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>
/// Every event a journal holds is replayed. The SQL journal writes one writer id per journal (per process), not
/// per actor, so a volume that ran on node A, then B, then A again looks to Akka's replay filter like an old
/// writer A that came back after B; in its default mode it dropped A's later events at every replay after that (an
/// activation, so the next one reused its epoch; it could as well have been a table or a leg's record). The
/// journal's unique (persistence id, sequence number) already keeps one history; found by `dmactors clustertest
/// --seed 12` ("Invalid replayed event ... There was already a newer writer").
/// </summary>
public sealed class ReplayFilterTests : IDisposable
{
    private readonly List<TestJournal> _journals = [];

    private sealed class Recorder : ReceivePersistentActor
    {
        private readonly List<string> _events = new();
        public override string PersistenceId => "recorder";

        public Recorder()
        {
            Recover<string>(e => _events.Add(e));
            Command<string>(e => Persist(e, _ => Sender.Tell(e)));
            Command<GetEvents>(_ => Sender.Tell(_events.ToArray()));
        }
    }

    private sealed record GetEvents;

    private static ActorSystem Node(string name, string hocon) =>
        ActorSystem.Create(name, ConfigurationFactory.ParseString(hocon + "\nakka.loglevel = ERROR"));

    private static async Task<string[]> Run(ActorSystem node, string? persist)
    {
        var actor = node.ActorOf(Props.Create(() => new Recorder()));
        try
        {
            if (persist != null) Assert.Equal(persist, await actor.Ask<string>(persist, TimeSpan.FromSeconds(30)));
            return await actor.Ask<string[]>(new GetEvents(), TimeSpan.FromSeconds(30));
        }
        finally { await actor.GracefulStop(TimeSpan.FromSeconds(10)); }
    }

    [Theory]
    [MemberData(nameof(TestJournal.Kinds), MemberType = typeof(TestJournal))]
    public async Task Events_of_a_node_that_wrote_again_after_another_are_replayed(string kind)
    {
        var journal = TestJournal.Create(kind);
        _journals.Add(journal);
        using var a = Node("a", journal.Hocon);
        using var b = Node("b", journal.Hocon);
        await Run(a, "on a");
        await Run(b, "on b");
        await Run(a, "on a again");
        Assert.Equal(["on a", "on b", "on a again"], await Run(b, null));
    }

    public void Dispose()
    {
        foreach (var j in _journals) j.Dispose();
    }
}
