using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using Akka.Event;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Host.Nbd;

/// <summary>An export opened for transmission: the device actor that takes the bios and what the client was told.</summary>
internal sealed record NbdExport(string Name, Akka.Actor.IActorRef Device, long Size, bool ReadOnly, TxFlags Flags, int PreferredBlock);

/// <summary>A client broke the protocol in a way that leaves no choice but to drop it.</summary>
internal sealed class NbdProtocolException(string message) : Exception(message);

/// <summary>
/// Fixed-newstyle negotiation, one option at a time: the server answers each option with its final reply before
/// reading the next, ERR_UNSUP for anything it does not know. Ends with an opened export (GO or EXPORT_NAME),
/// or null when the client aborted. Runs on the connection's own thread, blocking on the socket and on the
/// manager's answers: no .NET async socket call is made, so the socket never joins the runtime's epoll loop.
/// </summary>
internal sealed class NbdHandshake(NbdServer server, Stream input, Stream output, string peer, NbdTlsMode tls = NbdTlsMode.Off,
    Func<(Stream Input, Stream Output)>? startTls = null)
{
    /// <summary>TLS is running: everything from here on is encrypted (STARTTLS succeeded).</summary>
    public bool Secure { get; private set; }

    private readonly ArrayBufferWriter<byte> _data = new(256);
    private readonly byte[] _header = new byte[20];
    private bool _noZeroes;
    private string? _metaExport;

    /// <summary>Structured replies were negotiated: every READ reply is then a chunk.</summary>
    public bool Structured { get; private set; }
    /// <summary>base:allocation was selected for the export that was opened.</summary>
    public bool MetaAllocation { get; private set; }

    public NbdExport? Run()
    {
        var hello = new byte[18];
        BinaryPrimitives.WriteUInt64BigEndian(hello, NbdMagic);
        BinaryPrimitives.WriteUInt64BigEndian(hello.AsSpan(8), IHaveOpt);
        BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(16), FlagFixedNewstyle | FlagNoZeroes);
        output.Write(hello);
        output.Flush();

        var buf = new byte[16];
        input.ReadExactly(buf.AsSpan(0, 4));
        var clientFlags = BinaryPrimitives.ReadUInt32BigEndian(buf);
        if ((clientFlags & ~(ClientFixedNewstyle | ClientNoZeroes)) != 0)
            throw new NbdProtocolException($"unknown client flags 0x{clientFlags:x}");
        _noZeroes = (clientFlags & ClientNoZeroes) != 0;

        while (true)
        {
            input.ReadExactly(buf.AsSpan(0, 16));
            var magic = BinaryPrimitives.ReadUInt64BigEndian(buf);
            if (magic != IHaveOpt) throw new NbdProtocolException($"bad option magic 0x{magic:x16}");
            var option = BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(8));
            var length = BinaryPrimitives.ReadUInt32BigEndian(buf.AsSpan(12));
            if (length > MaxOptionLength) throw new NbdProtocolException($"option {option} is {length} bytes (limit {MaxOptionLength})");
            var data = length == 0 ? [] : new byte[length];
            input.ReadExactly(data);

            if (server.Stopping && option != Opt.Abort)
            {
                Error(option, Rep.ErrShutdown, "server is shutting down");
                continue;
            }
            if (tls == NbdTlsMode.Require && !Secure && option is not (Opt.StartTls or Opt.Abort))
            {
                // Nothing is told (no export listed, none opened) before TLS: EXPORT_NAME has no error reply.
                if (option == Opt.ExportName)
                {
                    server.Log.Info("NBD {0}: EXPORT_NAME without TLS, which the server requires: closing", peer);
                    return null;
                }
                Error(option, Rep.ErrTlsReqd, "TLS is required: send STARTTLS first");
                continue;
            }
            switch (option)
            {
                case Opt.ExportName:
                    return ExportName(data);
                case Opt.Abort:
                    // The client may close without reading the ACK: ignore a failed send.
                    try { Reply(option, Rep.Ack); } catch (IOException) { }
                    return null;
                case Opt.List: List(data); break;
                case Opt.Info:
                case Opt.Go:
                    if (InfoOrGo(option, data) is { } export) return export;
                    break;
                case Opt.StructuredReply:
                    if (data.Length != 0) { Error(option, Rep.ErrInvalid, "STRUCTURED_REPLY takes no data"); break; }
                    Structured = true;
                    Reply(option, Rep.Ack);
                    break;
                case Opt.ListMetaContext:
                case Opt.SetMetaContext:
                    MetaContext(option, data);
                    break;
                case Opt.StartTls:
                    StartTls(data);
                    break;
                default:
                    Error(option, Rep.ErrUnsup, $"option {option} is not supported");
                    break;
            }
        }
    }

    // ---- options ----------------------------------------------------------------------------------------------

    private void StartTls(byte[] data)
    {
        if (tls == NbdTlsMode.Off || startTls == null) { Error(Opt.StartTls, Rep.ErrUnsup, "TLS is not configured on this server"); return; }
        if (Secure) { Error(Opt.StartTls, Rep.ErrInvalid, "TLS is already running"); return; }
        if (data.Length != 0) { Error(Opt.StartTls, Rep.ErrInvalid, "STARTTLS takes no data"); return; }
        Reply(Opt.StartTls, Rep.Ack);
        (input, output) = startTls();
        Secure = true;
        // What was negotiated in the clear does not carry over (the spec: state before TLS is discarded).
        Structured = false;
        _metaExport = null;
    }

    private NbdExport? ExportName(byte[] data)
    {
        var (export, error) = Open(Encoding.UTF8.GetString(data), keep: true);
        if (export == null)
        {
            // EXPORT_NAME has no error reply: closing is the only answer to an unknown name.
            server.Log.Info("NBD {0}: EXPORT_NAME: {1}", peer, error);
            return null;
        }
        var reply = new byte[_noZeroes ? 10 : 134];
        BinaryPrimitives.WriteUInt64BigEndian(reply, (ulong)export.Size);
        BinaryPrimitives.WriteUInt16BigEndian(reply.AsSpan(8), (ushort)export.Flags);
        try
        {
            output.Write(reply);
            output.Flush();
        }
        catch
        {
            server.CloseExportAsync(export.Name, export.Device).GetAwaiter().GetResult();
            throw;
        }
        MetaAllocation = false; // block status needs SET_META_CONTEXT + GO
        return export;
    }

    private void List(byte[] data)
    {
        if (data.Length != 0) { Error(Opt.List, Rep.ErrInvalid, "LIST takes no data"); return; }
        var names = server.ListExportsAsync().GetAwaiter().GetResult();
        foreach (var name in names)
        {
            var bytes = Encoding.UTF8.GetBytes(name);
            BinaryPrimitives.WriteUInt32BigEndian(_data.GetSpan(4), (uint)bytes.Length);
            _data.Advance(4);
            _data.Write(bytes);
            Reply(Opt.List, Rep.Server, final: false);
        }
        Reply(Opt.List, Rep.Ack);
    }

    private NbdExport? InfoOrGo(uint option, byte[] data)
    {
        // u32 namelen, name, u16 n, u16[n] info requests.
        if (data.Length < 6) { Error(option, Rep.ErrInvalid, "option too short"); return null; }
        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > data.Length - 6) { Error(option, Rep.ErrInvalid, "export name length exceeds the option"); return null; }
        var requested = Encoding.UTF8.GetString(data, 4, (int)nameLength);
        var at = 4 + (int)nameLength;
        var count = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at));
        if (data.Length != at + 2 + 2 * count) { Error(option, Rep.ErrInvalid, "information request count does not match the option length"); return null; }
        bool wantName = false, wantDescription = false;
        for (var i = 0; i < count; i++)
            switch (BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(at + 2 + 2 * i)))
            {
                case NbdProtocol.Info.Name: wantName = true; break;
                case NbdProtocol.Info.Description: wantDescription = true; break;
            }

        var (export, error) = Open(requested, keep: option == Opt.Go);
        if (export == null)
        {
            Error(option, Rep.ErrUnknown, error!);
            return null;
        }

        try
        {
            SendInfos(option, export, wantName, wantDescription);
            Reply(option, Rep.Ack);
        }
        catch
        {
            if (option == Opt.Go) server.CloseExportAsync(export.Name, export.Device).GetAwaiter().GetResult();
            throw;
        }
        if (option != Opt.Go) return null;
        // A meta context selected for another export does not carry over.
        MetaAllocation = _metaExport != null && (_metaExport == export.Name || _metaExport == requested);
        return export;
    }

    private void SendInfos(uint option, NbdExport export, bool wantName, bool wantDescription)
    {
        PutU16(NbdProtocol.Info.Export);
        PutU64((ulong)export.Size);
        PutU16((ushort)export.Flags);
        Reply(option, Rep.Info, final: false);
        if (wantName)
        {
            PutU16(NbdProtocol.Info.Name);
            _data.Write(Encoding.UTF8.GetBytes(export.Name));
            Reply(option, Rep.Info, final: false);
        }
        if (wantDescription)
        {
            PutU16(NbdProtocol.Info.Description);
            _data.Write(Encoding.UTF8.GetBytes($"dm device {export.Name}, {export.Size >> 9} sectors{(export.ReadOnly ? ", read-only" : "")}"));
            Reply(option, Rep.Info, final: false);
        }
        // Sent even when not asked for (the spec allows it): libnbd and qemu then align on the client side.
        PutU16(NbdProtocol.Info.BlockSize);
        PutU32(MinBlock);
        PutU32((uint)export.PreferredBlock);
        PutU32((uint)server.Options.MaxPayload);
        Reply(option, Rep.Info, final: false);
    }

    private void MetaContext(uint option, byte[] data)
    {
        var set = option == Opt.SetMetaContext;
        if (set && !Structured) { Error(option, Rep.ErrInvalid, "SET_META_CONTEXT needs structured replies"); return; }
        // u32 namelen, name, u32 nqueries, (u32 len, query)*.
        if (!TryParseMeta(data, out var export, out var queries))
        {
            Error(option, Rep.ErrInvalid, "malformed meta context option");
            return;
        }
        var match = queries.Count == 0 ? !set : queries.Exists(q => q == BaseAllocation || (!set && q == "base:"));
        if (set)
        {
            MetaAllocation = false;
            _metaExport = match ? export : null;
        }
        if (match)
        {
            PutU32(BaseAllocationId);
            _data.Write(Encoding.UTF8.GetBytes(BaseAllocation));
            Reply(option, Rep.MetaContext, final: false);
        }
        Reply(option, Rep.Ack);
    }

    private static bool TryParseMeta(byte[] data, out string export, out List<string> queries)
    {
        export = "";
        queries = new List<string>();
        if (data.Length < 8) return false;
        var nameLength = BinaryPrimitives.ReadUInt32BigEndian(data);
        if (nameLength > data.Length - 8) return false;
        export = Encoding.UTF8.GetString(data, 4, (int)nameLength);
        var at = 4 + (int)nameLength;
        var count = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
        at += 4;
        for (var i = 0; i < count; i++)
        {
            if (data.Length - at < 4) return false;
            var length = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(at));
            at += 4;
            if (length > data.Length - at) return false;
            queries.Add(Encoding.UTF8.GetString(data, at, (int)length));
            at += (int)length;
        }
        return at == data.Length;
    }

    // ---- exports ----------------------------------------------------------------------------------------------

    /// <summary>The empty name is the default export: the only one there is, if there is exactly one.</summary>
    private (string? Name, string? Error) ResolveName(string requested)
    {
        if (requested.Length > 0) return (requested, null);
        var names = server.ListExportsAsync().GetAwaiter().GetResult();
        return names.Count == 1
            ? (names[0], null)
            : (null, $"no default export: {names.Count} exports, name one of them");
    }

    /// <summary>Opens <paramref name="requested"/> through the manager; INFO closes it again at once.</summary>
    private (NbdExport? Export, string? Error) Open(string requested, bool keep)
    {
        var (name, error) = ResolveName(requested);
        if (name == null) return (null, error);
        var (opened, openError) = server.OpenExportAsync(name).GetAwaiter().GetResult();
        // An internal export's name carries the cluster's secret: its errors and logs show it without (opened.Name).
        if (opened == null) return (null, InternalExport.IsInternal(name) ? openError : $"export '{name}': {openError}");
        // The size goes out as a byte count: one that does not fit in 63 bits would read as negative (or wrap).
        // Tables cannot be that large; refuse rather than advertise nonsense if one ever is.
        if (opened.Sectors is < 0 or > long.MaxValue >> Bio.SectorShift)
        {
            server.CloseExportAsync(name, opened.Device).GetAwaiter().GetResult();
            return (null, $"export '{name}': size of {opened.Sectors} sectors does not fit in a 64-bit byte count");
        }
        if (!keep) server.CloseExportAsync(name, opened.Device).GetAwaiter().GetResult();
        return (new NbdExport(InternalExport.IsInternal(name) ? opened.Name : name, opened.Device, opened.Sectors << 9, opened.ReadOnly, FlagsFor(opened), PreferredFor(opened, server.Options.MaxPayload)), null);
    }

    /// <summary>The device's preferred IO size (e.g. a stripe chunk) when it is a usable power of two, else the page.</summary>
    private static int PreferredFor(Dm.Opened o, int maxPayload) =>
        o.PreferredBlock >= MinBlock && o.PreferredBlock <= maxPayload && (o.PreferredBlock & (o.PreferredBlock - 1)) == 0
            ? o.PreferredBlock
            : DefaultPreferredBlock;

    private TxFlags FlagsFor(Dm.Opened o)
    {
        var f = TxFlags.HasFlags | TxFlags.SendFlush | TxFlags.SendCache | TxFlags.CanMultiConn;
        if (o.ReadOnly) f |= TxFlags.ReadOnly;
        else
        {
            f |= TxFlags.SendFua;
            if (o.SupportsDiscard) f |= TxFlags.SendTrim;
            if (o.SupportsWriteZeroes) f |= TxFlags.SendWriteZeroes | TxFlags.SendFastZero;
        }
        // Every read goes out as one chunk, so "don't fragment" always holds; it only means something with chunks.
        if (Structured) f |= TxFlags.SendDf;
        return f;
    }

    // ---- replies ----------------------------------------------------------------------------------------------

    private void PutU16(ushort v) { BinaryPrimitives.WriteUInt16BigEndian(_data.GetSpan(2), v); _data.Advance(2); }
    private void PutU32(uint v) { BinaryPrimitives.WriteUInt32BigEndian(_data.GetSpan(4), v); _data.Advance(4); }
    private void PutU64(ulong v) { BinaryPrimitives.WriteUInt64BigEndian(_data.GetSpan(8), v); _data.Advance(8); }

    private void Error(uint option, uint type, string message)
    {
        _data.Write(Encoding.UTF8.GetBytes(message));
        Reply(option, type);
    }

    /// <summary>Sends an option reply carrying what was put in <see cref="_data"/>; the final reply is flushed.</summary>
    private void Reply(uint option, uint type, bool final = true)
    {
        BinaryPrimitives.WriteUInt64BigEndian(_header, OptionReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(_header.AsSpan(8), option);
        BinaryPrimitives.WriteUInt32BigEndian(_header.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(_header.AsSpan(16), (uint)_data.WrittenCount);
        output.Write(_header);
        if (_data.WrittenCount > 0) output.Write(_data.WrittenSpan);
        _data.Clear();
        if (final) output.Flush();
    }
}
