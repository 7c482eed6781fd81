using Akka.Actor;

namespace DmActors;

/// <summary>What a bio asks for. Sectors are 512 bytes, as in the kernel. <see cref="BlockStatus"/> reads no data: it
/// asks where the range is allocated (NBD's base:allocation), one <see cref="BlockState"/> byte per sector into Data.</summary>
public enum BioOp : byte { Read, Write, Discard, WriteZeroes, Flush, BlockStatus }

/// <summary>A sector's allocation as a BlockStatus bio reports it: NBD_STATE_HOLE and NBD_STATE_ZERO bits (0 = data).</summary>
public static class BlockState
{
    public const byte Data = 0, Hole = 1, Zero = 2, HoleZero = Hole | Zero;
}

/// <summary>Request flags (REQ_* in the kernel).</summary>
[Flags]
public enum BioFlags : byte
{
    None = 0,
    /// <summary>The founding patch's BIO_RW_BARRIER: ordered against everything before and after it.</summary>
    Barrier = 1,
    /// <summary>REQ_FUA: complete only once this bio's data is on stable storage.</summary>
    Fua = 2,
    /// <summary>REQ_PREFLUSH: flush the volatile caches before the data of this bio is written.</summary>
    Preflush = 4,
    /// <summary>REQ_RAHEAD: may be failed instead of queued.</summary>
    ReadAhead = 8,
    /// <summary>REQ_NOWAIT: fail with EAGAIN instead of queueing.</summary>
    NoWait = 16,
    /// <summary>
    /// On an empty flush: REQ_PREFLUSH's promise only (an NBD FLUSH's): every write completed before it is durable
    /// when it completes; IO still in flight is not waited for, so it is never an ordered-mode barrier.
    /// </summary>
    NoDrain = 32,
    /// <summary>REQ_NOUNMAP on a write-zeroes: the range must stay allocated (NBD's NO_HOLE), so no hole is punched.</summary>
    NoUnmap = 64,
    /// <summary>
    /// On a write-zeroes: fail with NotSupported, having changed nothing, unless the zeroes can be made without
    /// writing them (NBD's FAST_ZERO): a caller that would rather write the data itself asks for this.
    /// </summary>
    NoFallback = 128,
}

/// <summary>
/// The result of a bio, answered exactly once (blk_status_t). <see cref="Requeue"/> is dm-internal
/// (DM_ENDIO_REQUEUE): it never reaches the submitter of an original bio.
/// </summary>
public enum BioStatus : byte
{
    Ok = 0,
    IoError,
    NotSupported,
    NoSpace,
    Again,
    ReadOnly,
    OutOfRange,
    Invalid,
    Shutdown,
    TimedOut,
    Requeue,
    /// <summary>
    /// Only as end_io's answer (dm's DM_ENDIO_INCOMPLETE): the target keeps the clone and completes it itself later
    /// (a mirror's read that failed on one leg goes to another). It never reaches a device or a submitter.
    /// </summary>
    Incomplete,
}

public static class BioStatusText
{
    /// <summary>errno for the wire (NBD) and for messages.</summary>
    public static int Errno(this BioStatus s) => s switch
    {
        BioStatus.Ok => 0,
        BioStatus.NotSupported => 95,
        BioStatus.NoSpace => 28,
        BioStatus.Again => 11,
        BioStatus.ReadOnly => 1,
        BioStatus.OutOfRange => 22,
        BioStatus.Invalid => 22,
        BioStatus.Shutdown => 108,
        _ => 5,
    };
}

/// <summary>
/// A block IO request. A bio is owned by whoever holds it: the submitter until it is sent, then the device,
/// then the submitter again when <see cref="BioDone"/> arrives. It is mutable on purpose (like the kernel's
/// struct bio), so clones can be remapped in place without copying data: a clone's <see cref="Data"/> is a
/// slice of its original's buffer. The buffer belongs to the submitter, who returns it to its pool after the
/// completion; nothing below copies it, except the write-back cache that must keep a copy.
/// </summary>
public sealed class Bio
{
    public BioOp Op;
    public BioFlags Flags;
    /// <summary>First sector, relative to the device the bio is submitted to.</summary>
    public long Sector;
    /// <summary>Length in sectors (0 for an empty flush or barrier).</summary>
    public long Sectors;
    /// <summary>Read destination or write source, Sectors * 512 bytes; for BlockStatus one byte per sector; empty otherwise.</summary>
    public Memory<byte> Data;
    /// <summary>Who is told <see cref="BioDone"/>.</summary>
    public IActorRef ReplyTo = ActorRefs.Nobody;
    /// <summary>The device a clone was last sent to (bi_bdev); set by whoever submits it.</summary>
    public IBlockDevice? Device;
    /// <summary>Which of a target's duplicated clones this is (flush to stripe n, discard for stripe n).</summary>
    public int Index;
    /// <summary>The submitter's own tag (e.g. an NBD cookie, or dm's parent io for a clone).</summary>
    public object? Tag;
    /// <summary>
    /// The bio this one was made for (a clone's original; a flakey target's corrupted copy; an NBD connection's
    /// session for its requests): it is abandoned with it. A mirror's leg writes have none: legs must not differ.
    /// </summary>
    public Bio? Parent;
    private volatile bool _abandoned;

