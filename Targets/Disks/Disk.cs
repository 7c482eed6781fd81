namespace DmActors;

/// <summary>
/// Base of every disk: checks a bio against the disk's size once, then runs it. Disks complete through a
/// callback so that wrappers (the write-back cache) can stack on them; <see cref="Submit"/> answers the bio's
/// ReplyTo.
/// </summary>
public abstract class Disk : IBlockDevice
{
    private static readonly Action<Bio, BioStatus> TellReplyTo = static (b, s) => b.Complete(s);
    private int _openCount;

    protected Disk(string name, long sectors, string devNo)
    {
        Name = name; Sectors = sectors; DevNo = devNo;
    }

    public string Name { get; }
    public string DevNo { get; }
    public long Sectors { get; protected set; }
    public abstract bool HasVolatileCache { get; }
    public virtual bool IsRemote => false;
    public virtual bool IsGone => false;
    public virtual long WritesLost => 0;
    public int OpenCount => Volatile.Read(ref _openCount);

    /// <summary>An open by a table; the first one runs <see cref="FirstOpen"/>, which may throw (then nothing is opened).</summary>
    public void Open()
    {
        lock (OpenGate)
        {
            if (_openCount == 0) FirstOpen();
            Volatile.Write(ref _openCount, _openCount + 1);
        }
    }

    public void Close()
    {
        lock (OpenGate)
        {
            Volatile.Write(ref _openCount, _openCount - 1);
            if (_openCount == 0) LastClose();
        }
    }

    /// <summary>Serialises the first open and the last close (they may come from different threads).</summary>
    protected object OpenGate { get; } = new();
    protected virtual void FirstOpen() { }
    protected virtual void LastClose() { }

    public void Submit(Bio bio) => Start(bio, TellReplyTo);

    /// <summary>Run <paramref name="bio"/> and call <paramref name="done"/> exactly once.</summary>
    public void Start(Bio bio, Action<Bio, BioStatus> done)
    {
        var check = Check(bio);
        if (check != BioStatus.Ok) { done(bio, check); return; }
        if (bio.IsAbandoned) { done(bio, BioStatus.IoError); return; } // its submitter was already answered
        try { Run(bio, done); }
        catch (Exception) { done(bio, BioStatus.IoError); }
    }

    protected abstract void Run(Bio bio, Action<Bio, BioStatus> done);

    /// <summary>Drop what a power cut would lose. Only disks with a volatile cache lose anything.</summary>
    public virtual void PowerCut(Random? tear = null) { }

    public virtual void Dispose() { }

    private BioStatus Check(Bio bio)
    {
        if (bio.Op == BioOp.Flush) return BioStatus.Ok;
        if (bio.Sector < 0 || bio.Sectors < 0 || bio.Sector > Sectors - bio.Sectors) return BioStatus.OutOfRange; // no sum: it may wrap
        if (bio.Data.Length != bio.ExpectedDataLength) return BioStatus.Invalid;
        return BioStatus.Ok;
    }

    public override string ToString() => $"{Name} ({DevNo}, {Sectors} sectors)";
}
