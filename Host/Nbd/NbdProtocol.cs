namespace DmActors.Host.Nbd;

/// <summary>Wire constants of the NBD protocol (doc/proto.md of NetworkBlockDevice/nbd). Every field is big-endian.</summary>
public static class NbdProtocol
{
    public const ulong NbdMagic = 0x4e42444d41474943;          // "NBDMAGIC"
    public const ulong IHaveOpt = 0x49484156454F5054;          // "IHAVEOPT"
    public const ulong OptionReplyMagic = 0x0003e889045565a9;
    public const uint RequestMagic = 0x25609513;
    public const uint SimpleReplyMagic = 0x67446698;
    public const uint StructuredReplyMagic = 0x668e33ef;

    public const int RequestHeaderLength = 28;
    public const int SimpleReplyLength = 16;
    public const int ChunkHeaderLength = 20;

    /// <summary>Server handshake flags.</summary>
    public const ushort FlagFixedNewstyle = 1, FlagNoZeroes = 2;
    /// <summary>Client flags: the same two bits; anything else means drop the client.</summary>
    public const uint ClientFixedNewstyle = 1, ClientNoZeroes = 2;

    public static class Opt
    {
        public const uint ExportName = 1, Abort = 2, List = 3, StartTls = 5, Info = 6, Go = 7, StructuredReply = 8,
            ListMetaContext = 9, SetMetaContext = 10, ExtendedHeaders = 11;
    }

    public static class Rep
    {
        public const uint Ack = 1, Server = 2, Info = 3, MetaContext = 4;
        public const uint ErrUnsup = 0x80000001, ErrPolicy = 0x80000002, ErrInvalid = 0x80000003, ErrPlatform = 0x80000004,
            ErrTlsReqd = 0x80000005, ErrUnknown = 0x80000006, ErrShutdown = 0x80000007, ErrBlockSizeReqd = 0x80000008,
            ErrTooBig = 0x80000009;
    }

    public static class Info
    {
        public const ushort Export = 0, Name = 1, Description = 2, BlockSize = 3;
    }

    /// <summary>Transmission flags.</summary>
    [Flags]
    public enum TxFlags : ushort
    {
        HasFlags = 1 << 0, ReadOnly = 1 << 1, SendFlush = 1 << 2, SendFua = 1 << 3, Rotational = 1 << 4, SendTrim = 1 << 5,
        SendWriteZeroes = 1 << 6, SendDf = 1 << 7, CanMultiConn = 1 << 8, SendResize = 1 << 9, SendCache = 1 << 10,
        SendFastZero = 1 << 11,
    }

    public static class Cmd
    {
        public const ushort Read = 0, Write = 1, Disc = 2, Flush = 3, Trim = 4, Cache = 5, WriteZeroes = 6, BlockStatus = 7;
    }

    [Flags]
    public enum CmdFlags : ushort { None = 0, Fua = 1, NoHole = 2, Df = 4, ReqOne = 8, FastZero = 16 }

    public static class Chunk
    {
        public const ushort FlagDone = 1;
        public const ushort None = 0, OffsetData = 1, OffsetHole = 2, BlockStatus = 5, Error = 0x8001, ErrorOffset = 0x8002;
    }

    /// <summary>The errno values the protocol defines; anything else is sent as EIO.</summary>
    public static class Errno
    {
        public const uint Perm = 1, Io = 5, NoMem = 12, Inval = 22, NoSpc = 28, Overflow = 75, NotSup = 95, Shutdown = 108;

        public static uint Sanitize(int errno) => errno switch
        {
            0 => 0,
            1 or 5 or 12 or 22 or 28 or 75 or 95 or 108 => (uint)errno,
            _ => Io,
        };
    }

    /// <summary>The one metadata context served: everything is reported as allocated data (status 0), which is always legal.</summary>
    public const string BaseAllocation = "base:allocation";
    public const uint BaseAllocationId = 1;

    /// <summary>The most a BLOCK_STATUS reply describes (the spec lets a reply cover less than asked): a 512 KiB map.</summary>
    public const long MaxBlockStatus = 256L << 20;

    /// <summary>Block sizes advertised in NBD_INFO_BLOCK_SIZE: the sector (as dm) and the page.</summary>
    public const int MinBlock = 512, DefaultPreferredBlock = 4096;
    /// <summary>
    /// The largest READ or WRITE payload by default (nbd.max-payload), advertised as the maximum block size. Clients
    /// that never negotiate sizes (NBD_OPT_EXPORT_NAME) send 40-50 MB requests, which nbdkit and nbd-server serve.
    /// </summary>
    public const int DefaultMaxPayload = 64 << 20;
    /// <summary>
    /// A WRITE whose length is past this is abuse, not a request: the connection ends rather than read and discard
    /// up to 4 GiB per header. A WRITE between the maximum payload and this is answered EINVAL after its payload is
    /// discarded (the spec: "cleanly error commands that fall outside the constraints"). Also the highest
    /// nbd.max-payload accepted.
    /// </summary>
    public const int AbusiveLength = 256 << 20;
    /// <summary>Largest option the handshake accepts before dropping the client as hostile.</summary>
    public const int MaxOptionLength = 64 << 10;
}
