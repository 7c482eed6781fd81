using DmActors;

namespace DmActors.Tests.Core;

/// <summary>One IO as a disk saw it: when it started and (later) how it ended, in one global order.</summary>
public sealed record IoEvent(string Disk, bool Start, BioOp Op, BioFlags Flags, long Sector, long Sectors, BioStatus Status, long Seq);

/// <summary>
/// A recording disk for ordering tests (our blktrace): logs every IO start and completion, can hold IOs until the
/// test releases them (to control completion order), and can fail or push back IOs chosen by a predicate.
/// It reports a volatile cache by default so that flushes reach it.
/// </summary>
public sealed class GateDisk : Disk
{
    private static long _seq;
    private readonly MemoryDisk _inner;
    private readonly List<IoEvent> _log;
    private readonly List<(Bio Bio, Action<Bio, BioStatus> Done)> _held = new();

    public GateDisk(string name, long sectors, List<IoEvent> log, string devNo, bool volatileCache = true)
        : base(name, sectors, devNo)
    {
        _inner = new MemoryDisk(name + "-mem", sectors);
        _log = log;
        VolatileCache = volatileCache;
    }

    public bool VolatileCache { get; set; }
    public override bool HasVolatileCache => VolatileCache;
    /// <summary>Stands for a disk of another node.</summary>
    public bool Remote { get; set; }
    public override bool IsRemote => Remote;
    /// <summary>Stands for an NBD client aborted because its node was removed (set <see cref="Fail"/> too).</summary>
    public bool Gone { get; set; }
    public override bool IsGone => Gone;
    /// <summary>Stands for <see cref="IBlockDevice.WritesLost"/> (an NBD server that died with answered writes in its cache).</summary>
    public long Lost { get; set; }
    public override long WritesLost => Lost;
    /// <summary>When it returns true for a bio, the bio waits until <see cref="Release"/>.</summary>
    public Func<Bio, bool> Hold { get; set; } = _ => false;
    /// <summary>When it returns true for a bio, the bio runs at once but its completion waits for <see cref="ReleaseCompleted"/>.</summary>
    public Func<Bio, bool> HoldCompletion { get; set; } = _ => false;
    private readonly List<Action> _heldCompletions = new();

    /// <summary>Delivers the completions held by <see cref="HoldCompletion"/>.</summary>
    public void ReleaseCompleted()
    {
        List<Action> go;
        lock (_heldCompletions) { go = _heldCompletions.ToList(); _heldCompletions.Clear(); }
        foreach (var a in go) a();
    }

    public int HeldCompletions { get { lock (_heldCompletions) return _heldCompletions.Count; } }

    /// <summary>A status to end a bio with instead of running it (null: run it).</summary>
    public Func<Bio, BioStatus?> Fail { get; set; } = _ => null;
    public MemoryDisk Memory => _inner;
    /// <summary>Complete on a pool thread after a random short pause, so completions arrive out of order.</summary>
    public Random? Jitter { get; set; }

    public int HeldCount { get { lock (_held) return _held.Count; } }

    protected override void Run(Bio bio, Action<Bio, BioStatus> done)
    {
        Record(true, bio, BioStatus.Ok);
        if (Hold(bio)) { lock (_held) _held.Add((bio, done)); return; }
        if (Jitter is { } rnd)
        {
            int spin;
            lock (rnd) spin = rnd.Next(2000);
            ThreadPool.UnsafeQueueUserWorkItem(_ => { Thread.SpinWait(spin); Finish(bio, done, null); }, null);
            return;
        }
        Finish(bio, done, null);
    }

    /// <summary>Lets held IOs run, oldest first (all, or those matching <paramref name="which"/>), optionally ending them with <paramref name="status"/>.</summary>
    public int Release(Func<Bio, bool>? which = null, BioStatus? status = null)
    {
        List<(Bio, Action<Bio, BioStatus>)> go;
        lock (_held)
        {
            go = _held.Where(h => which?.Invoke(h.Bio) ?? true).ToList();
            foreach (var g in go) _held.Remove(g);
        }
        foreach (var (b, d) in go) Finish(b, d, status);
        return go.Count;
    }

    private void Finish(Bio bio, Action<Bio, BioStatus> done, BioStatus? forced)
    {
        var status = forced ?? Fail(bio);
        if (status is { } s) { Record(false, bio, s); done(bio, s); return; }
        _inner.Start(bio, (b, st) =>
        {
            if (HoldCompletion(b)) { lock (_heldCompletions) _heldCompletions.Add(() => { Record(false, b, st); done(b, st); }); return; }
            Record(false, b, st);
            done(b, st);
        });
    }

    private void Record(bool start, Bio bio, BioStatus status)
    {
        lock (_log) _log.Add(new IoEvent(Name, start, bio.Op, bio.Flags, bio.Sector, bio.Sectors, status, Interlocked.Increment(ref _seq)));
    }
}
