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
    /// <summary>NBD requests on the wire at once per connection; more wait in memory.</summary>
    public int MaxInFlight { get; init; } = 128;
    /// <summary>
    /// A request not answered this long is answered with IoError and its connection is taken as dead (a paused or
    /// cut-off server would otherwise hold it forever).
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);
    /// <summary>Connections per disk when the server offers NBD_FLAG_CAN_MULTI_CONN (otherwise one).</summary>
    public int Connections { get; init; } = 2;
    /// <summary>First wait between reconnect attempts; it doubles up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan MinBackoff { get; init; } = TimeSpan.FromMilliseconds(20);
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>Once failing (export refused, or held requests given up), how often a new request may try to reconnect.</summary>
    public TimeSpan RetryWhenFailing { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>TCP keepalive idle time: a peer that vanished without a reset is noticed and reconnected.</summary>
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>STARTTLS on every connection with these client settings (certificate, server check); null: plain.</summary>
    public Func<System.Net.Security.SslClientAuthenticationOptions>? Tls { get; init; }
}

/// <summary>
/// A disk that is an NBD client (like qemu's nbd block driver): the data channel between cluster nodes. The
/// fixed-newstyle handshake (NBD_OPT_GO) runs synchronously in <see cref="Connect"/>, so size and flags are known;
/// after that <see cref="Disk.Start"/> only queues. Each connection (several when the server offers CAN_MULTI_CONN)
/// has a sender thread that writes requests (several per send) and a reader thread that completes them by cookie
/// in any order, reading payloads straight into the bio's buffer. A request unanswered for
/// <see cref="NbdDiskOptions.RequestTimeout"/>, a read error, end of stream or a reply that makes no sense kills the
/// connection: what it had on the wire is answered with IoError exactly once, except reads, which have no effect
/// and are sent again; what never reached the wire waits for another connection. A keeper thread reconnects with
/// backoff; a refused export or <see cref="NbdDiskOptions.ReconnectFor"/> without a connection fails what waits.
/// </summary>
public sealed partial class NbdDisk : Disk
{
    private readonly NbdDiskTarget _target;
    private readonly NbdDiskOptions _options;
    private readonly object _gate = new();
    // Everything below is guarded by _gate.
    private readonly LinkedList<WireRequest> _queue = new(); // not on any connection yet
    private readonly List<Connection> _conns = new();        // live connections
    private readonly List<Connection> _draining = new();     // answered ESHUTDOWN: no new requests, waiting for the rest
    private int _wanted = 1;          // connections to keep
    private int _attempts;            // connect attempts running
    private long _downSince;          // Stopwatch timestamp of the loss of the last connection (valid while none)
    private bool _failing;            // held requests were given up: new ones fail fast unless a retry is due
    private long _lastAttempt;        // Stopwatch timestamp
    private long _nextAttempt;
    private TimeSpan _backoff;
    private string? _aborted;         // why the disk stopped for good (Abort or Dispose)
    private ulong _nextCookie;
    private long _adopted;            // connections adopted so far (each one's Seq)
    private readonly Thread _keeper;
    private long _requestsSent, _reconnects;

    private NbdDisk(string name, string devNo, NbdDiskTarget target, NbdDiskOptions options, Connection conn)
        : base(name, conn.Size >> Bio.SectorShift, devNo)
    {
        _target = target; _options = options;
        Flags = conn.Flags;
        _backoff = options.MinBackoff;
        _wanted = (conn.Flags & Nbd.FlagCanMultiConn) != 0 ? Math.Max(1, options.Connections) : 1;
        Adopt(conn);
        _keeper = new Thread(KeepLoop) { IsBackground = true, Name = $"nbd-keep-{name}" };
        _keeper.Start();
    }

    /// <summary>Connects to <paramref name="target"/> and negotiates the export; throws TargetException with the reason.</summary>
    public static NbdDisk Connect(string name, string devNo, NbdDiskTarget target, NbdDiskOptions? options = null)
    {
        options ??= new NbdDiskOptions();
        if (options.MaxInFlight < 1) throw new ArgumentOutOfRangeException(nameof(options), "MaxInFlight must be at least 1");
        if (options.RequestTimeout <= TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(options), "RequestTimeout must be positive");
        try { return new NbdDisk(name, devNo, target, options, Connection.Open(target, options)); }
        catch (NbdConnectException e) { throw new TargetException($"nbd disk {name}: {e.Message}"); }
    }

    /// <summary>Transmission flags of the export (NBD_FLAG_*), from the latest handshake.</summary>
    public ushort Flags { get; private set; }
    public bool IsReadOnly => (Flags & Nbd.FlagReadOnly) != 0;
    public override bool HasVolatileCache => (Flags & Nbd.FlagSendFlush) != 0;
    public override bool IsRemote => true;
    public override bool IsGone { get { lock (_gate) return _aborted != null; } }
    public string ExportName => _target.ExportName;
    /// <summary>NBD requests written to the wire (resent ones included).</summary>
    public long RequestsSent => Interlocked.Read(ref _requestsSent);
    /// <summary>Connections opened after the first one (a reconnect, or another connection of a multi-conn export).</summary>
    public long Reconnects => Interlocked.Read(ref _reconnects);
    public bool IsConnected { get { lock (_gate) return _conns.Count > 0; } }
    /// <summary>Live connections.</summary>
    public int Connections { get { lock (_gate) return _conns.Count; } }
    /// <summary>Why the last connection died or the last connect failed (for logs and tests), or null.</summary>
    public string? LastFailure { get { lock (_gate) return _lastFailure; } }
    private string? _lastFailure;

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
            case BioOp.BlockStatus: // no meta context is negotiated: the caller reports data, which is always true
            case BioOp.WriteZeroes when (bio.Flags & BioFlags.NoFallback) != 0 && (flags & Nbd.FastZeroFlags) != Nbd.FastZeroFlags:
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

        /// <summary>NO_HOLE and FAST_ZERO of a write-zeroes, from the bio's NoUnmap and NoFallback.</summary>
        private static ushort ZeroFlags(BioFlags f) => (ushort)(((f & BioFlags.NoUnmap) != 0 ? Nbd.CmdFlagNoHole : 0)
            | ((f & BioFlags.NoFallback) != 0 ? Nbd.CmdFlagFastZero : 0));

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
                _ when (flags & Nbd.FlagSendWriteZeroes) != 0 => (Nbd.CmdWriteZeroes, Nbd.MaxCommandLength, (ushort)(fua | ZeroFlags(bio.Flags))),
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
        public long Since;   // Stopwatch timestamp of its hand-over to a connection (guarded by _gate)
        public long First;   // ... of its first hand-over (a request the server keeps refusing gives up in time)
        public bool OnWire;  // the sender took it: the server may have it (guarded by _gate)
        public readonly Pending Owner = owner;
        public readonly ushort Cmd = cmd, CmdFlags = cmdFlags;
        public readonly long Offset = offset;
        public readonly int Length = length;
        public Memory<byte> Data;
        public bool Zeroes;
        public ulong Cookie;
        public long Covers;       // a flush: the answered writes it covers (guarded by _gate)
        public bool ReportsLoss;  // a flush that fails for writes lost with a server (guarded by _gate)
    }

    private int MaxPayload { get; set; } = Nbd.DefaultMaxPayload;
}
