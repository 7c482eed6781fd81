using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace DmActors;

/// <summary>Where an <see cref="NbdDisk"/> connects: asked again on every (re)connect, so the cluster can point it elsewhere.</summary>
public sealed record NbdDiskTarget(Func<EndPoint> Endpoint, string ExportName);

public sealed record NbdDiskOptions
{
    /// <summary>Bounds one connect plus handshake.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(2);
    /// <summary>How long requests are held and retried across a lost connection before they fail.</summary>
    public TimeSpan ReconnectFor { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>NBD requests on the wire at once; more wait in memory.</summary>
    public int MaxInFlight { get; init; } = 128;
    /// <summary>First wait between reconnect attempts; it doubles up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan MinBackoff { get; init; } = TimeSpan.FromMilliseconds(20);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>Once failing (export refused, or held requests given up), how often a new request may try to reconnect.</summary>
    public TimeSpan RetryWhenFailing { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>TCP keepalive idle time: a peer that vanished without a reset is noticed and reconnected.</summary>
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>
/// A disk that is an NBD client (like qemu's nbd block driver): the data channel between cluster nodes. The
/// fixed-newstyle handshake (NBD_OPT_GO) runs synchronously in <see cref="Connect"/>, so size and flags are known;
/// after that <see cref="Disk.Start"/> only queues. A sender thread writes requests (several per send), a reader
/// thread completes them by cookie in any order, reading payloads straight into the bio's buffer. A lost connection
/// holds every unanswered request, reconnects with backoff and sends them again (writes are idempotent); a refused
/// export or <see cref="NbdDiskOptions.ReconnectFor"/> without a connection fails what is held with IoError.
/// </summary>
public sealed class NbdDisk : Disk
{
    private readonly NbdDiskTarget _target;
    private readonly NbdDiskOptions _options;
    private readonly object _gate = new();
    // Everything below is guarded by _gate.
    private readonly LinkedList<WireRequest> _queue = new();
    private readonly Dictionary<ulong, WireRequest> _inFlight = new();
    private Connection? _conn;
    private long _downSince;          // Stopwatch timestamp of the loss (valid while _conn == null)
    private bool _failing;            // held requests were given up: new ones fail fast unless a retry is due
    private bool _attempting;         // a reconnect attempt is running
    private long _lastAttempt;        // Stopwatch timestamp
    private long _nextAttempt;
    private TimeSpan _backoff;
    private bool _disposed;
    private ulong _nextCookie;
    private readonly Thread _sender;
    private long _requestsSent, _reconnects;

    private NbdDisk(string name, string devNo, NbdDiskTarget target, NbdDiskOptions options, Connection conn)
        : base(name, conn.Size >> Bio.SectorShift, devNo)
    {
        _target = target; _options = options; _conn = conn;
        Flags = conn.Flags;
        _backoff = options.MinBackoff;
        StartReader(conn);
        _sender = new Thread(SendLoop) { IsBackground = true, Name = $"nbd-send-{name}" };
        _sender.Start();
    }

    /// <summary>Connects to <paramref name="target"/> and negotiates the export; throws TargetException with the reason.</summary>
    public static NbdDisk Connect(string name, string devNo, NbdDiskTarget target, NbdDiskOptions? options = null)
    {
        options ??= new NbdDiskOptions();
        if (options.MaxInFlight < 1) throw new ArgumentOutOfRangeException(nameof(options), "MaxInFlight must be at least 1");
        try { return new NbdDisk(name, devNo, target, options, Connection.Open(target, options)); }
        catch (NbdConnectException e) { throw new TargetException($"nbd disk {name}: {e.Message}"); }
    }

    /// <summary>Transmission flags of the export (NBD_FLAG_*), from the latest handshake.</summary>
    public ushort Flags { get; private set; }
    public bool IsReadOnly => (Flags & Nbd.FlagReadOnly) != 0;
    public override bool HasVolatileCache => (Flags & Nbd.FlagSendFlush) != 0;
    public string ExportName => _target.ExportName;
    /// <summary>NBD requests written to the wire (resent ones included).</summary>
    public long RequestsSent => Interlocked.Read(ref _requestsSent);
    /// <summary>Successful reconnects after a lost connection.</summary>
    public long Reconnects => Interlocked.Read(ref _reconnects);
    public bool IsConnected { get { lock (_gate) return _conn != null; } }

    // ---- bios -> NBD requests -----------------------------------------------------------------------------------

    protected override void Run(Bio bio, Action<Bio, BioStatus> done)
    {
        var flags = Flags;
        var op = new Pending(this, bio, done);
        switch (bio.Op)
        {
            case BioOp.Read:
                break;
            case BioOp.Flush:
                if ((flags & Nbd.FlagSendFlush) == 0) { done(bio, BioStatus.Ok); return; } // no cache to flush
                break;
            case BioOp.Discard when (flags & Nbd.FlagSendTrim) == 0:
                done(bio, BioStatus.NotSupported);
                return;
            default:
                if ((flags & Nbd.FlagReadOnly) != 0) { done(bio, BioStatus.ReadOnly); return; }
                break;
        }
        op.StartNext();
    }

    /// <summary>
    /// One bio: up to three stages run one after another (preflush, the data in pieces no larger than the server's
    /// maximum, a flush standing in for FUA); each stage's pieces are in flight together.
    /// </summary>
    private sealed class Pending(NbdDisk disk, Bio bio, Action<Bio, BioStatus> done)
    {
        private int _stage; // next stage to start: 0 preflush, 1 data, 2 postflush, 3 done
        private int _remaining;
        private BioStatus _status = BioStatus.Ok;
        private int _finished;
        public Bio Bio => bio;

        /// <summary>Starts the next stage that has anything to send, or completes the bio.</summary>
        public void StartNext()
        {
            var flags = disk.Flags;
            var canFlush = (flags & Nbd.FlagSendFlush) != 0;
            var writes = bio.Op is BioOp.Write or BioOp.WriteZeroes or BioOp.Discard;
            while (true)
            {
                List<WireRequest>? pieces = null;
                switch (_stage++)
                {
                    case 0:
                        if (canFlush && (bio.Op == BioOp.Flush || (writes && (bio.Flags & BioFlags.Preflush) != 0)))
                            pieces = [new WireRequest(this, Nbd.CmdFlush, 0, 0, 0)];
                        break;
                    case 1:
                        if (bio.Op != BioOp.Flush) pieces = DataPieces(flags);
                        break;
                    case 2:
                        if (canFlush && writes && (bio.Flags & BioFlags.Fua) != 0 && !UsesFua(flags))
                            pieces = [new WireRequest(this, Nbd.CmdFlush, 0, 0, 0)];
                        break;
                    default:
                        Finish(BioStatus.Ok);
                        return;
                }
                if (pieces is not { Count: > 0 }) continue;
                Volatile.Write(ref _remaining, pieces.Count);
                disk.Enqueue(pieces);
                return;
            }
        }

        private static bool UsesFua(ushort flags) => (flags & Nbd.FlagSendFua) != 0;

        private List<WireRequest> DataPieces(ushort flags)
        {
            var offset = bio.Sector << Bio.SectorShift;
            var length = bio.Sectors << Bio.SectorShift;
            var fua = (bio.Flags & BioFlags.Fua) != 0 && UsesFua(flags) ? Nbd.CmdFlagFua : (ushort)0;
            var (cmd, max, cmdFlags) = bio.Op switch
            {
                BioOp.Read => (Nbd.CmdRead, disk.MaxPayload, (ushort)0),
                BioOp.Write => (Nbd.CmdWrite, disk.MaxPayload, fua),
                BioOp.Discard => (Nbd.CmdTrim, Nbd.MaxCommandLength, fua),
                _ when (flags & Nbd.FlagSendWriteZeroes) != 0 => (Nbd.CmdWriteZeroes, Nbd.MaxCommandLength, fua),
                _ => (Nbd.CmdWrite, Math.Min(disk.MaxPayload, Nbd.ZeroBuffer.Length), fua), // zeroes written as data
            };
            var pieces = new List<WireRequest>((int)Math.Max(1, (length + max - 1) / max));
            for (long at = 0; at < length; at += max)
            {
                var n = (int)Math.Min(max, length - at);
                var data = bio.Op is BioOp.Read or BioOp.Write ? bio.Data.Slice((int)at, n) : Memory<byte>.Empty;
                pieces.Add(new WireRequest(this, cmd, cmdFlags, offset + at, n) { Data = data, Zeroes = bio.Op == BioOp.WriteZeroes && cmd == Nbd.CmdWrite });
            }
            return pieces;
        }

        /// <summary>One piece answered (or failed without an answer); the last one of a stage moves the bio on.</summary>
        public void PieceDone(BioStatus status)
        {
            if (status != BioStatus.Ok) lock (this) if (_status == BioStatus.Ok) _status = status;
            if (Interlocked.Decrement(ref _remaining) != 0) return;
            BioStatus s;
            lock (this) s = _status;
            if (s != BioStatus.Ok) Finish(s);
            else StartNext();
        }

        private void Finish(BioStatus status)
        {
            if (Interlocked.Exchange(ref _finished, 1) == 0) done(bio, status);
        }
    }

    /// <summary>One NBD request on the wire; its cookie changes when it is sent again on a new connection.</summary>
    private sealed class WireRequest(Pending owner, ushort cmd, ushort cmdFlags, long offset, int length)
    {
        public readonly Pending Owner = owner;
        public readonly ushort Cmd = cmd, CmdFlags = cmdFlags;
        public readonly long Offset = offset;
        public readonly int Length = length;
        public Memory<byte> Data;
        public bool Zeroes;
        public ulong Cookie;
    }

    private int MaxPayload
    {
        get
        {
            var c = _conn;
            return c?.MaxPayload ?? Nbd.DefaultMaxPayload;
        }
    }

    // ---- queue, send, receive -----------------------------------------------------------------------------------

    private void Enqueue(List<WireRequest> pieces)
    {
        bool fail;
        lock (_gate)
        {
            fail = _disposed || (_conn == null && _failing && !_attempting && !RetryDue());
            if (!fail)
            {
                foreach (var p in pieces) _queue.AddLast(p);
                Monitor.PulseAll(_gate);
            }
        }
        if (fail) foreach (var p in pieces) p.Owner.PieceDone(BioStatus.IoError);
    }

    private bool RetryDue() => Stopwatch.GetElapsedTime(_lastAttempt) >= _options.RetryWhenFailing;

    private void SendLoop()
    {
        var batch = new List<WireRequest>();
        var buffer = new byte[256 << 10];
        while (true)
        {
            Connection? conn;
            List<WireRequest>? giveUp = null;
            var attempt = false;
            lock (_gate)
            {
                while (true)
                {
                    if (_disposed) return;
                    if (_conn != null)
                    {
                        while (_queue.Count > 0 && _inFlight.Count < _options.MaxInFlight)
                        {
                            var r = _queue.First!.Value;
                            _queue.RemoveFirst();
                            r.Cookie = ++_nextCookie;
                            _inFlight.Add(r.Cookie, r); // before it is sent: the reply may beat Send's return
                            batch.Add(r);
                        }
                        if (batch.Count > 0) break;
                        Monitor.Wait(_gate);
                        continue;
                    }
                    if (_failing)
                    {
                        if (_queue.Count > 0) { attempt = true; break; } // held only for this one attempt
                        Monitor.Wait(_gate);
                        continue;
                    }
                    if (Stopwatch.GetElapsedTime(_downSince) >= _options.ReconnectFor)
                    {
                        giveUp = TakeHeld();
                        _failing = true;
                        break;
                    }
                    var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), _nextAttempt);
                    if (wait <= TimeSpan.Zero) { attempt = true; break; }
                    var deadline = _options.ReconnectFor - Stopwatch.GetElapsedTime(_downSince);
                    Monitor.Wait(_gate, wait < deadline ? wait : deadline);
                }
                conn = _conn;
                if (attempt) { _attempting = true; _lastAttempt = Stopwatch.GetTimestamp(); }
            }
            if (giveUp != null) { FailAll(giveUp); continue; }
            if (attempt) { Reconnect(); continue; }
            try
            {
                Send(conn!, batch, buffer);
                Interlocked.Add(ref _requestsSent, batch.Count);
            }
            catch (Exception) { Lost(conn!); }
            batch.Clear();
        }
    }

    /// <summary>Writes a batch: headers and small payloads gathered in <paramref name="buffer"/>, large payloads straight from the bio.</summary>
    private static void Send(Connection conn, List<WireRequest> batch, byte[] buffer)
    {
        var used = 0;
        foreach (var r in batch)
        {
            if (buffer.Length - used < Nbd.RequestHeaderLength) { conn.SendAll(buffer.AsSpan(0, used)); used = 0; }
            var h = buffer.AsSpan(used, Nbd.RequestHeaderLength);
            BinaryPrimitives.WriteUInt32BigEndian(h, Nbd.RequestMagic);
            BinaryPrimitives.WriteUInt16BigEndian(h[4..], r.CmdFlags);
            BinaryPrimitives.WriteUInt16BigEndian(h[6..], r.Cmd);
            BinaryPrimitives.WriteUInt64BigEndian(h[8..], r.Cookie);
            BinaryPrimitives.WriteUInt64BigEndian(h[16..], (ulong)r.Offset);
            BinaryPrimitives.WriteUInt32BigEndian(h[24..], (uint)r.Length);
            used += Nbd.RequestHeaderLength;
            if (r.Cmd != Nbd.CmdWrite) continue;
            var payload = r.Zeroes ? Nbd.ZeroBuffer.AsMemory(0, r.Length) : r.Data;
            if (payload.Length <= buffer.Length - used)
            {
                payload.Span.CopyTo(buffer.AsSpan(used));
                used += payload.Length;
            }
            else
            {
                conn.SendAll(buffer.AsSpan(0, used));
                used = 0;
                conn.SendAll(payload.Span);
            }
        }
        if (used > 0) conn.SendAll(buffer.AsSpan(0, used));
    }

    private void StartReader(Connection conn)
    {
        conn.Reader = new Thread(() => ReadLoop(conn)) { IsBackground = true, Name = $"nbd-recv-{Name}" };
        conn.Reader.Start();
    }

    private void ReadLoop(Connection conn)
    {
        var header = new byte[Nbd.SimpleReplyLength];
        WireRequest? current = null;
        try
        {
            while (true)
            {
                conn.ReceiveAll(header);
                var magic = BinaryPrimitives.ReadUInt32BigEndian(header);
                if (magic != Nbd.SimpleReplyMagic) throw new InvalidDataException($"bad reply magic 0x{magic:x8}");
                var error = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(4));
                var cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8));
                lock (_gate)
                {
                    if (_conn != conn) return; // replaced: what it had in flight was requeued
                    if (!_inFlight.Remove(cookie, out current)) throw new InvalidDataException($"reply for unknown cookie {cookie}");
                    Monitor.PulseAll(_gate); // a slot is free
                }
                if (current.Cmd == Nbd.CmdRead && error == 0) conn.ReceiveAll(current.Data.Span);
                var r = current;
                current = null;
                if (error == Nbd.ErrShutdown)
                {
                    // The server is stopping (a planned restart or a move): not this request's failure. Hold it for
                    // the next connection (this one ends soon anyway, and resending here would only bounce again).
                    Requeue(r);
                    Lost(conn);
                    return;
                }
                r.Owner.PieceDone(StatusOf(error));
            }
        }
        catch (Exception)
        {
            if (current != null) Requeue(current);
            Lost(conn);
        }
    }

    private void Requeue(WireRequest r)
    {
        bool fail;
        lock (_gate)
        {
            fail = _disposed;
            if (!fail) { _queue.AddFirst(r); Monitor.PulseAll(_gate); }
        }
        if (fail) r.Owner.PieceDone(BioStatus.IoError);
    }

    /// <summary>NBD errno to the bio's status; unknown values are EINVAL, as the spec tells clients.</summary>
    public static BioStatus StatusOf(uint errno) => errno switch
    {
        0 => BioStatus.Ok,
        Nbd.ErrPerm => BioStatus.ReadOnly,
        Nbd.ErrIo or Nbd.ErrNoMem => BioStatus.IoError,
        Nbd.ErrNoSpc => BioStatus.NoSpace,
        Nbd.ErrNotSup => BioStatus.NotSupported,
        Nbd.ErrShutdown => BioStatus.Shutdown,
        _ => BioStatus.Invalid,
    };

    /// <summary>The connection broke: everything it had in flight is held for the next one.</summary>
    private void Lost(Connection conn)
    {
        lock (_gate)
        {
            if (_conn != conn) { conn.Dispose(); return; }
            _conn = null;
            _downSince = Stopwatch.GetTimestamp();
            _nextAttempt = _downSince;
            _backoff = _options.MinBackoff;
            foreach (var r in _inFlight.Values.OrderByDescending(r => r.Cookie)) _queue.AddFirst(r);
            _inFlight.Clear();
            Monitor.PulseAll(_gate);
        }
        conn.Dispose();
    }

    /// <summary>One reconnect attempt, on the sender thread.</summary>
    private void Reconnect()
    {
        Connection? conn = null;
        var refused = false;
        try { conn = Connection.Open(_target, _options); }
        catch (NbdConnectException e) { refused = e.Refused; }
        if (conn != null && conn.Size != Sectors << Bio.SectorShift)
        {
            conn.Dispose(); conn = null; refused = true; // another disk behind the same name: never write to it
        }
        List<WireRequest>? fail = null;
        lock (_gate)
        {
            _attempting = false;
            if (_disposed) { conn?.Dispose(); return; }
            if (conn != null)
            {
                _conn = conn;
                Flags = conn.Flags;
                _failing = false;
                Interlocked.Increment(ref _reconnects);
                StartReader(conn);
            }
            else if (refused || _failing)
            {
                _failing = true;
                fail = TakeHeld();
            }
            else
            {
                _nextAttempt = Stopwatch.GetTimestamp() + (long)(_backoff.TotalSeconds * Stopwatch.Frequency);
                _backoff = TimeSpan.FromTicks(Math.Min(_backoff.Ticks * 2, _options.MaxBackoff.Ticks));
            }
            Monitor.PulseAll(_gate);
        }
        if (fail != null) FailAll(fail);
    }

    private List<WireRequest> TakeHeld()
    {
        var held = new List<WireRequest>(_queue);
        held.AddRange(_inFlight.Values);
        _queue.Clear();
        _inFlight.Clear();
        return held;
    }

    private static void FailAll(List<WireRequest> requests)
    {
        foreach (var r in requests) r.Owner.PieceDone(BioStatus.IoError);
    }

    /// <summary>Closes the connection and answers everything still unanswered with IoError.</summary>
    public override void Dispose()
    {
        Connection? conn;
        lock (_gate)
        {
            if (_disposed) return;
            _disposed = true;
            conn = _conn;
            Monitor.PulseAll(_gate);
        }
        conn?.Dispose(); // wakes the reader; the sender may be writing to it, or connecting (bounded by ConnectTimeout)
        if (_sender != Thread.CurrentThread) _sender.Join(_options.ConnectTimeout + TimeSpan.FromSeconds(5));
        // The reader may be reading into a bio: that bio is answered only after it stopped.
        if (conn?.Reader is { } reader && reader != Thread.CurrentThread) reader.Join(TimeSpan.FromSeconds(5));
        List<WireRequest> held;
        lock (_gate) held = TakeHeld();
        FailAll(held);
    }

    // ---- connection and handshake -------------------------------------------------------------------------------

    private sealed class NbdConnectException(string message, bool refused = false) : Exception(message)
    {
        public bool Refused { get; } = refused;
    }

    /// <summary>One negotiated connection.</summary>
    private sealed class Connection : IDisposable
    {
        private readonly Socket _socket;
        private int _disposed;

        private Connection(Socket socket) => _socket = socket;

        public long Size { get; private set; }
        public ushort Flags { get; private set; }
        public int MaxPayload { get; private set; } = Nbd.DefaultMaxPayload;
        public Thread? Reader;

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
            var conn = new Connection(socket);
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
                conn.Handshake(target.ExportName);
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

        private void Handshake(string export)
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

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
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
        public const uint OptExportName = 1, OptGo = 7;
        public const uint RepAck = 1, RepInfo = 3, RepErrUnsup = 0x80000001, RepErrShutdown = 0x80000007;
        public const ushort InfoExport = 0, InfoBlockSize = 3;
        public const ushort FlagHasFlags = 1, FlagReadOnly = 2, FlagSendFlush = 4, FlagSendFua = 8, FlagSendTrim = 32, FlagSendWriteZeroes = 64;
        public const ushort CmdRead = 0, CmdWrite = 1, CmdFlush = 3, CmdTrim = 4, CmdWriteZeroes = 6;
        public const ushort CmdFlagFua = 1;
        public const uint ErrPerm = 1, ErrIo = 5, ErrNoMem = 12, ErrInval = 22, ErrNoSpc = 28, ErrNotSup = 95, ErrShutdown = 108;
        /// <summary>Without NBD_INFO_BLOCK_SIZE the spec promises 32 MiB payloads.</summary>
        public const int DefaultMaxPayload = 32 << 20;
        /// <summary>TRIM and WRITE_ZEROES lengths per request (the field is 32 bits; stay well inside it).</summary>
        public const int MaxCommandLength = 1 << 30;
        public const int MaxOptionReply = 64 << 10;
        public static readonly byte[] ZeroBuffer = new byte[1 << 20];
    }
}
