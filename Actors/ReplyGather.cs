using Akka.Actor;

namespace DmActors;

/// <summary>The manager's Quiesce: collects one reply per device, then answers Dm.Done (or the first failure).</summary>
internal sealed class ReplyGather : UntypedActor
{
    private readonly IActorRef _replyTo;
    private int _left;
    private object _reply = Dm.Done.Empty;

    public ReplyGather(int count, IActorRef replyTo)
    {
        _left = count; _replyTo = replyTo;
        if (count == 0) Finish();
    }

    protected override void OnReceive(object message)
    {
        if (message is Dm.Failed f && _reply is Dm.Done) _reply = f;
        if (--_left == 0) Finish();
    }

    private void Finish()
    {
        _replyTo.Tell(_reply);
        Context.Stop(Self);
    }
}
