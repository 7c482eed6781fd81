namespace DmActors.Targets;

/// <summary>
/// flakey &lt;dev&gt; &lt;offset&gt; &lt;up&gt; &lt;down&gt; [&lt;#features&gt; &lt;feature&gt;...]: linear while up, faulty while down
/// (drivers/md/dm-flakey.c, modern 6.4+ behaviour). Intervals are seconds since the table was loaded, on
/// <see cref="TargetArgs.Clock"/>. Down means `elapsed % (up + down) &gt;= up`.
/// While down: reads fail with error_reads, else pass and may be corrupted on completion; write-direction bios
/// (flushes and discards too) are dropped (completed OK, never issued) with drop_writes, failed with error_writes,
/// else written with a corrupted copy of their data. No features at all means error_reads + error_writes.
/// corrupt_bio_byte's flags mask is matched against <see cref="BioFlags"/> values.
/// Table (6.4+ format, no trailing space): `8:16 0 0 180 2 error_reads error_writes`; status: empty.
/// </summary>
[TargetType("flakey", 1, 5, 0)]
public sealed class Flakey : Target
{
    /// <summary>random_*_corrupt probabilities are out of this (100%).</summary>
    public const uint ProbabilityBase = 1_000_000_000;

    private readonly IBlockDevice _dev;
    private readonly long _start;
    private readonly uint _up, _down;
    private readonly IClock _clock;
    private readonly TimeSpan _loaded;
    private bool _errorReads, _dropWrites, _errorWrites;
    private uint _corruptByte;          // 1-based; 0 = no corrupt_bio_byte
    private bool _corruptWrites;        // direction of corrupt_bio_byte
    private byte _corruptValue;
    private uint _corruptFlags;
    private uint _randomReadCorrupt, _randomWriteCorrupt;
    /// <summary>Read clones mapped while down: only those may be corrupted on completion (pb->bio_can_corrupt).</summary>
    private readonly HashSet<Bio> _downReads = new(ReferenceEqualityComparer.Instance);

    public Flakey(TargetArgs a) : base(a)
    {
        a.ExpectArgs(4);
        _start = a.ReadSector(1, "Invalid device sector");
        _up = a.ReadUInt(2, 0, uint.MaxValue, "Invalid up interval");
        _down = a.ReadUInt(3, 0, uint.MaxValue, "Invalid down interval");
        if (_up + (ulong)_down == 0) throw new TargetException("Total (up + down) interval is zero");
        if (_up + (ulong)_down > uint.MaxValue) throw new TargetException("Interval overflow");
        ParseFeatures(a);
        _clock = a.Clock;
        _loaded = a.Clock.Now;
        _dev = a.GetDevice(a.Args[0], _start, a.Length);
    }

    private void ParseFeatures(TargetArgs a)
    {
        if (a.Args.Length == 4) { _errorReads = _errorWrites = true; return; }
        var (first, end) = a.ReadGroup(4, 11, "Invalid number of feature args");
        var f = a.Args;
        for (var i = first; i < end; i++)
        {
            switch (f[i].ToLowerInvariant())
            {
                case "error_reads":
                    if (_errorReads) throw new TargetException("Feature error_reads duplicated");
                    _errorReads = true;
                    break;
                case "drop_writes":
                    if (_dropWrites) throw new TargetException("Feature drop_writes duplicated");
                    if (_errorWrites) throw new TargetException("Feature drop_writes conflicts with feature error_writes");
                    _dropWrites = true;
                    break;
                case "error_writes":
                    if (_errorWrites) throw new TargetException("Feature error_writes duplicated");
                    if (_dropWrites) throw new TargetException("Feature error_writes conflicts with feature drop_writes");
                    _errorWrites = true;
                    break;
                case "corrupt_bio_byte":
                    if (_corruptByte != 0) throw new TargetException("Feature corrupt_bio_byte duplicated");
                    if (end - i - 1 < 4) throw new TargetException("Feature corrupt_bio_byte requires parameters");
                    _corruptByte = a.ReadUInt(++i, 1, uint.MaxValue, "Invalid corrupt bio byte");
                    _corruptWrites = f[++i].ToLowerInvariant() switch
                    {
                        "w" => true,
                        "r" => false,
                        _ => throw new TargetException("Invalid corrupt bio direction (r or w)"),
                    };
                    _corruptValue = (byte)a.ReadUInt(++i, 0, 255, "Invalid corrupt value to write into bio byte (0-255)");
                    _corruptFlags = a.ReadUInt(++i, 0, uint.MaxValue, "Invalid corrupt bio flags mask");
                    break;
                case "random_read_corrupt":
                    if (_randomReadCorrupt != 0) throw new TargetException("Feature random_read_corrupt duplicated");
                    if (i + 1 >= end) throw new TargetException("Feature random_read_corrupt requires a parameter");
                    _randomReadCorrupt = a.ReadUInt(++i, 0, ProbabilityBase, "Invalid random corrupt argument");
                    break;
                case "random_write_corrupt":
                    if (_randomWriteCorrupt != 0) throw new TargetException("Feature random_write_corrupt duplicated");
                    if (i + 1 >= end) throw new TargetException("Feature random_write_corrupt requires a parameter");
                    _randomWriteCorrupt = a.ReadUInt(++i, 0, ProbabilityBase, "Invalid random corrupt argument");
                    break;
                default:
                    throw new TargetException("Unrecognised flakey feature requested");
            }
        }
        var fixedWrites = _corruptByte != 0 && _corruptWrites;
        var fixedReads = _corruptByte != 0 && !_corruptWrites;
        // dm's wording for the corrupt_bio_byte case (drivers/md/dm-flakey.c); the random_* variants name both.
        if (_dropWrites && fixedWrites) throw new TargetException("drop_writes is incompatible with corrupt_bio_byte with the WRITE flag set");
        if (_dropWrites && _randomWriteCorrupt != 0)
            throw new TargetException("drop_writes is incompatible with random_write_corrupt or corrupt_bio_byte with the WRITE flag set");
        if (_errorWrites && (fixedWrites || _randomWriteCorrupt != 0))
            throw new TargetException("error_writes is incompatible with random_write_corrupt or corrupt_bio_byte with the WRITE flag set");
        if (_errorReads && (fixedReads || _randomReadCorrupt != 0))
            throw new TargetException("error_reads is incompatible with random_read_corrupt or corrupt_bio_byte with the READ flag set");
        if (_corruptByte == 0 && !_errorReads && !_dropWrites && !_errorWrites && _randomReadCorrupt == 0 && _randomWriteCorrupt == 0)
            _errorReads = _errorWrites = true; // "0" features: the modern default fails all IO while down
    }

