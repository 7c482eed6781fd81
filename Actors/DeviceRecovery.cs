using Akka.Actor;
using Akka.Event;

namespace DmActors;

/// <summary>
/// A host's start: brings back every recorded device, lower devices first, so the tables stacked on them find them
/// with their size. A table that cannot be rebuilt (a missing disk) leaves its device in an error state, named in
/// `info` and by the devices stacked on it; the other devices come back as recorded.
/// </summary>
internal static class DeviceRecovery
{
    /// <param name="spawn">Starts the actor of a recorded device and enters it in the directory.</param>
    /// <param name="build">Builds a table for a device (name, text, read-only) against the directory as it is so far.</param>
    public static void Restore(HostState state, Func<DeviceRecord, ManagedDevice> spawn,
        Func<string, string, bool, BuiltTable> build, ILoggingAdapter log)
    {
        foreach (var d in state.InDependencyOrder())
        {
            var e = spawn(d);
            if (d.Live != null && Rebuild(e, d.Name, d.Live, d.LiveReadOnly, "live", build, log) is { } live)
            {
                e.Shared.Sectors = live.Sectors; // stacked devices recovered next check their size against this
                e.Actor.Tell(new MappedDevice.LoadTable(live, Reply: false));
                e.Actor.Tell(new Dm.Resume(d.Name), ActorRefs.Nobody);
            }
            if (d.Inactive != null && Rebuild(e, d.Name, d.Inactive, d.InactiveReadOnly, "inactive", build, log) is { } inactive)
                e.Actor.Tell(new MappedDevice.LoadTable(inactive, Reply: false));
            if (d.Suspended) e.Actor.Tell(new Dm.Suspend(d.Name), ActorRefs.Nobody);
        }
        log.Info("recovered {0} device(s) from the journal", state.Devices.Count);
    }

    private static Table? Rebuild(ManagedDevice e, string name, string text, bool readOnly, string slot,
        Func<string, string, bool, BuiltTable> build, ILoggingAdapter log)
    {
        try
        {
            var built = build(name, text, readOnly);
            e.Uses.UnionWith(built.Uses);
            return built.Table;
        }
        catch (TableException ex)
        {
            var cause = WithFileError(ex.Message, text);
            if (slot == "live") e.Error = cause;
            var reason = $"{slot} table could not be rebuilt: {cause}";
            log.Error("device {0}: {1}", name, reason);
            e.Actor.Tell(new MappedDevice.MarkError(reason));
            return null;
        }
    }

    /// <summary>"Device lookup failed: /x.img" says which file, not that it is gone: add the reason.</summary>
    internal static string WithFileError(string message, string table)
    {
        IEnumerable<string> args;
        try { args = Table.Parse(table).SelectMany(l => l.Args); }
        catch (TableException) { return message; }
        var missing = args.FirstOrDefault(a => (a.StartsWith('/') || a.StartsWith("./")) && message.EndsWith(a, StringComparison.Ordinal) && !File.Exists(a));
        return missing == null ? message : $"{message}: No such file or directory";
    }
}
