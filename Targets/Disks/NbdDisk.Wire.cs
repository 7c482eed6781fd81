using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace DmActors;

/// <summary>NbdDisk: the request queue, the sender and reader threads, reconnects.</summary>
public sealed partial class NbdDisk
{
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
}
