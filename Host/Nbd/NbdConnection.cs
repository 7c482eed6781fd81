using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Host.Nbd;

/// <summary>
/// One client, on a thread of its own: the handshake, then the transmission phase. The thread parses each
/// request straight out of the receive buffer (a WRITE payload into a pooled buffer), turns it into a bio whose
/// ReplyTo is this connection's <see cref="CallbackRef"/> and whose Tag is the request, and Tells it to the
/// device actor. The device runs on the <see cref="IoDispatcher"/>, so a bio the page cache can answer is
/// mapped, read and completed before the Tell returns. Completions queue replies on the
/// <see cref="NbdReplySender"/>, which the thread keeps corked while it has requests at hand, so a burst of
/// requests is answered with one send, and uncorks before it waits for the socket: one thread wake-up per burst.
/// Bytes in flight are capped by an <see cref="InFlightBudget"/>. Any failure ends this connection only; bios
/// still in flight complete later and release their buffers then.
/// </summary>
internal sealed class NbdConnection
{
    /// <summary>Budget charged per request on top of its data, so requests without data are bounded too.</summary>
    private const int RequestOverhead = 512;

    private readonly NbdServer _server;
    private readonly NbdTls? _tls;
    private readonly Socket _raw;
    // Replaced once by STARTTLS (with the plaintext end of the TLS relay) before the transmission phase.
    private NbdSocket _socket;
    private NbdInput _in;
    private NbdOutput _out;
    private readonly InFlightBudget _budget;
    private readonly CallbackRef _completions;
    private readonly Action<NbdRequest> _release;
    private Action _uncork = () => { };
    private readonly Action _beforeWait;
    private NbdReplySender? _sender;
    private NbdExport? _export;
    private bool _structured;
    private bool _metaAllocation;
    private int _aborted;
    /// <summary>
    /// The parent of every bio this connection submits. A client that vanishes (no NBD_CMD_DISC) hears no more
    /// answers and counts what it had in flight as failed; the session is abandoned then (<see cref="Bio.Abandon"/>),
    /// so what the disks below have not started yet is dropped instead of landing after the client's retry of it
    /// on a new connection. After NBD_CMD_DISC the requests in flight are finished, as the protocol asks.
    /// </summary>
    private readonly Bio _session = new();
    private bool _softDisconnect;
    private int _gone;          // the device stopped: requests get ESHUTDOWN
    private long _lastRequest;  // Environment.TickCount64 of the last request read

    public NbdConnection(NbdServer server, Socket socket, string peer, NbdTls? tls = null)
    {
        _server = server; Peer = peer; _tls = tls; _raw = socket;
        _socket = new NbdSocket(socket, Traffic);
        _in = new NbdInput(_socket, 256 << 10);
        _out = new NbdOutput(_socket);
        _budget = new InFlightBudget(server.Options.MaxInFlightBytesPerConnection);
        _completions = CallbackRef.ForBios(OnBioDone);
        _release = Release;
        _beforeWait = () => { IoPlug.Flush(); _uncork(); };
    }

    public string Peer { get; }
    /// <summary>Bytes in and out (after TLS: the plaintext, as the protocol sees it).</summary>
    public NbdTraffic Traffic { get; } = new();
    public Task Completion { get; private set; } = Task.CompletedTask;

