using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace DmActors.Host.Nbd;

/// <summary>
/// A connection's direct view of its socket: non-blocking recv and sendmsg, and poll to wait. The connection's
/// own thread waits in <see cref="WaitReadable"/>; any thread may try a send, which never blocks. No .NET async
/// socket call is ever made on it: that would put the socket in the runtime's epoll loop, where every arriving
/// packet costs a wake-up of the epoll thread and of a thread-pool thread, more than the request itself.
/// <see cref="Shutdown"/> wakes a waiter.
/// </summary>
internal sealed unsafe class NbdSocket : IDisposable
{
    private const int MsgDontWait = 0x40;
    private const short PollIn = 0x1, PollOut = 0x4;
    private const int EAgain = 11, EIntr = 4;
    private const int SolSocket = 1, SoRcvLowat = 18;

    private readonly Socket _socket;
    private readonly SafeHandle _handle;

    private readonly NbdTraffic? _traffic;

    public NbdSocket(Socket socket, NbdTraffic? traffic = null)
    {
        _socket = socket;
        _traffic = traffic;
        _handle = socket.SafeHandle;
    }

    /// <summary>
    /// Holds the handle for the length of one call, as the runtime's own socket calls do: a descriptor closed
    /// meanwhile cannot be reused under the call, and a close waits (shutting the socket to wake a poll) until
    /// the call has returned. A closed socket throws ObjectDisposedException.
    /// </summary>
    private readonly struct Use : IDisposable
    {
        private readonly SafeHandle _handle;
        public readonly int Fd;

        public Use(SafeHandle handle)
        {
            var added = false;
            handle.DangerousAddRef(ref added);
            _handle = handle;
            Fd = (int)handle.DangerousGetHandle();
        }

        public void Dispose() => _handle.DangerousRelease();
    }

    /// <summary>Bytes received into <paramref name="into"/>; 0 at end of stream; -1 when nothing is there yet.</summary>
    public int TryReceive(Span<byte> into)
    {
        using var use = new Use(_handle);
        fixed (byte* p = into)
        {
            while (true)
            {
                var n = Native.recv(use.Fd, p, (nuint)into.Length, MsgDontWait);
                if (n >= 0) { _traffic?.Received(n); return (int)n; }
                var errno = Marshal.GetLastPInvokeError();
                if (errno == EIntr) continue;
                if (errno == EAgain) return -1;
                throw new SocketException(errno);
            }
        }
    }

    /// <summary>Blocks the calling thread until input (or end of stream, or an error) is there.</summary>
    public void WaitReadable() => Wait(PollIn);

    private int _lowWater = 1;

    /// <summary>
    /// How many bytes must be there before a wait for input ends (SO_RCVLOWAT; TCP honours it, a Unix socket
    /// ignores it): a payload arriving in many segments then wakes the thread once, not once a segment.
    /// </summary>
    public void ExpectAtLeast(int bytes)
    {
        if (bytes == _lowWater) return;
        using var use = new Use(_handle);
        var value = bytes;
        if (Native.setsockopt(use.Fd, SolSocket, SoRcvLowat, &value, sizeof(int)) == 0) _lowWater = bytes;
    }

    /// <summary>Blocks the calling thread until the socket takes more output (or fails).</summary>
    public void WaitWritable() => Wait(PollOut);

    private void Wait(short events)
    {
        using var use = new Use(_handle);
        var pfd = new Native.PollFd { Fd = use.Fd, Events = events };
        while (Native.poll(&pfd, 1, -1) < 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            if (errno != EIntr) throw new SocketException(errno);
        }
    }

    /// <summary>Sends all of <paramref name="data"/>, blocking the calling thread while the socket is full.</summary>
    public void SendAll(ReadOnlySpan<byte> data)
    {
        fixed (byte* p = data)
        {
            var iov = new SocketSend.IoVec { Base = p, Length = (nuint)data.Length };
            while (iov.Length > 0)
            {
                var n = TrySend(&iov, 1);
                if (n < 0) { WaitWritable(); continue; }
                iov.Base = (byte*)iov.Base + n;
                iov.Length -= (nuint)n;
            }
        }
    }

    /// <summary>One sendmsg that never blocks: bytes sent (possibly fewer than asked), or -1 when the socket buffer is full.</summary>
    public long TrySend(SocketSend.IoVec* iov, int count)
    {
        using var use = new Use(_handle);
        var n = SocketSend.TrySend(use.Fd, iov, count);
        if (n > 0) _traffic?.Sent(n);
        return n;
    }

    /// <summary>Ends both directions: a thread waiting in <see cref="WaitReadable"/> wakes and reads end of stream.</summary>
    public void Shutdown()
    {
        try { _socket.Shutdown(SocketShutdown.Both); } catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }

    /// <summary>Closes the socket; a call in progress returns first.</summary>
    public void Dispose() => _socket.Dispose();

    internal static class Native
    {
        [DllImport("libc", SetLastError = true)] public static extern nint recv(int fd, byte* buf, nuint len, int flags);
        [DllImport("libc", SetLastError = true)] public static extern int poll(PollFd* fds, nuint nfds, int timeout);
        [DllImport("libc", SetLastError = true)] public static extern int setsockopt(int fd, int level, int name, void* value, uint length);

        [StructLayout(LayoutKind.Sequential)]
        public struct PollFd
        {
            public int Fd;
            public short Events;
            public short REvents;
        }
    }
}
