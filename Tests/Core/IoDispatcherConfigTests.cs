using Akka.Actor;
using Akka.Configuration;
using DmActors;
using DmActors.Host.Configuration;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>
/// The IO dispatcher is declared in the configuration (akka.hocon's akka.actor.dmactors-io-dispatcher), throughput
/// included; an actor system without it is told so, by name, instead of running devices elsewhere.
/// </summary>
public sealed class IoDispatcherConfigTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task The_embedded_configuration_declares_the_dispatcher_with_its_throughput()
    {
        var embedded = HostConfig.Embedded();
        Assert.Equal("DmActors.IoDispatcherConfigurator, DmActors.Actors", embedded.GetString($"{IoDispatcher.DispatcherId}.type"));
        Assert.Equal(64, embedded.GetInt($"{IoDispatcher.DispatcherId}.throughput"));
        using var system = ActorSystem.Create("io-config", HostConfig.IoDispatcherSection());
        var dispatcher = Assert.IsType<IoDispatcher>(system.Dispatchers.Lookup(IoDispatcher.DispatcherId));
        Assert.Equal(64, dispatcher.Throughput);
        await system.Terminate();
    }

    [Fact]
    public async Task The_throughput_comes_from_the_configuration()
    {
        using var system = ActorSystem.Create("io-throughput",
            ConfigurationFactory.ParseString($"{IoDispatcher.DispatcherId}.throughput = 7").WithFallback(HostConfig.IoDispatcherSection()));
        Assert.Equal(7, system.Dispatchers.Lookup(IoDispatcher.DispatcherId).Throughput);
        await system.Terminate();
    }

    [Fact]
    public async Task An_actor_system_without_the_section_is_refused_with_what_to_add()
    {
        using var system = ActorSystem.Create("io-missing", "akka.loglevel = OFF");
        var e = Assert.Throws<ConfigurationException>(() => IoDispatcher.Require(system));
        Assert.Equal("the IO dispatcher is not configured: this actor system's configuration has no 'akka.actor.dmactors-io-dispatcher' section " +
            "(type = \"DmActors.IoDispatcherConfigurator, DmActors.Actors\", throughput = ...; see akka.hocon), " +
            "or run the devices on the default dispatcher (InlineIo = false)", e.Message);

        // The manager refuses to start there rather than run its devices on another dispatcher.
        var inline = system.ActorOf(DeviceManager.Props(new DiskRegistry()), "inline");
        Assert.True(await inline.WatchAsync().WaitAsync(Wait));

        // InlineIo = false needs no section: the devices run on the default dispatcher.
        var disks = new DiskRegistry();
        disks.AddMemory("m", 64);
        var manager = system.ActorOf(DeviceManager.Props(disks, new DeviceManager.Options(InlineIo: false)), "pooled");
        Assert.IsType<Dm.Done>(await manager.Ask<object>(new Dm.Create("d", "0 64 linear m 0"), Wait));
        await system.Terminate();
    }
}
