using System.Diagnostics;

namespace DmActors.Host.Nbd;

/// <summary>
/// What a connection has received and not yet parsed, filled by <see cref="NbdSocket"/> receives on the
/// connection's thread. The handshake reads it as a <see cref="Stream"/>; the transmission phase parses requests
/// straight out of <see cref="Buffered"/>, so bytes a client sent right after the handshake are kept.
/// A wait for more input first runs the wait hook: the connection sends the replies it held back.
/// </summary>
internal sealed class NbdInput(NbdSocket socket, int capacity) : Stream
{
    private readonly byte[] _buffer = new byte[capacity];
    private int _head, _tail;
    /// <summary>A wait for a large payload ends once this much of it is there (the socket's buffer must hold it).</summary>
    private const int MaxLowWater = 256 << 10;
    private static readonly long SpinTicks = Stopwatch.Frequency * 30 / 1_000_000; // 30 µs
    private Action _beforeWait = () => { };

    /// <summary>Received bytes not yet consumed.</summary>
    public ReadOnlySpan<byte> Buffered => _buffer.AsSpan(_head, _tail - _head);

    public void Consume(int count) => _head += count;

    /// <summary>Runs <paramref name="beforeWait"/> whenever a receive has to wait for the client.</summary>
    public void OnWait(Action beforeWait) => _beforeWait = beforeWait;

    /// <summary>Blocks until at least <paramref name="count"/> bytes are buffered; false at end of stream.</summary>
    public bool Fill(int count)
    {
        if (_tail - _head >= count) return true;
        if (_head > 0)
        {
            _buffer.AsSpan(_head, _tail - _head).CopyTo(_buffer);
            _tail -= _head;
            _head = 0;
        }
        while (_tail < count)
        {
            var n = Receive(_buffer.AsSpan(_tail), count - _tail);
            if (n == 0) return false;
            _tail += n;
        }
        return true;
    }

    /// <summary>Fills <paramref name="into"/>: buffered bytes first, the rest received straight into it. False at end of stream.</summary>
    public bool TakeExactly(Span<byte> into)
    {
        var have = Math.Min(into.Length, _tail - _head);
        _buffer.AsSpan(_head, have).CopyTo(into);
        _head += have;
        for (var done = have; done < into.Length;)
        {
            var n = Receive(into[done..], into.Length - done);
            if (n == 0) return false;
            done += n;
        }
        return true;
    }

    /// <summary>Discards <paramref name="count"/> bytes (a rejected write's payload). False at end of stream.</summary>
    public bool Skip(long count)
    {
        while (count > 0)
        {
            if (_head == _tail)
            {
                _head = _tail = 0;
                var n = Receive(_buffer, (int)Math.Min(count, _buffer.Length));
                if (n == 0) return false;
                _tail = n;
            }
            var take = (int)Math.Min(count, _tail - _head);
            _head += take;
            count -= take;
        }
        return true;
    }

    /// <summary>Receives at most into.Length bytes; a wait lasts until <paramref name="need"/> bytes are there (or fewer at end of stream).</summary>
    private int Receive(Span<byte> into, int need)
    {
        var n = socket.TryReceive(into);
        if (n >= 0) return n;
        _beforeWait();
        // A client at queue depth 1 sends its next request a few microseconds after our reply: watching for it
        // briefly costs less than putting the thread to sleep and waking it, the dearest step on a small VM.
        var until = Stopwatch.GetTimestamp() + SpinTicks;
        while (true)
        {
            n = socket.TryReceive(into);
            if (n >= 0) return n;
            if (Stopwatch.GetTimestamp() < until) { Thread.Yield(); continue; }
            socket.ExpectAtLeast(Math.Clamp(need, 1, MaxLowWater));
            socket.WaitReadable();
            until = 0;
        }
    }

    // ---- Stream, for the handshake (blocking) -------------------------------------------------------------------------

    public override int Read(Span<byte> destination)
    {
        if (destination.IsEmpty) return 0;
        if (_head == _tail)
        {
            _head = 0;
            _tail = Receive(_buffer, 1);
            if (_tail == 0) return 0;
        }
        var n = Math.Min(destination.Length, _tail - _head);
        _buffer.AsSpan(_head, n).CopyTo(destination);
        _head += n;
        return n;
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
