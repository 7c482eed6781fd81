using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace DmActors;

/// <summary>NbdDisk: one connection and its fixed-newstyle handshake.</summary>
public sealed partial class NbdDisk
{
    // ---- connection and handshake -------------------------------------------------------------------------------

    private sealed class NbdConnectException(string message, bool refused = false) : Exception(message)
    {
        public bool Refused { get; } = refused;
    }

    /// <summary>One negotiated connection, with what it has in flight.</summary>
    private sealed class Connection : IDisposable, IPlugged
    {
        private Socket _socket; // the plaintext end of the TLS relay once STARTTLS is done
        private int _disposed;

        private Connection(Socket socket) => _socket = socket;

        public long Size { get; private set; }
        public ushort Flags { get; private set; }
        public int MaxPayload { get; private set; } = Nbd.DefaultMaxPayload;
        public Thread? Reader;
        // Guarded by the disk's _gate:
        /// <summary>Every request handed to this connection and not answered, by cookie (queued to send or on the wire).</summary>
        public readonly Dictionary<ulong, WireRequest> InFlight = new();
        public readonly List<WireRequest> ToSend = new();
        /// <summary>The reply whose payload the reader is receiving: only the reader answers it.</summary>
        public WireRequest? Reading;
        public bool Dead;
        /// <summary>The server answered ESHUTDOWN: no new requests; closed once the rest is answered.</summary>
        public bool Draining;
        /// <summary>The server it reached (connections to one server drain together).</summary>
        public string Where = "";
        /// <summary>Its place in the order of adoption.</summary>
        public long Seq;
        /// <summary>A thread is sending for it (the sending role: one at a time).</summary>
        public bool Sending;
        /// <summary>A plugged thread will send for it when it unplugs.</summary>
        public bool Deferred;
        public NbdDisk? Owner;
        void IPlugged.Unplug() => Owner!.Unplugged(this);
        // Owned by the thread in the sending role:
        public readonly List<WireRequest> Batch = new();
        public readonly SendState Out = new();
        public SafeHandle Handle => _socket.SafeHandle;
        public bool IsClosed => Volatile.Read(ref _disposed) != 0;

