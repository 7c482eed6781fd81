using Akka.Actor;
using DmActors.Host.Cli;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// dmstats regions: `dmactors dmstats create|list|delete` and the report's rows per region, with exact counts for
/// known IO (each region counts the part of a bio inside it), on the lane path and on the device's own path.
/// </summary>
public sealed class DmstatsRegionTests : IDisposable
{
    private readonly Engine _engine = Engine.Start("dmstats-region-tests");
    private readonly IControlChannel _channel;

    public DmstatsRegionTests()
    {
        _engine.Disks.AddMemory("m0", 8192);
        _channel = new ActorControlChannel(_engine.Manager, TimeSpan.FromSeconds(30));
    }

    public void Dispose() => _engine.Dispose();

    private async Task<(int Code, string Out, string Err)> Dmstats(params string[] argv)
    {
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        var code = await new Dmsetup(_channel, new StringReader(""), stdout, stderr).RunAsync(DmsetupCommand.ParseDmstats(argv));
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static string[] Lines(string text) => text.TrimEnd('\n').Split('\n');

    private void Io(IActorRef dev, Bio bio)
    {
        var probe = new Akka.TestKit.TestProbe(_engine.System, new Akka.TestKit.Xunit2.XunitAssertions());
        bio.ReplyTo = probe.Ref;
        dev.Tell(bio);
        Assert.Equal(BioStatus.Ok, probe.ExpectMsg<BioDone>(TimeSpan.FromSeconds(20)).Status);
    }

    private DeviceIoStats Stats(string name) => Assert.IsType<DeviceIoStats>(_engine.Command(new GetIoStats(name)));

    // Two lines: linear is mapped on the lane, delay (stateful) by the device itself.
    [Theory]
    [InlineData("linear m0 0", "linear m0 4096")]
    [InlineData("delay m0 0 0", "delay m0 4096 0")]
    public async Task Each_region_counts_the_part_of_each_bio_inside_it(string first, string second)
    {
        _engine.Ok(new Dm.Create("rg", $"0 4096 {first}\n4096 4096 {second}"));
        var seg = await Dmstats("create", "rg", "--segments");
        Assert.Equal((0, "rg: Created new region with 1 area(s) as region ID 1\nrg: Created new region with 1 area(s) as region ID 2\n", ""), seg);
        Assert.Equal(0, (await Dmstats("create", "rg", "--start", "4000", "--length", "200")).Code); // region 3: 4000..4199
        var dev = _engine.Open("rg");
        Io(dev, Bio.Read(0, new byte[8 * 512], ActorRefs.Nobody));      // line 1 only
        Io(dev, Bio.Write(4092, new byte[8 * 512], ActorRefs.Nobody));   // 4 sectors in each line, all 8 in region 3
        Io(dev, Bio.Read(5000, new byte[16 * 512], ActorRefs.Nobody));   // line 2 only
        Io(dev, Bio.Write(4190, new byte[20 * 512], ActorRefs.Nobody));  // 10 sectors in region 3
        Io(dev, Bio.Flush(ActorRefs.Nobody));                           // no sectors: in no region but 0

        var s = Stats("rg");
        var c0 = s.Counters;
        Assert.Equal((2L, 24L, 2L, 28L, 1L), (c0.Reads, c0.ReadSectors, c0.Writes, c0.WriteSectors, c0.Flushes));
        var r = s.Regions!.ToDictionary(x => x.Id);
        Assert.Equal([1L, 2L, 3L], r.Keys.Order());
        Assert.Equal((0L, 4096L, 4096L, 4096L, 4000L, 200L), (r[1].Start, r[1].Length, r[2].Start, r[2].Length, r[3].Start, r[3].Length));
        Assert.Equal((1L, 8L, 1L, 4L, 0L), (r[1].Counters.Reads, r[1].Counters.ReadSectors, r[1].Counters.Writes, r[1].Counters.WriteSectors, r[1].Counters.Flushes));
        Assert.Equal((1L, 16L, 2L, 24L, 0L), (r[2].Counters.Reads, r[2].Counters.ReadSectors, r[2].Counters.Writes, r[2].Counters.WriteSectors, r[2].Counters.Flushes));
        Assert.Equal((0L, 0L, 2L, 18L, 0L), (r[3].Counters.Reads, r[3].Counters.ReadSectors, r[3].Counters.Writes, r[3].Counters.WriteSectors, r[3].Counters.Flushes));
        Assert.All(s.Regions!, x => Assert.Equal(0L, x.Counters.InFlight));
        Assert.Equal(0L, c0.InFlight);
    }

    [Fact]
    public async Task List_report_and_delete_show_and_drop_the_regions_in_dmstats_formats()
    {
        _engine.Ok(new Dm.Create("ls", "0 8192 linear m0 0"));
        Assert.Equal((0, "ls: Created new region with 1 area(s) as region ID 1\n", ""),
            await Dmstats("create", "ls", "--start", "1m", "--length", "1024", "--bounds", "1ms,10ms", "--programid", "fio"));
        Assert.Equal(0, (await Dmstats("create", "ls")).Code); // region 2: the whole device, program dmstats
        var list = await Dmstats("list", "ls");
        Assert.Equal(0, list.Code);
        Assert.Equal([
            "Name             RgID RStart RSize   #Areas ArSize  ProgID",
            "ls                  0      0   4.00m      1   4.00m dmactors",
            "ls                  1  1.00m 512.00k      1 512.00k fio",
            "ls                  2      0   4.00m      1   4.00m dmstats",
        ], Lines(list.Out));

        var dev = _engine.Open("ls");
        Io(dev, Bio.Read(2048, new byte[8 * 512], ActorRefs.Nobody)); // in regions 0, 1 and 2
        var report = await Dmstats("report", "ls");
        var rows = Lines(report.Out).Skip(1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[..5]).ToArray();
        // Name RgID ArID AStart ASize
        Assert.Equal([["ls", "0", "0", "0", "4.00m"], ["ls", "1", "0", "1.00m", "512.00k"], ["ls", "2", "0", "0", "4.00m"]], rows);
        var hist = Lines((await Dmstats("report", "ls", "--histogram")).Out);
        var bins = hist[2].Split(' ', StringSplitOptions.RemoveEmptyEntries)[^1].Split(',').Select(b => b.Split(':')).ToArray();
        Assert.Equal(["0", "1ms", "10ms"], bins.Select(b => b[0])); // region 1's --bounds; the read is in one bin
        Assert.Equal(1, bins.Sum(b => int.Parse(b[1])));

        Assert.Equal((0, "", ""), await Dmstats("delete", "ls", "--regionid", "1"));
        Assert.Equal(["0", "2"], Lines((await Dmstats("list", "ls")).Out).Skip(1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]));
        Assert.Equal(0, (await Dmstats("create", "ls", "--length", "8")).Code); // the lowest free id again
        Assert.Equal([1L, 2L], Stats("ls").Regions!.Select(x => x.Id));
        Assert.Equal((0, "", ""), await Dmstats("delete", "ls", "--allregions"));
        Assert.Equal(["0"], Lines((await Dmstats("list", "ls")).Out).Skip(1).Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]));
    }

    [Theory]
    [InlineData(new[] { "create", "nope" }, "device-mapper: stats ioctl on nope")]
    [InlineData(new[] { "create", "bad", "--start", "8000", "--length", "400" }, "region 8000+400 is outside the device (8192 sectors)")]
    [InlineData(new[] { "create", "bad", "--start", "8192" }, "outside the device")]
    [InlineData(new[] { "create", "bad", "--start", "x1" }, "Invalid start argument: \"x1\"")]
    [InlineData(new[] { "create", "bad", "--bounds", "5ms,1ms" }, "Histogram bounds must be in increasing order")]
    [InlineData(new[] { "create", "bad", "--bounds", "fast" }, "Invalid histogram bound: \"fast\"")]
    [InlineData(new[] { "create", "bad", "--segments", "--start", "0" }, "--segments is incompatible with --start and --length.")]
    [InlineData(new[] { "delete", "bad", "--regionid", "7" }, "No such region: 7.")]
    [InlineData(new[] { "delete", "bad", "--regionid", "0" }, "region 0 is the device's own statistics")]
    [InlineData(new[] { "delete", "bad" }, "Please specify a --regionid or use --allregions.")]
    [InlineData(new[] { "delete", "nope", "--allregions" }, "device-mapper: stats ioctl on nope")]
    public async Task Bad_input_fails_with_exit_1_and_changes_nothing(string[] argv, string error)
    {
        _engine.Ok(new Dm.Create("bad", "0 8192 linear m0 0"));
        Assert.Equal(0, (await Dmstats("create", "bad", "--length", "16")).Code);
        var (code, stdout, stderr) = await Dmstats(argv);
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains(error, stderr);
        Assert.EndsWith("Command failed.\n", stderr);
        var after = Stats("bad").Regions!;
        Assert.Equal((1L, 0L, 16L), (after.Single().Id, after.Single().Start, after.Single().Length));
    }
}
