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
    public const string DispatcherId = "dmactors-io-dispatcher";
    private const int MaxDepth = 6;

    [ThreadStatic] private static int _depth;

    private IoDispatcher(MessageDispatcherConfigurator configurator) : base(configurator)
    {
        Id = DispatcherId;
        Throughput = MessagesPerRun;
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

    /// <summary>Makes <see cref="DispatcherId"/> known to <paramref name="system"/> (idempotent).</summary>
    public static void Register(ActorSystem system)
    {
        var dispatchers = system.Dispatchers;
        if (!dispatchers.HasDispatcher(DispatcherId))
            dispatchers.RegisterConfigurator(DispatcherId, new IoConfigurator(ConfigurationFactory.ParseString($"throughput = {MessagesPerRun}"), dispatchers.Prerequisites));
    }

    /// <summary>Messages a mailbox handles per run before it lets the thread go (Akka's throughput).</summary>
    private const int MessagesPerRun = 64;

    private sealed class IoConfigurator : MessageDispatcherConfigurator
    {
        private readonly IoDispatcher _instance;
        public IoConfigurator(Config config, IDispatcherPrerequisites prerequisites) : base(config, prerequisites) =>
            _instance = new IoDispatcher(this);
        public override MessageDispatcher Dispatcher() => _instance;
    }
}
