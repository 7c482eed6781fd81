using Akka.Actor;
using DmActors.Host.Cli;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// The dmsetup commands against an in-process device manager on memory disks: the same code path as the remote
/// CLI minus the wire, with exact stdout, stderr and exit codes.
/// </summary>
public sealed class DmsetupCliTests : IDisposable
{
    private readonly ActorSystem _system = ActorSystem.Create("dmsetup-cli-tests",
        Akka.Configuration.ConfigurationFactory.ParseString("akka.loglevel = WARNING").WithFallback(DmActors.Host.Configuration.HostConfig.IoDispatcherSection()));
    private readonly DiskRegistry _disks = new();
    private readonly IControlChannel _channel;
    private readonly IActorRef _manager;

    public DmsetupCliTests()
    {
        _disks.AddMemory("m0", 8192); // 1:0 style devno from the registry: 7:0
        _disks.AddMemory("m1", 8192);
        _manager = _system.ActorOf(DeviceManager.Props(_disks), "devices");
        _channel = new ActorControlChannel(_manager, TimeSpan.FromSeconds(30));
    }

    public void Dispose()
    {
        _system.Terminate().Wait(TimeSpan.FromSeconds(30));
        _disks.Dispose();
    }

    private sealed record Result(int Code, string Out, string Err);

