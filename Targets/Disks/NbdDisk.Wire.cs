using System.Buffers.Binary;
using System.Diagnostics;

namespace DmActors;

/// <summary>NbdDisk: the request queue, each connection's sender and reader, and the death of a connection.</summary>
public sealed partial class NbdDisk
{
    // ---- queue ----------------------------------------------------------------------------------------------------

    private void Enqueue(List<WireRequest> pieces)
    {
        bool fail;
        lock (_gate)
        {
            fail = _aborted != null || (_conns.Count == 0 && _failing && _attempts == 0 && !RetryDue());
            if (!fail)
            {
                foreach (var p in pieces) _queue.AddLast(p);
                Dispatch();
                if (_conns.Count == 0) Monitor.PulseAll(_gate); // the keeper connects
            }
        }
        SendPicked();
        if (fail) foreach (var p in pieces) p.Owner.PieceDone(BioStatus.IoError);
    }

    private bool RetryDue() => Stopwatch.GetElapsedTime(_lastAttempt) >= _options.RetryWhenFailing;

    /// <summary>Hands queued requests to the least loaded live connections with room. Under _gate; the caller then calls <see cref="SendPicked"/>.</summary>
    private void Dispatch()
    {
        if (_queue.Count == 0 || _conns.Count == 0) return;
        var now = Stopwatch.GetTimestamp();
        while (_queue.Count > 0)
        {
            Connection? best = null;
            foreach (var c in _conns)
                if (c.InFlight.Count < _options.MaxInFlight && (best == null || c.InFlight.Count < best.InFlight.Count)) best = c;
            if (best == null) return;
            var r = _queue.First!.Value;
            _queue.RemoveFirst();
            if (r.Cmd != Nbd.CmdFlush && r.Owner.Bio.IsAbandoned)
            {
                // Answered above while it waited (a reconnect, a full connection): it never goes on the wire.
                (_dropped ??= new List<WireRequest>()).Add(r);
                continue;
            }
            r.Cookie = ++_nextCookie;
            r.Since = now;
            if (r.First == 0) r.First = now;
            r.OnWire = false;
            if (r.Cmd == Nbd.CmdFlush) Covering(r);
            best.InFlight.Add(r.Cookie, r); // before it is sent: the reply may beat Send's return
            best.ToSend.Add(r);
            NeedsSend(best);
        }
    }

    /// <summary>A new connection joins: its reader starts and it takes what waits. Under _gate, or before the disk is shared.</summary>
    private void Adopt(Connection conn)
    {
        _conns.Add(conn);
        conn.Seq = ++_adopted;
        conn.Owner = this;
        MaxPayload = conn.MaxPayload;
        conn.Reader = new Thread(() => ReadLoop(conn)) { IsBackground = true, Name = $"nbd-recv-{Name}" };
        conn.Reader.Start();
        Dispatch();
    }

    // ---- receive --------------------------------------------------------------------------------------------------

