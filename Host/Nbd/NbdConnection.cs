using System.Buffers;
using System.Buffers.Binary;
using System.Net.Sockets;
using Akka.Actor;
using Akka.Event;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Host.Nbd;

/// <summary>
/// One client: the handshake, then the transmission phase. A read loop parses each request (its WRITE payload
/// straight into a pooled buffer), turns it into a bio whose ReplyTo is this connection's <see cref="CallbackRef"/>
/// and whose Tag is the request, Tells it to the device actor and reads on; completions queue the reply on the
/// single <see cref="NbdReplyWriter"/>. Bytes in flight are capped by an <see cref="InFlightBudget"/>.
/// Any failure ends this connection only; bios still in flight complete later and release their buffers then.
/// </summary>
internal sealed class NbdConnection
{
    /// <summary>Budget charged per request on top of its data, so requests without data are bounded too.</summary>
    private const int RequestOverhead = 512;

    private readonly NbdServer _server;
    private readonly NetworkStream _net;
    private readonly BufferedStream _in;
    private readonly BufferedStream _out;
    private readonly InFlightBudget _budget;
    private readonly CallbackRef _completions;
    private readonly CancellationTokenSource _closing = new();
    private readonly Action<NbdRequest> _release;
    private NbdReplyWriter? _writer;
    private Task? _writerTask;
    private NbdExport? _export;
    private bool _structured;
    private bool _metaAllocation;
    private int _aborted;

    public NbdConnection(NbdServer server, Socket socket, string peer)
    {
        _server = server; Peer = peer;
        _net = new NetworkStream(socket, ownsSocket: true);
        _in = new BufferedStream(_net, 128 << 10);
        _out = new BufferedStream(_net, 128 << 10);
        _budget = new InFlightBudget(server.Options.MaxInFlightBytesPerConnection);
        _completions = CallbackRef.ForBios(OnBioDone);
        _release = Release;
    }

    public string Peer { get; }
    public Task Completion { get; private set; } = Task.CompletedTask;

    public void Start() => Completion = Task.Run(RunAsync);

    private async Task RunAsync()
    {
        try
        {
            var handshake = new NbdHandshake(_server, _in, _out, Peer);
            _export = await handshake.RunAsync(_closing.Token);
            if (_export == null) return;
            _structured = handshake.Structured;
            _metaAllocation = handshake.MetaAllocation;
            _server.Log.Debug("NBD {0}: export {1} opened ({2} bytes, flags 0x{3:x})", Peer, _export.Name, _export.Size, (int)_export.Flags);
            _server.Watch.Tell(new DeviceWatch.Watch(_export.Device, this));
            _writer = new NbdReplyWriter(_out, _structured, _release);
            _writerTask = RunWriterAsync(_writer);
            await TransmitAsync(_export, _closing.Token);
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
            Abort();
            _writer?.Complete();
            if (_writerTask != null) await _writerTask;
            // The connection counted as an open of the device: undo it (bios still in flight complete on their own).
            if (_export != null)
            {
                _server.Watch.Tell(new DeviceWatch.Unwatch(_export.Device, this));
                await _server.CloseExportAsync(_export.Name);
            }
            _closing.Dispose();
        }
    }

    /// <summary>A writer that cannot send ends the connection: nobody would hear the replies.</summary>
    private async Task RunWriterAsync(NbdReplyWriter writer)
    {
        try { await writer.RunAsync(); }
        catch (Exception e)
        {
            if (IsDisconnect(e)) _server.Log.Debug("NBD {0}: reply failed: {1}", Peer, e.Message);
            else _server.Log.Error(e, "NBD {0}: reply writer failed", Peer);
            Abort();
        }
    }

    /// <summary>Server stop: give requests in flight a bounded time to be answered, then close.</summary>
    public async Task StopAsync(TimeSpan drain)
    {
        await Task.WhenAny(_budget.WhenIdle(), Task.Delay(drain));
        Abort();
        await Completion;
    }

    /// <summary>The device actor stopped: bios sent to it would never be answered, so the client is disconnected.</summary>
    public void DeviceGone()
    {
        _server.Log.Warning("NBD {0}: the device of export {1} stopped; closing the connection", Peer, _export?.Name);
        ThreadPool.QueueUserWorkItem(static c => c.Abort(), this, preferLocal: false); // not on the watcher's thread

    }

    /// <summary>Closes the socket: the read loop and the writer fail out, a reader waiting for budget wakes.</summary>
    private void Abort()
    {
        if (Interlocked.Exchange(ref _aborted, 1) != 0) return;
        try { _closing.Cancel(); } catch (ObjectDisposedException) { }
        _budget.Cancel();
        _net.Dispose();
    }

    // ---- transmission -----------------------------------------------------------------------------------------

