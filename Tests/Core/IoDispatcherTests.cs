using Akka.Actor;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>
/// The IO path's dispatcher: a device and its targets run on the thread that brings them a bio, and stacks
/// deeper than the nesting bound fall back to the thread pool without losing or reordering anything.
/// </summary>
public sealed class IoDispatcherTests : DeviceHarness
{
    [Fact]
    public void A_bio_to_an_idle_device_over_a_memory_disk_is_answered_before_tell_returns()
    {
        Disks.AddMemory("m", 64);
        var dev = Create("inline", "0 64 linear m 0");
        Run(dev, Bio.Write(0, Pattern(8, 3), ActorRefs.Nobody)); // the device is started and idle now

        var submitter = Environment.CurrentManagedThreadId;
        int? answeredOn = null;
        var answered = new ManualResetEventSlim();
        var bio = Bio.Read(0, new byte[8 * Bio.Sector512], CallbackRef.ForBios(d =>
        {
            answeredOn = Environment.CurrentManagedThreadId;
            answered.Set();
        }));
        dev.Tell(bio);
        // Answered on this thread, within the Tell: no hop to another thread for a mapping and a memory copy.
        Assert.True(answered.IsSet);
        Assert.Equal(submitter, answeredOn);
        Assert.Equal(Pattern(8, 3), bio.Data.ToArray());
    }

    [Fact]
    public void A_stack_deeper_than_the_nesting_bound_still_answers_every_bio_in_order_with_the_right_data()
    {
        Disks.AddMemory("base", 256);
        Ok(new Dm.Create("s0", "0 256 linear base 0"));
        const int Depth = 12; // twice the dispatcher's nesting bound
        for (var i = 1; i <= Depth; i++) Ok(new Dm.Create($"s{i}", $"0 256 linear s{i - 1} 0"));
        var top = Open($"s{Depth}");

        var probe = CreateTestProbe();
        var writes = Enumerable.Range(0, 32).Select(i => Write(i * 8, Pattern(8, (byte)i), probe)).ToList();
        foreach (var w in writes) top.Tell(w);
        var done = Enumerable.Range(0, 32).Select(_ => probe.ExpectMsg<BioDone>(Wait)).ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        Assert.Equal(writes, done.Select(d => d.Bio)); // answered in the order they were sent
        probe.ExpectNoMsg(TimeSpan.FromMilliseconds(100)); // exactly once

        for (var i = 0; i < 32; i++)
        {
            var read = Read(i * 8, 8, probe);
            Assert.Equal(BioStatus.Ok, Run(top, read));
            Assert.Equal(Pattern(8, (byte)i), read.Data.ToArray());
        }
    }
}
