using Akka.Actor;
using Akka.TestKit;
using DmActors;
using DmActors.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace DmActors.Tests.Core;

/// <summary>
/// A TestKit test over an in-process <see cref="Engine"/>: disks, a device manager on a manual clock, and helpers
/// to create devices and send bios. Every helper that waits uses an explicit, generous timeout (the machine may be
/// busy).
/// </summary>
public abstract class DeviceHarness : Akka.TestKit.Xunit2.TestKit
{
    public static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    /// <summary>How long <see cref="RunOnce"/> listens for a second answer.</summary>
    public static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(100);
    protected readonly List<IoEvent> Log = new();
    protected readonly ManualClock Clock = new();
    protected Engine Engine { get; }
    protected DiskRegistry Disks => Engine.Disks;
    protected IActorRef Manager => Engine.Manager;

    protected DeviceHarness(ITestOutputHelper? output = null, ITargetRecords? records = null) : base(Engine.AkkaConfig(), output: output)
    {
        Engine = Engine.On(Sys, new DeviceManager.Options(Clock, TargetRecords: records));
    }

    protected GateDisk Gate(string name, long sectors = 8192, bool volatileCache = true) =>
        Disks.Add(new GateDisk(name, sectors, Log, Disks.NextDevNo(), volatileCache));

    /// <summary>Sends a control message to the manager and returns the reply.</summary>
    protected object Control(object message) => Engine.Command(message);

    protected Dm.Done Ok(object message) => Engine.Ok(message);

    protected Dm.Failed Fails(object message) => Engine.Fails(message);

    /// <summary>Creates a device and opens it for IO; returns the device actor.</summary>
    protected IActorRef Create(string name, string table, BarrierMode mode = BarrierMode.Ordered, bool readOnly = false)
    {
        Ok(new Dm.Create(name, table, readOnly, Mode: mode));
        return Open(name);
    }

    protected IActorRef Open(string name) => Engine.Open(name);

    protected Dm.DeviceInfo Info(string name) => Engine.Info(name);

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

    /// <summary>Submits <paramref name="bio"/> and waits for its completion (a second one already there fails the test).</summary>
    protected BioStatus Run(IActorRef device, Bio bio) => Submit(device, bio).Status;

    /// <summary>
    /// <see cref="Run"/>, then listens for <see cref="Quiet"/> so a late second answer fails the test: for bios
    /// whose completion gathers several (clones of a split, phases of a barrier, an error on one path).
    /// </summary>
    protected BioStatus RunOnce(IActorRef device, Bio bio)
    {
        var (probe, status) = Submit(device, bio);
        probe.ExpectNoMsg(Quiet);
        return status;
    }

    private (TestProbe Probe, BioStatus Status) Submit(IActorRef device, Bio bio)
    {
        var probe = CreateTestProbe();
        bio.ReplyTo = probe.Ref;
        device.Tell(bio);
        var done = probe.ExpectMsg<BioDone>(Wait);
        Assert.Same(bio, done.Bio);
        Assert.False(probe.HasMessages, $"{bio} answered twice");
        return (probe, done.Status);
    }

    protected byte[] ReadBack(IActorRef device, long sector, int sectors)
    {
        var probe = CreateTestProbe();
        var bio = Read(sector, sectors, probe);
        Assert.Equal(BioStatus.Ok, Run(device, bio));
        return bio.Data.ToArray();
    }

    /// <summary>
    /// Returns once <paramref name="device"/> has handled every message sent to it before (its mailbox is
    /// first in, first out): whatever it does with bios told to it earlier, it has done or is waiting to do.
    /// </summary>
    protected static void Settle(IActorRef device) => device.Ask<Dm.DeviceInfo>(new Dm.GetInfo(""), Wait).GetAwaiter().GetResult();

    /// <summary>Waits until <paramref name="condition"/> holds (state changed by other threads).</summary>
    protected void Eventually(Func<bool> condition, string what) => Poll.Until(condition, what, Wait);

    protected List<IoEvent> Events(Func<IoEvent, bool>? which = null)
    {
        lock (Log) return Log.Where(e => which?.Invoke(e) ?? true).ToList();
    }

    protected override void AfterAll()
    {
        base.AfterAll();
        Engine.Dispose();
    }
}
