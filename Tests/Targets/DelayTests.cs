using Akka.Actor;
using DmActors;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>delay (Documentation/admin-guide/device-mapper/delay.rst): bios are held on a timer without blocking, per class; presuspend lets them go.</summary>
public sealed class DelayTests : TargetHarness
{
    /// <summary>Long enough that only a suspend can release the bio within any test's lifetime.</summary>
    private const int Forever = 600000;

    [Fact]
    public void A_write_is_held_for_the_delay_then_lands()
    {
        var d0 = Mem("d0", 1024);
        var dev = Create("dl", "0 1024 delay d0 0 1500");
        var p = CreateTestProbe();
        var data = Pattern(8, 4);
        dev.Tell(Write(0, data, p));

        p.ExpectNoMsg(TimeSpan.FromMilliseconds(300));                     // the delay is 1.5 s
        Eventually(() => Status("dl") == "0 1024 delay 0 1 0", "the write counted as held");
        Assert.True(d0.IsUnallocated(0, 4096), "held write already on the disk");

        var done = p.ExpectMsg<BioDone>(Wait);
        Assert.Equal(BioStatus.Ok, done.Status);
        AssertBytes(data, Contents(d0, 0, 8), "disk");
        Assert.Equal("0 1024 delay 0 0 0", Status("dl"));
    }

    [Fact]
    public void Reads_and_writes_go_to_their_own_class_device_and_delay()
    {
        var d0 = Mem("d0", 1024);
        var d1 = Mem("d1", 1024);
        d0.WriteAt(0, Pattern(8, 1));
        var dev = Create("dl", $"0 512 delay d0 0 0 d1 100 {Forever}");
        Assert.Equal($"0 512 delay 7:0 0 0 7:1 100 {Forever}", TableOf("dl"));

        var back = new byte[4096];
        Assert.Equal(BioStatus.Ok, ReadInto(dev, 0, back));                // read class: d0, no delay
        AssertBytes(Pattern(8, 1), back, "read from d0");

        var p = CreateTestProbe();
        dev.Tell(Write(8, Pattern(8, 2), p));
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        Eventually(() => Status("dl") == "0 512 delay 0 1 0", "the write counted as held");

        Ok(new Dm.Suspend("dl"));                                          // presuspend releases it at once
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        AssertBytes(Pattern(8, 2), Contents(d1, 108, 8), "write went to d1 at its offset");
        Assert.All(Contents(d0, 8, 8), b => Assert.Equal(0, b));           // the write did not reach d0
        Assert.Equal("0 512 delay 0 0 0", Status("dl"));
        Ok(new Dm.Resume("dl"));
    }

    [Fact]
    public void Suspend_releases_every_held_bio_immediately_and_resume_delays_again()
    {
        var d0 = Mem("d0", 1024);
        var dev = Create("dl", $"0 1024 delay d0 0 {Forever}");
        var p = CreateTestProbe();
        var bios = Enumerable.Range(0, 3).Select(i => Write(i * 8, Pattern(8, (byte)(i + 1)), p)).ToList();
        var read = Read(100, 8, p);
        foreach (var b in bios) dev.Tell(b);
        dev.Tell(read);
        Eventually(() => Status("dl") == "0 1024 delay 1 3 0", "four bios held");

        var s = CreateTestProbe();
        Manager.Tell(new Dm.Suspend("dl"), s.Ref);
        var done = p.ReceiveN(4, Wait).Cast<BioDone>().ToList();
        Assert.All(done, d => Assert.Equal(BioStatus.Ok, d.Status));
        Assert.Equal(bios.Append(read).ToHashSet(), done.Select(d => d.Bio).ToHashSet());
        s.ExpectMsg<Dm.Done>(Wait);
        for (var i = 0; i < 3; i++) AssertBytes(Pattern(8, (byte)(i + 1)), Contents(d0, i * 8, 8), $"write {i}");

        Ok(new Dm.Resume("dl"));
        dev.Tell(Write(200, Pattern(8, 9), p));
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(200));
        Eventually(() => Status("dl") == "0 1024 delay 0 1 0", "delaying again after resume");
    }

    [Fact]
    public void Flushes_use_the_flush_class()
    {
        var d0 = Gate("d0", 1024);
        var d1 = Gate("d1", 1024);
        var dev = Create("dl", $"0 512 delay d0 0 0 d0 0 0 d1 0 {Forever}", BarrierMode.Flush);
        Assert.Equal($"0 512 delay 7:0 0 0 7:0 0 0 7:1 0 {Forever}", TableOf("dl"));
        var p = CreateTestProbe();
        dev.Tell(Bio.Flush(p.Ref));
        Eventually(() => Status("dl") == "0 512 delay 0 0 1", "flush held");
        Assert.Equal(BioStatus.Ok, WriteAt(dev, 0, Pattern(8, 1)));        // writes are not delayed
        p.ExpectNoMsg(TimeSpan.FromMilliseconds(100));

        Ok(new Dm.Suspend("dl"));
        Assert.Equal(BioStatus.Ok, p.ExpectMsg<BioDone>(Wait).Status);
        Assert.Contains(Events(), e => e.Disk == "d1" && e.Op == BioOp.Flush);
        Assert.DoesNotContain(Events(), e => e.Disk == "d0" && e.Op == BioOp.Flush);
    }

    [Theory]
    [InlineData("d0 0", "Requires exactly 3, 6 or 9 arguments")]
    [InlineData("d0 0 1 d0 0", "Requires exactly 3, 6 or 9 arguments")]
    [InlineData("d0 x 1", "Invalid device sector")]
    [InlineData("d0 0 -5", "Invalid delay")]
    [InlineData("d0 0 1 d0 0 z", "Invalid delay")]
    [InlineData("d0 0 1 nosuch 0 1", "Device lookup failed: nosuch")]
    public void Constructor_errors_use_dm_text(string args, string error)
    {
        Mem("d0", 1024);
        Assert.Equal($"delay: {error}", LoadError($"0 512 delay {args}"));
        Assert.Equal(0, Disks.Find("d0")!.OpenCount);
    }
}
