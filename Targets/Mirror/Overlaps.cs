namespace DmActors.Targets;

/// <summary>
/// Overlapping writes reach the legs one after the other. Two writes to the same sectors that are in flight
/// together may land in either order on a disk (the block layer promises no order between them), and each leg
/// may pick a different one: the legs would then hold different bytes for a region the mirror calls in sync, and
/// a read would return one write or the other depending on the leg that serves it. So a write part that overlaps
/// one still in flight waits until that one has ended on every leg (as DRBD waits for conflicting requests), and
/// parts that waited go in the order they came. Writes that do not overlap are not held (the common case).
/// </summary>
public sealed partial class Mirror
{
    /// <summary>Part <paramref name="p"/> overlaps a part in flight, or one of the first <paramref name="blockedBefore"/> that wait.</summary>
    private static bool Blocks(RegionIo rio, Part p, int blockedBefore)
    {
        foreach (var a in rio.Active)
            if (Overlap(a, p)) return true;
        for (var j = 0; j < blockedBefore; j++)
            if (Overlap(rio.Blocked[j], p)) return true;
        return false;
    }

    private static bool Overlap(Part a, Part b) => a.Sector < b.Sector + b.Sectors && b.Sector < a.Sector + a.Sectors;

    /// <summary>Starts, oldest first, each waiting part that no longer overlaps anything before it.</summary>
    private void StartUnblocked(RegionIo rio, ITargetContext ctx)
    {
        // One at a time, looked for again after each start: a start may end parts (and come back here) at once.
        while (rio.Blocked.Count > 0)
        {
            if (rio.Recovering)
            {
                // They wait for the copy with the rest; overlaps are looked at again when they start.
                foreach (var b in rio.Blocked) rio.Waiting.Enqueue(() => StartPart(b, ctx));
                rio.Blocked.Clear();
                return;
            }
            var next = -1;
            for (var j = 0; j < rio.Blocked.Count && next < 0; j++)
                if (!Blocks(rio, rio.Blocked[j], j)) next = j;
            if (next < 0) return;
            var p = rio.Blocked[next];
            rio.Blocked.RemoveAt(next);
            Admit(rio, p, ctx);
        }
    }
}
