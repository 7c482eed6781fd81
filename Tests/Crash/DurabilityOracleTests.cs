using DmActors.Host.Crash;
using Xunit;

namespace DmActors.Tests.Crash;

/// <summary>
/// The durability rule on hand-made histories: which values a sector may hold after a cut, in both barrier modes.
/// </summary>
public sealed class DurabilityOracleTests
{
    private const int Sectors = 16;
    private static readonly CrashOp.Write A = new(1, 2, 2, WriteKind.Plain);
    private static readonly CrashOp.Write B = new(2, 3, 1, WriteKind.Plain);
    private static readonly CrashOp Flush = new CrashOp.Flush();

    /// <summary>A device image: zeros, with the given writes applied in order.</summary>
    private static byte[] Image(params CrashOp.Write[] landed)
    {
        var image = new byte[Sectors * Bio.Sector512];
        foreach (var w in landed) SectorStamp.Make(w.Id, w.Sector, w.Sectors).CopyTo(image, w.Sector * Bio.Sector512);
        return image;
    }

    private static DurabilityOracle.Verdict Check(CrashOp[] ops, IoLedger ledger, BarrierMode mode, byte[] image)
    {
        ledger.Cut();
        return DurabilityOracle.Check(ops, ledger, mode, image);
    }

    [Theory]
    [InlineData(BarrierMode.Ordered)]
    [InlineData(BarrierMode.Flush)]
    public void A_write_completed_before_a_completed_flush_must_survive(BarrierMode mode)
    {
        CrashOp[] ops = [A, Flush];
        IoLedger History()
        {
            var l = new IoLedger(2);
            l.Sent(0); l.Answered(0, BioStatus.Ok);
            l.Sent(1); l.Answered(1, BioStatus.Ok);
            return l;
        }
        Assert.Empty(Check(ops, History(), mode, Image(A)).Violations);
        var lost = Check(ops, History(), mode, Image());
        Assert.Equal(1, lost.Promised);
        Assert.Equal([2L, 3L], lost.Violations.Select(v => v.Sector));
        Assert.Contains("zeros", lost.Violations[0].Found);
    }

    [Fact]
    public void A_later_write_that_may_have_landed_is_accepted_but_an_older_value_is_not()
    {
        CrashOp[] ops = [A, Flush, B];
        IoLedger History()
        {
            var l = new IoLedger(3);
            l.Sent(0); l.Answered(0, BioStatus.Ok);
            l.Sent(1); l.Answered(1, BioStatus.Ok);
            l.Sent(2); l.Answered(2, BioStatus.Ok); // never flushed
            return l;
        }
        Assert.Empty(Check(ops, History(), BarrierMode.Flush, Image(A)).Violations);
        Assert.Empty(Check(ops, History(), BarrierMode.Flush, Image(A, B)).Violations);
        // B without A under it: sector 2 lost the durable A.
        Assert.Equal([2L], Check(ops, History(), BarrierMode.Flush, Image(B)).Violations.Select(v => v.Sector));
    }

    [Fact]
    public void A_write_still_in_flight_when_the_flush_was_sent_is_promised_only_in_ordered_mode()
    {
        CrashOp[] ops = [A, Flush];
        IoLedger History()
        {
            var l = new IoLedger(2);
            l.Sent(0);
            l.Sent(1);
            l.Answered(0, BioStatus.Ok);
            l.Answered(1, BioStatus.Ok);
            return l;
        }
        // REQ_PREFLUSH promises only writes completed before it was issued; a barrier drains what was sent before it.
        Assert.Empty(Check(ops, History(), BarrierMode.Flush, Image()).Violations);
        Assert.NotEmpty(Check(ops, History(), BarrierMode.Ordered, Image()).Violations);
    }

