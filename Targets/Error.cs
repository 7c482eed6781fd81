namespace DmActors.Targets;

/// <summary>
/// error: every bio fails with EIO, discards included (drivers/md/dm-target.c). Arguments are ignored, as
/// xfstests relies on (`error /dev/sdb 0`); the table prints none. It has no devices, so an empty flush succeeds.
/// Block status reports data.
/// </summary>
[TargetType("error", 1, 7, 0)]
public sealed class Error : Target
{
    public Error(TargetArgs a) : base(a) { }

    public override int NumDiscardBios => 1;
    public override int NumWriteZeroesBios => 1;
    public override bool Stateless => true;

    public override MapResult Map(Bio clone, int index, ITargetContext ctx)
    {
        if (clone.Op != BioOp.BlockStatus) return MapResult.Kill;
        // Its sectors are data that cannot be read: a copy must try (and fail) rather than skip them as zeroes.
        clone.Data.Span.Fill(BlockState.Data);
        ctx.Complete(clone, BioStatus.Ok);
        return MapResult.Submitted;
    }

    public override string TableParams() => "";
}
