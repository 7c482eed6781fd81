using System.Collections.Concurrent;
using Akka.Actor;
using Akka.Event;

namespace DmActors;

/// <summary>
/// Nothing hangs: a bio sent to an actor that no longer exists (a device removed while a caller still held its
/// reference) ends in dead letters; this answers it with EIO. One per actor system, started by the device manager.
/// A bio for a device that was handed over to another node (<see cref="HandedOff"/>) was never started, and is
/// answered with ESHUTDOWN instead, so the data channel sends it again to the volume's new owner.
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

    /// <summary>Devices stopped for a handoff, and when: remembered for a while (a connection learns of the stop soon after).</summary>
    private static readonly ConcurrentDictionary<IActorRef, DateTime> HandedOffDevices = new();
    private static readonly TimeSpan RememberHandOff = TimeSpan.FromMinutes(10);

    /// <summary>Called before a device (and each of its opens' lanes) is stopped for a handoff: bios that reach it afterwards get ESHUTDOWN.</summary>
    public static void HandedOff(IActorRef device)
    {
        var now = DateTime.UtcNow;
        foreach (var (d, at) in HandedOffDevices)
            if (now - at > RememberHandOff) HandedOffDevices.TryRemove(d, out _);
        HandedOffDevices[device] = now;
    }

    protected override void OnReceive(object message)
    {
        if (message is DeadLetter { Message: Bio bio } lost)
            bio.Complete(HandedOffDevices.ContainsKey(lost.Recipient) ? BioStatus.Shutdown : BioStatus.IoError);
        // A lane's read handed to a device that stopped meanwhile: the lane no longer holds it.
        else if (message is DeadLetter { Message: DeviceLane.Msg.Reissue r }) r.Original.Complete(BioStatus.IoError);
    }
}
