namespace DmActors.Targets;

/// <summary>
/// dust &lt;dev&gt; &lt;offset&gt; &lt;blksz&gt; (drivers/md/dm-dust.c): a linear mapping whose listed "bad" blocks fail reads
/// with EIO once enabled, like a disk returning a medium error. A write to a bad block succeeds and removes it
/// from the list (unless it was added with a write-fail count, which fails that many writes first). IO is split
/// at block boundaries. Messages: addbadblock &lt;blk&gt; [&lt;wr_fail_cnt&gt;], removebadblock, queryblock, countbadblocks,
/// clearbadblocks, listbadblocks, enable, disable, quiet. Block numbers count blksz units from the device start;
/// a block outside the target's area is "selected block value out of range".
/// Table: `8:16 0 512`; status: `8:16 bypass|fail_read_on_bad_block verbose|quiet`.
/// </summary>
[TargetType("dust", 1, 0, 0)]
public sealed class Dust : Target
{
    private const long MaxBlockSectors = 2097152;

    private readonly IBlockDevice _dev;
    private readonly long _start;
    private readonly uint _blksz;
    private readonly int _shift; // log2(sectors per block)
    /// <summary>The blocks (counted from the device start) this target's area covers, partly or wholly.</summary>
    private readonly long _firstBlock, _lastBlock;
    /// <summary>Bad block -> writes still to fail before a write clears it.</summary>
    private readonly SortedDictionary<long, int> _bad = new();
    private bool _failReadOnBadBlock;
    private bool _quiet;

    public Dust(TargetArgs a) : base(a)
    {
        a.ExpectArgs(3, 3);
        _blksz = a.ReadUInt(2, 1, uint.MaxValue, "Invalid block size parameter");
        if (_blksz < 512) throw new TargetException("Block size must be at least 512");
        if ((_blksz & (_blksz - 1)) != 0) throw new TargetException("Block size must be a power of 2");
        if (_blksz >> Bio.SectorShift > Math.Min(a.Length, MaxBlockSectors)) throw new TargetException("Block size is too large");
        _shift = System.Numerics.BitOperations.Log2(_blksz >> Bio.SectorShift);
        _start = a.ReadSector(1, "Invalid device offset sector");
        _dev = a.GetDevice(a.Args[0], _start, a.Length);
        _firstBlock = _start >> _shift;
        _lastBlock = (_start + a.Length - 1) >> _shift; // the area fits on the device, so this does not overflow
    }

    public override IReadOnlyList<IBlockDevice> Devices => [_dev];
    public override long MaxIoLen => 1L << _shift;
    public override int NumFlushBios => 1;
    public override int NumDiscardBios => 1;

    public override MapResult Map(Bio clone, int index, ITargetContext ctx)
    {
        if (clone.Op != BioOp.Flush) clone.Sector = RemapSector(_start, clone);
        if (!_failReadOnBadBlock || clone.Op == BioOp.Flush) return MapResult.Remapped(_dev);
        var block = clone.Sector >> _shift;
        if (clone.Op == BioOp.BlockStatus) return MapResult.Remapped(_dev); // a bad block is still allocated
        if (!clone.IsWriteDirection) return _bad.ContainsKey(block) ? MapResult.Kill : MapResult.Remapped(_dev);
        if (_bad.TryGetValue(block, out var failWrites))
        {
            if (failWrites > 0) { _bad[block] = failWrites - 1; return MapResult.Kill; }
            _bad.Remove(block); // a rewritten sector is good again
        }
        return MapResult.Remapped(_dev);
    }

    public override string? Message(string[] args, ITargetContext ctx)
    {
        var cmd = args[0].ToLowerInvariant();
        switch (args.Length)
        {
            case 1:
                switch (cmd)
                {
                    case "addbadblock" or "removebadblock" or "queryblock":
                        throw new TargetException($"{args[0]} requires an additional argument");
                    case "disable": _failReadOnBadBlock = false; return null;
                    case "enable": _failReadOnBadBlock = true; return null;
                    case "quiet": _quiet = !_quiet; return null;
                    case "countbadblocks": return $"countbadblocks: {_bad.Count} badblock(s) found";
                    case "clearbadblocks":
                        var any = _bad.Count > 0;
                        _bad.Clear();
                        return any ? "dust_clear_badblocks: badblocks cleared" : "dust_clear_badblocks: no badblocks found";
                    case "listbadblocks":
                        return _bad.Count == 0 ? "No blocks in badblocklist" : string.Concat(_bad.Keys.Select(b => $"{b}\n"));
                }
                break;
            case 2 or 3:
                if (!ulong.TryParse(args[1], System.Globalization.NumberStyles.None, null, out var raw) || raw > long.MaxValue)
                    throw new TargetException($"Invalid block number: {args[1]}");
                var block = (long)raw;
                var failWrites = 0;
                if (args.Length == 3 && (!int.TryParse(args[2], System.Globalization.NumberStyles.None, null, out failWrites) || failWrites > 255))
                    throw new TargetException("selected write fail count out of range");
                // dm-dust only refuses blocks past the end of the underlying device (and accepts the one just past
                // it); a block outside the blocks this target maps can never fail an IO, so it is refused too.
                if (block < _firstBlock || block > _lastBlock) throw new TargetException("selected block value out of range");
                switch (cmd)
                {
                    case "addbadblock":
                        if (!_bad.TryAdd(block, failWrites)) throw new TargetException($"dust_add_block: block {block} already in badblocklist");
                        return null;
                    case "removebadblock" when args.Length == 2:
                        if (!_bad.Remove(block)) throw new TargetException($"dust_remove_block: block {block} not found in badblocklist");
                        return null;
                    case "queryblock" when args.Length == 2:
                        return $"dust_query_block: block {block} {(_bad.ContainsKey(block) ? "found" : "not found")} in badblocklist";
                }
                break;
            default:
                throw new TargetException($"invalid number of arguments '{args.Length}'");
        }
        throw new TargetException($"unrecognized message '{args[0]}' received");
    }

    public override string TableParams() => $"{_dev.DevNo} {_start} {_blksz}";

    public override string StatusParams() =>
        $"{_dev.DevNo} {(_failReadOnBadBlock ? "fail_read_on_bad_block" : "bypass")} {(_quiet ? "quiet" : "verbose")}";
}
