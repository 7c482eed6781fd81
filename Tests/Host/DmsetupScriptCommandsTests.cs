using Akka.Actor;
using DmActors.Host.Cli;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// The dmsetup commands scripts use (deps, ls --tree/--target, info -c -o, table/create --concise, wait,
/// remove_all, targets) against an in-process device manager, with exact stdout, stderr and exit codes.
/// </summary>
public sealed class DmsetupScriptCommandsTests : IDisposable
{
    /// <summary>A target whose message `event` raises a dm event, as mirror or raid do when a leg fails.</summary>
    [TargetType("test-event", 1, 0, 0)]
    public sealed class EventTarget : Target
    {
        public EventTarget(TargetArgs a) : base(a) => a.ExpectArgs(0, 0, "No arguments required");
        public override MapResult Map(Bio clone, int index, ITargetContext ctx) { ctx.Complete(clone, BioStatus.Ok); return MapResult.Submitted; }
        public override string TableParams() => "";
        public override string? Message(string[] args, ITargetContext ctx) { ctx.RaiseEvent(); return null; }
    }

    private readonly Engine _engine = Engine.Start("dmsetup-script-tests");
    private readonly IControlChannel _channel;

    public DmsetupScriptCommandsTests()
    {
        TargetTypes.Register<EventTarget>();
        _engine.Disks.AddMemory("m0", 8192); // 7:0
        _engine.Disks.AddMemory("m1", 8192); // 7:1
        _channel = new ActorControlChannel(_engine.Manager, TimeSpan.FromSeconds(30));
    }

    public void Dispose() => _engine.Dispose();

    private sealed record Result(int Code, string Out, string Err);

    private async Task<Result> Run(string[] argv, string stdin = "", TimeSpan? patience = null)
    {
        var args = DmsetupArgs.Parse(argv, out var error);
        Assert.True(args != null, error);
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        var dmsetup = new Dmsetup(_channel, new StringReader(stdin), stdout, stderr)
        {
            Environment = _ => null, WaitPatience = patience ?? TimeSpan.FromSeconds(20),
        };
        var code = await dmsetup.RunAsync(args!);
        return new Result(code, stdout.ToString(), stderr.ToString());
    }