    public Bio() { }

    public Bio(BioOp op, long sector, long sectors, Memory<byte> data, IActorRef replyTo, BioFlags flags = BioFlags.None, object? tag = null)
    {
        Op = op; Sector = sector; Sectors = sectors; Data = data; ReplyTo = replyTo; Flags = flags; Tag = tag;
    }

    public static Bio Read(long sector, Memory<byte> data, IActorRef replyTo, object? tag = null) =>
        new(BioOp.Read, sector, data.Length / Sector512, data, replyTo, BioFlags.None, tag);

    public static Bio Write(long sector, Memory<byte> data, IActorRef replyTo, BioFlags flags = BioFlags.None, object? tag = null) =>
        new(BioOp.Write, sector, data.Length / Sector512, data, replyTo, flags, tag);

    /// <summary>An empty barrier (seed mode) / empty preflush (flush mode): "make everything before me durable".</summary>
    public static Bio Flush(IActorRef replyTo, object? tag = null) => new(BioOp.Flush, 0, 0, Memory<byte>.Empty, replyTo, BioFlags.None, tag);

    /// <summary>An empty flush that covers the writes completed before it and drains nothing, in both barrier modes (NBD FLUSH).</summary>
    public static Bio FlushCompleted(IActorRef replyTo, object? tag = null) =>
        new(BioOp.Flush, 0, 0, Memory<byte>.Empty, replyTo, BioFlags.NoDrain, tag);

    public const int Sector512 = 512;
    public const int SectorShift = 9;

    public bool IsBarrier => (Flags & BioFlags.Barrier) != 0;
    public bool HasData => Op is BioOp.Read or BioOp.Write && Sectors > 0;
    /// <summary>The length Data must have: a payload, a block-status map, or nothing.</summary>
    public long ExpectedDataLength => Op switch
    {
        BioOp.Read or BioOp.Write => Sectors << SectorShift,
        BioOp.BlockStatus => Sectors,
        _ => Data.Length,
    };
    public bool IsWriteDirection => Op is BioOp.Write or BioOp.Discard or BioOp.WriteZeroes or BioOp.Flush;
    public bool IsEmptyBarrier => (IsBarrier || Op == BioOp.Flush) && !HasData && Op is not (BioOp.Discard or BioOp.WriteZeroes or BioOp.BlockStatus);

    /// <summary>A copy addressing <paramref name="sectors"/> sectors from <paramref name="offset"/> within this bio.</summary>
    public Bio Clone(long offset, long sectors, IActorRef replyTo, object? tag)
    {
        var data = Op switch
        {
            BioOp.Read or BioOp.Write => Data.Slice((int)(offset << SectorShift), (int)(sectors << SectorShift)),
            BioOp.BlockStatus => Data.Slice((int)offset, (int)sectors),
            _ => Memory<byte>.Empty,
        };
        return new Bio(Op, Sector + offset, sectors, data, replyTo, Flags, tag) { Parent = this };
    }

    /// <summary>
    /// Marks this bio as answered before the IO below it ended: a crashed target actor, a stopped lane or device, or a
    /// barrier that timed out answers EIO at once rather than hang. Whatever below has not started a descendant yet
    /// (a disk's queue, a data channel waiting to reconnect) drops it: a write the submitter was told failed must not
    /// land later over the data it wrote since. IO already running cannot be called back.
    /// </summary>
    public void Abandon() => _abandoned = true;

    /// <summary>This bio or one it was made for was abandoned (<see cref="Abandon"/>): do not start it.</summary>
    public bool IsAbandoned
    {
        get
        {
            for (var b = this; b != null; b = b.Parent)
                if (b._abandoned) return true;
            return false;
        }
    }

    /// <summary>Answer this bio. Call exactly once.</summary>
    public void Complete(BioStatus status)
    {
        if (ReplyTo is CallbackRef { OnBio: { } onBio }) onBio(this, status);
        else ReplyTo.Tell(new BioDone(this, status), ActorRefs.NoSender);
    }

    public override string ToString() => $"{Op}{(Flags != 0 ? "[" + Flags + "]" : "")} {Sector}+{Sectors}";
}

/// <summary>The one completion of a bio. Local only: it carries the bio's buffer, so it is never serialized.</summary>
public sealed record BioDone(Bio Bio, BioStatus Status);
