namespace DmActors.Host.Crash;

/// <summary>
/// The power supply of a medium, between a write-back cache and the medium below it. When the power is cut, only
/// the tear (what the dying cache writes out, on the cutting thread) still reaches the medium; afterwards nothing
/// does, so IO the dead engine still has in flight cannot change what survived.
/// </summary>
public sealed class PowerSwitch : Disk
{
    private const int On = 0, Cutting = 1, Dead = 2;
    private volatile int _state;
    private volatile int _cutter;

    private readonly Random? _jitter;

    /// <param name="jitter">When given, about half the IO to the medium completes later, on a pool thread: the
    /// cache's flushes then overlap the IO above them in more ways.</param>
    public PowerSwitch(Disk medium, Random? jitter = null) : base(medium.Name, medium.Sectors, medium.DevNo)
    {
        Medium = medium;
        _jitter = jitter;
    }

    public Disk Medium { get; }
    public override bool HasVolatileCache => false;

    protected override void Run(Bio bio, Action<Bio, BioStatus> done)
    {
        if (_state == On && _jitter != null && Coin())
            ThreadPool.UnsafeQueueUserWorkItem(_ => Pass(bio, done), null);
        else Pass(bio, done);
    }

    private void Pass(Bio bio, Action<Bio, BioStatus> done)
    {
        var state = _state;
        if (state == Dead || (state == Cutting && Environment.CurrentManagedThreadId != _cutter)) done(bio, BioStatus.IoError);
        else Medium.Start(bio, done);
    }

    private bool Coin()
    {
        lock (_jitter!) return _jitter.Next(2) == 0;
    }

    /// <summary>From now on only the calling thread reaches the medium.</summary>
    public void BeginCut()
    {
        _cutter = Environment.CurrentManagedThreadId;
        _state = Cutting;
    }

    public void Off() => _state = Dead;
}
