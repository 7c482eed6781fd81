using System.Buffers.Binary;
using System.Threading.Channels;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Host.Nbd;

/// <summary>
/// The single writer of a connection's replies: completions from any thread queue finished requests, one loop
/// encodes them in completion order (NBD replies may go out of order; the client matches cookies) and flushes
/// the socket when the queue runs dry (or every few replies), so a burst of small replies costs one send.
/// Every queued request is released exactly once: after its reply was flushed, or when the connection is gone.
/// </summary>
internal sealed class NbdReplyWriter
{
    private readonly Channel<NbdRequest> _queue = Channel.CreateUnbounded<NbdRequest>(
        new UnboundedChannelOptions { SingleReader = true, SingleWriter = false });
    private readonly Stream _out;
    private readonly bool _structured;
    private readonly Action<NbdRequest> _release;
    private readonly byte[] _header = new byte[32];
    /// <summary>Replies written but maybe still in the stream's buffer: released only once flushed to the socket.</summary>
    private readonly List<NbdRequest> _unflushed = new();
    private const int MaxBatch = 64;

    public NbdReplyWriter(Stream output, bool structured, Action<NbdRequest> release)
    {
        _out = output; _structured = structured; _release = release;
    }

    /// <summary>Queues the reply of <paramref name="request"/>; when the connection is gone, releases it at once.</summary>
    public void Enqueue(NbdRequest request)
    {
        if (!_queue.Writer.TryWrite(request)) _release(request);
    }

    /// <summary>No more replies: the loop ends once the queued ones are written.</summary>
    public void Complete() => _queue.Writer.TryComplete();

    /// <summary>Writes replies until <see cref="Complete"/> or a socket error; afterwards releases whatever is left.</summary>
    public async Task RunAsync()
    {
        var reader = _queue.Reader;
        try
        {
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                while (_unflushed.Count < MaxBatch && reader.TryRead(out var request))
                {
                    _unflushed.Add(request);
                    await WriteAsync(request).ConfigureAwait(false);
                }
                await _out.FlushAsync().ConfigureAwait(false);
                ReleaseUnflushed();
            }
        }
        finally
        {
            // Later completions find the queue closed and release their request themselves.
            _queue.Writer.TryComplete();
            ReleaseUnflushed();
            while (reader.TryRead(out var left)) _release(left);
        }
    }

    private void ReleaseUnflushed()
    {
        foreach (var r in _unflushed) _release(r);
        _unflushed.Clear();
    }

    private async ValueTask WriteAsync(NbdRequest r)
    {
        var h = _header;
        if (r.Type == Cmd.Read && _structured)
        {
            // Once structured replies are negotiated, a READ is never answered with a simple reply.
            if (r.Error == 0)
            {
                ChunkHeader(h, Chunk.OffsetData, r.Cookie, 8 + r.Length);
                BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(20), r.Offset);
                await _out.WriteAsync(h.AsMemory(0, 28)).ConfigureAwait(false);
                await _out.WriteAsync(r.Buffer.AsMemory(0, (int)r.Length)).ConfigureAwait(false);
            }
            else await WriteErrorChunkAsync(r).ConfigureAwait(false);
            return;
        }
        if (r.Type == Cmd.BlockStatus && r.Error == 0)
        {
            // One extent covering the request, status 0 (allocated data): legal with and without REQ_ONE.
            ChunkHeader(h, Chunk.BlockStatus, r.Cookie, 12);
            BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(20), BaseAllocationId);
            BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(24), r.Length);
            BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(28), 0);
            await _out.WriteAsync(h.AsMemory(0, 32)).ConfigureAwait(false);
            return;
        }
        BinaryPrimitives.WriteUInt32BigEndian(h, SimpleReplyMagic);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(4), r.Error);
        BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(8), r.Cookie);
        await _out.WriteAsync(h.AsMemory(0, SimpleReplyLength)).ConfigureAwait(false);
        // Simple replies: the data follows only a zero error, which is why a read is answered after its bio completed.
        if (r.Type == Cmd.Read && r.Error == 0)
            await _out.WriteAsync(r.Buffer.AsMemory(0, (int)r.Length)).ConfigureAwait(false);
    }

    private ValueTask WriteErrorChunkAsync(NbdRequest r)
    {
        var h = _header;
        ChunkHeader(h, Chunk.Error, r.Cookie, 6);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(20), r.Error);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(24), 0); // no message
        return _out.WriteAsync(h.AsMemory(0, 26));
    }

    private static void ChunkHeader(byte[] h, ushort type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(h, StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(4), Chunk.FlagDone);
        BinaryPrimitives.WriteUInt16BigEndian(h.AsSpan(6), type);
        BinaryPrimitives.WriteUInt64BigEndian(h.AsSpan(8), cookie);
        BinaryPrimitives.WriteUInt32BigEndian(h.AsSpan(16), length);
    }
}