    /// <summary>
    /// Parses replies out of a receive buffer (many per receive); a read's payload goes from the buffer, and what is
    /// not there yet straight from the socket, into the bio.
    /// </summary>
    private void ReadLoop(Connection conn)
    {
        var buffer = new byte[64 << 10];
        int head = 0, tail = 0;
        WireRequest? current = null; // taken out of InFlight: this thread answers it
        // Plugged while replies are buffered: what their completions send (replies to our own clients, requests
        // freed slots let go) leaves once per burst. Unplugged before every receive, which may wait.
        var plugged = false;
        try
        {
            while (true)
            {
                if (tail - head < Nbd.SimpleReplyLength)
                {
                    if (plugged) { plugged = false; IoPlug.End(); }
                    buffer.AsSpan(head, tail - head).CopyTo(buffer);
                    tail -= head;
                    head = 0;
                    while (tail < Nbd.SimpleReplyLength) tail += conn.Receive(buffer.AsSpan(tail));
                    IoPlug.Begin();
                    plugged = true;
                }
                var header = buffer.AsSpan(head, Nbd.SimpleReplyLength);
                head += Nbd.SimpleReplyLength;
                var magic = BinaryPrimitives.ReadUInt32BigEndian(header);
                if (magic != Nbd.SimpleReplyMagic) throw new InvalidDataException($"bad reply magic 0x{magic:x8}");
                var error = BinaryPrimitives.ReadUInt32BigEndian(header[4..]);
                var cookie = BinaryPrimitives.ReadUInt64BigEndian(header[8..]);
                lock (_gate)
                {
                    if (conn.Dead) break; // what it had was answered or requeued when it died
                    if (!conn.InFlight.TryGetValue(cookie, out var found) || !found.OnWire)
                        throw new InvalidDataException($"reply for unknown cookie {cookie}");
                    conn.InFlight.Remove(cookie);
                    Answered(found, error);
                    current = found;
                    if (current.Cmd == Nbd.CmdRead && error == 0) conn.Reading = current;
                    Dispatch(); // a slot is free
                }
                SendPicked();
                if (current.Cmd == Nbd.CmdRead && error == 0)
                {
                    var into = current.Data.Span;
                    var have = Math.Min(into.Length, tail - head);
                    buffer.AsSpan(head, have).CopyTo(into);
                    head += have;
                    if (have < into.Length && plugged) { plugged = false; IoPlug.End(); }
                    for (var done = have; done < into.Length;) done += conn.Receive(into[done..]);
                    lock (_gate) conn.Reading = null;
                }
                var r = current;
                current = null;
                if (error == Nbd.ErrShutdown)
                {
                    // The server is stopping, or the volume moved away, and did not run it (the spec's meaning): it
                    // waits for a connection to wherever the export is now. Every connection to that server drains.
                    ShutDown(conn, r);
                }
                else r.Owner.PieceDone(r.Cmd == Nbd.CmdFlush ? FlushStatus(r, error) : StatusOf(error));
                if (DrainedNow(conn)) break;
            }
            if (plugged) { plugged = false; IoPlug.End(); }
        }
        catch (Exception e)
        {
            if (plugged) { plugged = false; IoPlug.End(); }
            Kill(conn, e is EndOfStreamException ? "the server closed the connection" : e.Message);
            if (current == null) return;
            lock (_gate) conn.Reading = null;
            // Its reply was partly received: a read may go again, anything else may have happened.
            if (current.Cmd == Nbd.CmdRead && !TimedOut(current, Stopwatch.GetTimestamp())) Requeue(current);
            else current.Owner.PieceDone(BioStatus.IoError);
        }
    }

    /// <summary>
    /// The server answered <paramref name="r"/> with ESHUTDOWN: it was not performed. Every connection to the same
    /// server stops taking requests (what it had not sent yet goes back to the queue) and drains: the answers to
    /// what is on its wire are still read, then it closes. <paramref name="r"/> is held for a new connection (the
    /// keeper asks for the endpoint again, so a proxy finds the volume's new owner), within ReconnectFor of its
    /// first dispatch: a server that keeps shutting down does not bounce it forever.
    /// </summary>
    private void ShutDown(Connection conn, WireRequest r)
    {
        var fail = false;
        lock (_gate)
        {
            // Not the connections opened after this one: they may reach the export where it is now (the same server
            // may serve it again through a proxy); one that reached the old one gets its own ESHUTDOWN.
            if (!conn.Draining)
            {
                LostWrites(); // that server is going away, maybe with its cache, whatever newer connections reach
                foreach (var c in _conns.Where(c => c.Where == conn.Where && c.Seq <= conn.Seq).ToList())
                    Drain(c, "the server shut the export down (ESHUTDOWN)");
            }
            if (_aborted != null || Stopwatch.GetElapsedTime(r.First) >= _options.ReconnectFor) fail = true;
            else _queue.AddFirst(r);
            Dispatch();
            Monitor.PulseAll(_gate);
        }
        SendPicked();
        if (fail) r.Owner.PieceDone(BioStatus.IoError);
    }

    /// <summary>Under _gate: <paramref name="c"/> takes no more requests; what it has not sent goes back to the queue.</summary>
    private void Drain(Connection c, string reason)
    {
        if (c.Draining || c.Dead) return;
        Volatile.Write(ref c.Draining, true);
        _lastFailure = reason;
        _conns.Remove(c);
        _draining.Add(c);
        foreach (var r in c.ToSend.OrderByDescending(r => r.Cookie))
        {
            c.InFlight.Remove(r.Cookie);
            _queue.AddFirst(r);
        }
        c.ToSend.Clear();
        if (_conns.Count == 0) LostLast(Stopwatch.GetTimestamp());
    }

