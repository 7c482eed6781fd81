namespace DmActors.Targets;

public sealed partial class Mirror
{
    /// <summary>
    /// A deliberately broken mode for `dmactors clustertest --ack-after-first-leg`: a write is acknowledged as soon
    /// as the first leg to answer has it, not once every leg has. Set for a whole process by the environment
    /// variable below (the clustertest sets it on the serve processes it starts); never on in production.
    /// </summary>
    public const string AckAfterFirstLegVariable = "DMACTORS_BROKEN_ACK_AFTER_FIRST_LEG";

    private static readonly bool AckAfterFirstLeg = Environment.GetEnvironmentVariable(AckAfterFirstLegVariable) == "1";

    /// <summary>Answers the part's share of its write now; the region's bookkeeping still waits for every leg.</summary>
    private static void AckEarly(Part p, ITargetContext ctx)
    {
        if (p.Io.Clone.Op != BioOp.Write) return;
        p.AckedEarly = true;
        if (--p.Io.Parts == 0) ctx.Complete(p.Io.Clone, p.Io.Status);
    }
}
