namespace DmActors;

/// <summary>
/// A sparse in-memory disk (64 KiB chunks allocated on first write). IO completes on the caller's thread:
/// copying memory does not block. It has no volatile cache: a completed write is as durable as it gets.
/// </summary>
public sealed class MemoryDisk : Disk
{
    private const int ChunkShift = 16;
    private const int ChunkSize = 1 << ChunkShift;
    private readonly Dictionary<long, byte[]> _chunks = new();
    private readonly object _gate = new();

    public MemoryDisk(string name, long sectors, string devNo = "1:0") : base(name, sectors, devNo) { }

    public override bool HasVolatileCache => false;

    protected override void Run(Bio bio, Action<Bio, BioStatus> done)
    {
        switch (bio.Op)
        {
            case BioOp.Read: ReadAt(bio.Sector << Bio.SectorShift, bio.Data.Span); break;
            case BioOp.Write: WriteAt(bio.Sector << Bio.SectorShift, bio.Data.Span); break;
            case BioOp.WriteZeroes when (bio.Flags & BioFlags.NoUnmap) != 0: WriteZeroesAllocated(bio.Sector, bio.Sectors); break;
            case BioOp.Discard:
            case BioOp.WriteZeroes: ZeroAt(bio.Sector << Bio.SectorShift, bio.Sectors << Bio.SectorShift); break;
            case BioOp.BlockStatus: MapAllocation(bio.Sector, bio.Data.Span); break;
        }
        done(bio, BioStatus.Ok);
    }

    public void ReadAt(long offset, Span<byte> into)
    {
        lock (_gate)
            for (var pos = 0; pos < into.Length;)
            {
                var (chunk, at, n) = Piece(offset + pos, into.Length - pos);
                if (_chunks.TryGetValue(chunk, out var c)) c.AsSpan(at, n).CopyTo(into.Slice(pos, n));
                else into.Slice(pos, n).Clear();
                pos += n;
            }
    }

    public void WriteAt(long offset, ReadOnlySpan<byte> from)
    {
        lock (_gate)
            for (var pos = 0; pos < from.Length;)
            {
                var (chunk, at, n) = Piece(offset + pos, from.Length - pos);
                if (!_chunks.TryGetValue(chunk, out var c)) _chunks[chunk] = c = new byte[ChunkSize];
                from.Slice(pos, n).CopyTo(c.AsSpan(at, n));
                pos += n;
            }
    }

    private static (long Chunk, int At, int N) Piece(long offset, long remaining)
    {
        var at = (int)(offset & (ChunkSize - 1));
        return (offset >> ChunkShift, at, (int)Math.Min(ChunkSize - at, remaining));
    }

    private void ZeroAt(long offset, long length)
    {
        lock (_gate)
            for (long done = 0; done < length;)
            {
                var (chunk, at, n) = Piece(offset + done, length - done);
                if (n == ChunkSize) _chunks.Remove(chunk);
                else if (_chunks.TryGetValue(chunk, out var c)) c.AsSpan(at, n).Clear();
                done += n;
            }
    }

    /// <summary>Zeroes that stay allocated (NoUnmap): written like data.</summary>
    private void WriteZeroesAllocated(long sector, long sectors)
    {
        var zeroes = new byte[ChunkSize];
        for (long at = sector << Bio.SectorShift, end = (sector + sectors) << Bio.SectorShift; at < end;)
        {
            var n = (int)Math.Min(ChunkSize - (at & (ChunkSize - 1)), end - at);
            WriteAt(at, zeroes.AsSpan(0, n));
            at += n;
        }
    }

    /// <summary>A block-status map: sectors of chunks never written are HoleZero.</summary>
    private void MapAllocation(long sector, Span<byte> map)
    {
        lock (_gate)
            for (var i = 0; i < map.Length; i++)
                map[i] = _chunks.ContainsKey(((sector + i) << Bio.SectorShift) >> ChunkShift) ? BlockState.Data : BlockState.HoleZero;
    }

    /// <summary>True when no byte of the range was ever written (or all of it was discarded).</summary>
    public bool IsUnallocated(long offset, long length)
    {
        lock (_gate)
            for (var chunk = offset >> ChunkShift; chunk <= (offset + length - 1) >> ChunkShift; chunk++)
                if (_chunks.ContainsKey(chunk)) return false;
        return true;
    }
}
