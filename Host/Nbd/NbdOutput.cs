using System.Buffers;

namespace DmActors.Host.Nbd;

/// <summary>The handshake's replies: written into a buffer, sent with a blocking send on <see cref="Flush"/>.</summary>
internal sealed class NbdOutput(NbdSocket socket) : Stream
{
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);

    public override void Write(ReadOnlySpan<byte> data) => _buffer.Write(data);
    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Flush()
    {
        if (_buffer.WrittenCount == 0) return;
        socket.SendAll(_buffer.WrittenSpan);
        _buffer.Clear();
    }

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
}
