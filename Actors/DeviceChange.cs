using Akka.Actor;

namespace DmActors;

/// <summary>
/// The last step of a recorded change (decide, build, record, apply), the same for a host's device manager and a
/// cluster's volume entity: the device carries it out and answers the caller. What the directory around the
/// device does (spawning it, forgetting it, renaming it) is the caller's.
/// </summary>
internal static class DeviceChange
{
    /// <param name="spawn">Starts the device of a create.</param>
    /// <param name="removed">The device leaves the directory (before it shuts down).</param>
    /// <param name="renamed">The device has the new name in the directory.</param>
    public static void Apply(object command, Decision d, ManagedDevice? e, BuiltTable? built, IActorRef sender,
        Func<DeviceEvents.Created, ManagedDevice> spawn, Action removed, Action<string> renamed)
    {
        switch (command)
        {
            case Dm.Create or DeviceManager.CreateConfigDevice:
                var c = d.Events.OfType<DeviceEvents.Created>().Single();
                e = spawn(c);
                if (built == null) { sender.Tell(Dm.Done.Empty); return; }
                e.Uses.UnionWith(built.Uses);
                e.Actor.Tell(new MappedDevice.LoadTable(built.Table, Reply: false));
                e.Actor.Tell(new Dm.Resume(c.Name), sender);
                return;
            case DeviceManager.AdoptConfigDevice: sender.Tell(Dm.Done.Empty); return;
            case Dm.Load:
                e!.Uses.UnionWith(built!.Uses);
                e.Actor.Tell(new MappedDevice.LoadTable(built.Table), sender);
                return;
            case Dm.Remove when d.Refusal != null: // --force on an open device: its IO fails from now on
                e!.Actor.Tell(new MappedDevice.Wipe(built!.Table), ActorRefs.Nobody);
                sender.Tell(d.Refusal);
                return;
            case Dm.Remove:
                removed();
                e!.Actor.Tell(new MappedDevice.Shutdown(), sender);
                return;
            case Dm.Rename { SetUuid: true } u: e!.Actor.Tell(new MappedDevice.SetUuid(u.NewName), sender); return;
            case Dm.Rename r:
                renamed(r.NewName);
                e!.Actor.Tell(new MappedDevice.Renamed(r.NewName), sender);
                return;
            default: e!.Actor.Tell(command, sender); return; // suspend, resume, clear: the device carries them out
        }
    }
}
