using Akka.Actor;

namespace DmActors.Host.Nbd;

/// <summary>
/// Death watch for the device actors that NBD connections send bios to. Bios told to a stopped actor are lost,
/// so a connection whose device died is closed instead of leaving its client waiting for replies forever.
/// </summary>
internal sealed class DeviceWatch : ReceiveActor
{
    public sealed record Watch(IActorRef Device, NbdConnection Connection);
    public sealed record Unwatch(IActorRef Device, NbdConnection Connection);

    public static Props Props() => Akka.Actor.Props.Create(() => new DeviceWatch());

    private readonly Dictionary<IActorRef, HashSet<NbdConnection>> _watched = new();

    public DeviceWatch()
    {
        Receive<Watch>(w =>
        {
            if (!_watched.TryGetValue(w.Device, out var connections))
            {
                _watched[w.Device] = connections = new HashSet<NbdConnection>();
                Context.Watch(w.Device);
            }
            connections.Add(w.Connection);
        });
        Receive<Unwatch>(u =>
        {
            if (!_watched.TryGetValue(u.Device, out var connections)) return;
            connections.Remove(u.Connection);
            if (connections.Count > 0) return;
            _watched.Remove(u.Device);
            Context.Unwatch(u.Device);
        });
        Receive<Terminated>(t =>
        {
            if (!_watched.Remove(t.ActorRef, out var connections)) return;
            foreach (var c in connections) c.DeviceGone();
        });
    }
}
