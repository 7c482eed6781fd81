namespace DmActors.Targets;

/// <summary>
/// linear &lt;dev&gt; &lt;offset&gt;: maps the target's sectors onto a contiguous range of one device
/// (drivers/md/dm-linear.c). Table: `8:16 2048`; status: empty.
/// </summary>
[TargetType("linear", 1, 4, 0)]
public sealed class Linear : Target
{
    private readonly IBlockDevice _dev;
    private readonly long _start;

    public Linear(TargetArgs a) : base(a)
    {
        a.ExpectArgs(2, 2);
        _start = a.ReadSector(1, "Invalid device sector");
        _dev = a.GetDevice(a.Args[0], _start, a.Length);
    }

    public override IReadOnlyList<IBlockDevice> Devices => [_dev];
    public override int NumDiscardBios => 1;
    public override int NumWriteZeroesBios => 1;
    public override bool FlushBypassesMap => true;
    public override bool Stateless => true;

    public override MapResult Map(Bio clone, int index, ITargetContext ctx)
    {
        if (clone.Op != BioOp.Flush) clone.Sector = RemapSector(_start, clone);
        return MapResult.Remapped(_dev);
    }

    public override string TableParams() => $"{_dev.DevNo} {_start}";
}