    public override IReadOnlyList<IBlockDevice> Devices => [_dev];
    public override int NumFlushBios => 1;
    public override int NumDiscardBios => 1;

    /// <summary>True while in a down interval.</summary>
    public bool IsDown
    {
        get
        {
            var elapsed = (ulong)Math.Max(0, (_clock.Now - _loaded).Ticks / TimeSpan.TicksPerSecond);
            return elapsed % (_up + (ulong)_down) >= _up;
        }
    }

    public override MapResult Map(Bio clone, int index, ITargetContext ctx)
    {
        if (IsDown)
        {
            if (!clone.IsWriteDirection)
            {
                if (_errorReads) return MapResult.Kill;
                if (clone.HasData) _downReads.Add(clone);
                return Remap(clone);
            }
            if (_dropWrites) { ctx.Complete(clone, BioStatus.Ok); return MapResult.Submitted; }
            if (_errorWrites) { ctx.Complete(clone, BioStatus.IoError); return MapResult.Submitted; }
            if (clone.HasData)
            {
                var fixedHit = _corruptByte != 0 && _corruptWrites && FlagsMatch(clone);
                var randomHit = _randomWriteCorrupt != 0 && Random.Shared.NextInt64(ProbabilityBase) < _randomWriteCorrupt;
                if (fixedHit || randomHit)
                {
                    // Corrupt a copy: the submitter's buffer must stay as it was (dm-flakey clone_bio).
                    var copy = clone.Data.ToArray();
                    if (fixedHit) Corrupt(copy, _corruptByte - 1, _corruptValue);
                    if (randomHit) Corrupt(copy, (uint)Random.Shared.Next(copy.Length), (byte)Random.Shared.Next(256));
                    var own = new Bio(BioOp.Write, RemapSector(_start, clone), clone.Sectors, copy, Akka.Actor.ActorRefs.Nobody, clone.Flags) { Parent = clone };
                    ctx.Submit(_dev, own, status => ctx.Complete(clone, status));
                    return MapResult.Submitted;
                }
            }
        }
        return Remap(clone);
    }

    private MapResult Remap(Bio clone)
    {
        if (clone.Op != BioOp.Flush) clone.Sector = RemapSector(_start, clone);
        return MapResult.Remapped(_dev);
    }

    public override BioStatus EndIo(Bio clone, BioStatus status, ITargetContext ctx)
    {
        if (!_downReads.Remove(clone) || status != BioStatus.Ok) return status;
        if (_corruptByte != 0 && !_corruptWrites && FlagsMatch(clone)) Corrupt(clone.Data.Span, _corruptByte - 1, _corruptValue);
        if (_randomReadCorrupt != 0 && Random.Shared.NextInt64(ProbabilityBase) < _randomReadCorrupt)
            Corrupt(clone.Data.Span, (uint)Random.Shared.Next(clone.Data.Length), (byte)Random.Shared.Next(256));
        return status;
    }

    private bool FlagsMatch(Bio bio) => ((uint)bio.Flags & _corruptFlags) == _corruptFlags;

    /// <summary>Overwrites the byte at <paramref name="at"/> (0-based) if the bio is that long, as dm does.</summary>
    private static void Corrupt(Span<byte> data, uint at, byte value)
    {
        if (at < data.Length) data[(int)at] = value;
    }

    public override string TableParams()
    {
        var count = (_errorReads ? 1 : 0) + (_dropWrites ? 1 : 0) + (_errorWrites ? 1 : 0) + (_corruptByte > 0 ? 5 : 0) +
                    (_randomReadCorrupt > 0 ? 2 : 0) + (_randomWriteCorrupt > 0 ? 2 : 0);
        var s = new System.Text.StringBuilder($"{_dev.DevNo} {_start} {_up} {_down} {count}");
        if (_errorReads) s.Append(" error_reads");
        if (_dropWrites) s.Append(" drop_writes");
        else if (_errorWrites) s.Append(" error_writes");
        if (_corruptByte > 0) s.Append($" corrupt_bio_byte {_corruptByte} {(_corruptWrites ? 'w' : 'r')} {_corruptValue} {_corruptFlags}");
        if (_randomReadCorrupt > 0) s.Append($" random_read_corrupt {_randomReadCorrupt}");
        if (_randomWriteCorrupt > 0) s.Append($" random_write_corrupt {_randomWriteCorrupt}");
        return s.ToString();
    }
}
