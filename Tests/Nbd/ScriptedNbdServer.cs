using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace DmActors.Tests.Nbd;

/// <summary>What a <see cref="ScriptedNbdServer"/> does with one request.</summary>
public enum ScriptedAction
{
    /// <summary>Run it on the memory and reply.</summary>
    Answer,
    /// <summary>Say nothing (a paused or cut-off server); <see cref="ScriptedNbdServer.ReplyHeld"/> may answer it later.</summary>
    Hold,
    /// <summary>A reply with a bad magic.</summary>
    Garbage,
    /// <summary>A well-formed reply for a cookie the client never sent.</summary>
    WrongCookie,
    /// <summary>Close the connection without a reply.</summary>
    Close,
    /// <summary>Reply ESHUTDOWN (108): not performed, the server is going away.</summary>
    Shutdown,
}

/// <summary>One request as the server read it.</summary>
public sealed record ScriptedRequest(int Connection, ushort Type, ushort Flags, ulong Cookie, ulong Offset, uint Length);

/// <summary>
/// A small NBD server on loopback TCP whose every request goes through a script (a test's function) that says what
/// to do with it: answer, stay silent, send garbage, close. Fixed newstyle with NBD_OPT_GO only, simple replies, a
/// memory disk. Each connection runs on a thread of its own; all of them are closed on Dispose.
/// </summary>
public sealed class ScriptedNbdServer : IDisposable
{
    public const ushort Read = 0, Write = 1, Flush = 3;
    private readonly Socket _listener;
    private readonly byte[] _memory;
    private readonly ushort _flags;
    private readonly ConcurrentBag<Socket> _sockets = new();
    private readonly ConcurrentQueue<(Socket Socket, ulong Cookie)> _held = new();
    private int _connections;
    private volatile bool _disposed;

    /// <summary>The script; it may be swapped while the server runs.</summary>
    public volatile Func<ScriptedRequest, ScriptedAction> Script = _ => ScriptedAction.Answer;

    public ScriptedNbdServer(long size = 1 << 20, bool multiConn = false)
    {
        _memory = new byte[size];
        _flags = (ushort)(1 | 4 | 8 | (multiConn ? 256 : 0)); // HAS_FLAGS, SEND_FLUSH, SEND_FUA, maybe CAN_MULTI_CONN
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        _listener.Listen();
        new Thread(AcceptLoop) { IsBackground = true, Name = "scripted-nbd-accept" }.Start();
    }

    public EndPoint Endpoint => _listener.LocalEndPoint!;
    /// <summary>Connections accepted so far.</summary>
    public int Connections => Volatile.Read(ref _connections);
    public readonly ConcurrentQueue<ScriptedRequest> Requests = new();
    public int HeldCount => _held.Count;

    /// <summary>Answers every held request now, with success and no data (a late reply), or with <paramref name="error"/>; false if a socket refused it.</summary>
    public bool ReplyHeld(uint error = 0)
    {
        var all = true;
        while (_held.TryDequeue(out var h))
        {
            try { lock (h.Socket) h.Socket.Send(SimpleReply(error, h.Cookie)); }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { all = false; }
        }
        return all;
    }

    private void AcceptLoop()
    {
        while (!_disposed)
        {
            Socket s;
            try { s = _listener.Accept(); }
            catch (Exception) { return; }
            _sockets.Add(s);
            var n = Interlocked.Increment(ref _connections);
            new Thread(() => Serve(s, n)) { IsBackground = true, Name = $"scripted-nbd-{n}" }.Start();
        }
    }

    private void Serve(Socket s, int connection)
    {
        try
        {
            var hello = new byte[18];
            BinaryPrimitives.WriteUInt64BigEndian(hello, 0x4e42444d41474943);
            BinaryPrimitives.WriteUInt64BigEndian(hello.AsSpan(8), 0x49484156454F5054);
            BinaryPrimitives.WriteUInt16BigEndian(hello.AsSpan(16), 3); // FIXED_NEWSTYLE | NO_ZEROES
            s.Send(hello);
            ReadExactly(s, 4); // client flags
            var option = ReadExactly(s, 16);
            ReadExactly(s, (int)BinaryPrimitives.ReadUInt32BigEndian(option.AsSpan(12))); // GO's data: any export will do
            var info = new byte[12];
            BinaryPrimitives.WriteUInt64BigEndian(info.AsSpan(2), (ulong)_memory.Length);
            BinaryPrimitives.WriteUInt16BigEndian(info.AsSpan(10), _flags);
            s.Send(OptionReply(3, info));
            s.Send(OptionReply(1, []));
            while (true)
            {
                var h = ReadExactly(s, 28);
                var r = new ScriptedRequest(connection, BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(6)), BinaryPrimitives.ReadUInt16BigEndian(h.AsSpan(4)),
                    BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(8)), BinaryPrimitives.ReadUInt64BigEndian(h.AsSpan(16)), BinaryPrimitives.ReadUInt32BigEndian(h.AsSpan(24)));
                var payload = r.Type == Write ? ReadExactly(s, (int)r.Length) : null;
                if (r.Type == 2) return; // DISC
                Requests.Enqueue(r);
                switch (Script(r))
                {
                    case ScriptedAction.Answer:
                        byte[] reply;
                        lock (_memory)
                        {
                            if (payload != null) payload.CopyTo(_memory, (long)r.Offset);
                            reply = SimpleReply(0, r.Cookie);
                            if (r.Type == Read) reply = [.. reply, .. _memory.AsSpan((int)r.Offset, (int)r.Length)];
                        }
                        lock (s) s.Send(reply);
                        break;
                    case ScriptedAction.Hold:
                        _held.Enqueue((s, r.Cookie));
                        break;
                    case ScriptedAction.Garbage:
                        lock (s) s.Send("HTTP/1.1 400 Bad Request\r\n\r\n"u8.ToArray());
                        break;
                    case ScriptedAction.WrongCookie:
                        lock (s) s.Send(SimpleReply(0, r.Cookie + 1_000_000));
                        break;
                    case ScriptedAction.Shutdown:
                        lock (s) s.Send(SimpleReply(108, r.Cookie));
                        break;
                    case ScriptedAction.Close:
                        s.Dispose();
                        return;
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or EndOfStreamException) { }
    }

    /// <summary>Bytes the memory disk holds.</summary>
    public byte[] Memory(long offset, int length)
    {
        lock (_memory) return _memory.AsSpan((int)offset, length).ToArray();
    }

    private static byte[] SimpleReply(uint error, ulong cookie)
    {
        var b = new byte[16];
        BinaryPrimitives.WriteUInt32BigEndian(b, 0x67446698);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(4), error);
        BinaryPrimitives.WriteUInt64BigEndian(b.AsSpan(8), cookie);
        return b;
    }

    private static byte[] OptionReply(uint type, byte[] data)
    {
        var b = new byte[20 + data.Length];
        BinaryPrimitives.WriteUInt64BigEndian(b, 0x0003e889045565a9);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(8), 7); // GO
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(12), type);
        BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16), (uint)data.Length);
        data.CopyTo(b, 20);
        return b;
    }

    private static byte[] ReadExactly(Socket s, int n)
    {
        var b = new byte[n];
        for (var got = 0; got < n;)
        {
            var k = s.Receive(b.AsSpan(got));
            if (k == 0) throw new EndOfStreamException();
            got += k;
        }
        return b;
    }

    public void Dispose()
    {
        _disposed = true;
        _listener.Dispose();
        foreach (var s in _sockets) s.Dispose();
    }
}
