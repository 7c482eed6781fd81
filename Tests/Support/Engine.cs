using Akka.Actor;
using Akka.Configuration;

namespace DmActors.Tests.Support;

/// <summary>
/// The storage engine in the test process: an actor system, a disk registry and a device manager, plus the
/// control commands tests send to a manager. Every in-process test that needs a device manager gets it here, so
/// how a test engine is configured and started is written once.
/// </summary>
public sealed class Engine : IDisposable
{
    /// <summary>How long a control command may take: generous, a loaded machine is slow (the first journal write in a process most of all).</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The configuration of every actor system the tests start (TestKit ones included), <paramref name="extra"/>
    /// layered over it. What all of them need goes here, and only here.
    /// </summary>
    public static Config AkkaConfig(string extra = "") => AkkaConfig(ConfigurationFactory.ParseString(extra));

    public static Config AkkaConfig(Config extra) => extra.WithFallback(Defaults);

    // The IO dispatcher's section comes from the host's own akka.hocon, so tests run devices as the host does.
    private static readonly Config Defaults = ConfigurationFactory.ParseString("""
        akka.loglevel = WARNING
        akka.stdout-loglevel = WARNING
        """).WithFallback(DmActors.Host.Configuration.HostConfig.IoDispatcherSection());

    private readonly bool _ownsSystem;
    private readonly bool _ownsDisks;
    private readonly Lazy<IActorRef> _manager;

    private Engine(ActorSystem system, bool ownsSystem, DiskRegistry? disks, DeviceManager.Options? options, string managerName)
    {
        System = system;
        _ownsSystem = ownsSystem;
        _ownsDisks = disks == null;
        Disks = disks ?? new DiskRegistry();
        Options = options ?? new DeviceManager.Options();
        _manager = new Lazy<IActorRef>(() => StartManager(name: managerName));
    }

    /// <summary>An engine with an actor system of its own (terminated on Dispose).</summary>
    public static Engine Start(string systemName, string config = "", DeviceManager.Options? options = null, DiskRegistry? disks = null) =>
        Start(systemName, ConfigurationFactory.ParseString(config), options, disks);

    public static Engine Start(string systemName, Config config, DeviceManager.Options? options = null, DiskRegistry? disks = null) =>
        new(ActorSystem.Create(systemName, AkkaConfig(config)), ownsSystem: true, disks, options, "devices");

    /// <summary>An engine on an actor system someone else owns and terminates (a TestKit's).</summary>
    public static Engine On(ActorSystem system, DeviceManager.Options? options = null, DiskRegistry? disks = null, string managerName = "devices") =>
        new(system, ownsSystem: false, disks, options, managerName);

    public ActorSystem System { get; }
    /// <summary>The disks; disposed with the engine unless they were handed in.</summary>
    public DiskRegistry Disks { get; }
    /// <summary>What managers of this engine start with unless told otherwise.</summary>
    public DeviceManager.Options Options { get; }
    /// <summary>
    /// The device manager, started on first use: a test that runs incarnations of its own over one journal
    /// (<see cref="StartManager"/>) never has a second one competing for the persistence id.
    /// </summary>
    public IActorRef Manager => _manager.Value;

    /// <summary>A further manager on this system (another incarnation over the same journal, other options or disks).</summary>
    public IActorRef StartManager(DeviceManager.Options? options = null, DiskRegistry? disks = null, string? name = null) =>
        System.ActorOf(DeviceManager.Props(disks ?? Disks, options ?? Options), name);

    public Task<object> AskAsync(object message) => Manager.AskAsync(message);
    public object Command(object message) => Manager.Command(message);
    public Dm.Done Ok(object message) => Manager.Ok(message);
    public Dm.Failed Fails(object message) => Manager.Fails(message);
    public Dm.DeviceInfo Info(string name) => Manager.Info(name);
    public IActorRef Open(string name) => Manager.Open(name);

    public void Dispose()
    {
        if (_ownsSystem && !System.Terminate().Wait(Timeout)) throw new TimeoutException($"actor system {System.Name} did not terminate");
        if (_ownsDisks) Disks.Dispose();
    }
}

/// <summary>Control commands to a device manager (an Ask at the edge, with <see cref="Engine.Timeout"/>).</summary>
public static class ManagerCommands
{
    public static Task<object> AskAsync(this IActorRef manager, object message) => manager.Ask<object>(message, Engine.Timeout);

    /// <summary>The manager's reply to <paramref name="message"/>, whatever it is.</summary>
    public static object Command(this IActorRef manager, object message) => manager.AskAsync(message).GetAwaiter().GetResult();

    public static Dm.Done Ok(this IActorRef manager, object message)
    {
        var reply = manager.Command(message);
        return reply as Dm.Done ?? throw new Xunit.Sdk.XunitException($"{message} failed: {reply}");
    }

    public static Dm.Failed Fails(this IActorRef manager, object message)
    {
        var reply = manager.Command(message);
        return reply as Dm.Failed ?? throw new Xunit.Sdk.XunitException($"{message} was expected to fail but answered {reply}");
    }

    public static Dm.DeviceInfo Info(this IActorRef manager, string name) =>
        manager.Command(new Dm.GetInfo(name)) as Dm.DeviceInfo ?? throw new Xunit.Sdk.XunitException($"no info for {name}");

    /// <summary>Opens <paramref name="name"/> for IO; returns its device actor.</summary>
    public static IActorRef Open(this IActorRef manager, string name) =>
        manager.Command(new Dm.Open(name)) is Dm.Opened o ? o.Device : throw new Xunit.Sdk.XunitException($"cannot open {name}");
}
