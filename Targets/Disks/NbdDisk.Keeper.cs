using System.Diagnostics;

namespace DmActors;

/// <summary>NbdDisk: the keeper thread, which kills connections that stopped answering and opens new ones.</summary>
public sealed partial class NbdDisk
{
    /// <summary>How often the keeper looks for requests past their timeout.</summary>
    private TimeSpan CheckEvery => TimeSpan.FromTicks(Math.Clamp(_options.RequestTimeout.Ticks / 4, TimeSpan.TicksPerMillisecond * 5, TimeSpan.TicksPerSecond));

    private void KeepLoop()
    {
        while (true)
        {
            List<Connection>? stale = null;
            List<WireRequest>? giveUp = null;
            var attempt = false;
            lock (_gate)
            {
                if (_aborted != null) return;
                var now = Stopwatch.GetTimestamp();
                foreach (var c in _conns.Concat(_draining))
                    if (OldestSince(c) is { } since && Stopwatch.GetElapsedTime(since, now) >= _options.RequestTimeout) (stale ??= new()).Add(c);
                var missing = _conns.Count + _attempts < _wanted;
                var down = _conns.Count == 0;
                if (stale == null)
                {
                    if (down && !_failing && Stopwatch.GetElapsedTime(_downSince, now) >= _options.ReconnectFor)
                    {
                        _failing = true; // held long enough: what waits fails, and so do new requests until a retry is due
                        giveUp = new List<WireRequest>(_queue);
                        _queue.Clear();
                    }
                    else if (missing && now >= _nextAttempt && (!_failing || (_queue.Count > 0 && RetryDue())))
                    {
                        attempt = true;
                        _attempts++;
                        _lastAttempt = now;
                    }
                    else
                    {
                        var wait = CheckEvery;
                        if (missing && !_failing) wait = Min(wait, Stopwatch.GetElapsedTime(now, _nextAttempt));
                        if (down && !_failing) wait = Min(wait, _options.ReconnectFor - Stopwatch.GetElapsedTime(_downSince, now));
                        Monitor.Wait(_gate, Max(wait, TimeSpan.FromMilliseconds(1)));
                        continue;
                    }
                }
            }
            if (stale != null)
                foreach (var c in stale) Kill(c, $"no answer from the server for {_options.RequestTimeout.TotalSeconds:0.###} s");
            if (giveUp != null) FailAll(giveUp);
            // A connect may take up to ConnectTimeout: it runs on a thread of its own, so timeouts are still seen meanwhile.
            if (attempt) new Thread(Attempt) { IsBackground = true, Name = $"nbd-connect-{Name}" }.Start();
        }
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>When the oldest request this connection has not answered was handed to it, or null. Under _gate.</summary>
    private static long? OldestSince(Connection c)
    {
        long? oldest = c.Reading?.Since;
        foreach (var r in c.InFlight.Values)
            if (oldest == null || r.Since < oldest) oldest = r.Since;
        return oldest;
    }

    /// <summary>One connect attempt.</summary>
    private void Attempt()
    {
        Connection? conn = null;
        var refused = false;
        string? why = null;
        try { conn = Connection.Open(_target, _options); }
        catch (NbdConnectException e) { refused = e.Refused; why = e.Message; }
        if (conn != null && conn.Size != Sectors << Bio.SectorShift)
        {
            why = $"the export is {conn.Size} bytes now, not {Sectors << Bio.SectorShift}";
            conn.Dispose(); conn = null; refused = true; // another disk behind the same name: never write to it
        }
        List<WireRequest>? fail = null;
        lock (_gate)
        {
            _attempts--;
            if (_aborted != null) { conn?.Dispose(); return; }
            if (conn != null)
            {
                Flags = conn.Flags;
                _wanted = (conn.Flags & Nbd.FlagCanMultiConn) != 0 ? Math.Max(1, _options.Connections) : 1;
                _failing = false;
                _backoff = _options.MinBackoff;
                Interlocked.Increment(ref _reconnects);
                Adopt(conn);
            }
            else
            {
                _lastFailure = why;
                if (_conns.Count == 0 && (refused || _failing))
                {
                    _failing = true;
                    fail = new List<WireRequest>(_queue);
                    _queue.Clear();
                }
                _nextAttempt = Stopwatch.GetTimestamp() + (long)(_backoff.TotalSeconds * Stopwatch.Frequency);
                _backoff = TimeSpan.FromTicks(Math.Min(_backoff.Ticks * 2, _options.MaxBackoff.Ticks));
            }
            Monitor.PulseAll(_gate);
        }
        SendPicked();
        if (fail != null) FailAll(fail);
    }
}