    [Fact]
    public void Fua_and_barrier_writes_are_durable_on_completion_and_failed_ones_promise_nothing()
    {
        var fua = new CrashOp.Write(3, 8, 1, WriteKind.Fua);
        var barrier = new CrashOp.Write(4, 9, 1, WriteKind.Barrier);
        CrashOp[] ops = [fua, barrier];
        var ok = new IoLedger(2);
        ok.Sent(0); ok.Answered(0, BioStatus.Ok);
        ok.Sent(1); ok.Answered(1, BioStatus.Ok);
        Assert.Equal([8L, 9L], Check(ops, ok, BarrierMode.Flush, Image()).Violations.Select(v => v.Sector));

        var failed = new IoLedger(2);
        failed.Sent(0); failed.Answered(0, BioStatus.IoError);
        failed.Sent(1);
        var verdict = Check(ops, failed, BarrierMode.Flush, Image(fua));
        Assert.Empty(verdict.Violations);
        Assert.Equal(0, verdict.Promised);
        Assert.Equal(1, verdict.BioErrors);
    }

    [Fact]
    public void A_preflush_write_covers_earlier_writes_and_is_itself_durable_only_as_an_ordered_barrier()
    {
        var commit = new CrashOp.Write(5, 10, 1, WriteKind.Preflush);
        CrashOp[] ops = [A, commit];
        IoLedger History()
        {
            var l = new IoLedger(2);
            l.Sent(0); l.Answered(0, BioStatus.Ok);
            l.Sent(1); l.Answered(1, BioStatus.Ok);
            return l;
        }
        Assert.Equal([2L, 3L], Check(ops, History(), BarrierMode.Flush, Image()).Violations.Select(v => v.Sector));
        Assert.Equal([2L, 3L, 10L], Check(ops, History(), BarrierMode.Ordered, Image()).Violations.Select(v => v.Sector));
    }

    [Fact]
    public void In_ordered_mode_a_write_held_behind_an_unanswered_barrier_cannot_land()
    {
        CrashOp[] ops = [Flush, B];
        IoLedger History()
        {
            var l = new IoLedger(2);
            l.Sent(0);
            l.Sent(1);
            return l;
        }
        var ordered = Check(ops, History(), BarrierMode.Ordered, Image(B));
        Assert.Contains("held behind op 0", Assert.Single(ordered.Violations).Found);
        Assert.Empty(Check(ops, History(), BarrierMode.Flush, Image(B)).Violations);
    }

    [Fact]
    public void A_write_sent_to_a_suspended_device_never_resumed_cannot_land()
    {
        CrashOp[] ops = [B];
        var l = new IoLedger(1);
        l.Suspended();
        l.Sent(0);
        Assert.Contains("suspended", Assert.Single(Check(ops, l, BarrierMode.Flush, Image(B)).Violations).Found);

        var resumed = new IoLedger(1);
        resumed.Suspended();
        resumed.Sent(0);
        resumed.Resuming();
        Assert.Empty(Check(ops, resumed, BarrierMode.Flush, Image(B)).Violations);
    }

    [Fact]
    public void Data_never_written_there_is_a_violation()
    {
        var unsent = new CrashOp.Write(9, 5, 1, WriteKind.Plain);
        CrashOp[] ops = [unsent];
        var image = Image();
        SectorStamp.Make(A.Id, A.Sector, 1).CopyTo(image, 6 * Bio.Sector512); // A's sector 2 found at sector 6
        image[7 * Bio.Sector512 + 100] = 0xEE;                                  // garbage
        SectorStamp.Make(unsent.Id, unsent.Sector, 1).CopyTo(image, 5 * Bio.Sector512); // a write never sent
        var verdict = Check(ops, new IoLedger(1), BarrierMode.Flush, image);
        Assert.Equal([5L, 6L, 7L], verdict.Violations.Select(v => v.Sector));
        Assert.Contains("misplaced", verdict.Violations[1].Found);
        Assert.Contains("garbage", verdict.Violations[2].Found);
    }
}
