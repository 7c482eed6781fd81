namespace DmActors.Host.Nbd;

/// <summary>
/// Bytes one connection received and sent (requests and payloads in; replies and read data out), counted at each
/// recv and sendmsg. One per connection, so the threads of different connections never share a counter.
/// </summary>
public sealed class NbdTraffic
{
    private long _in, _out;
    public long BytesIn => Interlocked.Read(ref _in);
    public long BytesOut => Interlocked.Read(ref _out);
    internal void Received(long n) => Interlocked.Add(ref _in, n);
    internal void Sent(long n) => Interlocked.Add(ref _out, n);
}
