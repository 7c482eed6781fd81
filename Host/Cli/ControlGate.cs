using Akka.Actor;

namespace DmActors.Host.Cli;

/// <summary>
/// The host's end of the control channel (/user/control): passes each dmsetup request to the device manager (a
/// power cut to the host's <see cref="Crash.PowerCutter"/>) and its reply back, unless the reply would not fit in one Akka.Remote frame; Akka would drop it without a word and
/// dmsetup would wait out its timeout, so it gets <see cref="ControlReplyTooLarge"/> with both sizes instead.
/// </summary>
public sealed class ControlGate : ReceiveActor
{
    /// <summary>Longer than any dmsetup waits; only a manager that never answers runs into it.</summary>
    public static readonly TimeSpan ManagerTimeout = TimeSpan.FromMinutes(10);

    public static Props Props(IActorRef manager, IActorRef powerCutter, long limit, Cluster.NodeCard? card = null) =>
        Akka.Actor.Props.Create(() => new ControlGate(manager, powerCutter, limit, card ?? new Cluster.NodeCard(null, null)));

    public ControlGate(IActorRef manager, IActorRef powerCutter, long limit, Cluster.NodeCard card)
    {
        var system = Context.System;
        // Answered here, not by the manager: a seed answers before it is a member, and its manager may wait for that.
        Receive<DmActors.Cluster.ClusterCmd.Hello>(_ => Sender.Tell(card.Reply(system)));
        Receive<IControlMessage>(m =>
        {
            // Not Forward: the reply has to pass here to be measured. Not awaited: one slow command holds up no other.
            (m is Crash.PowerCut ? powerCutter : manager).Ask<object>(m, ManagerTimeout).ContinueWith(t =>
            {
                if (!t.IsCompletedSuccessfully) return new Dm.Unavailable($"the device manager did not answer within {ManagerTimeout.TotalMinutes} minutes");
                long bytes;
                try { bytes = ControlFrame.SizeOf(system, t.Result); }
                catch (Exception) { return t.Result; } // not serializable: the transport reports that itself
                return bytes > limit ? new ControlReplyTooLarge(bytes, limit) : t.Result;
            }, TaskContinuationOptions.ExecuteSynchronously).PipeTo(Sender);
        });
    }
}
