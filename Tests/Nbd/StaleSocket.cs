using System.Runtime.InteropServices;
using Xunit;

namespace DmActors.Tests.Nbd;

/// <summary>A socket file left behind as by a crashed server (.NET itself unlinks the file when a bound socket is disposed).</summary>
internal static class StaleSocket
{
    public static void Create(string path)
    {
        var fd = socket(1 /* AF_UNIX */, 1 /* SOCK_STREAM */, 0);
        Assert.True(fd >= 0, "socket() failed");
        var address = new byte[110];
        address[0] = 1; // sun_family = AF_UNIX (little-endian ushort)
        System.Text.Encoding.UTF8.GetBytes(path).CopyTo(address, 2);
        try { Assert.True(bind(fd, address, address.Length) == 0, $"bind({path}) failed"); }
        finally { close(fd); }
    }

    [DllImport("libc")] private static extern int socket(int domain, int type, int protocol);
    [DllImport("libc")] private static extern int bind(int fd, byte[] address, int length);
    [DllImport("libc")] private static extern int close(int fd);
}
