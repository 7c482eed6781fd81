using Akka.Actor;

namespace DmActors;

/// <summary>
/// Anything a table line can point at: a disk (file, memory, write-back cache) or another mapped device.
/// <see cref="Submit"/> never blocks and answers the bio exactly once with <see cref="BioDone"/> to its ReplyTo.
/// </summary>
public interface IBlockDevice
{
    /// <summary>The name a table uses for it (disk name, file path, or mapped device name).</summary>
    string Name { get; }
    /// <summary>"major:minor", as dm prints devices in table output.</summary>
    string DevNo { get; }
    long Sectors { get; }
    /// <summary>True when completed writes may sit in a volatile cache until a flush (file page cache, disk cache).</summary>
    bool HasVolatileCache { get; }
    void Submit(Bio bio);
    /// <summary>True when its data lives on another node (a mirror reads a local leg first).</summary>
    bool IsRemote => false;
    /// <summary>Stopped for good: no bio will succeed on it again (an NBD client to a node that was removed).</summary>
    bool IsGone => false;
    /// <summary>
    /// How many times it (or a device below it) may have lost writes it had answered Ok before a flush covered them:
    /// a server or a cache that died with them. It never goes down; a mirror fails a leg whose count moved, so it
    /// reads nothing old from it (the flush that would report the loss may come much later).
    /// </summary>
    long WritesLost => 0;
    /// <summary>An open by a table, a stacked device or an NBD connection; Close undoes it.</summary>
    void Open() { }
    void Close() { }
}

/// <summary>
/// An IActorRef that runs a callback on Tell: how code outside actors (the NBD socket loop, disk wrappers,
/// tests) receives completions without Ask. The callback runs on the teller's thread, so keep it short.
/// </summary>
public sealed class CallbackRef : MinimalActorRef
{
    private static long _next;
    private readonly Action<object> _onMessage;
    private ActorPath? _path;

    public CallbackRef(Action<object> onMessage) => _onMessage = onMessage;

    /// <summary>
    /// Set for a reply target of bios: <see cref="Bio.Complete"/> calls it with the bio and its status, without a
    /// <see cref="BioDone"/> to allocate (one per bio on the IO path). A BioDone Told to it ends up there too.
    /// </summary>
    public Action<Bio, BioStatus>? OnBio { get; private init; }

    /// <summary>Built when first asked for (one per bio a target issues, and almost never read).</summary>
    public override ActorPath Path => _path ?? Interlocked.CompareExchange(ref _path, NewPath(), null) ?? _path;

    private static ActorPath NewPath() => new RootActorPath(Address.AllSystems) / "callback" / Interlocked.Increment(ref _next).ToString();
    public override IActorRefProvider Provider => throw new NotSupportedException("CallbackRef has no provider");
    protected override void TellInternal(object message, IActorRef sender) => _onMessage(message);

    /// <summary>A reply target that hands every BioDone to <paramref name="onDone"/>.</summary>
    public static CallbackRef ForBios(Action<BioDone> onDone) => new(m => { if (m is BioDone d) onDone(d); });

    /// <summary>
    /// A reply target that hands every completed bio and its status to <paramref name="onDone"/> (no BioDone made);
    /// <paramref name="path"/> names it (an actor's answers, in logs and dead letters), else a new callback path.
    /// </summary>
    public static CallbackRef ForBios(Action<Bio, BioStatus> onDone, ActorPath? path = null) =>
        new(m => { if (m is BioDone d) onDone(d.Bio, d.Status); }) { OnBio = onDone, _path = path };
}