    public void Start()
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Completion = done.Task;
        new Thread(() =>
        {
            try { Run(); }
            finally { done.SetResult(); }
        }) { IsBackground = true, Name = "nbd " + Peer }.Start();
    }

    /// <summary>The connection's thread: it blocks on the socket when the client is quiet, and on nothing else.</summary>
    private void Run()
    {
        try
        {
            var handshake = new NbdHandshake(_server, _in, _out, Peer, _tls?.Mode ?? NbdTlsMode.Off, _tls == null ? null : StartTls);
            _export = handshake.Run();
            if (_export == null) return;
            _structured = handshake.Structured;
            _metaAllocation = handshake.MetaAllocation;
            _server.Log.Debug("NBD {0}: export {1} opened ({2} bytes, flags 0x{3:x})", Peer, _export.Name, _export.Size, (int)_export.Flags);
            _server.Watch.Tell(new DeviceWatch.Watch(_export.Device, this));
            _sender = new NbdReplySender(_socket, _structured, _release, SendFailed);
            _uncork = _sender.Uncork; // one delegate, not one per request
            Transmit(_export);
        }
        catch (Exception e) when (IsDisconnect(e))
        {
            _server.Log.Debug("NBD {0}: disconnected: {1}", Peer, e.Message);
        }
        catch (NbdProtocolException e)
        {
            _server.Log.Warning("NBD {0}: protocol violation, dropping the client: {1}", Peer, e.Message);
        }
        catch (Exception e)
        {
            _server.Log.Error(e, "NBD {0}: connection failed", Peer);
        }
        finally
        {
            if (!_softDisconnect) _session.Abandon();
            Abort();
            _sender?.Close();
            _socket.Dispose(); // a send still in progress on another thread returns first
            // The connection counted as an open of the device: undo it (bios still in flight complete on their own).
            if (_export != null)
            {
                _server.Watch.Tell(new DeviceWatch.Unwatch(_export.Device, this));
                _server.CloseExportAsync(_export.Name, _export.Device).GetAwaiter().GetResult();
            }
        }
    }

    /// <summary>
    /// STARTTLS was acknowledged: the TLS handshake on the client's socket, then this connection reads and sends on
    /// the plaintext end of the relay as it did on the socket.
    /// </summary>
    private (Stream, Stream) StartTls()
    {
        // The client may send nothing after STARTTLS until it has the reply: anything buffered is not TLS.
        if (_in.Buffered.Length > 0) throw new NbdProtocolException("data after STARTTLS before its reply");
        var plain = _tls!.Accept(_raw, Peer);
        _socket = new NbdSocket(plain, Traffic);
        _in = new NbdInput(_socket, 256 << 10);
        _out = new NbdOutput(_socket);
        return (_in, _out);
    }

    /// <summary>A reply could not be sent: nobody would hear the others, so the connection ends.</summary>
    private void SendFailed(Exception e)
    {
        if (IsDisconnect(e)) _server.Log.Debug("NBD {0}: reply failed: {1}", Peer, e.Message);
        else _server.Log.Error(e, "NBD {0}: reply failed", Peer);
        Abort();
    }

    /// <summary>Server stop: give requests in flight a bounded time to be answered, then close.</summary>
    public async Task StopAsync(TimeSpan drain)
    {
        await Task.WhenAny(_budget.WhenIdle(), Task.Delay(drain));
        Abort();
        await Completion;
    }

    /// <summary>
    /// The device actor stopped (removed, or handed over to another node): later requests are answered with
    /// ESHUTDOWN (never performed: a client may send them elsewhere), and the connection closes once the client
    /// disconnects, or nothing is in flight and it sent nothing for <see cref="GoneGrace"/>, or after the drain
    /// timeout. A client with requests still on the wire gets their answers before the close, none is lost.
    /// </summary>
    public void DeviceGone()
    {
        _server.Log.Info("NBD {0}: the device of export {1} stopped; answering ESHUTDOWN, then closing the connection", Peer, _export?.Name);
        if (Interlocked.Exchange(ref _gone, 1) != 0) return;
        _ = CloseWhenQuietAsync();
    }

    private static readonly TimeSpan GoneGrace = TimeSpan.FromMilliseconds(500);

    private async Task CloseWhenQuietAsync()
    {
        var deadline = DateTime.UtcNow + _server.Options.DrainTimeout;
        while (Volatile.Read(ref _aborted) == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(GoneGrace / 5).ConfigureAwait(false);
            if (_budget.WhenIdle().IsCompleted && Environment.TickCount64 - Volatile.Read(ref _lastRequest) >= (long)GoneGrace.TotalMilliseconds) break;
        }
        Abort();
    }

    /// <summary>Shuts the socket down: the connection's thread wakes to end of stream (or from a budget wait) and closes it.</summary>
    private void Abort()
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0) return;
        _budget.Cancel();
        _socket.Shutdown();
    }

    // ---- transmission -----------------------------------------------------------------------------------------

    /// <summary>The transmission phase, on the connection's thread, until the client disconnects or the socket ends.</summary>
    private void Transmit(NbdExport export)
    {
        var sender = _sender!;
        // Before a wait for input: what the plug held (sends of disks below, e.g. an NBD client disk) and the replies go.
        _in.OnWait(_beforeWait);
        while (true)
        {
            // Every request already received is handled before the replies go out: they leave together. The plug
            // does the same for what the bios send further down (an NbdDisk's requests to another node).
            sender.Cork();
            IoPlug.Begin();
            try
            {
                while (_in.Buffered.Length >= RequestHeaderLength)
                    if (!Handle(export)) return;
            }
            finally { IoPlug.End(); }
            sender.Uncork();
            if (!_in.Fill(RequestHeaderLength)) return; // the client closed the connection
        }
    }

    /// <summary>One request whose header is buffered. False after NBD_CMD_DISC.</summary>
    private bool Handle(NbdExport export)
    {
        var header = _in.Buffered;
        var magic = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (magic != RequestMagic) throw new NbdProtocolException($"bad request magic 0x{magic:x8}");
        var request = new NbdRequest
        {
            Flags = (CmdFlags)BinaryPrimitives.ReadUInt16BigEndian(header[4..]),
            Type = BinaryPrimitives.ReadUInt16BigEndian(header[6..]),
            Cookie = BinaryPrimitives.ReadUInt64BigEndian(header[8..]),
            Offset = BinaryPrimitives.ReadUInt64BigEndian(header[16..]),
            Length = BinaryPrimitives.ReadUInt32BigEndian(header[24..]),
        };
        _in.Consume(RequestHeaderLength);
        if (request.Type == Cmd.Disc)
        {
            _softDisconnect = true;
            Disconnect();
            return false;
        }
        if (request.Type == Cmd.Write && request.Length > AbusiveLength)
            throw new NbdProtocolException($"WRITE payload of {request.Length} bytes: over {AbusiveLength}, taken as abuse");

        request.Error = Validate(request, export);
        var data = request.Error == 0 && request.Type is Cmd.Read or Cmd.Write ? request.Length : 0;
        request.Cost = data + RequestOverhead;
        _budget.Acquire(request.Cost, _beforeWait);

        if (request.Type == Cmd.Write)
        {
            bool received;
            try
            {
                if (request.Error == 0)
                {
                    request.Buffer = ArrayPool<byte>.Shared.Rent((int)request.Length);
                    received = _in.TakeExactly(request.Buffer.AsSpan(0, (int)request.Length));
                }
                else received = _in.Skip(request.Length); // a rejected write's payload is still on the wire
            }
            catch
            {
                Release(request);
                throw;
            }
            if (!received)
            {
                Release(request);
                throw new EndOfStreamException("the client closed the connection in the middle of a WRITE payload");
            }
        }
        if (request.Error == 0 && (_server.Stopping || Volatile.Read(ref _gone) != 0)) request.Error = Errno.Shutdown;
        Volatile.Write(ref _lastRequest, Environment.TickCount64);
        if (request.Error != 0) _sender!.Enqueue(request);
        else Dispatch(request, export);
        return true;
    }

    /// <summary>NBD_CMD_DISC: no reply; answer what is in flight, then close.</summary>
    private void Disconnect()
    {
        IoPlug.Flush();
        _sender!.Uncork();
        _budget.WhenIdle().Wait(_server.Options.DrainTimeout);
    }

    /// <summary>The errno a request is refused with before it reaches the device, or 0.</summary>
    private uint Validate(NbdRequest r, NbdExport export)
    {
        CmdFlags allowed;
        switch (r.Type)
        {
            case Cmd.Read: allowed = _structured ? CmdFlags.Df : CmdFlags.None; break;
            case Cmd.Write:
            case Cmd.Trim: allowed = CmdFlags.None; break;
            case Cmd.WriteZeroes: allowed = CmdFlags.NoHole | CmdFlags.FastZero; break;
            case Cmd.BlockStatus: allowed = CmdFlags.ReqOne; break;
            case Cmd.Flush:
            case Cmd.Cache: allowed = CmdFlags.None; break;
            default: return Errno.Inval; // unknown command
        }
        // FUA is valid on every command ("existing clients are known to set this bit on other commands"): ignored where meaningless.
        if ((r.Flags & ~(allowed | CmdFlags.Fua)) != 0) return Errno.Inval;
        if (r.Type == Cmd.Flush) return 0;
        var writes = r.Type is Cmd.Write or Cmd.Trim or Cmd.WriteZeroes;
        if (writes && export.ReadOnly) return Errno.Perm;
        // Past the advertised maximum block size: EINVAL, whatever the range (a WRITE's payload is then discarded).
        if (r.Type is Cmd.Read or Cmd.Write && r.Length > _server.Options.MaxPayload) return Errno.Inval;
        if (r.Length == 0 || ((r.Offset | r.Length) & (MinBlock - 1)) != 0) return Errno.Inval;
        if (r.Offset > (ulong)export.Size || r.Length > (ulong)export.Size - r.Offset)
            return r.Type is Cmd.Write or Cmd.WriteZeroes ? Errno.NoSpc : Errno.Inval;
        if (r.Type == Cmd.BlockStatus && !_metaAllocation) return Errno.Inval;
        return 0;
    }

    private void Dispatch(NbdRequest r, NbdExport export)
    {
        var sector = (long)(r.Offset >> Bio.SectorShift);
        var sectors = (long)(r.Length >> Bio.SectorShift);
        var fua = (r.Flags & CmdFlags.Fua) != 0 ? BioFlags.Fua : BioFlags.None;
        Bio bio;
        switch (r.Type)
        {
            case Cmd.Read:
                r.Buffer = ArrayPool<byte>.Shared.Rent((int)r.Length);
                bio = new Bio(BioOp.Read, sector, sectors, r.Buffer.AsMemory(0, (int)r.Length), _completions, BioFlags.None, r);
                break;
            case Cmd.Write:
                bio = new Bio(BioOp.Write, sector, sectors, r.Buffer.AsMemory(0, (int)r.Length), _completions, fua, r);
                break;
            case Cmd.Flush:
                // The NBD spec promises only the writes already answered: a flush that drains nothing, also in
                // ordered mode (no empty barrier), so writes still in flight do not hold it up.
                bio = Bio.FlushCompleted(_completions, r);
                break;
            case Cmd.Trim:
                bio = new Bio(BioOp.Discard, sector, sectors, Memory<byte>.Empty, _completions, fua, r);
                break;
            case Cmd.WriteZeroes:
                // NO_HOLE keeps the range allocated; FAST_ZERO fails (ENOTSUP, nothing written) where the disks
                // below would have to write the zeroes.
                var zeroFlags = ((r.Flags & CmdFlags.NoHole) != 0 ? BioFlags.NoUnmap : 0) | ((r.Flags & CmdFlags.FastZero) != 0 ? BioFlags.NoFallback : 0);
                bio = new Bio(BioOp.WriteZeroes, sector, sectors, Memory<byte>.Empty, _completions, fua | zeroFlags, r);
                break;
            case Cmd.BlockStatus:
                // The disks' allocation, one byte per sector, for at most MaxBlockStatus bytes (a reply may cover less).
                sectors = Math.Min(sectors, MaxBlockStatus >> Bio.SectorShift);
                r.Buffer = ArrayPool<byte>.Shared.Rent((int)sectors);
                bio = new Bio(BioOp.BlockStatus, sector, sectors, r.Buffer.AsMemory(0, (int)sectors), _completions, BioFlags.None, r);
                break;
            default:
                // CACHE: a prefetch hint, OK is a valid answer.
                _sender!.Enqueue(r);
                return;
        }
        bio.Parent = _session;
        export.Device.Tell(bio, ActorRefs.NoSender);
    }

    /// <summary>Runs on whichever thread completed the bio: only queues the reply.</summary>
    private void OnBioDone(Bio bio, BioStatus status)
    {
        if (bio.Tag is not NbdRequest r) return;
        if (Interlocked.Exchange(ref r.Completed, 1) != 0)
        {
            _server.Log.Error("NBD {0}: bio {1} completed twice ({2}); second completion ignored", Peer, bio, status);
            return;
        }
        r.Error = ErrnoFor(r.Type, status);
        r.BufferMayBeInUse = status is not (BioStatus.Ok or BioStatus.NotSupported);
        if (r.Type == Cmd.BlockStatus) BlockStatusReply.Encode(r, bio, status);
        _sender!.Enqueue(r);
    }

    private static uint ErrnoFor(ushort type, BioStatus status) => status switch
    {
        BioStatus.Ok => 0,
        BioStatus.OutOfRange when type is Cmd.Write or Cmd.WriteZeroes => Errno.NoSpc,
        // TRIM is advisory: a table whose targets cannot discard simply did nothing.
        BioStatus.NotSupported when type == Cmd.Trim => 0,
        // A stack that cannot tell its allocation: everything is data, which is always true.
        BioStatus.NotSupported when type == Cmd.BlockStatus => 0,
        _ => Errno.Sanitize(status.Errno()),
    };

    private void Release(NbdRequest r)
    {
        if (r.Buffer != null)
        {
            if (!r.BufferMayBeInUse) ArrayPool<byte>.Shared.Return(r.Buffer);
            r.Buffer = null;
        }
        if (r.Extents != null)
        {
            ArrayPool<byte>.Shared.Return(r.Extents);
            r.Extents = null;
        }
        _budget.Release(r.Cost);
    }

    private static bool IsDisconnect(Exception e) =>
        e is IOException or SocketException or EndOfStreamException or OperationCanceledException or ObjectDisposedException;
}
