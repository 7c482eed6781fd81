using Akka.Actor;
using Akka.Event;

namespace DmActors;

/// <summary>
/// Nothing hangs: a bio sent to an actor that no longer exists (a device removed while a caller still held its
/// reference) ends in dead letters; this answers it with EIO. One per actor system, started by the device manager.
/// </summary>
public sealed class LostBioAnswerer : UntypedActor
{
    public static void Start(ActorSystem system)
    {
        lock (Started)
        {
            if (!Started.Add(system)) return;
            var answerer = system.ActorOf(Props.Create<LostBioAnswerer>(), $"lost-bios-{Guid.NewGuid():N}");
            system.EventStream.Subscribe(answerer, typeof(DeadLetter));
            system.RegisterOnTermination(() => { lock (Started) Started.Remove(system); });
        }
    }

    private static readonly HashSet<ActorSystem> Started = new();

    protected override void OnReceive(object message)
    {
        if (message is DeadLetter { Message: Bio bio }) bio.Complete(BioStatus.IoError);
    }
}
