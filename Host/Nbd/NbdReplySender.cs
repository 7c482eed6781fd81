using System.Buffers.Binary;
using System.Runtime.InteropServices;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Host.Nbd;

/// <summary>
/// Sends a connection's replies. A completion on any thread queues its request; if nobody is sending, that thread
/// sends everything queued in one sendmsg (headers and read data gathered, no copy) that never blocks. While the
/// connection's reader is working through requests it has already received, it "corks" the sender: replies
/// wait and go out together when it runs out of input. A full socket (a client that does not read) hands the
/// rest to the connection's overflow thread, so no completing thread ever waits for a client.
/// Every queued request is released exactly once: after its reply went to the kernel, or when the connection is gone.
/// </summary>
internal sealed class NbdReplySender(NbdSocket socket, bool structured, Action<NbdRequest> release, Action<Exception> failed) : IPlugged
{
    private const int MaxBatch = 256;
    private const int Slot = 32; // room for the longest header (a read's data chunk: 28)

    private readonly object _gate = new();
    private List<NbdRequest> _pending = new();
    private List<NbdRequest> _batch = new();
    private readonly List<ArraySegment<byte>> _segments = new();
    private readonly byte[] _headers = GC.AllocateUninitializedArray<byte>(MaxBatch * Slot, pinned: true);
    private readonly GCHandle[] _pins = new GCHandle[MaxBatch];
    private bool _corked, _sending, _closed;
    private bool _plugged; // a plugged thread (IoPlug) holds the send back until its burst is done
    private Thread? _overflowThread;
    private List<ArraySegment<byte>>? _overflow;
    private readonly SemaphoreSlim _overflowReady = new(0);

    /// <summary>Queues the reply of <paramref name="request"/>; when the connection is gone, releases it at once.</summary>
    public void Enqueue(NbdRequest request)
    {
        bool closed, defer = false;
        lock (_gate)
        {
            closed = _closed;
            if (!closed)
            {
                _pending.Add(request);
                if (_corked || _sending || _plugged) return;
                if (IoPlug.Active) _plugged = defer = true; // more completions follow on this thread: one send for all
                else _sending = true;
            }
        }
        if (closed) release(request);
        else if (defer) IoPlug.Defer(this); // plugged (checked above, on this thread): it unplugs later
        else Pump();
    }

    /// <summary>The plugged thread's burst is done: what it completed goes out (unless another thread is sending it).</summary>
    void IPlugged.Unplug()
    {
        lock (_gate)
        {
            _plugged = false;
            if (_sending || _corked || _closed || _pending.Count == 0) return;
            _sending = true;
        }
        Pump();
    }

    /// <summary>The reader has more requests at hand: hold replies back until <see cref="Uncork"/>.</summary>
    public void Cork()
    {
        lock (_gate) _corked = true;
    }

    /// <summary>Sends what was held back (on this thread, unless another one is sending).</summary>
    public void Uncork()
    {
        lock (_gate)
        {
            _corked = false;
            if (_sending || _closed || _pending.Count == 0) return;
            _sending = true;
        }
        Pump();
    }

    /// <summary>The connection is gone: queued replies are dropped and released; later ones are released at once.</summary>
    public void Close()
    {
        List<NbdRequest> dropped;
        lock (_gate)
        {
            _closed = true;
            dropped = _pending;
            _pending = new();
        }
        _overflowReady.Release(); // an idle overflow thread ends (a busy one fails on the shut socket)
        foreach (var r in dropped) release(r);
    }

    /// <summary>Runs by the thread that holds the sending role, until nothing is queued or a send goes async.</summary>
    private void Pump()
    {
        while (true)
        {
            lock (_gate)
            {
                if (_closed || _pending.Count == 0) { _sending = false; return; }
                if (_pending.Count <= MaxBatch) (_pending, _batch) = (_batch, _pending);
                else
                {
                    _batch.AddRange(_pending.GetRange(0, MaxBatch));
                    _pending.RemoveRange(0, MaxBatch);
                }
            }
            bool done;
            try { done = SendBatch(); }
            catch (Exception e) { Fail(e); return; }
            if (!done) return; // the async send finishes the batch and pumps on
            ReleaseBatch();
        }
    }

    /// <summary>Encodes the batch and sends what the socket takes now; true when all of it went.</summary>
    private unsafe bool SendBatch()
    {
        _segments.Clear();
        for (var i = 0; i < _batch.Count; i++) Encode(_batch[i], i);
        var count = _segments.Count;
        var iov = stackalloc SocketSend.IoVec[count];
        long total = 0;
        var pins = 0;
        long sentAll = 0;
        var full = false;
        try
        {
            for (var i = 0; i < count; i++)
            {
                var s = _segments[i];
                if (!ReferenceEquals(s.Array, _headers)) _pins[pins++] = GCHandle.Alloc(s.Array, GCHandleType.Pinned);
                iov[i].Base = (byte*)Marshal.UnsafeAddrOfPinnedArrayElement(s.Array!, s.Offset);
                iov[i].Length = (nuint)s.Count;
                total += s.Count;
            }
            var first = 0;
            while (sentAll < total)
            {
                var sent = socket.TrySend(iov + first, count - first);
                if (sent < 0) { full = true; break; }
                sentAll += sent;
                // Step over what went: whole segments, then into the first partly sent one.
                while (first < count && sent >= (long)iov[first].Length) sent -= (long)iov[first++].Length;
                if (sent > 0)
                {
                    iov[first].Base = (byte*)iov[first].Base + sent;
                    iov[first].Length -= (nuint)sent;
                }
            }
        }
        finally
        {
            for (var i = 0; i < pins; i++) _pins[i].Free();
        }
        // Handed over only once the pins are freed: the overflow thread sends the rest and may then send the next
        // batch itself, with pins of its own in the same slots.
        if (!full) return true;
        FinishLater(Remainder(sentAll));
        return false;
    }