    private static string[] Words(string commandLine) => commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries);

    private async Task Ok(string commandLine, string expectedOut = "", string stdin = "") => Ok(await Run(Words(commandLine), stdin), expectedOut);

    private static void Ok(Result r, string expectedOut)
    {
        Assert.Equal("", r.Err);
        Assert.Equal(0, r.Code);
        Assert.Equal(expectedOut, r.Out);
    }

    private async Task Fails(string commandLine, string expectedErr)
    {
        var r = await Run(Words(commandLine));
        Assert.Equal(expectedErr, r.Err);
        Assert.Equal(1, r.Code);
        Assert.Equal("", r.Out);
    }

    /// <summary>a on m0 (minor 0), b on m1 (minor 1), top striped over a then b (minor 2).</summary>
    private async Task Stack()
    {
        await Ok("create a", "", "0 4096 linear m0 0");
        await Ok("create b", "", "0 4096 linear m1 0");
        await Ok("create top", "", "0 8192 striped 2 8 a 0 b 0");
    }

    [Fact]
    public async Task Deps_lists_what_each_live_table_uses_last_named_first()
    {
        await Stack();
        await Ok("deps top", "2 dependencies\t: (253, 1) (253, 0)\n");
        await Ok("deps -o devname top", "2 dependencies\t: (b) (a)\n");
        await Ok("deps -o blkdevname top", "2 dependencies\t: (dm-1) (dm-0)\n");
        await Ok("deps -o devname a", "1 dependencies\t: (m0)\n");
        await Ok("deps", "a: 1 dependencies\t: (7, 0)\nb: 1 dependencies\t: (7, 1)\ntop: 2 dependencies\t: (253, 1) (253, 0)\n");
        await Ok("deps -v a b", DmsetupCliTests.Block("a", "ACTIVE", "LIVE", 0, 1).Replace("Open count:        0", "Open count:        1") +
            "1 dependencies\t: (7, 0)\n\n" + DmsetupCliTests.Block("b", "ACTIVE", "LIVE", 1, 1).Replace("Open count:        0", "Open count:        1") +
            "1 dependencies\t: (7, 1)\n\n");
        await Ok("create empty --notable");
        await Ok("deps empty", "0 dependencies\t:\n");
        await Fails("deps nope", "device-mapper: deps ioctl on nope  failed: No such device or address\nCommand failed.\n");
        await Fails("deps -o foo,devno top", "Option not recognised: foo,devno.\nCouldn't process command line.\n");
    }

    [Fact]
    public async Task Ls_tree_target_and_name_styles()
    {
        await Stack();
        await Ok("ls --tree -o ascii", "top (253:2)\n |-b (253:1)\n |  `- (7:1)\n `-a (253:0)\n    `- (7:0)\n");
        await Ok("ls --tree", "top (253:2)\n |-b (253:1)\n |  `- (7:1)\n `-a (253:0)\n    `- (7:0)\n"); // C locale: ASCII
        await Ok("ls --tree -o inverted,nodevice,blkdevname", " <m0>\n `-a <dm-0>\n    `-top <dm-2>\n <m1>\n `-b <dm-1>\n    `-top <dm-2>\n");
        await Ok("ls --target striped", "top\t(253, 2)\n");
        await Ok("ls --target zero");
        await Ok("ls -o blkdevname", "a\t(dm-0)\nb\t(dm-1)\ntop\t(dm-2)\n");
        await Fails("ls --tree -o sideways", "Tree options not recognised: sideways.\nCouldn't process command line.\n");
        await Ok("table --target linear", "a: 0 4096 linear 7:0 0\nb: 0 4096 linear 7:1 0\n");
        await Ok("status --target striped top", "0 8192 striped 2 253:0 253:1 1 AA\n");
    }

    [Fact]
    public async Task Info_columns_with_fields_noheadings_and_separator()
    {
        await Stack();
        await Ok("info -c -o name,devno,devs_used,events top", "Name             DevNo DevNamesUsed     Event \ntop              253:2 b,a                   0\n");
        await Ok("info -c --noheadings a", "a:253:0:L--w:1:1:0:\n");
        await Ok("info --columns --noheadings --separator , -o name,open,attr", "a,1,L--w\nb,1,L--w\ntop,0,L--w\n");
        await Fails("info -c -o name,colour", "Unrecognised field: colour\n");
    }

    [Fact]
    public async Task Info_columns_sort_by_keys_in_order_and_descending_with_a_minus()
    {
        await Stack(); // open: a 1, b 1, top 0
        await Ok("info -c --noheadings --separator , -o name,open -O -minor", "top,0\nb,1\na,1\n");
        await Ok("info -c --noheadings --separator , -o name -O open,-name", "top\nb\na\n");
        await Ok("info -c --noheadings --separator , -o name --sort -open,+name", "a\nb\ntop\n");
        await Ok("info -c -o name --sort=-devno", "Name            \ntop             \nb               \na               \n");
        await Fails("info -c -O name,colour", "Unrecognised field: colour\n");
    }

    [Fact]
    public async Task Table_concise_round_trips_through_create_concise()
    {
        await Stack();
        await Ok("create -u U,1 -r ro", "", "0 16 zero");
        await Ok("create none --notable");
        var concise = await Run(Words("table --concise"));
        Ok(concise, "a,,0,rw,0 4096 linear 7:0 0;b,,1,rw,0 4096 linear 7:1 0;none,,4,rw;ro,U\\,1,3,ro,0 16 zero ;top,,2,rw,0 8192 striped 2 8 253:0 0 253:1 0\n");
        await Ok("table --concise top b", "top,,2,rw,0 8192 striped 2 8 253:0 0 253:1 0;b,,1,rw,0 4096 linear 7:1 0\n");

        await Ok("remove_all");
        await Ok("ls", "No devices found\n");
        // dmsetup creates in the order given: the stack's lower devices first, and the same minors again.
        // A device without a table prints four fields, which create --concise refuses (as dmsetup does): it needs
        // the fifth, empty, ended by ';'.
        await Ok("create --concise", "", "a,,0,rw,0 4096 linear 7:0 0;b,,1,rw,0 4096 linear 7:1 0;top,,2,rw,0 8192 striped 2 8 253:0 0 253:1 0;" +
            "none,,4,rw,;ro,U\\,1,3,ro,0 16 zero ");
        Ok(await Run(Words("table --concise")), concise.Out);
        await Ok("info -c -o name,uuid,attr ro", "Name             UUID                             Stat\nro               U,1                              L--r\n");
    }

    [Fact]
    public async Task Create_concise_errors()
    {
        Result r;
        await Fails("create --concise a,b", "Five comma-separated fields are required for each device\nParsed 2 fields: name: a uuid: b minor: (null) flags: (null) table: (null)\nCommand failed.\n");
        await Fails("create --concise x y", "dmsetup create --concise takes at most one argument\nCommand failed.\n");
        r = await Run(["create", "--concise", "-u", "U", "a,,,,0 1 error"]);
        Assert.Equal("--concise is incompatible with --[no]table, --minor, --uuid and --inactive.\nCommand failed.\n", r.Err);
        // The first device is made before the second one's error, as dmsetup does.
        r = await Run(["create", "--concise", "one,,,,0 1 error;two,,,xx,0 1 error"]);
        Assert.Equal("Invalid flags parameter 'xx' must be 'ro' or 'rw' or empty.\nCommand failed.\n", r.Err);
        await Ok("ls", "one\t(253:0)\n");
        r = await Run(["create", "--concise", "dup,,0,,0 1 error"]);
        Assert.Equal("device-mapper: create ioctl on dup  failed: Device or resource busy\nminor 0 is in use by one\nCommand failed.\n", r.Err);
    }

    [Fact]
    public async Task A_bad_line_in_a_table_given_on_the_command_line_names_no_file()
    {
        // dmsetup parses --table and --concise tables with the empty file name: "of table ."
        var r = await Run(["create", "bad", "--table", "0 10 zero\nten 10 zero"]);
        Assert.Equal("Invalid format on line 2 of table .\nCommand failed.\n", r.Err);
        r = await Run(["create", "--concise", "bad,,,,0 10 zero,ten 10 zero"]);
        Assert.Equal("Invalid format on line 2 of table .\nCommand failed.\n", r.Err);
        await Ok("ls", "No devices found\n");
    }

    [Fact]
    public async Task Wait_returns_when_the_event_number_moves_on()
    {
        await Ok("create ev", "", "0 100 test-event");
        // EVENT_NR other than the device's: dm's dev_wait returns at once.
        await Ok("wait ev 7");
        var waiting = Run(Words("wait ev"), patience: TimeSpan.FromMilliseconds(50)); // asked again every 50 ms
        var waitingFor0 = Run(Words("wait ev 0"));
        await Ok("info -c -o name,events ev", "Name             Event \nev                    0\n");
        Assert.False(waiting.IsCompleted);
        await Ok("message ev 0 event");
        Ok(await waiting.WaitAsync(TimeSpan.FromSeconds(30)), "");
        Ok(await waitingFor0.WaitAsync(TimeSpan.FromSeconds(30)), "");
        // -v prints the status the wait returns (DMTS reads "Event number:" from it).
        await Ok("wait -v ev 0", DmsetupCliTests.Block("ev", "ACTIVE", "LIVE", 0, 1, events: 1));
        await Ok("info -c -o events --noheadings ev", "1\n");
        // rename wakes waiters too (dm_hash_rename raises an event).
        var renamed = Run(Words("wait ev 1"));
        await Ok("rename ev ev2");
        Ok(await renamed.WaitAsync(TimeSpan.FromSeconds(30)), "");
    }

    [Fact]
    public async Task Wait_on_a_device_that_is_removed_or_missing_fails_clearly()
    {
        await Ok("create gone --notable");
        var waiting = Run(Words("wait gone"));
        await Ok("info -c -o events --noheadings gone", "0\n"); // the wait is in the device by now (same mailbox, later)
        await Ok("remove gone");
        var r = await waiting.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal((1, "", "device-mapper: waitevent ioctl on gone  failed: No such device or address\ndevice removed while waiting\nCommand failed.\n"), (r.Code, r.Out, r.Err));
        await Fails("wait gone", "device-mapper: waitevent ioctl on gone  failed: No such device or address\nCommand failed.\n");
        await Fails("wait", "No device specified.\nCommand failed.\n");
        await Fails("wait a 1 2", "Incorrect number of arguments.\n");
    }

    [Fact]
    public async Task Wait_request_that_runs_out_of_patience_answers_the_unchanged_info()
    {
        await Ok("create p --notable");
        var info = await _engine.Manager.Ask<Dm.DeviceInfo>(new Dm.GetInfo("p", 0, TimeSpan.FromMilliseconds(20)), TimeSpan.FromSeconds(30));
        Assert.Equal(0, info.EventNr);
    }

    [Fact]
    public async Task Remove_all_removes_stacks_top_down_and_leaves_open_devices()
    {
        await Stack();
        await Ok("create lone --notable");
        await Ok("remove_all");
        await Ok("ls", "No devices found\n");

        await Stack();
        await Ok("create lone --notable");
        var opened = await _engine.Manager.Ask<Dm.Opened>(new Dm.Open("top"), TimeSpan.FromSeconds(30));
        // Open devices stay, and so does what they use: not an error without -f.
        await Ok("remove_all");
        await Ok("ls", "a\t(253:4)\nb\t(253:5)\ntop\t(253:6)\n");
        // -f: the open one's table becomes error, which releases the ones below; it alone is left.
        await Fails("remove_all -f", "Unable to remove 1 device(s).\nCommand failed.\n");
        await Ok("ls", "top\t(253:6)\n");
        await Ok("table top", "0 8192 error \n");
        await Ok("deps top", "0 dependencies\t:\n");
        await _engine.Manager.Ask<Dm.Done>(new Dm.Close("top", opened.Device), TimeSpan.FromSeconds(30));
        await Ok("remove_all -f");
        await Ok("ls", "No devices found\n");
    }

    [Fact]
    public async Task After_a_resume_swaps_a_table_out_the_devices_it_used_are_closed()
    {
        // dm destroys the old table before the resume returns: the device below can be removed right away.
        for (var k = 0; k < 5; k++)
        {
            await Ok($"create low{k}", "", "0 4096 linear m0 0");
            await Ok($"create up{k}", "", $"0 4096 linear low{k} 0");
            await Ok($"load up{k}", "", "0 4096 zero");
            await Ok($"resume up{k}");
            await Ok($"info -c -o open --noheadings low{k}", "0\n");
            await Ok($"remove low{k}");
        }
    }

    [Fact]
    public async Task Targets_list_in_dms_order_and_take_no_arguments()
    {
        var r = await Run(["targets"]);
        Ok(r, r.Out);
        Assert.EndsWith("striped          v1.6.0\nlinear           v1.4.0\nerror            v1.7.0\n", r.Out);
        Assert.Contains("zero             v1.2.0\n", r.Out);
        Assert.Null(DmsetupArgs.Parse(["targets", "x"], out var error));
        Assert.Equal("Too many command line arguments.\nCommand failed.", error);
    }
}
