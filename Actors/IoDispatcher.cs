using Akka.Actor;
using Akka.Configuration;
using Akka.Dispatch;

namespace DmActors;

/// <summary>
/// The dispatcher of the IO path (mapped devices and their target actors): a mailbox that has work runs on the
/// thread that gave it the work, like the kernel's submit_bio runs dm in the submitter's context and end_io in
/// the completion's. A bio told by the NBD socket loop is split, mapped and (when the page cache has it) read on
/// that thread; a completion from a disk thread is accounted on that thread. Mailbox semantics are unchanged:
/// one thread at a time runs an actor, and a Tell to an actor that is already running only queues the message,
/// so a thread never waits for another. What it saves is the thread wake-up per hop, which on a small machine
/// costs more than the work itself.
///
/// Nesting is bounded: past <see cref="MaxDepth"/> mailboxes run inside one another on a thread (a deep stack
/// of devices, or a mailbox that re-schedules itself), the mailbox goes to the thread pool as usual.
/// Actor code on this dispatcher must never block: it may run on a socket loop or a disk thread.
/// </summary>
public sealed class IoDispatcher : MessageDispatcher
{
    /// <summary>The dispatcher's id: the path of its section in the actor system's configuration (akka.hocon).</summary>
    public const string DispatcherId = "akka.actor.dmactors-io-dispatcher";
    private const int MaxDepth = 6;

    [ThreadStatic] private static int _depth;

    internal IoDispatcher(MessageDispatcherConfigurator configurator) : base(configurator)
    {
        Id = DispatcherId;
        // Messages a mailbox handles per run before it lets the thread go (Akka's throughput).
        Throughput = configurator.Config.GetInt("throughput", 0);
        if (Throughput <= 0) throw new ConfigurationException($"{DispatcherId}.throughput must be a positive number of messages");
    }

    protected override void ExecuteTask(IRunnable run)
    {
        if (_depth >= MaxDepth)
        {
            ThreadPool.UnsafeQueueUserWorkItem(run, preferLocal: false);
            return;
        }
        _depth++;
        try { run.Run(); }
        finally { _depth--; }
    }

    protected override void Shutdown() { } // owns no threads

    /// <summary>
    /// Checks that <paramref name="system"/> declares the dispatcher (the <see cref="DispatcherId"/> section of
    /// akka.hocon). Without it Akka would refuse each device with a bare "not configured"; this names the fix.
    /// </summary>
    public static void Require(ActorSystem system)
    {
        if (!system.Dispatchers.HasDispatcher(DispatcherId))
            throw new ConfigurationException($"the IO dispatcher is not configured: this actor system's configuration has no " +
                $"'{DispatcherId}' section (type = \"{typeof(IoDispatcherConfigurator).FullName}, {typeof(IoDispatcher).Assembly.GetName().Name}\", " +
                "throughput = ...; see akka.hocon), or run the devices on the default dispatcher (InlineIo = false)");
        if (system.Dispatchers.Lookup(DispatcherId) is not IoDispatcher)
            throw new ConfigurationException($"'{DispatcherId}' is configured with another type than {typeof(IoDispatcherConfigurator).FullName}");
    }

}

/// <summary>
/// Akka's factory for the <see cref="IoDispatcher"/>, named by <c>type</c> in its configuration section
/// (akka.hocon: <c>akka.actor.dmactors-io-dispatcher { type = "DmActors.IoDispatcherConfigurator, DmActors.Actors" }</c>).
/// </summary>
public sealed class IoDispatcherConfigurator : MessageDispatcherConfigurator
{
    private readonly IoDispatcher _instance;
    public IoDispatcherConfigurator(Config config, IDispatcherPrerequisites prerequisites) : base(config, prerequisites) =>
        _instance = new IoDispatcher(this);
    public override MessageDispatcher Dispatcher() => _instance;
}