    private async Task TransmitAsync(NbdExport export, CancellationToken ct)
    {
        var header = new byte[RequestHeaderLength];
        while (true)
        {
            await _in.ReadExactlyAsync(header, ct);
            var magic = BinaryPrimitives.ReadUInt32BigEndian(header);
            if (magic != RequestMagic) throw new NbdProtocolException($"bad request magic 0x{magic:x8}");
            var request = new NbdRequest
            {
                Flags = (CmdFlags)BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(4)),
                Type = BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6)),
                Cookie = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(8)),
                Offset = BinaryPrimitives.ReadUInt64BigEndian(header.AsSpan(16)),
                Length = BinaryPrimitives.ReadUInt32BigEndian(header.AsSpan(24)),
            };
            if (request.Type == Cmd.Disc)
            {
                await DisconnectAsync();
                return;
            }
            if (request.Type == Cmd.Write && request.Length > MaxPayload)
                throw new NbdProtocolException($"WRITE payload of {request.Length} bytes (limit {MaxPayload})");

            request.Error = Validate(request, export);
            var data = request.Error == 0 && request.Type is Cmd.Read or Cmd.Write ? request.Length : 0;
            request.Cost = data + RequestOverhead;
            await _budget.AcquireAsync(request.Cost);

            if (request.Type == Cmd.Write)
            {
                try
                {
                    if (request.Error == 0)
                    {
                        request.Buffer = ArrayPool<byte>.Shared.Rent((int)request.Length);
                        await _in.ReadExactlyAsync(request.Buffer.AsMemory(0, (int)request.Length), ct);
                    }
                    else await SkipAsync(request.Length, ct); // a rejected write's payload is still on the wire
                }
                catch
                {
                    Release(request);
                    throw;
                }
            }
            if (request.Error == 0 && _server.Stopping) request.Error = Errno.Shutdown;
            if (request.Error != 0) _writer!.Enqueue(request);
            else Dispatch(request, export);
        }
    }

    /// <summary>NBD_CMD_DISC: no reply; answer what is in flight, then close.</summary>
    private async Task DisconnectAsync()
    {
        await Task.WhenAny(_budget.WhenIdle(), Task.Delay(_server.Options.DrainTimeout));
        _writer!.Complete();
        await _writerTask!;
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
        if (r.Length == 0 || ((r.Offset | r.Length) & (MinBlock - 1)) != 0) return Errno.Inval;
        if (r.Offset > (ulong)export.Size || r.Length > (ulong)export.Size - r.Offset)
            return r.Type is Cmd.Write or Cmd.WriteZeroes ? Errno.NoSpc : Errno.Inval;
        if (r.Type == Cmd.Read && r.Length > MaxPayload) return Errno.Inval;
        // Zeroing goes through the targets like a write: never cheaper than one, so a fast zero is refused.
        if (r.Type == Cmd.WriteZeroes && (r.Flags & CmdFlags.FastZero) != 0) return Errno.NotSup;
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
                // An empty flush (barrier): answered once every write completed before it is durable.
                bio = Bio.Flush(_completions, r);
                break;
            case Cmd.Trim:
                bio = new Bio(BioOp.Discard, sector, sectors, Memory<byte>.Empty, _completions, fua, r);
                break;
            case Cmd.WriteZeroes:
                bio = new Bio(BioOp.WriteZeroes, sector, sectors, Memory<byte>.Empty, _completions, fua, r);
                break;
            default:
                // CACHE (a prefetch hint: OK is a valid answer) and BLOCK_STATUS (everything is data) need no IO.
                _writer!.Enqueue(r);
                return;
        }
        export.Device.Tell(bio, ActorRefs.NoSender);
    }

    /// <summary>Runs on whichever thread completed the bio: only queues the reply.</summary>
    private void OnBioDone(BioDone done)
    {
        if (done.Bio.Tag is not NbdRequest r) return;
        if (Interlocked.Exchange(ref r.Completed, 1) != 0)
        {
            _server.Log.Error("NBD {0}: bio {1} completed twice ({2}); second completion ignored", Peer, done.Bio, done.Status);
            return;
        }
        r.Error = ErrnoFor(r.Type, done.Status);
        _writer!.Enqueue(r);
    }

    private static uint ErrnoFor(ushort type, BioStatus status) => status switch
    {
        BioStatus.Ok => 0,
        BioStatus.OutOfRange when type is Cmd.Write or Cmd.WriteZeroes => Errno.NoSpc,
        // TRIM is advisory: a table whose targets cannot discard simply did nothing.
        BioStatus.NotSupported when type == Cmd.Trim => 0,
        _ => Errno.Sanitize(status.Errno()),
    };

    private void Release(NbdRequest r)
    {
        if (r.Buffer != null)
        {
            ArrayPool<byte>.Shared.Return(r.Buffer);
            r.Buffer = null;
        }
        _budget.Release(r.Cost);
    }

    private async Task SkipAsync(uint length, CancellationToken ct)
    {
        var scratch = ArrayPool<byte>.Shared.Rent((int)Math.Min(length, 64 << 10));
        try
        {
            for (var left = (int)length; left > 0;)
            {
                var n = Math.Min(left, scratch.Length);
                await _in.ReadExactlyAsync(scratch.AsMemory(0, n), ct);
                left -= n;
            }
        }
        finally { ArrayPool<byte>.Shared.Return(scratch); }
    }

    private static bool IsDisconnect(Exception e) =>
        e is IOException or SocketException or EndOfStreamException or OperationCanceledException or ObjectDisposedException;
}
