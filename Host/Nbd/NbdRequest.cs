namespace DmActors.Host.Nbd;

/// <summary>
/// One transmission request from its header to its reply: the bio's Tag while the device works on it, then the
/// reply the writer sends. <see cref="Buffer"/> is rented from the shared pool and returned exactly once, after
/// the bio completed and (for a read) its data went out; not at all when the IO below may still use it.
/// </summary>
internal sealed class NbdRequest
{
    public ulong Cookie;
    public ushort Type;
    public NbdProtocol.CmdFlags Flags;
    public ulong Offset;
    public uint Length;
    /// <summary>Read destination or write payload; null for requests without data.</summary>
    public byte[]? Buffer;
    /// <summary>A BLOCK_STATUS reply's extent descriptors (pooled, big-endian length/flags pairs) and their length.</summary>
    public byte[]? Extents;
    public int ExtentBytes;
    /// <summary>What this request holds of the connection's in-flight budget.</summary>
    public long Cost;
    /// <summary>NBD errno of the reply (0 = success).</summary>
    public uint Error;
    /// <summary>
    /// The bio was answered with an error, which may come before the IO below it ended: a crashed target actor, a
    /// remove or a barrier that timed out answer their bios while a disk may still read into or send from the
    /// buffer. Such a buffer goes to the garbage collector, never back to the pool, where another request would
    /// get it.
    /// </summary>
    public bool BufferMayBeInUse;
    /// <summary>Set by the first completion: a second one (a bug below) must not send a second reply or free the buffer twice.</summary>
    public int Completed;

    public override string ToString() => $"cmd {Type} cookie {Cookie:x} {Offset}+{Length}";
}
