namespace DmActors.Targets;

/// <summary>
/// Who may do background IO (resync copies, log writes) on a leg's area or a log device. The device drains only
/// the bios it mapped, and a swapped-out table's actor stops with its copies and log writes still in flight; so
/// a live mirror holds a lease on its areas until it is destroyed, its own bios are counted until they land, and a
/// table that replaces it starts (reads the log, copies) only once both are gone. Otherwise a late copy of old data
/// could overwrite what the new table already resynced, or a late log write what it logged.
/// </summary>
internal static class BackgroundIo
{
    private static readonly Dictionary<(object, long), (int Leases, int Bios)> Busy = new();
    private static readonly List<((object, long)[] Keys, Action Then)> WhenQuiet = new();

    /// <summary>An area's key: the device object, or a disk of another node by its DISK@NODE name (each table build connects anew).</summary>
    public static (object, long) Key(IBlockDevice dev, long offset) => (dev.IsRemote ? "remote " + dev.Name : dev, offset);

    /// <summary>The device as the mirror's own IO uses it: each bio counted from submission to completion.</summary>
    public static IBlockDevice Track(IBlockDevice dev, (object, long) key) => new Counted(dev, key);

    /// <summary>
    /// Per area, the device the latest table over it used and the <see cref="IBlockDevice.WritesLost"/> that table
    /// had seen (kept after that table while the device is gone or has lost writes the table did not see).
    /// </summary>
    private static readonly Dictionary<(object, long), (IBlockDevice Dev, long SeenLost)> LastUser = new();

    /// <summary>
    /// A table takes over an area with <paramref name="dev"/>, having seen <paramref name="seen"/> of its losses when
    /// it was built. Lost: the previous table's device there is gone, or this one is (a leg that could not be
    /// reached, <see cref="AbsentLeg"/>), or writes were lost there that neither table saw: the area may lack what a
    /// cache held. Seen: the losses counted now, which the table sees from here.
    /// </summary>
    public static (bool Lost, long Seen) TakeOver((object, long) key, IBlockDevice dev, long seen)
    {
        lock (Busy)
        {
            var now = dev.WritesLost;
            var lost = seen != now || dev.IsGone;
            if (LastUser.TryGetValue(key, out var last))
                lost |= ReferenceEquals(last.Dev, dev) ? last.SeenLost != now : last.Dev.IsGone;
            LastUser[key] = (dev, now);
            return (lost, now);
        }
    }

    /// <summary>The table over the area has seen <paramref name="seen"/> losses of <paramref name="dev"/>.</summary>
    public static void Noticed((object, long) key, IBlockDevice dev, long seen)
    {
        lock (Busy)
            if (LastUser.TryGetValue(key, out var last) && ReferenceEquals(last.Dev, dev)) LastUser[key] = (dev, seen);
    }

    /// <summary>A table is destroyed: its device is forgotten unless it is gone or lost what the table did not see (the next table must know).</summary>
    public static void Forget((object, long) key, IBlockDevice dev)
    {
        lock (Busy)
            if (LastUser.TryGetValue(key, out var last) && ReferenceEquals(last.Dev, dev) && !dev.IsGone && last.SeenLost == dev.WritesLost)
                LastUser.Remove(key);
    }

    public static bool Free(IEnumerable<(object, long)> keys)
    {
        lock (Busy) return keys.All(k => !Busy.ContainsKey(k));
    }

    public static void Lease(IEnumerable<(object, long)> keys, int by)
    {
        List<Action> run = new();
        lock (Busy)
        {
            foreach (var k in keys)
            {
                var (l, b) = Busy.GetValueOrDefault(k);
                if (l + by == 0 && b == 0) Busy.Remove(k); else Busy[k] = (l + by, b);
            }
            foreach (var w in WhenQuiet.Where(w => w.Keys.All(k => Busy.GetValueOrDefault(k).Bios == 0)).ToList()) { WhenQuiet.Remove(w); run.Add(w.Then); }
        }
        foreach (var a in run) a();
    }

    /// <summary>Runs <paramref name="then"/> once no bio of the mirror's own is in flight on <paramref name="keys"/> (at once if none is).</summary>
    public static void OnQuiet(IEnumerable<(object, long)> keys, Action then)
    {
        var all = keys.ToArray();
        lock (Busy)
            if (all.Any(k => Busy.GetValueOrDefault(k).Bios > 0)) { WhenQuiet.Add((all, then)); return; }
        then();
    }

    private static void Count((object, long) key, int by)
    {
        lock (Busy)
        {
            var (l, b) = Busy.GetValueOrDefault(key);
            if (l == 0 && b + by == 0) Busy.Remove(key); else Busy[key] = (l, b + by);
        }
        if (by < 0) Lease([], 0); // runs what waited for quiet
    }

    private sealed class Counted(IBlockDevice inner, (object, long) key) : DelegatingBlockDevice(inner)
    {
        public override void Submit(Bio bio)
        {
            Count(key, 1);
            var reply = bio.ReplyTo;
            bio.ReplyTo = CallbackRef.ForBios(d =>
            {
                reply.Tell(d, Akka.Actor.ActorRefs.NoSender);
                Count(key, -1);
            });
            Inner.Submit(bio);
        }
    }
}