    /// <summary>A draining connection whose last answer arrived is closed (by its reader): true when it was.</summary>
    private bool DrainedNow(Connection conn)
    {
        if (!Volatile.Read(ref conn.Draining)) return false; // the common case, without the lock
        lock (_gate)
            if (conn.Dead || conn.InFlight.Count > 0 || conn.Reading != null) return false;
        Kill(conn, "drained after the server shut the export down");
        return true;
    }

    /// <summary>Under _gate: the last live connection is gone; the keeper reconnects at once, with the first backoff.</summary>
    private void LostLast(long now)
    {
        LostWrites();
        _downSince = now;
        _nextAttempt = now;
        _backoff = _options.MinBackoff;
    }

    private bool TimedOut(WireRequest r, long now) => Stopwatch.GetElapsedTime(r.Since, now) >= _options.RequestTimeout;

    private void Requeue(WireRequest r)
    {
        bool fail;
        lock (_gate)
        {
            fail = _aborted != null;
            if (!fail)
            {
                _queue.AddFirst(r);
                Dispatch();
                Monitor.PulseAll(_gate);
            }
        }
        SendPicked();
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

    // ---- death of a connection ------------------------------------------------------------------------------------

    /// <summary>
    /// The connection is dead (timeout, read or send error, end of stream, garbage): it is closed and each request it
    /// had is answered once. What never reached the wire waits for another connection, and so do reads (no effect,
    /// so sending one again is safe) unless they timed out. Writes, trims, zeroes and flushes on the wire fail with
    /// IoError: the server may have run them, or may still run them, and a flush answered by a server that lost its
    /// cache would promise what is gone. A late reply finds the connection dead and is ignored.
    /// </summary>
    private void Kill(Connection conn, string reason)
    {
        var fail = new List<WireRequest>();
        lock (_gate)
        {
            if (conn.Dead) return;
            conn.Dead = true;
            _lastFailure = reason;
            var wasLive = _conns.Remove(conn);
            _draining.Remove(conn);
            var now = Stopwatch.GetTimestamp();
            foreach (var r in conn.InFlight.Values.OrderByDescending(r => r.Cookie))
            {
                if (_aborted == null && (!r.OnWire || (r.Cmd == Nbd.CmdRead && !TimedOut(r, now)))) _queue.AddFirst(r);
                else fail.Add(r);
            }
            conn.InFlight.Clear();
            conn.ToSend.Clear();
            if (wasLive && _conns.Count == 0) LostLast(now);
            Dispatch();
            Monitor.PulseAll(_gate); // the keeper replaces it
        }
        conn.Dispose();
        lock (conn.Out.OverflowGate) Monitor.PulseAll(conn.Out.OverflowGate); // an idle overflow thread ends
        SendPicked();
        fail.Reverse(); // in the order they were sent
        FailAll(fail);
    }

    private static void FailAll(List<WireRequest> requests)
    {
        foreach (var r in requests) r.Owner.PieceDone(BioStatus.IoError);
    }

    /// <summary>
    /// Stops the disk for good: every request in flight or waiting is answered with IoError, connections are closed
    /// and never reopened, later requests fail at once. For a member removed from the cluster, whose node may be
    /// paused or cut off: nothing waits for <see cref="NbdDiskOptions.RequestTimeout"/>.
    /// </summary>
    public void Abort(string reason)
    {
        List<Connection> conns;
        lock (_gate)
        {
            if (_aborted != null) return;
            _aborted = reason;
            _lastFailure = reason;
            conns = new List<Connection>(_conns.Concat(_draining));
            Monitor.PulseAll(_gate);
        }
        foreach (var c in conns) Kill(c, reason);
        List<WireRequest> held;
        lock (_gate)
        {
            held = new List<WireRequest>(_queue);
            _queue.Clear();
        }
        FailAll(held);
    }

    /// <summary>Closes the connections and answers everything still unanswered with IoError.</summary>
    public override void Dispose()
    {
        List<Connection> conns;
        lock (_gate) conns = new List<Connection>(_conns.Concat(_draining));
        Abort("the disk was closed");
        // A reader may be receiving a payload into a bio: that bio is answered once it stopped.
        foreach (var c in conns)
            if (c.Reader is { } reader && reader != Thread.CurrentThread) reader.Join(TimeSpan.FromSeconds(5));
        if (_keeper != Thread.CurrentThread) _keeper.Join(_options.ConnectTimeout + TimeSpan.FromSeconds(5));
    }
}
