using Akka.Actor;
using Akka.TestKit;
using DmActors;
using Xunit;
using Xunit.Abstractions;

namespace DmActors.Tests.Core;

/// <summary>
/// A host in a test: disks, a device manager, and helpers to create devices and send bios. Every helper that
/// waits uses an explicit, generous timeout (the machine may be busy).
/// </summary>
public abstract class DeviceHarness : Akka.TestKit.Xunit2.TestKit
{
    public static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    protected readonly DiskRegistry Disks = new();
    protected readonly List<IoEvent> Log = new();
    protected readonly ManualClock Clock = new();
    protected IActorRef Manager { get; }

    protected DeviceHarness(ITestOutputHelper? output = null) : base(Akka.Configuration.ConfigurationFactory.ParseString("akka.loglevel = WARNING")
        .WithFallback(DmActors.Host.Configuration.HostConfig.IoDispatcherSection()), output: output)
    {
        Manager = Sys.ActorOf(DeviceManager.Props(Disks, new DeviceManager.Options(Clock)), "devices");
    }

    protected GateDisk Gate(string name, long sectors = 8192, bool volatileCache = true) =>
        Disks.Add(new GateDisk(name, sectors, Log, Disks.NextDevNo(), volatileCache));

    /// <summary>Sends a control message to the manager and returns the reply.</summary>
    protected object Control(object message)
    {
        var probe = CreateTestProbe();
        Manager.Tell(message, probe.Ref);
        return probe.ExpectMsg<object>(Wait);
    }

    protected Dm.Done Ok(object message)
    {
        var reply = Control(message);
        return reply as Dm.Done ?? throw new Xunit.Sdk.XunitException($"{message} failed: {reply}");
    }

    protected Dm.Failed Fails(object message)
    {
        var reply = Control(message);
        return reply as Dm.Failed ?? throw new Xunit.Sdk.XunitException($"{message} was expected to fail but answered {reply}");
    }

    /// <summary>Creates a device and opens it for IO; returns the device actor.</summary>
    protected IActorRef Create(string name, string table, BarrierMode mode = BarrierMode.Ordered, bool readOnly = false)
    {
        Ok(new Dm.Create(name, table, readOnly, Mode: mode));
        return Open(name);
    }

    protected IActorRef Open(string name) =>
        Control(new Dm.Open(name)) is Dm.Opened o ? o.Device : throw new Xunit.Sdk.XunitException($"cannot open {name}");

    protected Dm.DeviceInfo Info(string name) => (Dm.DeviceInfo)Control(new Dm.GetInfo(name));

    public static byte[] Pattern(int sectors, byte seed)
    {
        var data = new byte[sectors * Bio.Sector512];
        for (var i = 0; i < data.Length; i++) data[i] = (byte)(seed + i / Bio.Sector512);
        return data;
    }

    protected static Bio Write(long sector, byte[] data, TestProbe replyTo, BioFlags flags = BioFlags.None) =>
        Bio.Write(sector, data, replyTo.Ref, flags);

    protected static Bio Read(long sector, int sectors, TestProbe replyTo, BioFlags flags = BioFlags.None) =>
        new(BioOp.Read, sector, sectors, new byte[sectors * Bio.Sector512], replyTo.Ref, flags);

    /// <summary>Submits and waits for the one completion of <paramref name="bio"/>.</summary>
    protected BioStatus Run(IActorRef device, Bio bio)
    {
        var probe = CreateTestProbe();
        bio.ReplyTo = probe.Ref;
        device.Tell(bio);
        var done = probe.ExpectMsg<BioDone>(Wait);
        Assert.Same(bio, done.Bio);
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(20));
        return done.Status;
    }

    protected byte[] ReadBack(IActorRef device, long sector, int sectors)
    {
        var probe = CreateTestProbe();
        var bio = Read(sector, sectors, probe);
        Assert.Equal(BioStatus.Ok, Run(device, bio));
        return bio.Data.ToArray();
    }

    /// <summary>Waits until <paramref name="condition"/> holds (state changed by other threads).</summary>
    protected void Eventually(Func<bool> condition, string what)
    {
        var until = DateTime.UtcNow + Wait;
        while (!condition())
        {
            if (DateTime.UtcNow > until) throw new Xunit.Sdk.XunitException($"timed out waiting for {what}");
            Thread.Sleep(5);
        }
    }

    protected List<IoEvent> Events(Func<IoEvent, bool>? which = null)
    {
        lock (Log) return Log.Where(e => which?.Invoke(e) ?? true).ToList();
    }

    protected override void AfterAll()
    {
        base.AfterAll();
        Disks.Dispose();
    }
}
