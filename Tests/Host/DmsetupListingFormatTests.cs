using DmActors.Host.Cli;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// deps, ls --tree, info -c -o, and the concise format, against dmsetup's documented output (dmsetup(8), and the
/// drawing, report and parsing code of lvm2's dmsetup.c and libdm that prints it).
/// </summary>
public class DmsetupListingFormatTests
{
    private static Dm.Dependency Disk(string name, int minor) => new(name, 7, minor, false);
    private static Dm.Dependency Mapped(string name, int minor) => new(name, 253, minor, true);

    private static Dm.DeviceInfo Info(string name, int minor, params Dm.Dependency[] deps) =>
        new(name, null, false, false, true, false, 0, 0, 253, minor, 1, 100, BarrierMode.Ordered, Deps: deps);

    // a and b on disks d1 and d2, top striped over b and a (dm lists a table's devices last-named first).
    private static readonly Dm.DeviceInfo[] Stack =
    [
        Info("a", 0, Disk("d1", 1)),
        Info("b", 1, Disk("d2", 2)),
        Info("top", 2, Mapped("b", 1), Mapped("a", 0)) with { OpenCount = 1, Uuid = "U-top" },
    ];

    private static string[] Tree(string? options, IReadOnlyList<Dm.DeviceInfo> devices, int width = 80)
    {
        var t = DmsetupTree.Parse(options, DmsetupTree.Symbols.Ascii, out var error);
        Assert.True(t != null, error);
        t!.Width = width;
        return t.Draw(devices).ToArray();
    }

    [Fact]
    public void Deps_lines_count_then_list_devices_by_number_or_name()
    {
        var deps = Stack[2].Deps!;
        Assert.Equal("2 dependencies\t: (253, 1) (253, 0)", DmsetupFormat.DepsLine(deps, null, d => $"{d.Major}, {d.Minor}"));
        Assert.Equal("top: 2 dependencies\t: (b) (a)", DmsetupFormat.DepsLine(deps, "top", d => d.Name));
        Assert.Equal("x: 0 dependencies\t:", DmsetupFormat.DepsLine([], "x", d => d.Name));
    }

    [Fact]
    public void Tree_draws_roots_in_name_order_and_each_devices_users_above_what_it_uses()
    {
        Assert.Equal(
        [
            "top (253:2)",
            " |-b (253:1)",
            " |  `- (7:2)",
            " `-a (253:0)",
            "    `- (7:1)",
        ], Tree(null, Stack));
    }

    [Fact]
    public void Tree_with_utf_characters_as_a_utf8_locale_gets()
    {
        Assert.Equal(DmsetupTree.Symbols.Utf, DmsetupTree.LocaleSymbols(v => v == "LANG" ? "en_US.UTF-8" : null));
        Assert.Equal(DmsetupTree.Symbols.Ascii, DmsetupTree.LocaleSymbols(v => v == "LC_ALL" ? "C" : v == "LANG" ? "en_US.UTF-8" : null));
        Assert.Equal(DmsetupTree.Symbols.Ascii, DmsetupTree.LocaleSymbols(_ => null));
        var t = DmsetupTree.Parse("utf", DmsetupTree.Symbols.Ascii, out _)!;
        Assert.Equal(["top (253:2)", " \u251c\u2500b (253:1)", " \u2502  \u2514\u2500 (7:2)", " \u2514\u2500a (253:0)", "    \u2514\u2500 (7:1)"],
            t.Draw(Stack));
    }

    [Fact]
    public void Tree_inverted_starts_from_the_disks()
    {
        Assert.Equal(
        [
            " (7:1)",
            " `-a (253:0)",
            "    `-top (253:2)",
            " (7:2)",
            " `-b (253:1)",
            "    `-top (253:2)",
        ], Tree("inverted", Stack));
    }

    [Fact]
    public void Tree_compact_puts_single_children_on_the_parents_line()
    {
        Assert.Equal(
        [
            "top (253:2)-+-b (253:1)--- (7:2)",
            "            `-a (253:0)--- (7:1)",
        ], Tree("compact", Stack));
    }

    [Fact]
    public void Tree_attributes_names_and_no_device_numbers()
    {
        Assert.Equal(
        [
            "top <dm-2> [ACTIVE, RW, 1, U-top]",
            " |-b <dm-1> [ACTIVE, RW, 0, ]",
            " |  `- <d2>",
            " `-a <dm-0> [ACTIVE, RW, 0, ]",
            "    `- <d1>",
        ], Tree("nodevice,blkdevname,active,rw,open,uuid", Stack));
        // Without numbers or kernel names a disk has nothing to show and is left out.
        Assert.Equal(["top", " |-b", " `-a"], Tree("nodevice", Stack));
    }

    [Fact]
    public void Tree_lines_longer_than_the_width_are_cut_with_dots_unless_notrunc()
    {
        var devices = new[] { Info(new string('x', 20), 0) };
        Assert.Equal([new string('x', 9) + "..."], Tree(null, devices, width: 10));
        Assert.Equal([new string('x', 20) + " (253:0)"], Tree("notrunc", devices, width: 10));
        // Exactly as long as the width: printed whole.
        Assert.Equal(["xxxxxxxxxxxxxxxxxxxx (253:0)"], Tree(null, devices, width: 28));
    }