    /// <summary>The segments not yet sent after <paramref name="sent"/> bytes.</summary>
    private List<ArraySegment<byte>> Remainder(long sent)
    {
        var rest = new List<ArraySegment<byte>>();
        foreach (var s in _segments)
        {
            if (sent >= s.Count) { sent -= s.Count; continue; }
            rest.Add(s.Slice((int)sent));
            sent = 0;
        }
        return rest;
    }

    /// <summary>
    /// The socket was full (the client is slow to read): the connection's overflow thread waits to send the rest,
    /// then pumps on. A completing thread must never be the one that waits for a client.
    /// </summary>
    private void FinishLater(List<ArraySegment<byte>> rest)
    {
        bool closed;
        lock (_gate)
        {
            // Closed meanwhile: the overflow thread may have ended already (Close woke it), and nobody reads now.
            closed = _closed;
            if (closed) _sending = false;
            else
            {
                _overflow = rest;
                if (_overflowThread == null)
                {
                    _overflowThread = new Thread(OverflowLoop) { IsBackground = true, Name = "nbd-overflow" };
                    _overflowThread.Start();
                }
            }
        }
        if (closed) ReleaseBatch();
        else _overflowReady.Release();
    }

    private void OverflowLoop()
    {
        while (true)
        {
            _overflowReady.Wait();
            List<ArraySegment<byte>>? rest;
            lock (_gate) { rest = _overflow; _overflow = null; }
            if (rest == null) return; // closed
            try
            {
                foreach (var s in rest) socket.SendAll(s);
            }
            catch (Exception e)
            {
                Fail(e);
                return;
            }
            ReleaseBatch();
            Pump();
        }
    }

    private void ReleaseBatch()
    {
        foreach (var r in _batch) release(r);
        _batch.Clear();
    }

    /// <summary>A send failed: nothing more can be said on this connection.</summary>
    private void Fail(Exception e)
    {
        ReleaseBatch();
        Close();
        lock (_gate) _sending = false;
        failed(e);
    }

    /// <summary>The reply of <paramref name="r"/> as segments: a header in its slot, then the read data if any.</summary>
    private void Encode(NbdRequest r, int index)
    {
        var at = index * Slot;
        var h = _headers.AsSpan(at, Slot);
        int length;
        byte[]? data = null;
        var dataLength = (int)r.Length;
        if (r.Type == Cmd.Read && structured)
        {
            // Once structured replies are negotiated, a READ is never answered with a simple reply.
            if (r.Error == 0)
            {
                ChunkHeader(h, Chunk.OffsetData, r.Cookie, 8 + r.Length);
                BinaryPrimitives.WriteUInt64BigEndian(h[20..], r.Offset);
                length = 28;
                data = r.Buffer;
            }
            else
            {
                ChunkHeader(h, Chunk.Error, r.Cookie, 6);
                BinaryPrimitives.WriteUInt32BigEndian(h[20..], r.Error);
                BinaryPrimitives.WriteUInt16BigEndian(h[24..], 0); // no message
                length = 26;
            }
        }
        else if (r.Type == Cmd.BlockStatus && r.Error == 0)
        {
            // The context id in the header slot, the extent descriptors after it.
            ChunkHeader(h, Chunk.BlockStatus, r.Cookie, 4 + (uint)r.ExtentBytes);
            BinaryPrimitives.WriteUInt32BigEndian(h[20..], BaseAllocationId);
            length = 24;
            data = r.Extents;
            dataLength = r.ExtentBytes;
        }
        else
        {
            BinaryPrimitives.WriteUInt32BigEndian(h, SimpleReplyMagic);
            BinaryPrimitives.WriteUInt32BigEndian(h[4..], r.Error);
            BinaryPrimitives.WriteUInt64BigEndian(h[8..], r.Cookie);
            length = SimpleReplyLength;
            // Simple replies: the data follows only a zero error, which is why a read is answered after its bio completed.
            if (r.Type == Cmd.Read && r.Error == 0) data = r.Buffer;
        }
        _segments.Add(new ArraySegment<byte>(_headers, at, length));
        if (data != null) _segments.Add(new ArraySegment<byte>(data, 0, dataLength));
    }

    private static void ChunkHeader(Span<byte> h, ushort type, ulong cookie, uint length)
    {
        BinaryPrimitives.WriteUInt32BigEndian(h, StructuredReplyMagic);
        BinaryPrimitives.WriteUInt16BigEndian(h[4..], Chunk.FlagDone);
        BinaryPrimitives.WriteUInt16BigEndian(h[6..], type);
        BinaryPrimitives.WriteUInt64BigEndian(h[8..], cookie);
        BinaryPrimitives.WriteUInt32BigEndian(h[16..], length);
    }
}
