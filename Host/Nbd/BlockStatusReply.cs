using System.Buffers;
using System.Buffers.Binary;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Host.Nbd;

/// <summary>
/// The extents of a BLOCK_STATUS reply for base:allocation, from the per-sector map its bio filled: one descriptor
/// per run of equal state (length, NBD_STATE_HOLE | NBD_STATE_ZERO), only the first with REQ_ONE.
/// </summary>
internal static class BlockStatusReply
{
    public const int Descriptor = 8;

    /// <summary>Fills the request's extents (pooled) and returns its map buffer; on an error there are none.</summary>
    public static void Encode(NbdRequest r, Bio bio, BioStatus status)
    {
        var map = bio.Data.Span;
        if (status == BioStatus.NotSupported) map.Fill(BlockState.Data); // cannot tell: data
        if (r.Error == 0)
        {
            var one = (r.Flags & CmdFlags.ReqOne) != 0;
            var runs = one ? 1 : CountRuns(map);
            var extents = ArrayPool<byte>.Shared.Rent(runs * Descriptor);
            var at = 0;
            for (var i = 0; i < map.Length && at < runs * Descriptor;)
            {
                var state = map[i];
                var n = map[i..].IndexOfAnyExcept(state);
                if (n < 0) n = map.Length - i;
                BinaryPrimitives.WriteUInt32BigEndian(extents.AsSpan(at), (uint)n << Bio.SectorShift);
                BinaryPrimitives.WriteUInt32BigEndian(extents.AsSpan(at + 4), state);
                at += Descriptor;
                i += n;
            }
            r.Extents = extents;
            r.ExtentBytes = at;
        }
        if (!r.BufferMayBeInUse) ArrayPool<byte>.Shared.Return(r.Buffer!);
        r.Buffer = null;
    }

    private static int CountRuns(ReadOnlySpan<byte> map)
    {
        var runs = 0;
        for (var i = 0; i < map.Length; runs++)
        {
            var n = map[i..].IndexOfAnyExcept(map[i]);
            i += n < 0 ? map.Length - i : n;
        }
        return runs;
    }
}
