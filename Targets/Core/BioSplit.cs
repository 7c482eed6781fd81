using Akka.Actor;

namespace DmActors;

/// <summary>One clone's part of a bio: the table line it goes to, where it starts within the bio, and which of
/// the line's duplicated clones it is (discard and write-zeroes go to every stripe).</summary>
public readonly record struct BioPiece(int Target, long Offset, long Sectors, int Copy);

/// <summary>
/// dm's __split_and_process_bio over a <see cref="Table"/>, without the device: <see cref="Check"/> says whether
/// a bio can be mapped at all, <see cref="Split"/> walks its pieces (at target ends and at each target's
/// max_io_len) and <see cref="CloneOf"/> makes the clone of one piece. The walk allocates nothing; the caller
/// sends the clones.
/// </summary>
public static class BioSplit
{
    /// <summary>
    /// Why a data bio (not an empty flush) cannot be mapped, or Ok: out of range, read-only, a payload of the wrong
    /// size, or a discard / write-zeroes that a target in its range cannot take (num_*_bios == 0: EOPNOTSUPP,
    /// refused whole before any clone goes out).
    /// </summary>
    public static BioStatus Check(Bio bio, Table table, bool readOnly)
    {
        // Compared without adding: sector + sectors may wrap negative and look in range.
        if (bio.Sector < 0 || bio.Sectors < 0 || bio.Sector > table.Sectors - bio.Sectors) return BioStatus.OutOfRange;
        if ((readOnly || table.ReadOnly) && bio.Op is not (BioOp.Read or BioOp.BlockStatus)) return BioStatus.ReadOnly;
        if (bio.Sectors > 0 && bio.Data.Length != bio.ExpectedDataLength) return BioStatus.Invalid;
        if (bio.Op is BioOp.Discard or BioOp.WriteZeroes)
            for (var s = bio.Sector; s < bio.Sector + bio.Sectors;)
            {
                var t = table.Targets[table.FindTarget(s)];
                if (Copies(bio.Op, t) == 0) return BioStatus.NotSupported;
                s = t.Begin + t.Length;
            }
        return BioStatus.Ok;
    }

    /// <summary>The pieces of a bio that passed <see cref="Check"/>, in sector order (a struct: foreach allocates nothing).</summary>
    public static Pieces Split(Bio bio, Table table) => new(bio, table);

    /// <summary>The clone for <paramref name="piece"/>: the barrier and preflush flags are the caller's to clear.</summary>
    public static Bio CloneOf(Bio bio, in BioPiece piece, BioFlags flags, IActorRef replyTo, object? tag)
    {
        var clone = bio.Clone(piece.Offset, piece.Sectors, replyTo, tag);
        clone.Flags = flags;
        clone.Index = piece.Copy;
        return clone;
    }

    private static int Copies(BioOp op, Target t) => op == BioOp.Discard ? t.NumDiscardBios : t.NumWriteZeroesBios;

    public readonly struct Pieces(Bio bio, Table table)
    {
        public Enumerator GetEnumerator() => new(bio, table);
    }

    public struct Enumerator
    {
        private readonly Bio _bio;
        private readonly Table _table;
        private readonly bool _abnormal;
        private long _next; // offset of the next piece within the bio
        private int _copies;

        internal Enumerator(Bio bio, Table table)
        {
            _bio = bio; _table = table; _abnormal = bio.Op is BioOp.Discard or BioOp.WriteZeroes;
        }

        public BioPiece Current { get; private set; }

        public bool MoveNext()
        {
            if (Current.Copy + 1 < _copies) { Current = Current with { Copy = Current.Copy + 1 }; return true; }
            while (_next < _bio.Sectors)
            {
                var sector = _bio.Sector + _next;
                var index = _table.FindTarget(sector);
                var target = _table.Targets[index];
                var len = Math.Min(_bio.Sectors - _next, target.Begin + target.Length - sector);
                if (_abnormal) _copies = Copies(_bio.Op, target);
                else
                {
                    _copies = 1;
                    if (target.MaxIoLen > 0) len = Math.Min(len, target.MaxIoLen - (sector - target.Begin) % target.MaxIoLen);
                }
                Current = new BioPiece(index, _next, len, 0);
                _next += len;
                if (_copies > 0) return true;
            }
            return false;
        }
    }
}
