using Akka.Actor;

namespace DmActors.Targets;

/// <summary>
/// delay &lt;dev&gt; &lt;off&gt; &lt;ms&gt; [&lt;wdev&gt; &lt;woff&gt; &lt;wms&gt; [&lt;fdev&gt; &lt;foff&gt; &lt;fms&gt;]] (drivers/md/dm-delay.c):
/// reads, writes (discards included) and flushes each go to their class's device after their class's delay.
/// With 3 arguments all classes share one; with 6 flushes use the write class. A held bio waits on a timer of
/// the target actor, so no thread blocks. Status: `&lt;reads&gt; &lt;writes&gt; &lt;flushes&gt;` currently held.
/// Presuspend sends every held bio on at once and stops delaying until resume, as dm does.
/// </summary>
[TargetType("delay", 1, 4, 0)]
public sealed class Delay : Target
{
    private sealed record Class(IBlockDevice Dev, long Start, uint Ms)
    {
        public int Held;
    }

    private sealed record HeldBio(Bio Bio, Class Class)
    {
        public ICancelable? Timer;
    }

    private readonly Class[] _classes; // read, write, flush
    private readonly int _argc;
    private readonly LinkedList<HeldBio> _held = new();
    private bool _mayDelay = true;

    public Delay(TargetArgs a) : base(a)
    {
        if (a.Args.Length is not (3 or 6 or 9)) throw new TargetException("Requires exactly 3, 6 or 9 arguments");
        _argc = a.Args.Length;
        Class Parse(int at)
        {
            var start = a.ReadSector(at + 1, "Invalid device sector");
            var ms = a.ReadUInt(at + 2, 0, uint.MaxValue, "Invalid delay");
            return new Class(a.GetDevice(a.Args[at], start, a.Length), start, ms);
        }
        var read = Parse(0);
        var write = _argc >= 6 ? Parse(3) : read with { };
        var flush = _argc == 9 ? Parse(6) : write with { };
        _classes = [read, write, flush];
    }

    public override IReadOnlyList<IBlockDevice> Devices => _classes.Select(c => c.Dev).Distinct().ToArray();
    public override int NumFlushBios => 1;
    public override int NumDiscardBios => 1;

    public override MapResult Map(Bio clone, int index, ITargetContext ctx)
    {
        var c = clone.Op == BioOp.Flush ? _classes[2] : clone.IsWriteDirection ? _classes[1] : _classes[0];
        if (clone.Sectors > 0) clone.Sector = RemapSector(c.Start, clone);
        if (c.Ms == 0 || !_mayDelay) return MapResult.Remapped(c.Dev);

        var held = new HeldBio(clone, c);
        var node = _held.AddLast(held);
        Interlocked.Increment(ref c.Held);
        held.Timer = ctx.Schedule(TimeSpan.FromMilliseconds(c.Ms), () => Release(node, ctx));
        return MapResult.Submitted;
    }

    /// <summary>Sends a held bio on to its device; its completion completes the clone.</summary>
    private void Release(LinkedListNode<HeldBio> node, ITargetContext ctx)
    {
        if (node.List == null) return; // already released by presuspend
        _held.Remove(node);
        var (clone, c) = (node.Value.Bio, node.Value.Class);
        Interlocked.Decrement(ref c.Held);
        ctx.Submit(c.Dev, clone, status => ctx.Complete(clone, status));
    }

    public override void PreSuspend(ITargetContext ctx)
    {
        _mayDelay = false;
        while (_held.First is { } node)
        {
            node.Value.Timer?.Cancel();
            Release(node, ctx);
        }
    }

    public override void Resume(ITargetContext ctx) => _mayDelay = true;

    public override string TableParams()
    {
        string Of(Class c) => $"{c.Dev.DevNo} {c.Start} {c.Ms}";
        return _argc switch
        {
            3 => Of(_classes[0]),
            6 => $"{Of(_classes[0])} {Of(_classes[1])}",
            _ => $"{Of(_classes[0])} {Of(_classes[1])} {Of(_classes[2])}",
        };
    }

    // Status is read by the device actor while this target's actor counts: read the counters atomically.
    public override string StatusParams() => string.Join(' ', _classes.Select(c => Volatile.Read(ref c.Held)));
}
