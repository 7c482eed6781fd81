using DmActors;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>A test-only target that opens its two devices, then fails as its arguments say (no try of its own).</summary>
[TargetType("opens-then-fails", 1, 0, 0)]
public sealed class OpensThenFails : Target
{
    public OpensThenFails(TargetArgs a) : base(a)
    {
        a.GetDevice(a.Args[0], 0, a.Length);
        a.GetWholeDevice(a.Args[1], "Second device lookup failed");
        if (a.Args[2] == "bug") throw new InvalidOperationException("a bug in a constructor");
        throw new TargetException("second thoughts");
    }

    public override MapResult Map(Bio clone, int index, ITargetContext ctx) => MapResult.Kill;
    public override string TableParams() => "";
}

/// <summary>
/// The target argument reader: it records what a constructor opens, so a failed constructor's devices are closed
/// in one place (TargetTypes.Construct) and a target's Destroy closes exactly what it opened; and it reads numbers
/// like dm_read_arg, with the caller's error text.
/// </summary>
public sealed class TargetArgsTests
{
    private readonly DiskRegistry _disks = new();

    public TargetArgsTests()
    {
        TargetTypes.Register<OpensThenFails>();
        _disks.AddMemory("d0", 1024);
        _disks.AddMemory("d1", 1024);
    }

    private sealed class Lookup(DiskRegistry disks) : IDeviceLookup
    {
        public IBlockDevice? Find(string name) => disks.Find(name);
    }

    private Table Build(string table) => Table.Build(Table.Parse(table), new Lookup(_disks));

    private int Opens(string disk) => _disks.Find(disk)!.OpenCount;

    [Fact]
    public void A_constructor_that_fails_after_opening_devices_leaves_them_closed()
    {
        var e = Assert.Throws<TableException>(() => Build("0 8 opens-then-fails d0 d1 no"));
        Assert.Equal("opens-then-fails: second thoughts", e.Message);
        Assert.Equal((0, 0), (Opens("d0"), Opens("d1")));
        // Whatever it throws: a bug is not a table error, but its devices are closed all the same.
        Assert.Throws<InvalidOperationException>(() => Build("0 8 opens-then-fails d0 d1 bug"));
        Assert.Equal((0, 0), (Opens("d0"), Opens("d1")));
    }

    [Fact]
    public void A_later_line_that_fails_releases_the_devices_of_the_lines_before_it()
    {
        Assert.Throws<TableException>(() => Build("0 8 linear d0 0\n8 8 opens-then-fails d1 d0 no"));
        Assert.Equal((0, 0), (Opens("d0"), Opens("d1")));
    }

    [Theory]
    [InlineData("0 8 striped 2 4 d0 0 d1 0", 1, 1)]
    [InlineData("0 8 delay d0 0 1 d0 8 1", 2, 0)]         // the same device in two classes: opened twice, closed twice
    [InlineData("0 8 delay d0 0 1 d1 8 1 d0 16 0", 2, 1)]
    [InlineData("0 8 log-writes d0 d1", 1, 1)]
    public void A_target_closes_exactly_what_it_opened(string table, int d0, int d1)
    {
        var t = Build(table);
        Assert.Equal((d0, d1), (Opens("d0"), Opens("d1")));
        t.Destroy();
        Assert.Equal((0, 0), (Opens("d0"), Opens("d1")));
    }

    private static TargetArgs Args(params string[] args) => new() { Begin = 0, Length = 8, Args = args, Lookup = new Lookup(new DiskRegistry()) };

    private static string Error(Action read) => Assert.Throws<TargetException>(read).Message;

    [Fact]
    public void Numbers_are_read_within_bounds_or_fail_with_the_callers_text()
    {
        var a = Args("7", "x", "-3", "+4", "4294967296", "0");
        Assert.Equal(7, a.ReadInt(0, 1, 10, "bad count"));
        Assert.Equal("bad count", Error(() => a.ReadInt(0, 8, 10, "bad count")));
        Assert.Equal("bad count", Error(() => a.ReadInt(1, 0, 10, "bad count")));
        Assert.Equal("bad count", Error(() => a.ReadInt(9, 0, 10, "bad count"))); // past the last argument
        Assert.Equal(-3, a.ReadLong(2, -5, 5, "bad"));
        Assert.Equal("Invalid device sector", Error(() => a.ReadSector(2, "Invalid device sector")));
        Assert.Equal(4294967296, a.ReadSector(4, "bad"));
        // dm_read_arg's numbers are digits only (kstrtouint): no sign; uint's range.
        Assert.Equal("bad delay", Error(() => a.ReadUInt(3, 0, uint.MaxValue, "bad delay")));
        Assert.Equal("bad delay", Error(() => a.ReadUInt(4, 0, uint.MaxValue, "bad delay")));
        Assert.Equal(0u, a.ReadUInt(5, 0, 1, "bad"));
    }

    [Fact]
    public void A_group_is_a_count_and_that_many_arguments()
    {
        Assert.Equal((2, 4), Args("d0", "2", "a", "b", "extra").ReadGroup(1, 11, "Invalid number of feature args"));
        Assert.Equal((2, 2), Args("d0", "0").ReadGroup(1, 11, "bad"));
        Assert.Equal("Invalid number of feature args", Error(() => Args("d0", "3", "a", "b").ReadGroup(1, 11, "Invalid number of feature args")));
        Assert.Equal("Invalid number of feature args", Error(() => Args("d0", "12").ReadGroup(1, 11, "Invalid number of feature args")));
    }
}
