using Akka.Actor;
using DmActors.Tests.Support;
using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>
/// A device stopped for a handoff (a cluster move): a bio that reaches it, or one of its opens (lanes), afterwards
/// was never started and is answered with ESHUTDOWN, which the data channel resends to the volume's new owner.
/// </summary>
public sealed class HandOffTests : DeviceHarness
{
    private IActorRef DeviceOf(IActorRef lane) =>
        Sys.ActorSelection(lane.Path.Parent).ResolveOne(Wait).GetAwaiter().GetResult();

    private (IActorRef Lane, IActorRef Device) HandOver(string name)
    {
        Gate("d0");
        var lane = Create(name, "0 8192 linear d0 0");
        var device = DeviceOf(lane);
        Assert.Equal(BioStatus.Ok, Run(lane, Write(0, Pattern(8, 1), CreateTestProbe())));
        Watch(device);
        Watch(lane);
        // As VolumeEntity.HandOver does it.
        LostBioAnswerer.HandedOff(device);
        device.Tell(new MappedDevice.Shutdown(HandOff: true), ActorRefs.Nobody);
        ExpectTerminated(lane, Wait);
        ExpectTerminated(device, Wait);
        return (lane, device);
    }

    [Fact]
    public void A_bio_that_reaches_an_open_of_a_handed_off_device_after_it_stopped_is_answered_eshutdown()
    {
        // An NBD connection sends to its open (the lane): it learns of the stop only after the lane is gone, and a
        // bio sent meanwhile must be answered "not performed, go elsewhere", not EIO (the client would see an error).
        var (lane, _) = HandOver("ho1");
        Assert.Equal(BioStatus.Shutdown, RunOnce(lane, Write(8, Pattern(8, 2), CreateTestProbe())));
        Assert.Equal(BioStatus.Shutdown, RunOnce(lane, Read(0, 8, CreateTestProbe())));
    }

    [Fact]
    public void A_bio_that_reaches_a_handed_off_device_after_it_stopped_is_answered_eshutdown()
    {
        var (_, device) = HandOver("ho2");
        var probe = CreateTestProbe();
        var bio = Write(8, Pattern(8, 3), probe);
        device.Tell(bio);
        Assert.Equal(BioStatus.Shutdown, probe.ExpectMsg<BioDone>(Wait).Status);
        probe.ExpectNoMsg(Quiet);
    }

    [Fact]
    public void A_bio_that_reaches_an_open_of_a_removed_device_is_answered_eio()
    {
        Gate("d0");
        var lane = Create("rm1", "0 8192 linear d0 0");
        Watch(lane);
        Ok(new Dm.Close("rm1", lane));
        Ok(new Dm.Remove("rm1"));
        ExpectTerminated(lane, Wait);
        Assert.Equal(BioStatus.IoError, RunOnce(lane, Write(0, Pattern(8, 4), CreateTestProbe())));
    }
}
