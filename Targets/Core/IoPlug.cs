namespace DmActors;

/// <summary>Something whose sends a plugged thread held back (<see cref="IoPlug"/>).</summary>
public interface IPlugged
{
    /// <summary>Sends what was held back. Runs on the thread that plugged, once per <see cref="IoPlug.Defer"/>.</summary>
    void Unplug();
}

/// <summary>
/// Like the kernel's blk_plug: a thread that has a burst of work at hand (requests already received, a queue of
/// disk IO, replies already buffered) plugs, and a socket send that its work would make one by one is deferred
/// to <see cref="End"/> (or <see cref="Flush"/>), so the burst leaves in one send and wakes the peer once. The
/// thread must flush before it waits for anything, or what it holds waits with it.
/// </summary>
public static class IoPlug
{
    [ThreadStatic] private static int _depth;
    [ThreadStatic] private static List<IPlugged>? _deferred;

    /// <summary>True while the calling thread is plugged.</summary>
    public static bool Active => _depth > 0;

    public static void Begin() => _depth++;

    /// <summary>Unplugs (the outermost End sends everything deferred).</summary>
    public static void End()
    {
        if (--_depth == 0) Flush();
    }

    /// <summary>Sends what is deferred now; the thread stays plugged. Call it before waiting.</summary>
    public static void Flush()
    {
        var list = _deferred;
        if (list == null || list.Count == 0) return;
        var depth = _depth;
        _depth = 0; // what the flush itself sends goes out at once
        Exception? first = null;
        // Every deferred send runs even when one throws: each holder thinks its send is deferred, and one left out
        // would hold its replies until its next burst, maybe forever. Index loop: nothing is added meanwhile.
        for (var i = 0; i < list.Count; i++)
        {
            try { list[i].Unplug(); }
            catch (Exception e) { first ??= e; }
        }
        list.Clear();
        _depth = depth;
        if (first != null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
    }

    /// <summary>
    /// Defers <paramref name="target"/>'s send to the unplug. False when the thread is not plugged: the caller sends
    /// now. The caller registers once per burst (it keeps its own "deferred" flag).
    /// </summary>
    public static bool Defer(IPlugged target)
    {
        if (_depth == 0) return false;
        (_deferred ??= new List<IPlugged>()).Add(target);
        return true;
    }
}
