namespace DmActors.Targets;

/// <summary>
/// striped &lt;#stripes&gt; &lt;chunk&gt; (&lt;dev&gt; &lt;offset&gt;)...: chunk k of the target goes to stripe k % #stripes,
/// row k / #stripes (drivers/md/dm-stripe.c). IO is split at chunk boundaries; an empty flush goes to every stripe;
/// a discard or write-zeroes is sent once per stripe, each covering only that stripe's part of the range.
/// Status: `#stripes dev... 1 AA…` with D for a stripe that has seen errors (each error raises an event, up to 15).
/// </summary>
[TargetType("striped", 1, 6, 0)]
public sealed class Striped : Target
{
    private readonly (IBlockDevice Dev, long Start)[] _stripes;
    private readonly long _chunk;
    private readonly int[] _errors;

    public Striped(TargetArgs a) : base(a)
    {
        a.ExpectArgs(2, error: "Not enough arguments");
        var n = a.ReadInt(0, 1, int.MaxValue, "Invalid stripe count");
        _chunk = a.ReadLong(1, 1, long.MaxValue, "Invalid chunk_size");
        if (a.Length % n != 0) throw new TargetException("Target length not divisible by number of stripes");
        var width = a.Length / n;
        if (width % _chunk != 0) throw new TargetException("Target length not divisible by chunk size");
        if (a.Args.Length != 2 + 2L * n) throw new TargetException("Not enough destinations specified");
        _stripes = new (IBlockDevice, long)[n];
        _errors = new int[n];
        for (var i = 0; i < n; i++)
        {
            var start = a.ReadSector(3 + 2 * i, "Couldn't parse stripe destination");
            _stripes[i] = (a.GetDevice(a.Args[2 + 2 * i], start, width, "Couldn't parse stripe destination"), start);
        }
    }

    public override IReadOnlyList<IBlockDevice> Devices => _stripes.Select(s => s.Dev).ToArray();
    public override long MaxIoLen => _chunk;
    public override int NumFlushBios => _stripes.Length;
    public override int NumDiscardBios => _stripes.Length;
    public override int NumWriteZeroesBios => _stripes.Length;
    public override bool FlushBypassesMap => true;
    public override bool Stateless => true;

    /// <summary>stripe_map_sector: (stripe, sector on that stripe's device) for a target-relative offset.</summary>
    public (int Stripe, long Sector) MapSector(long offset)
    {
        var chunk = offset / _chunk;
        var stripe = (int)(chunk % _stripes.Length);
        // Within the stripe's area, which the constructor checked fits on its device; checked in case it did not.
        return (stripe, checked(_stripes[stripe].Start + chunk / _stripes.Length * _chunk + offset % _chunk));
    }

    public override MapResult Map(Bio clone, int index, ITargetContext ctx)
    {
        switch (clone.Op)
        {
            case BioOp.Flush:
                return MapResult.Remapped(_stripes[index].Dev);
            case BioOp.Discard or BioOp.WriteZeroes:
                var (begin, end) = (StripeBound(Offset(clone), index), StripeBound(Offset(clone) + clone.Sectors, index));
                if (begin >= end) { ctx.Complete(clone, BioStatus.Ok); return MapResult.Submitted; }
                clone.Sector = checked(_stripes[index].Start + begin);
                clone.Sectors = end - begin;
                return MapResult.Remapped(_stripes[index].Dev);
            default:
                var (stripe, sector) = MapSector(Offset(clone));
                clone.Sector = sector;
                return MapResult.Remapped(_stripes[stripe].Dev);
        }
    }

    /// <summary>stripe_map_range_sector: where on <paramref name="stripe"/> the range bound <paramref name="offset"/> falls.</summary>
    private long StripeBound(long offset, int stripe)
    {
        var chunk = offset / _chunk;
        var s = (int)(chunk % _stripes.Length);
        var row = chunk / _stripes.Length;
        if (s == stripe) return row * _chunk + offset % _chunk;
        return s > stripe ? (row + 1) * _chunk : row * _chunk;
    }

    public override BioStatus EndIo(Bio clone, BioStatus status, ITargetContext ctx)
    {
        if (status is BioStatus.Ok or BioStatus.NotSupported or BioStatus.Requeue || (clone.Flags & BioFlags.ReadAhead) != 0) return status;
        // The device the clone went to tells which stripe failed (dm matches major:minor the same way).
        var failed = StripeOf(clone.Device);
        if (failed >= 0 && Interlocked.Increment(ref _errors[failed]) <= 15) ctx.RaiseEvent();
        return status;
    }

    private int StripeOf(IBlockDevice? dev)
    {
        for (var i = 0; i < _stripes.Length; i++)
            if (ReferenceEquals(_stripes[i].Dev, dev)) return i;
        return -1;
    }

    public override string TableParams() =>
        $"{_stripes.Length} {_chunk} " + string.Join(' ', _stripes.Select(s => $"{s.Dev.DevNo} {s.Start}"));

    public override string StatusParams() =>
        $"{_stripes.Length} " + string.Join(' ', _stripes.Select(s => s.Dev.DevNo)) + " 1 " +
        new string(_errors.Select(e => e > 0 ? 'D' : 'A').ToArray());
}