    [Fact]
    public void Tree_device_used_twice_is_drawn_under_each_user_and_a_device_without_table_is_a_root()
    {
        var shared = new[] { Info("p", 0, Disk("d1", 1)), Info("q", 1, Disk("d1", 1)), Info("empty", 2) };
        Assert.Equal(["empty (253:2)", "p (253:0)", " `- (7:1)", "q (253:1)", " `- (7:1)"], Tree(null, shared.OrderBy(d => d.Name, StringComparer.Ordinal).ToArray()));
    }

    [Fact]
    public void Tree_options_dmsetup_does_not_know_are_refused_in_its_words()
    {
        Assert.Null(DmsetupTree.Parse("ascii,foo", DmsetupTree.Symbols.Ascii, out var error));
        Assert.Equal("Tree options not recognised: foo.", error);
    }

    [Fact]
    public void Report_fields_by_dmsetup_names_with_noheadings_and_separator()
    {
        var fields = DmsetupReport.Parse("name,devno,tables_loaded,suspended,readonly,blkdevname,device_count,devnos_used,devs_used,blkdevs_used", out _)!;
        Assert.Equal(
        [
            "Name             DevNo Tables Suspended Read-only BlkDevName       #Devs DevNosUsed       DevNamesUsed     BlkDevNamesUsed ",
            "top              253:2 Live   Active    Writeable dm-2                 2 253:1,253:0      b,a              dm-1,dm-0       ",
        ], DmsetupReport.Lines(fields, [Stack[2]], false, null));
        // --noheadings is dmsetup's old format: ':' between, nothing aligned.
        var basic = DmsetupReport.Parse(null, out _)!;
        Assert.Equal(["top:253:2:L--w:1:1:0:U-top"], DmsetupReport.Lines(basic, [Stack[2]], true, null));
        Assert.Equal(["Name|Maj|Min|Stat|Open|Targ|Event|UUID", "top|253|2|L--w|1|1|0|U-top"], DmsetupReport.Lines(basic, [Stack[2]], false, "|"));
        // +FIELDS adds to the default ones; fields are matched without regard to case.
        Assert.Equal(["Name", "Maj", "Min", "Stat", "Open", "Targ", "Event", "UUID", "Suspended"], DmsetupReport.Parse("+SUSPENDED", out _)!.Select(f => f.Heading));
        Assert.Null(DmsetupReport.Parse("name,colour", out var error));
        Assert.Equal("Unrecognised field: colour", error);
    }

    [Fact]
    public void Concise_output_quotes_commas_semicolons_and_backslashes()
    {
        var info = Info("a,b", 3) with { Uuid = "U;1", ReadOnly = true };
        Assert.Equal(@"a\,b,U\;1,3,ro,0 100 linear 7:1 0,100 8 flakey 7:2 0 1 1 1 corrupt_bio_byte 1 w 0\\ 0",
            DmsetupConcise.Device(info, ["0 100 linear 7:1 0", @"100 8 flakey 7:2 0 1 1 1 corrupt_bio_byte 1 w 0\ 0"]));
        Assert.Equal("e,,0,rw,0 10 error ", DmsetupConcise.Device(Info("e", 0), ["0 10 error "]));
        Assert.Equal("none,,4,rw", DmsetupConcise.Device(Info("none", 4), []));
    }

    [Fact]
    public void Concise_input_splits_devices_fields_and_table_lines_as_dmsetup_does()
    {
        // dmsetup(8)'s example, with blanks after the field commas and a second device after ';'.
        var specs = DmsetupConcise.Parse("test-linear-small,,,ro,0 2097152 linear /dev/loop0 0,2097152 2097152 linear /dev/loop1 0;" +
            "dev2, U-2, 7, rw, 0 1 error", out var errors);
        Assert.Empty(errors);
        Assert.Equal(
        [
            new DmsetupConcise.Spec("test-linear-small", "", "", "ro", "0 2097152 linear /dev/loop0 0\n2097152 2097152 linear /dev/loop1 0"),
            new DmsetupConcise.Spec("dev2", "U-2", "7", "rw", "0 1 error"),
        ], specs);
        Assert.Equal([new DmsetupConcise.Spec("a;b", "", "", "", "0 1 linear x\\,y 0")], DmsetupConcise.Parse(@"a\;b,,,,0 1 linear x\\\,y 0", out _));
    }

    [Fact]
    public void Concise_input_errors_are_dmsetups()
    {
        Assert.Empty(DmsetupConcise.Parse("a,b", out var errors));
        Assert.Equal(["Five comma-separated fields are required for each device", "Parsed 2 fields: name: a uuid: b minor: (null) flags: (null) table: (null)"], errors);
        Assert.Empty(DmsetupConcise.Parse("a,,,xx,0 1 error", out errors));
        Assert.Equal(["Invalid flags parameter 'xx' must be 'ro' or 'rw' or empty."], errors);
        // The devices before a bad one are still made, as dmsetup creates each one as it parses it.
        Assert.Single(DmsetupConcise.Parse("ok,,,,0 1 error;bad\\", out errors));
        Assert.Equal("Backslash must be followed by another character at end of string.", errors[0]);
        Assert.Single(DmsetupConcise.Parse("ok,,,,0 1 error;x,,,,", out errors));
        Assert.Equal("Incomplete entry: five comma-separated fields are required for each device", errors[0]);
    }
}
