namespace DmActors.Host.Crash;

/// <summary>
/// The device stack under test: `lower` maps two write-back-cache disks c0 and c1 (striped, or two linear
/// segments), and `top` is a linear device over `lower`. Every table variant maps the same sectors to the same
/// places (the segments are only cut at different points), so a reload swaps in an equivalent table.
/// </summary>
public sealed record CrashStack(long DiskSectors, long Chunk)
{
    public const string Lower = "lower";
    public const string Top = "top";

    /// <summary>Device size in sectors.</summary>
    public long Sectors => 2 * DiskSectors;

    public static string DiskName(int i) => $"c{i}";
    public static string NameOf(Layer layer) => layer == Layer.Top ? Top : Lower;

    /// <summary>A seeded pick: striped with a chunk of 8..128 sectors, or (one time in three) two linear segments.</summary>
    public static CrashStack Pick(Random rnd, long diskSectors) =>
        new(diskSectors, rnd.Next(3) == 0 ? 0 : 8L << rnd.Next(0, 5));

    /// <summary>Table text of <paramref name="layer"/>; variant 0 is the plain mapping, others cut it at seeded points.</summary>
    public string Table(Layer layer, int variant)
    {
        var rnd = variant == 0 ? null : new Random(variant);
        IEnumerable<string> lines;
        if (layer == Layer.Top) lines = Linear(0, Sectors, Lower, 0, rnd);
        else if (Chunk == 0)
            lines = Linear(0, DiskSectors, DiskName(0), 0, rnd).Concat(Linear(DiskSectors, DiskSectors, DiskName(1), 0, rnd));
        else
        {
            // A striped line can be cut at a multiple of 2 chunks: the second line starts on stripe 0, one row down.
            var rows = Sectors / (2 * Chunk);
            var split = rnd == null || rows < 2 ? 0 : rnd.NextInt64(0, rows) * 2 * Chunk;
            lines = new[] { (0L, split), (split, Sectors - split) }.Where(p => p.Item2 > 0)
                .Select(p => $"{p.Item1} {p.Item2} striped 2 {Chunk} {DiskName(0)} {p.Item1 / 2} {DiskName(1)} {p.Item1 / 2}");
        }
        return string.Join('\n', lines);
    }

    private static IEnumerable<string> Linear(long begin, long length, string dev, long offset, Random? rnd)
    {
        var cuts = new List<long> { 0, length };
        if (rnd != null) cuts.AddRange(Enumerable.Range(0, rnd.Next(0, 3)).Select(_ => rnd.NextInt64(1, length)));
        cuts = cuts.Distinct().Order().ToList();
        return cuts.Zip(cuts.Skip(1), (a, b) => $"{begin + a} {b - a} linear {dev} {offset + a}");
    }

    public string Describe() =>
        $"top=linear over lower={(Chunk == 0 ? "linear c0+c1" : $"striped c0,c1 chunk {Chunk}")}, {DiskSectors} sectors per disk";
}
