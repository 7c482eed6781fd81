using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using DmActors.Host.Nbd;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Tests.Nbd;

/// <summary>
/// A byte-level NBD client for protocol tests: it sends exactly what a test says (including garbage) and decodes
/// the server's answers. Blocking IO with a generous receive timeout, so a server that does not answer fails the
/// test instead of hanging it.
/// </summary>
public sealed class RawNbdClient : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    /// <summary>What each outstanding cookie asked for: a simple READ reply carries data only the client knows the length of.</summary>
    private readonly Dictionary<ulong, (ushort Type, uint Length)> _pending = new();

    private RawNbdClient(Socket socket)
    {
        _socket = socket;
        _socket.ReceiveTimeout = (int)NbdFixture.Timeout.TotalMilliseconds;
        _socket.SendTimeout = (int)NbdFixture.Timeout.TotalMilliseconds;
        _stream = new NetworkStream(socket, ownsSocket: true);
    }

    /// <param name="receiveBuffer">SO_RCVBUF if set: a small one makes the server's sends fill the socket often.</param>
    public static RawNbdClient Tcp(int port, int? receiveBuffer = null)
    {
        var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        if (receiveBuffer is { } size) s.ReceiveBufferSize = size;
        s.Connect(new IPEndPoint(IPAddress.Loopback, port));
        return new RawNbdClient(s);
    }

    public static RawNbdClient Unix(string path)
    {
        var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        s.Connect(new UnixDomainSocketEndPoint(path));
        return new RawNbdClient(s);
    }

    public bool Structured { get; private set; }

    /// <summary>Bytes the server sent that this client has not read yet (its socket's receive queue).</summary>
    public int Available => _socket.Available;

    // ---- handshake ----------------------------------------------------------------------------------------------

    /// <summary>Reads NBDMAGIC, IHAVEOPT and the handshake flags.</summary>
    public ushort ReadHello()
    {
        var b = ReadExactly(18);
        if (BinaryPrimitives.ReadUInt64BigEndian(b) != NbdMagic) throw new InvalidDataException("no NBDMAGIC");
        if (BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(8)) != IHaveOpt) throw new InvalidDataException("no IHAVEOPT");
        return BinaryPrimitives.ReadUInt16BigEndian(b.AsSpan(16));
    }

    public void SendClientFlags(uint flags) => Send(U32(flags));

    /// <summary>Hello plus client flags FIXED_NEWSTYLE | NO_ZEROES, as every traced client sends.</summary>
    public RawNbdClient Greet(uint flags = ClientFixedNewstyle | ClientNoZeroes)
    {
        ReadHello();
        SendClientFlags(flags);
        return this;
    }

    public void SendOption(uint option, byte[]? data = null, ulong magic = IHaveOpt, uint? length = null)
    {
        data ??= [];
        var h = new byte[16];
        BinaryPrimitives.WriteUInt64BigEndian(h, magic);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(12), length ?? (uint)data.Length);
        Send([.. h, .. data]);
    }

    public sealed record OptionReply(uint Option, uint Type, byte[] Data)
    {
        public string Text => Encoding.UTF8.GetString(Data);
    }

    public OptionReply ReadOptionReply()
    {
        var h = ReadExactly(20);
        if (BinaryPrimitives.ReadUInt64BigEndian(h) != OptionReplyMagic) throw new InvalidDataException("bad option reply magic");
        var length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
        return new OptionReply(BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(8)), BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12)), ReadExactly((int)length));
    }

    /// <summary>Every reply of one option, up to and including its final one (ACK or an error).</summary>
    public List<OptionReply> Option(uint option, byte[]? data = null)
    {
        SendOption(option, data);
        var replies = new List<OptionReply>();
        while (true)
        {
            var r = ReadOptionReply();
            replies.Add(r);
            if (r.Type == Rep.Ack || (r.Type & 0x80000000) != 0) return replies;
        }
    }

    public void NegotiateStructuredReplies()
    {
        var r = Option(Opt.StructuredReply);
        if (r[^1].Type != Rep.Ack) throw new InvalidDataException($"STRUCTURED_REPLY refused: {r[^1].Type:x}");
        Structured = true;
    }

    public static byte[] InfoRequest(string name, params ushort[] infos)
    {
        var n = Encoding.UTF8.GetBytes(name);
        var d = new byte[4 + n.Length + 2 + 2 * infos.Length];
        BinaryPrimitives.WriteUInt32BigEndian(d, (uint)n.Length);
        n.CopyTo(d, 4);
        BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(4 + n.Length), (ushort)infos.Length);
        for (var i = 0; i < infos.Length; i++) BinaryPrimitives.WriteUInt16BigEndian(d.AsSpan(6 + n.Length + 2 * i), infos[i]);
        return d;
    }

    public static byte[] MetaRequest(string export, params string[] queries)
    {
        var ms = new MemoryStream();
        var n = Encoding.UTF8.GetBytes(export);
        ms.Write(U32((uint)n.Length)); ms.Write(n);
        ms.Write(U32((uint)queries.Length));
        foreach (var q in queries) { var b = Encoding.UTF8.GetBytes(q); ms.Write(U32((uint)b.Length)); ms.Write(b); }
        return ms.ToArray();
    }

    public sealed record ExportInfo(ulong Size, TxFlags Flags, uint MinBlock, uint PreferredBlock, uint MaxBlock, string? Name, string? Description);

    /// <summary>Decodes the NBD_REP_INFO replies of an INFO or GO.</summary>
    public static ExportInfo ParseInfo(IEnumerable<OptionReply> replies)
    {
        ulong size = 0; TxFlags flags = 0; uint min = 0, pref = 0, max = 0; string? name = null, desc = null;
        foreach (var r in replies.Where(r => r.Type == Rep.Info))
        {
            var d = r.Data;
            switch (BinaryPrimitives.ReadUInt16BigEndian(d))
            {
                case NbdProtocol.Info.Export:
                    if (d.Length != 12) throw new InvalidDataException($"NBD_INFO_EXPORT of {d.Length} bytes");
                    size = BinaryPrimitives.ReadUInt64BigEndian(d.AsSpan(2));
                    flags = (TxFlags)BinaryPrimitives.ReadUInt16BigEndian(d.AsSpan(10));
                    break;
                case NbdProtocol.Info.Name: name = Encoding.UTF8.GetString(d, 2, d.Length - 2); break;
                case NbdProtocol.Info.Description: desc = Encoding.UTF8.GetString(d, 2, d.Length - 2); break;
                case NbdProtocol.Info.BlockSize:
                    if (d.Length != 14) throw new InvalidDataException($"NBD_INFO_BLOCK_SIZE of {d.Length} bytes");
                    min = BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(2));
                    pref = BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(6));
                    max = BinaryPrimitives.ReadUInt32BigEndian(d.AsSpan(10));
                    break;
            }
        }
        return new ExportInfo(size, flags, min, pref, max, name, desc);
    }

    /// <summary>Greets, optionally negotiates structured replies (and base:allocation), then GO; fails unless acknowledged.</summary>
    public static RawNbdClient Open(int port, string export, bool structured = false, bool meta = false) =>
        Tcp(port).Greet().Go(export, structured, meta);

    public RawNbdClient Go(string export, bool structured = false, bool meta = false)
    {
        if (structured) NegotiateStructuredReplies();
        if (meta)
        {
            var m = Option(Opt.SetMetaContext, MetaRequest(export, BaseAllocation));
            if (m[^1].Type != Rep.Ack || m.Count != 2) throw new InvalidDataException("base:allocation not selected");
        }
        var replies = Option(Opt.Go, InfoRequest(export, NbdProtocol.Info.BlockSize));
        if (replies[^1].Type != Rep.Ack) throw new InvalidDataException($"GO {export} refused: {replies[^1].Type:x} {replies[^1].Text}");
        Info = ParseInfo(replies);
        return this;
    }

    public ExportInfo? Info { get; private set; }

    // ---- transmission -------------------------------------------------------------------------------------------

    public void SendRequest(ushort type, ulong cookie, ulong offset, uint length, byte[]? payload = null, CmdFlags flags = CmdFlags.None)
    {
        var h = new byte[RequestHeaderLength];
        BinaryPrimitives.WriteUInt32BigEndian(h, RequestMagic);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(4), (ushort)flags);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(16), offset);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(24), length);
        if (type != Cmd.Disc) _pending[cookie] = (type, length);
        Send(payload == null ? h : [.. h, .. payload]);
    }

    /// <summary>A decoded reply: a simple reply, or one structured chunk (all chunks this server sends carry DONE).</summary>
    public sealed record Reply(ulong Cookie, uint Error, byte[]? Data, bool IsChunk = false, ushort ChunkType = 0,
        ushort ChunkFlags = 0, ulong DataOffset = 0, uint ContextId = 0, (uint Length, uint Flags)[]? Extents = null);

    public Reply ReadReply()
    {
        var magic = BinaryPrimitives.ReadUInt32BigEndian(ReadExactly(4));
        if (magic == SimpleReplyMagic)
        {
            var b = ReadExactly(12);
            var error = BinaryPrimitives.ReadUInt32BigEndian(b);
            var cookie = BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(4));
            if (!_pending.Remove(cookie, out var req)) throw new InvalidDataException($"reply for unknown cookie {cookie}");
            var data = req.Type == Cmd.Read && error == 0 ? ReadExactly((int)req.Length) : null;
            return new Reply(cookie, error, data);
        }
        if (magic == StructuredReplyMagic)
        {
            var b = ReadExactly(16);
            var flags = BinaryPrimitives.ReadUInt16BigEndian(b);
            var type = BinaryPrimitives.ReadUInt16BigEndian(b.AsSpan(2));
            var cookie = BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(4));
            var payload = ReadExactly((int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(12)));
            if (!_pending.ContainsKey(cookie)) throw new InvalidDataException($"chunk for unknown cookie {cookie}");
            if ((flags & Chunk.FlagDone) != 0) _pending.Remove(cookie);
            switch (type)
            {
                case Chunk.OffsetData:
                    return new Reply(cookie, 0, payload[8..], true, type, flags, BinaryPrimitives.ReadUInt64BigEndian(payload));
                case Chunk.Error:
                    return new Reply(cookie, BinaryPrimitives.ReadUInt32BigEndian(payload), null, true, type, flags);
                case Chunk.BlockStatus:
                    var extents = new (uint, uint)[(payload.Length - 4) / 8];
                    for (var i = 0; i < extents.Length; i++)
                        extents[i] = (BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(4 + 8 * i)), BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(8 + 8 * i)));
                    return new Reply(cookie, 0, null, true, type, flags, 0, BinaryPrimitives.ReadUInt32BigEndian(payload), extents);
                default:
                    return new Reply(cookie, 0, payload, true, type, flags);
            }
        }
        throw new InvalidDataException($"bad reply magic 0x{magic:x8}");
    }

    /// <summary>Sends one request and reads its reply (nothing else in flight).</summary>
    public Reply Request(ushort type, ulong offset, uint length, byte[]? payload = null, CmdFlags flags = CmdFlags.None)
    {
        var cookie = (ulong)Random.Shared.NextInt64();
        SendRequest(type, cookie, offset, length, payload, flags);
        var r = ReadReply();
        if (r.Cookie != cookie) throw new InvalidDataException($"reply for cookie {r.Cookie}, expected {cookie}");
        return r;
    }

    public uint Write(ulong offset, byte[] data, CmdFlags flags = CmdFlags.None) => Request(Cmd.Write, offset, (uint)data.Length, data, flags).Error;

    public byte[] Read(ulong offset, uint length)
    {
        var r = Request(Cmd.Read, offset, length);
        if (r.Error != 0) throw new InvalidDataException($"READ {offset}+{length} failed: errno {r.Error}");
        return r.Data!;
    }

    /// <summary>True when the server closed the connection (EOF or reset) within the receive timeout.</summary>
    public bool IsClosedByServer()
    {
        try
        {
            var buf = new byte[4096];
            while (true)
            {
                if (_stream.Read(buf) == 0) return true;
            }
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionReset }) { return true; }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut }) { return false; }
    }

    public void Send(byte[] data) => _stream.Write(data);

    public byte[] ReadExactly(int n)
    {
        var b = new byte[n];
        _stream.ReadExactly(b);
        return b;
    }

    /// <summary>Abrupt close (RST if data is unread): a client that vanishes.</summary>
    public void Abort()
    {
        _socket.LingerState = new LingerOption(true, 0);
        _socket.Close();
    }

    public void Dispose() => _stream.Dispose();

    private static byte[] U32(uint v)
    {
        var b = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(b, v);
        return b;
    }

    public static byte[] Pattern(int length, int seed)
    {
        var b = new byte[length];
        new Random(seed).NextBytes(b);
        return b;
    }
}
