using System.Buffers;
using IoVec = DmActors.SocketSend.IoVec;
using System.Buffers.Binary;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace DmActors;

/// <summary>
/// NbdDisk: sending. No thread of its own in the common case: the thread that queues a request (the submitter, or
/// the reader freeing a slot) takes the connection's sending role if nobody has it and sends everything queued
/// with one non-blocking sendmsg: headers and small payloads copied into one pinned buffer, large payloads
/// straight from the bio. A plugged thread (<see cref="IoPlug"/>) defers that to the end of its burst. When the
/// socket is full (the server reads slowly), the connection's overflow thread takes the role and may block:
/// no submitter ever waits for the network.
/// </summary>
public sealed partial class NbdDisk
{
    private const int SmallPayload = 64 << 10; // copied into the send buffer; larger ones are sent from the bio
    private const int MaxSegments = 64;

    [ThreadStatic] private static List<Connection>? _picked;
    /// <summary>Abandoned requests this thread's <see cref="Dispatch"/> took off the queue: failed by <see cref="SendPicked"/>, outside _gate.</summary>
    [ThreadStatic] private static List<WireRequest>? _dropped;

    /// <summary>Per connection: the send buffer and what a send that did not finish still has to do.</summary>
    private sealed unsafe class SendState
    {
        public readonly byte[] Buffer = GC.AllocateUninitializedArray<byte>(256 << 10, pinned: true);
        public int Used;
        public readonly List<(nint Pointer, int Length)> Segments = new();
        public readonly List<MemoryHandle> Pins = new();
        public int Resume = -1;   // next request of Batch to encode, for the overflow thread (-1: nothing to do)
        public Thread? Overflow;
        public readonly object OverflowGate = new();

        public nint At(int offset) => Marshal.UnsafeAddrOfPinnedArrayElement(Buffer, offset);

        public void Add(nint pointer, int length)
        {
            if (Segments.Count > 0 && Segments[^1] is var last && last.Pointer + last.Length == pointer)
                Segments[^1] = (last.Pointer, last.Length + length);
            else Segments.Add((pointer, length));
        }

        public void Reset()
        {
            foreach (var p in Pins) p.Dispose();
            Pins.Clear();
            Segments.Clear();
            Used = 0;
        }
    }

    /// <summary>Under _gate: <paramref name="c"/> has something to send; picks who sends it.</summary>
    private void NeedsSend(Connection c)
    {
        if (c.Sending || c.Deferred || c.Dead) return;
        if (IoPlug.Active)
        {
            c.Deferred = true;
            IoPlug.Defer(c);
            return;
        }
        c.Sending = true;
        (_picked ??= new List<Connection>()).Add(c);
    }

    /// <summary>After _gate is released: sends for the connections this thread picked.</summary>
    private void SendPicked()
    {
        if (_dropped is { Count: > 0 } dropped)
        {
            _dropped = null; // answering may enqueue again, on this thread
            foreach (var r in dropped) r.Owner.PieceDone(BioStatus.IoError);
        }
        var list = _picked;
        if (list == null || list.Count == 0) return;
        _picked = null; // a send that fails answers bios, which may pick again: into a new list
        foreach (var c in list) Pump(c);
        list.Clear();
        _picked ??= list;
    }

    private void Unplugged(Connection c)
    {
        lock (_gate)
        {
            c.Deferred = false;
            if (c.Sending || c.Dead || c.ToSend.Count == 0) return;
            c.Sending = true;
        }
        Pump(c);
    }

    /// <summary>Holds the sending role of <paramref name="c"/> until nothing is queued, or hands it to the overflow thread.</summary>
    private void Pump(Connection c)
    {
        var batch = c.Batch;
        while (true)
        {
            lock (_gate)
            {
                if (c.Dead || c.ToSend.Count == 0) { c.Sending = false; return; }
                foreach (var r in c.ToSend) r.OnWire = true;
                batch.AddRange(c.ToSend);
                c.ToSend.Clear();
            }
            Interlocked.Add(ref _requestsSent, batch.Count);
            try
            {
                if (!Encode(c, 0, blocking: false)) return; // the overflow thread goes on
            }
            catch (Exception e) { SendFailed(c, e); return; }
            batch.Clear();
        }
    }

    private void SendFailed(Connection c, Exception e)
    {
        c.Batch.Clear();
        c.Out.Reset();
        c.Out.Resume = -1;
        lock (_gate) c.Sending = false;
        Kill(c, $"send failed: {e.Message}");
    }

