namespace DmActors;

/// <summary>
/// A wrapper around a block device that forwards everything to it: a wrapper overrides only what it changes
/// (counting bios, closing with its last user), so a member added to <see cref="IBlockDevice"/> cannot be forgotten
/// by one of them.
/// </summary>
public abstract class DelegatingBlockDevice(IBlockDevice inner) : IBlockDevice
{
    protected IBlockDevice Inner { get; } = inner;
    public virtual string Name => Inner.Name;
    public virtual string DevNo => Inner.DevNo;
    public virtual long Sectors => Inner.Sectors;
    public virtual bool HasVolatileCache => Inner.HasVolatileCache;
    public virtual bool IsRemote => Inner.IsRemote;
    public virtual bool IsGone => Inner.IsGone;
    public virtual long WritesLost => Inner.WritesLost;
    public virtual void Submit(Bio bio) => Inner.Submit(bio);
    public virtual void Open() => Inner.Open();
    public virtual void Close() => Inner.Close();
}