        public static Connection Open(NbdDiskTarget target, NbdDiskOptions options)
        {
            EndPoint endpoint;
            try { endpoint = target.Endpoint(); }
            catch (Exception e) { throw new NbdConnectException($"no endpoint for export '{target.ExportName}': {e.Message}"); }
            var where = $"server {Describe(endpoint)} export '{target.ExportName}'";
            var socket = endpoint is UnixDomainSocketEndPoint
                ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                : endpoint is IPEndPoint ip ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
                : new Socket(SocketType.Stream, ProtocolType.Tcp);
            var conn = new Connection(socket) { Where = Describe(endpoint) };
            bool timedOut = false, negotiated = false;
            // One deadline for connect and handshake: closing the socket ends whatever call is blocked.
            using var timer = new Timer(_ =>
            {
                lock (conn) { if (negotiated) return; timedOut = true; }
                socket.Dispose();
            }, null, options.ConnectTimeout, Timeout.InfiniteTimeSpan);
            try
            {
                socket.Connect(endpoint);
                if (socket.ProtocolType == ProtocolType.Tcp)
                {
                    socket.NoDelay = true;
                    socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
                    socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, Math.Max(1, (int)options.KeepAlive.TotalSeconds));
                    socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 1);
                    socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 5);
                }
                conn.Handshake(target.ExportName, options.Tls);
                lock (conn)
                {
                    if (timedOut) throw new ObjectDisposedException(nameof(Socket));
                    negotiated = true;
                }
                return conn;
            }
            catch (Exception e)
            {
                lock (conn) negotiated = true; // the timer must not fire into the next use of nothing
                conn.Dispose();
                if (e is NbdConnectException n) throw new NbdConnectException($"{where}: {n.Message}", n.Refused);
                if (timedOut)
                    throw new NbdConnectException($"{where}: timed out after {options.ConnectTimeout.TotalSeconds:0.###} s connecting and negotiating");
                if (e is SocketException s)
                    throw new NbdConnectException($"{where}: {SocketReason(s)}");
                if (e is EndOfStreamException)
                    throw new NbdConnectException($"{where}: the server closed the connection during the handshake");
                throw new NbdConnectException($"{where}: {e.Message}");
            }
        }

        private static string Describe(EndPoint e) => e is UnixDomainSocketEndPoint u ? $"unix:{u}" : e.ToString() ?? "?";

        private static string SocketReason(SocketException s) => s.SocketErrorCode switch
        {
            SocketError.ConnectionRefused => "connection refused",
            SocketError.AddressNotAvailable or SocketError.HostNotFound => $"no such address ({s.Message})",
            SocketError.ConnectionReset => "connection reset by the server",
            _ when s.SocketErrorCode == SocketError.AddressFamilyNotSupported || s.ErrorCode == 2 => $"no such socket ({s.Message})",
            _ => s.Message,
        };

        private void Handshake(string export, Func<System.Net.Security.SslClientAuthenticationOptions>? tls)
        {
            var hello = new byte[18];
            ReceiveAll(hello);
            var magic = BinaryPrimitives.ReadUInt64BigEndian(hello);
            var opt = BinaryPrimitives.ReadUInt64BigEndian(hello.AsSpan(8));
            if (magic != Nbd.Magic) throw new NbdConnectException($"not an NBD server (greeting 0x{magic:x16}, want NBDMAGIC)");
            if (opt == Nbd.OldstyleMagic) throw new NbdConnectException("the server speaks oldstyle NBD; fixed newstyle is required");
            if (opt != Nbd.IHaveOpt) throw new NbdConnectException($"not an NBD server (0x{opt:x16} after NBDMAGIC, want IHAVEOPT)");
            var serverFlags = BinaryPrimitives.ReadUInt16BigEndian(hello.AsSpan(16));
            if ((serverFlags & Nbd.FlagFixedNewstyle) == 0) throw new NbdConnectException("the server does not offer fixed newstyle negotiation");
            var noZeroes = (serverFlags & Nbd.FlagNoZeroes) != 0;
            SendAll(U32(Nbd.FlagFixedNewstyle | (noZeroes ? Nbd.FlagNoZeroes : 0u)));
            if (tls != null) StartTls(tls());

            var name = Encoding.UTF8.GetBytes(export);
            var go = new byte[4 + name.Length + 4];
            BinaryPrimitives.WriteUInt32BigEndian(go, (uint)name.Length);
            name.CopyTo(go, 4);
            BinaryPrimitives.WriteUInt16BigEndian(go.AsSpan(4 + name.Length), 1);
            BinaryPrimitives.WriteUInt16BigEndian(go.AsSpan(6 + name.Length), Nbd.InfoBlockSize);
            SendOption(Nbd.OptGo, go);
            bool haveExport = false;
            while (true)
            {
                var h = new byte[20];
                ReceiveAll(h);
                if (BinaryPrimitives.ReadUInt64BigEndian(h) != Nbd.OptionReplyMagic) throw new NbdConnectException("garbage in place of an option reply (bad magic)");
                var option = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(8));
                var type = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
                var length = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16));
                if (option != Nbd.OptGo) throw new NbdConnectException($"reply to option {option}, but GO was sent");
                if (length > Nbd.MaxOptionReply) throw new NbdConnectException($"option reply of {length} bytes is too long");
                var data = new byte[length];
                ReceiveAll(data);
                if (type == Nbd.RepErrUnsup) { ExportNameFallback(name, noZeroes); break; }
                if ((type & 0x80000000) != 0)
                {
                    // A stopping server (ERR_SHUTDOWN) may be back soon; any other refusal is the server's answer.
                    var text = Encoding.UTF8.GetString(data);
                    throw new NbdConnectException($"export refused: {RepName(type)}{(text.Length > 0 ? ": " + text : "")}", refused: type != Nbd.RepErrShutdown);
                }
                if (type == Nbd.RepAck)
                {
                    if (!haveExport) throw new NbdConnectException("GO acknowledged without NBD_INFO_EXPORT");
                    break;
                }
                if (type != Nbd.RepInfo) throw new NbdConnectException($"unexpected option reply type {type}");
                if (data.Length < 2) throw new NbdConnectException("NBD_REP_INFO without an information type");
                switch (BinaryPrimitives.ReadUInt16BigEndian(data))
                {
                    case Nbd.InfoExport:
                        if (data.Length != 12) throw new NbdConnectException($"NBD_INFO_EXPORT of {data.Length} bytes");
                        Size = (long)BinaryPrimitives.ReadUInt64BigEndian(data.AsSpan(2));
                        Flags = BinaryPrimitives.ReadUInt16BigEndian(data.AsSpan(10));
                        haveExport = true;
                        break;
                    case Nbd.InfoBlockSize:
                        if (data.Length != 14) throw new NbdConnectException($"NBD_INFO_BLOCK_SIZE of {data.Length} bytes");
                        var min = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(2));
                        var max = BinaryPrimitives.ReadUInt32BigEndian(data.AsSpan(10));
                        if (min > Bio.Sector512) throw new NbdConnectException($"the export needs {min}-byte blocks; this client sends 512-byte sectors");
                        if (max != 0 && max != uint.MaxValue) MaxPayload = (int)Math.Clamp(max & ~(uint)(Bio.Sector512 - 1), Bio.Sector512, Nbd.DefaultMaxPayload);
                        break;
                }
            }
            if (Size < 0 || Size % Bio.Sector512 != 0) throw new NbdConnectException($"export size {Size} is not a multiple of 512 bytes");
            if ((Flags & Nbd.FlagHasFlags) == 0) throw new NbdConnectException($"transmission flags 0x{Flags:x} lack NBD_FLAG_HAS_FLAGS");
        }

        /// <summary>NBD_OPT_STARTTLS, the TLS handshake, then the rest of the negotiation and all IO over the relay.</summary>
        private void StartTls(System.Net.Security.SslClientAuthenticationOptions options)
        {
            SendOption(Nbd.OptStartTls, []);
            var h = new byte[20];
            ReceiveAll(h);
            var type = BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(12));
            var data = new byte[Math.Min(BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(16)), Nbd.MaxOptionReply)];
            ReceiveAll(data);
            if (type != Nbd.RepAck)
                throw new NbdConnectException($"STARTTLS refused: {RepName(type)}{(data.Length > 0 ? ": " + Encoding.UTF8.GetString(data) : "")}", refused: true);
            var network = _socket;
            var ssl = new System.Net.Security.SslStream(new NetworkStream(network, ownsSocket: true));
            try { ssl.AuthenticateAsClient(options); }
            catch (Exception e) when (e is System.Security.Authentication.AuthenticationException or IOException)
            {
                ssl.Dispose();
                throw new NbdConnectException($"TLS handshake failed: {e.Message}", refused: true);
            }
            _socket = TlsRelay.Start(ssl, network, $"nbd disk {options.TargetHost}", abortive: true);
        }

        /// <summary>A server without GO: NBD_OPT_EXPORT_NAME, which a refusing server answers by closing.</summary>
        private void ExportNameFallback(byte[] name, bool noZeroes)
        {
            SendOption(Nbd.OptExportName, name);
            var r = new byte[noZeroes ? 10 : 134];
            try { ReceiveAll(r); }
            catch (EndOfStreamException) { throw new NbdConnectException("export refused: the server closed the connection (unknown export?)", refused: true); }
            Size = (long)BinaryPrimitives.ReadUInt64BigEndian(r);
            Flags = BinaryPrimitives.ReadUInt16BigEndian(r.AsSpan(8));
        }

        private static string RepName(uint type) => type switch
        {
            Nbd.RepErrUnsup => "NBD_REP_ERR_UNSUP",
            0x80000002 => "NBD_REP_ERR_POLICY",
            0x80000003 => "NBD_REP_ERR_INVALID",
            0x80000004 => "NBD_REP_ERR_PLATFORM",
            0x80000005 => "NBD_REP_ERR_TLS_REQD",
            0x80000006 => "NBD_REP_ERR_UNKNOWN",
            0x80000007 => "NBD_REP_ERR_SHUTDOWN",
            0x80000008 => "NBD_REP_ERR_BLOCK_SIZE_REQD",
            0x80000009 => "NBD_REP_ERR_TOO_BIG",
            _ => $"error 0x{type:x8}",
        };

        private void SendOption(uint option, byte[] data)
        {
            var h = new byte[16 + data.Length];
            BinaryPrimitives.WriteUInt64BigEndian(h, Nbd.IHaveOpt);
            BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(8), option);
            BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(12), (uint)data.Length);
            data.CopyTo(h, 16);
            SendAll(h);
        }

        private static byte[] U32(uint v)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteUInt32BigEndian(b, v);
            return b;
        }

        public void SendAll(ReadOnlySpan<byte> data)
        {
            while (data.Length > 0) data = data[_socket.Send(data)..];
        }

        public void ReceiveAll(Span<byte> into)
        {
            while (into.Length > 0)
            {
                var n = _socket.Receive(into);
                if (n == 0) throw new EndOfStreamException("the server closed the connection");
                into = into[n..];
            }
        }

        public int Receive(Span<byte> into)
        {
            var n = _socket.Receive(into);
            if (n == 0) throw new EndOfStreamException("the server closed the connection");
            return n;
        }

        /// <summary>
        /// Closes abortively (a reset, and what the kernel has not sent yet is dropped, so a cut-off peer does not get
        /// it when the network returns); a reader or sender blocked on the socket wakes.
        /// </summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            try { _socket.LingerState = new LingerOption(true, 0); } catch (Exception) { /* already gone */ }
            try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception) { /* not connected, or already gone */ }
            _socket.Dispose();
        }
    }

    /// <summary>
    /// The NBD wire constants this client needs (doc/proto.md of NetworkBlockDevice/nbd), duplicated from the
    /// server's NbdProtocol because Targets cannot reference the host.
    /// </summary>
    private static class Nbd
    {
        public const ulong Magic = 0x4e42444d41474943, IHaveOpt = 0x49484156454F5054, OldstyleMagic = 0x0000420281861253;
        public const ulong OptionReplyMagic = 0x0003e889045565a9;
        public const uint RequestMagic = 0x25609513, SimpleReplyMagic = 0x67446698;
        public const int RequestHeaderLength = 28, SimpleReplyLength = 16;
        public const uint FlagFixedNewstyle = 1, FlagNoZeroes = 2;
        public const uint OptExportName = 1, OptStartTls = 5, OptGo = 7;
        public const uint RepAck = 1, RepInfo = 3, RepErrUnsup = 0x80000001, RepErrShutdown = 0x80000007;
        public const ushort InfoExport = 0, InfoBlockSize = 3;
        public const ushort FlagHasFlags = 1, FlagReadOnly = 2, FlagSendFlush = 4, FlagSendFua = 8, FlagSendTrim = 32, FlagSendWriteZeroes = 64, FlagCanMultiConn = 256;
        public const ushort CmdRead = 0, CmdWrite = 1, CmdFlush = 3, CmdTrim = 4, CmdWriteZeroes = 6;
        public const ushort CmdFlagFua = 1, CmdFlagNoHole = 2, CmdFlagFastZero = 16;
        public const ushort FlagSendFastZero = 2048, FastZeroFlags = FlagSendWriteZeroes | FlagSendFastZero;
        public const uint ErrPerm = 1, ErrIo = 5, ErrNoMem = 12, ErrInval = 22, ErrNoSpc = 28, ErrNotSup = 95, ErrShutdown = 108;
        /// <summary>Without NBD_INFO_BLOCK_SIZE the spec promises 32 MiB payloads.</summary>
        public const int DefaultMaxPayload = 32 << 20;
        /// <summary>TRIM and WRITE_ZEROES lengths per request (the field is 32 bits; stay well inside it).</summary>
        public const int MaxCommandLength = 1 << 30;
        public const int MaxOptionReply = 64 << 10;
        public static readonly byte[] ZeroBuffer = new byte[1 << 20];
    }
}
