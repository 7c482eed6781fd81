using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace DmActors;

/// <summary>
/// A gathered sendmsg that never blocks, shared by the NBD server's sockets and the NBD client disk: .NET's
/// Socket.Send with a list allocates per call and may block, where both paths must only try and hand over.
/// </summary>
public static unsafe class SocketSend
{
    [StructLayout(LayoutKind.Sequential)]
    public struct IoVec
    {
        public void* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct MsgHdr
    {
        public void* Name;
        public uint NameLen;
        public IoVec* Iov;
        public nuint IovLen;
        public void* Control;
        public nuint ControlLen;
        public int Flags;
    }

    private const int MsgDontWait = 0x40, MsgNoSignal = 0x4000, EAgain = 11, EIntr = 4;

    /// <summary>Bytes sent (possibly fewer than asked), or -1 when the socket buffer is full; no SIGPIPE.</summary>
    public static long TrySend(int fd, IoVec* iov, int count)
    {
        var msg = new MsgHdr { Iov = iov, IovLen = (nuint)count };
        while (true)
        {
            var n = sendmsg(fd, &msg, MsgDontWait | MsgNoSignal);
            if (n >= 0) return n;
            var errno = Marshal.GetLastPInvokeError();
            if (errno == EIntr) continue;
            if (errno == EAgain) return -1;
            throw new SocketException(errno);
        }
    }

    [DllImport("libc", SetLastError = true)] private static extern nint sendmsg(int fd, MsgHdr* msg, int flags);
}