    /// <summary>Encodes and sends Batch from <paramref name="start"/>; false when the socket filled up and the overflow thread took over.</summary>
    private static unsafe bool Encode(Connection c, int start, bool blocking)
    {
        var o = c.Out;
        var batch = c.Batch;
        for (var i = start; i < batch.Count; i++)
        {
            if (o.Buffer.Length - o.Used < Nbd.RequestHeaderLength + SmallPayload || o.Segments.Count >= MaxSegments - 2)
                if (!Flush(c, i, blocking)) return false;
            var r = batch[i];
            var h = o.Buffer.AsSpan(o.Used, Nbd.RequestHeaderLength);
            BinaryPrimitives.WriteUInt32BigEndian(h, Nbd.RequestMagic);
            BinaryPrimitives.WriteUInt16BigEndian(h[4..], r.CmdFlags);
            BinaryPrimitives.WriteUInt16BigEndian(h[6..], r.Cmd);
            BinaryPrimitives.WriteUInt64BigEndian(h[8..], r.Cookie);
            BinaryPrimitives.WriteUInt64BigEndian(h[16..], (ulong)r.Offset);
            BinaryPrimitives.WriteUInt32BigEndian(h[24..], (uint)r.Length);
            o.Add(o.At(o.Used), Nbd.RequestHeaderLength);
            o.Used += Nbd.RequestHeaderLength;
            if (r.Cmd != Nbd.CmdWrite) continue;
            var payload = r.Zeroes ? Nbd.ZeroBuffer.AsMemory(0, r.Length) : r.Data;
            if (payload.Length <= SmallPayload)
            {
                payload.Span.CopyTo(o.Buffer.AsSpan(o.Used));
                o.Add(o.At(o.Used), payload.Length);
                o.Used += payload.Length;
            }
            else
            {
                var pin = payload.Pin();
                o.Pins.Add(pin);
                o.Add((nint)pin.Pointer, payload.Length);
            }
        }
        return Flush(c, batch.Count, blocking);
    }

    /// <summary>Sends the gathered segments. Non-blocking: false if the socket filled up (the overflow thread finishes, then encodes from <paramref name="next"/>).</summary>
    private static unsafe bool Flush(Connection c, int next, bool blocking)
    {
        var o = c.Out;
        var count = o.Segments.Count;
        if (count == 0) return true;
        if (blocking)
        {
            foreach (var (p, n) in o.Segments) c.SendAll(new ReadOnlySpan<byte>((void*)p, n));
            o.Reset();
            return true;
        }
        var iov = stackalloc IoVec[count];
        long total = 0;
        for (var i = 0; i < count; i++)
        {
            iov[i] = new IoVec { Base = (void*)o.Segments[i].Pointer, Length = (nuint)o.Segments[i].Length };
            total += o.Segments[i].Length;
        }
        long sent = 0;
        var first = 0;
        while (sent < total)
        {
            var n = TrySend(c, iov + first, count - first);
            if (n < 0)
            {
                // Keep only what is left; the overflow thread sends it blocking, then encodes the rest of the batch.
                var rest = new List<(nint, int)>(count - first);
                for (var i = first; i < count; i++) rest.Add(((nint)iov[i].Base, (int)iov[i].Length));
                o.Segments.Clear();
                o.Segments.AddRange(rest);
                StartOverflow(c, next);
                return false;
            }
            sent += n;
            while (first < count && n >= (long)iov[first].Length) n -= (long)iov[first++].Length;
            if (n > 0)
            {
                iov[first].Base = (byte*)iov[first].Base + n;
                iov[first].Length -= (nuint)n;
            }
        }
        o.Reset();
        return true;
    }

    /// <summary>
    /// Hands the rest of a send to the overflow thread, which encodes the batch on from <paramref name="next"/>.
    /// Resume is set under the lock and only when handed over: the thread takes whatever Resume says, pulse or not.
    /// </summary>
    private static void StartOverflow(Connection c, int next)
    {
        var o = c.Out;
        bool closed;
        lock (o.OverflowGate)
        {
            // Closed already: the overflow thread ended (or will, finding no work); nobody sends the rest.
            closed = c.IsClosed;
            if (!closed)
            {
                o.Resume = next;
                if (o.Overflow == null)
                {
                    o.Overflow = new Thread(() => c.Owner!.OverflowLoop(c)) { IsBackground = true, Name = "nbd-overflow" };
                    o.Overflow.Start();
                }
                Monitor.Pulse(o.OverflowGate);
            }
        }
        if (closed) c.Owner!.SendFailed(c, new ObjectDisposedException("connection closed")); // frees the pins, drops the batch
    }

    /// <summary>The overflow thread: finishes a send that did not fit the socket (it may block), then pumps on.</summary>
    private void OverflowLoop(Connection c)
    {
        var o = c.Out;
        while (true)
        {
            int resume;
            lock (o.OverflowGate)
            {
                while (o.Resume < 0 && !c.IsClosed) Monitor.Wait(o.OverflowGate);
                resume = o.Resume;
                o.Resume = -1;
            }
            if (resume < 0) return; // closed
            try
            {
                Flush(c, resume, blocking: true);
                Encode(c, resume, blocking: true);
            }
            catch (Exception e) { SendFailed(c, e); return; }
            c.Batch.Clear();
            Pump(c);
        }
    }

    /// <summary>One sendmsg that never blocks: bytes sent, or -1 when the socket is full.</summary>
    private static unsafe long TrySend(Connection c, IoVec* iov, int count)
    {
        var handle = c.Handle;
        var added = false;
        handle.DangerousAddRef(ref added); // a close meanwhile cannot hand the descriptor to another file
        try { return SocketSend.TrySend((int)handle.DangerousGetHandle(), iov, count); }
        finally { if (added) handle.DangerousRelease(); }
    }
}
