namespace DmActors.Targets;

/// <summary>
/// zero: reads return zeroes, writes and discards succeed and vanish (drivers/md/dm-zero.c). No arguments
/// ("No arguments required"). Readahead fails, as dm-zero does, so nobody caches its zeroes. Block status: a hole
/// that reads as zeroes; a write-zeroes is always fast.
/// </summary>
[TargetType("zero", 1, 2, 0)]
public sealed class Zero : Target
{
    public Zero(TargetArgs a) : base(a) => a.ExpectArgs(0, 0, "No arguments required");

    public override int NumDiscardBios => 1;
    public override int NumWriteZeroesBios => 1;
    public override bool Stateless => true;

    public override MapResult Map(Bio clone, int index, ITargetContext ctx)
    {
        switch (clone.Op)
        {
            case BioOp.Read when (clone.Flags & BioFlags.ReadAhead) != 0:
                return MapResult.Kill;
            case BioOp.Read:
                clone.Data.Span.Clear();
                break;
            case BioOp.BlockStatus:
                clone.Data.Span.Fill(BlockState.HoleZero); // nothing stored, reads as zeroes
                break;
        }
        ctx.Complete(clone, BioStatus.Ok);
        return MapResult.Submitted;
    }

    public override string TableParams() => "";
}