    private async Task<Result> Run(string commandLine, string stdin = "") => await Run(commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries), stdin);

    private async Task<Result> Run(string[] argv, string stdin = "")
    {
        var args = DmsetupArgs.Parse(argv, out var error);
        Assert.True(args != null, error);
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        var code = await new Dmsetup(_channel, new StringReader(stdin), stdout, stderr).RunAsync(args!);
        return new Result(code, stdout.ToString(), stderr.ToString());
    }

    private Task Ok(string commandLine, string expectedOut = "", string stdin = "") =>
        Ok(commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries), expectedOut, stdin);

    private async Task Ok(string[] argv, string expectedOut = "", string stdin = "")
    {
        var r = await Run(argv, stdin);
        Assert.Equal("", r.Err);
        Assert.Equal(0, r.Code);
        Assert.Equal(expectedOut, r.Out);
    }

    private async Task Fails(string[] argv, string expectedErr, string stdin = "")
    {
        var r = await Run(argv, stdin);
        Assert.Equal(expectedErr, r.Err);
        Assert.Equal(1, r.Code);
        Assert.Equal("", r.Out);
    }

    private Task Fails(string commandLine, string expectedErr) => Fails(commandLine.Split(' '), expectedErr);

    [Fact]
    public async Task No_devices()
    {
        await Ok("ls", "No devices found\n");
        await Ok("info", "No devices found\n");
        await Ok("table", "No devices found\n");
        await Ok("status", "No devices found\n");
    }

    [Fact]
    public async Task Create_info_load_suspend_resume_clear_follow_the_state_table()
    {
        await Ok("create x --notable");
        await Ok("info x", Block("x", "ACTIVE", "None", minor: 0, targets: 0));
        await Ok("load x", stdin: "0 100 linear m0 0\n");
        await Ok("info x", Block("x", "ACTIVE", "INACTIVE", minor: 0, targets: 0));
        await Ok("table x --inactive", "0 100 linear 7:0 0\n");
        await Ok("table x", "\n");
        await Ok("resume x");
        await Ok("info x", Block("x", "ACTIVE", "LIVE", minor: 0, targets: 1));
        await Ok(["reload", "x", "--table", "0 200 zero"]);
        await Ok("info -c x", "Name             Maj Min Stat Open Targ Event  UUID                            \n" +
                              "x                253   0 LI-w    0    1      0                                 \n");
        await Ok("suspend x");
        await Ok("info x", Block("x", "SUSPENDED", "LIVE & INACTIVE", minor: 0, targets: 1));
        await Ok("clear x");
        await Ok("info x", Block("x", "SUSPENDED", "LIVE", minor: 0, targets: 1));
        await Ok("resume x");
        await Ok("table x", "0 100 linear 7:0 0\n");
        await Ok("status x", "0 100 linear \n");
    }

    [Fact]
    public async Task Listing_all_devices_prefixes_names_and_sorts()
    {
        await Ok(["create", "b", "--table", "0 8192 linear m1 0"]);
        await Ok("create a", stdin: "# comment\n0 100 zero\n100 50 linear m0 8  # tail\n");
        await Ok("create c -u TEST-c", stdin: "");
        await Ok("ls", "a\t(253:1)\nb\t(253:0)\nc\t(253:2)\n");
        await Ok("table", "a: 0 100 zero \na: 100 50 linear 7:0 8\nb: 0 8192 linear 7:1 0\nc: \n");
        await Ok("table a b", "a: 0 100 zero \na: 100 50 linear 7:0 8\nb: 0 8192 linear 7:1 0\n");
        await Ok("info", Block("a", "ACTIVE", "LIVE", 1, 2) + Block("b", "ACTIVE", "LIVE", 0, 1) + Block("c", "ACTIVE", "None", 2, 0, uuid: "TEST-c"));
    }

    [Fact]
    public async Task Create_from_a_file_and_read_only()
    {
        var file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "0 64 linear m0 0\n");
            await Ok($"create ro -r {file}");
            await Ok("info ro", Block("ro", "ACTIVE (READ-ONLY)", "LIVE", 0, 1));
            await Fails(["create", "other", file + ".missing"], $"Couldn't open '{file}.missing' for reading\nCommand failed.\n");
        }
        finally { File.Delete(file); }
    }

    [Fact]
    public async Task A_bad_table_fails_in_reload_and_leaves_no_device()
    {
        await Ok(["create", "keep", "--table", "0 10 zero"]);
        await Fails(["create", "bad", "--table", "0 10 linear nodisk 0"],
            "device-mapper: reload ioctl on bad  failed: Invalid argument\nlinear: Device lookup failed: nodisk\nCommand failed.\n");
        await Fails(["create", "bad", "--table", "0 10 frob"], "device-mapper: reload ioctl on bad  failed: Invalid argument\nfrob: unknown target type\nCommand failed.\n");
        await Fails(["create", "bad", "-u", "U-bad", "--table", "0 10 zero 1"], "device-mapper: reload ioctl on bad U-bad failed: Invalid argument\nzero: No arguments required\nCommand failed.\n");
        await Fails(["create", "bad"], "Invalid format on line 2 of table on stdin.\nCommand failed.\n", stdin: "0 10 zero\nten 10 zero\n");
        await Ok("ls", "keep\t(253:0)\n");
        await Fails(["load", "keep", "--table", "0 10 zero\\n20 10 zero"], "device-mapper: reload ioctl on keep  failed: Invalid argument\nGap in table\nCommand failed.\n");
        await Ok("info keep", Block("keep", "ACTIVE", "LIVE", 0, 1));
    }

    [Fact]
    public async Task Duplicate_and_bad_names()
    {
        await Ok("create d --notable");
        await Fails("create d --notable", "device-mapper: create ioctl on d  failed: Device or resource busy\ndevice d already exists\nCommand failed.\n");
        await Fails("create a/b --notable", "device-mapper: create ioctl on a/b  failed: Invalid argument\ndevice name cannot contain '/'\nCommand failed.\n");
        await Fails("load d --notable", "--notable only available when creating new device.\nCommand failed.\n");
        await Fails("remove", "Please specify device.\nCommand failed.\n");
    }

    [Fact]
    public async Task Duplicate_uuids_are_busy()
    {
        await Ok("create vol1 -u LVM-1 --notable");
        await Fails("create vol2 -u LVM-1 --notable",
            "device-mapper: create ioctl on vol2 LVM-1 failed: Device or resource busy\ndevice with uuid LVM-1 already exists: vol1\nCommand failed.\n");
        await Fails(["create", "vol2", "-u", "LVM-1", "--table", "0 10 zero"],
            "device-mapper: create ioctl on vol2 LVM-1 failed: Device or resource busy\ndevice with uuid LVM-1 already exists: vol1\nCommand failed.\n");
        await Ok("create vol3 --notable");
        await Fails("rename vol3 --setuuid LVM-1",
            "device-mapper: rename ioctl on vol3  failed: Device or resource busy\nUnable to change uuid on mapped device vol3 to one that already exists: LVM-1\nCommand failed.\n");
        await Ok("ls", "vol1\t(253:0)\nvol3\t(253:1)\n");
    }

    [Fact]
    public async Task Names_and_uuids_dm_refuses()
    {
        var name128 = new string('n', 128);
        await Fails($"create {name128} --notable", $"device-mapper: create ioctl on {name128}  failed: Invalid argument\nName \"{name128}\" too long.\nCommand failed.\n");
        await Fails(["create", "a\nb", "--table", "0 10 zero"],
            "device-mapper: create ioctl on a\\x0ab  failed: Invalid argument\nName \"a\\x0ab\" invalid. It contains a control character.\nCommand failed.\n");
        await Fails("create .. --notable", "device-mapper: create ioctl on ..  failed: Invalid argument\ndevice name cannot be \"control\", \".\", or \"..\"\nCommand failed.\n");
        var uuid129 = new string('u', 129);
        // A bad uuid fails the create ioctl, not the reload of its table.
        await Fails(["create", "u", "-u", uuid129, "--table", "0 10 zero"],
            $"device-mapper: create ioctl on u {uuid129} failed: Invalid argument\nUuid \"{uuid129}\" too long\nCommand failed.\n");
        await Ok("create ok --notable");
        await Fails(["rename", "ok", "x\ty"], "device-mapper: rename ioctl on ok  failed: Invalid argument\nName \"x\\x09y\" invalid. It contains a control character.\nCommand failed.\n");
        await Fails($"rename ok --setuuid {uuid129}", $"device-mapper: rename ioctl on ok  failed: Invalid argument\nUuid \"{uuid129}\" too long\nCommand failed.\n");
        await Ok("ls", "ok\t(253:0)\n");
    }

    [Fact]
    public async Task Sizes_that_overflow_are_refused()
    {
        await Fails(["create", "big", "--table", "0 9223372036854775807 zero"],
            "device-mapper: reload ioctl on big  failed: Invalid argument\n" +
            "too large device: 9223372036854775807 sectors, at most 18014398509481983 (the size in bytes must fit in a signed 64-bit integer)\nCommand failed.\n");
        await Fails(["create", "ovf", "--table", "0 1024 linear m0 9223372036854775807"],
            "device-mapper: reload ioctl on ovf  failed: Invalid argument\n" +
            "linear: m0 too small for target: start=9223372036854775807, len=1024, dev_size=8192\nCommand failed.\n");
        await Ok("ls", "No devices found\n");
    }

    [Fact]
    public async Task Missing_devices()
    {
        foreach (var q in new[] { "info", "table", "status" })
            await Fails($"{q} nosuch", "Device does not exist.\nCommand failed.\n");
        foreach (var (cmd, op) in new[] { ("remove", "remove"), ("suspend", "suspend"), ("resume", "resume"), ("clear", "clear") })
            await Fails($"{cmd} nosuch", $"device-mapper: {op} ioctl on nosuch  failed: No such device or address\nCommand failed.\n");
        await Fails("message nosuch 0 hi", "device-mapper: message ioctl on nosuch  failed: No such device or address\nCommand failed.\n");
        await Fails("rename nosuch other", "device-mapper: rename ioctl on nosuch  failed: No such device or address\nCommand failed.\n");
        await Fails(["load", "nosuch", "--table", "0 1 zero"], "device-mapper: reload ioctl on nosuch  failed: No such device or address\nCommand failed.\n");
    }

    [Fact]
    public async Task Several_devices_one_missing_prints_the_rest_and_fails()
    {
        await Ok(["create", "p", "--table", "0 10 zero"]);
        var r = await Run("table p nosuch");
        Assert.Equal("p: 0 10 zero \n", r.Out);
        Assert.Equal("Device does not exist.\nCommand failed.\n", r.Err);
        Assert.Equal(1, r.Code);
    }

    [Fact]
    public async Task Message_errors()
    {
        await Ok(["create", "m", "--table", "0 10 zero"]);
        await Fails("message m 0 hello", "device-mapper: message ioctl on m  failed: Invalid argument\nTarget type does not support messages\nCommand failed.\n");
        await Fails("message m 10 hello", "device-mapper: message ioctl on m  failed: Invalid argument\nTarget message sector outside device.\nCommand failed.\n");
        await Fails("message m x hello", "Invalid sector.\nCommand failed.\n");
        await Fails("message m 0", "No message supplied.\nCommand failed.\n");
    }

    [Fact]
    public async Task Message_responses_print_as_the_target_gives_them()
    {
        await Ok(["create", "du", "--table", "0 8192 dust m0 0 512"]);
        await Ok("message du 0 addbadblock 3");
        await Ok("message du 0 -- addbadblock 5");
        await Ok("message du 0 countbadblocks", "countbadblocks: 2 badblock(s) found\n");
        await Ok("message du 0 listbadblocks", "3\n5\n");
        await Fails("message du 0 addbadblock 3",
            "device-mapper: message ioctl on du  failed: Invalid argument\ndust_add_block: block 3 already in badblocklist\nCommand failed.\n");
    }

    [Fact]
    public async Task Remove_of_an_open_device_fails_and_force_wipes_its_table_to_error()
    {
        await Ok(["create", "busy", "--table", "0 64 linear m0 0"]);
        Assert.IsType<Dm.Opened>(await _manager.Ask<object>(new Dm.Open("busy"), TimeSpan.FromSeconds(30)));
        await Fails("remove busy", "device-mapper: remove ioctl on busy  failed: Device or resource busy\nbusy is open (1)\nCommand failed.\n");
        await Ok("table busy", "0 64 linear 7:0 0\n");
        await Fails("remove -f busy", "device-mapper: remove ioctl on busy  failed: Device or resource busy\nbusy is open (1)\nCommand failed.\n");
        await AwaitAssertAsync(async () => Assert.Equal("0 64 error \n", (await Run("table busy")).Out));
        Assert.IsType<Dm.Done>(await _manager.Ask<object>(new Dm.Close("busy"), TimeSpan.FromSeconds(30)));
        await Ok("remove busy");
        await Ok("ls", "No devices found\n");
    }

    /// <summary>The forced wipe is told, not asked: poll for its effect (no fixed sleep).</summary>
    private static async Task AwaitAssertAsync(Func<Task> check)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try { await check(); return; }
            catch (Xunit.Sdk.XunitException) when (DateTime.UtcNow < deadline) { await Task.Delay(20); }
        }
    }

    [Fact]
    public async Task Rename_and_set_uuid()
    {
        await Ok(["create", "old", "--table", "0 10 zero"]);
        await Ok("rename old new");
        await Ok("ls", "new\t(253:0)\n");
        await Ok("rename new --setuuid UU-1");
        await Ok("info new", Block("new", "ACTIVE", "LIVE", 0, 1, events: 1, uuid: "UU-1"));
        await Fails("rename new --setuuid UU-2",
            "device-mapper: rename ioctl on new  failed: Invalid argument\nUnable to change uuid of mapped device new to UU-2 because uuid is already set to UU-1\nCommand failed.\n");
    }

    [Fact]
    public async Task Remove_and_targets_and_version()
    {
        await Ok("create r1 --notable");
        await Ok("create r2 --notable");
        await Ok("remove r1 r2");
        await Ok("ls", "No devices found\n");
        var targets = await Run("targets");
        Assert.Contains("linear           v1.4.0\n", targets.Out);
        Assert.Contains("striped          v1.6.0\n", targets.Out);
        await Ok("version", "Library version:   1.02.199 (dmactors)\nDriver version:    4.48.0\n");
        await Fails("frobnicate", "Unrecognised command 'frobnicate'.\nCommand failed.\n");
    }

    [Fact]
    public void Options_may_come_anywhere_and_double_dash_ends_them()
    {
        var a = DmsetupArgs.Parse(["--config", "c.hocon", "message", "dev", "0", "--", "mark", "-x"], out _)!;
        Assert.Equal("message", a.Command);
        Assert.Equal(["dev", "0", "mark", "-x"], a.Args);
        Assert.Equal("c.hocon", a.ConfigFile);
        var b = DmsetupArgs.Parse(["create", "x", "--table=0 1 zero", "-r", "-u", "U", "--barrier-mode", "flush"], out _)!;
        Assert.Equal(("0 1 zero", true, "U", BarrierMode.Flush), (b.Table, b.ReadOnly, b.Uuid, b.Mode));
        Assert.Null(DmsetupArgs.Parse(["create", "x", "--bogus"], out var e1));
        Assert.Equal("dmsetup: unrecognized option '--bogus'", e1);
        Assert.Null(DmsetupArgs.Parse(["create", "x", "--table"], out var e2));
        Assert.Equal("dmsetup: option '--table' requires an argument", e2);
        Assert.Null(DmsetupArgs.Parse(["create", "x", "--barrier-mode", "never"], out var e3));
        Assert.Equal("Invalid barrier mode 'never' (ordered or flush).", e3);
    }

    [Fact]
    public async Task Powercut_drops_what_cached_disks_never_flushed_and_history_lists_events()
    {
        var inner = new MemoryDisk("c0", 1024, _disks.NextDevNo());
        var cached = _disks.Add(new CachedDisk(inner));
        await Ok(["create", "wb", "--table", "0 1024 linear c0 0"]);
        var opened = (Dm.Opened)await _manager.Ask<object>(new Dm.Open("wb"), TimeSpan.FromSeconds(30));
        var done = new TaskCompletionSource<BioStatus>();
        opened.Device.Tell(Bio.Write(0, new byte[4096], CallbackRef.ForBios(d => done.SetResult(d.Status))));
        Assert.Equal(BioStatus.Ok, await done.Task.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(8, cached.CachedSectors);

        await Ok("powercut c0", "c0: power cut, 8 cached sector(s) lost\n");
        Assert.Equal(0, cached.CachedSectors);
        await Ok("powercut m0", "m0: no write-back cache, nothing lost\n");
        await Fails(["powercut", "nope"], "device-mapper: powercut ioctl on nope  failed: No such device or address\nno disk nope\nCommand failed.\n");
        var history = await Run("history wb");
        Assert.Equal(0, history.Code);
        Assert.EndsWith("  created (minor 0, ordered barriers)\n", history.Out.Split("\n")[0] + "\n");
        Assert.EndsWith("  resumed", history.Out.Trim());
    }

    internal static string Block(string name, string state, string tables, int minor, int targets, long events = 0, string? uuid = null) =>
        $"Name:              {name}\nState:             {state}\nRead Ahead:        256\nTables present:    {tables}\n" +
        $"Open count:        0\nEvent number:      {events}\nMajor, minor:      253, {minor}\nNumber of targets: {targets}\n" +
        (uuid == null ? "" : $"UUID: {uuid}\n") + "\n";
}
