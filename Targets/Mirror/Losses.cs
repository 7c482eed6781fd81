namespace DmActors.Targets;

/// <summary>
/// Legs that lost writes below them. A leg's device counts the times it may have lost writes it had answered
/// (<see cref="IBlockDevice.WritesLost"/>: an NBD server that died with its cache, and a reconnect that reaches its
/// restarted self); its next flush would fail, but until then a read from it could return data older than an
/// answered write. So the mirror looks at the count before it maps a bio, when a leg answers, and every second:
/// a leg whose count moved is failed as if a flush had failed (its dirty regions become stale for it and are
/// copied back to it when it returns), and what it answered since the count moved is not trusted.
/// </summary>
public sealed partial class Mirror
{
    private Akka.Actor.ICancelable? _lossCheck;

    /// <summary>Fails every live leg whose device lost writes this mirror has not taken into account yet.</summary>
    private void NoticeLosses(ITargetContext ctx)
    {
        if (_mem == null) return; // the log's load takes them into account (BackgroundIo.TakeOver)
        for (var i = 0; i < _legs.Length; i++)
        {
            var leg = _legs[i];
            var lost = leg.Dev.WritesLost;
            if (lost == leg.SeenLost) continue;
            // Failed before the count is taken in: a lane that sees the new count (Leg.Trusted) sees the leg failed.
            if (!leg.Failed) FailLeg(i, LegError.Flush, ctx);
            BackgroundIo.Noticed(leg.Key, leg.Dev, lost);
            Volatile.Write(ref leg.SeenLost, lost);
        }
    }

    /// <summary>
    /// A leg's answer <paramref name="st"/> to a bio sent when it had lost <paramref name="seen"/> times: an Ok is
    /// an IoError if it lost writes since (the leg is failed then).
    /// </summary>
    private BioStatus LostSince(int leg, long seen, BioStatus st, ITargetContext ctx)
    {
        if (_legs[leg].Dev.WritesLost == seen) return st;
        NoticeLosses(ctx);
        return st == BioStatus.Ok ? BioStatus.IoError : st;
    }

    /// <summary>A loss with no IO to show it still shows in the status within a second.</summary>
    private void CheckLossesEverySecond(ITargetContext ctx)
    {
        if (_lossCheck != null) return;
        _lossCheck = ctx.Schedule(TimeSpan.FromSeconds(1), () =>
        {
            _lossCheck = null;
            if (_suspended) return; // the next resume starts it again
            NoticeLosses(ctx);
            CheckLossesEverySecond(ctx);
        });
    }
}
