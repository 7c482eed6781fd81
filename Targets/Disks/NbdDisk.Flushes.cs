namespace DmActors;

/// <summary>
/// NbdDisk: what a flush may promise across a lost connection. The server of an export with NBD_FLAG_SEND_FLUSH
/// may hold answered writes in a volatile cache until it is flushed; when every connection is lost, the server may
/// have died with them, and a flush answered by the server found next (a restarted one, with the same export)
/// covers nothing of that. So once every connection is gone while a write answered Ok is not covered by a flush
/// answered Ok, the next flush handed to a connection fails with IoError (once), and the layer above treats those
/// writes as lost (a mirror fails the leg and resyncs it). FUA writes, and writes to an export without SEND_FLUSH,
/// are durable when answered and do not count. Losing one of several connections of a multi-conn export while
/// another stays up loses nothing: the server, and its cache, is still there.
/// </summary>
public sealed partial class NbdDisk
{
    // Guarded by _gate.
    private long _writesAnswered;   // writes (pieces) answered Ok that a flush must cover
    private long _writesCovered;    // the most of them a flush answered Ok covered
    private long _lostUpTo;         // _writesAnswered when the last connection was lost with some not covered
    private bool _lostUnflushed;    // ... and no flush has reported that yet
    private long _losses;           // times that happened (WritesLost)

    public override long WritesLost => Interlocked.Read(ref _losses);

    /// <summary>Under _gate: the server answered <paramref name="r"/> with <paramref name="error"/>.</summary>
    private void Answered(WireRequest r, uint error)
    {
        if (error != 0) return;
        if (r.Cmd is Nbd.CmdWrite or Nbd.CmdWriteZeroes or Nbd.CmdTrim)
        {
            if ((r.CmdFlags & Nbd.CmdFlagFua) == 0 && (Flags & Nbd.FlagSendFlush) != 0) _writesAnswered++;
        }
        else if (r.Cmd == Nbd.CmdFlush)
        {
            _writesCovered = Math.Max(_writesCovered, r.Covers);
            // A connection still draining after the loss reaches the old server: its flush did cover them.
            if (_lostUnflushed && !r.ReportsLoss && r.Covers >= _lostUpTo) _lostUnflushed = false;
        }
    }

    /// <summary>Under _gate: a flush is handed to a connection; it covers the writes answered so far, or reports their loss.</summary>
    private void Covering(WireRequest r)
    {
        r.Covers = _writesAnswered;
        if (!_lostUnflushed) return;
        r.ReportsLoss = true; // sticky: sent again elsewhere, it still fails
        _lostUnflushed = false;
    }

    /// <summary>Under _gate: no connection is left; answered writes no flush covered may be gone with the server.</summary>
    private void LostWrites()
    {
        if (_writesAnswered <= _writesCovered || (_lostUnflushed && _lostUpTo == _writesAnswered)) return;
        Interlocked.Increment(ref _losses);
        _lostUnflushed = true;
        _lostUpTo = _writesAnswered;
    }

    /// <summary>A flush's answer as the bio sees it: Ok from the server does not cover writes lost before it.</summary>
    private static BioStatus FlushStatus(WireRequest r, uint error) =>
        r.ReportsLoss && error == 0 ? BioStatus.IoError : StatusOf(error);
}
