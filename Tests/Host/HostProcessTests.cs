using System.Text.RegularExpressions;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>The real program: `dmactors serve` in a process, driven by `dmactors dmsetup` processes over Akka.Remote.</summary>
public sealed class DmsetupProcessTests(HostFixture fixture) : IClassFixture<HostFixture>
{
    private HostProcess Host => fixture.Host;

    private static void Ok(HostProcess.CliResult r, string expectedOut)
    {
        Assert.True(r.Code == 0 && r.Err == "", r.ToString());
        Assert.Equal(expectedOut, r.Out);
    }

    private static void Failed(HostProcess.CliResult r, string expectedErr)
    {
        Assert.True(r.Code == 1, r.ToString());
        Assert.Equal(expectedErr, r.Err);
        Assert.Equal("", r.Out);
    }

    private async Task<int> MinorOf(string name)
    {
        var ls = await Host.Dmsetup("ls");
        var m = Regex.Match(ls.Out, $@"^{Regex.Escape(name)}\t\(253:(\d+)\)$", RegexOptions.Multiline);
        Assert.True(m.Success, ls.ToString());
        return int.Parse(m.Groups[1].Value);
    }

    [Fact]
    public async Task Configured_device_is_served_and_listed()
    {
        Assert.Contains($"dmactors: control listening on akka.tcp://dmactors@127.0.0.1:{Host.ControlPort}/user/control\n", Host.Stdout);
        Assert.Contains($"dmactors: disk disk0 = {Host.Dir}/data/disk0.img (131072 sectors)\n", Host.Stdout);
        Assert.True(File.Exists(Path.Combine(Host.Dir, "data", "disk0.img")));
        Assert.Equal(0, await MinorOf("demo"));
        Ok(await Host.Dmsetup("table demo"), "0 131072 linear 7:0 0\n");
        Ok(await Host.Dmsetup("status demo"), "0 131072 linear \n");
        Ok(await Host.Dmsetup("info demo"), DmsetupCliTests.Block("demo", "ACTIVE", "LIVE", 0, 1));
    }

    [Fact]
    public async Task Real_client_io_held_by_a_suspend_completes_across_a_table_reload()
    {
        Ok(await Host.Dmsetup(["create", "rel", "--table", "0 16384 linear disk0 65536"]), "");
        Ok(await Host.Dmsetup("suspend rel"), "");
        var url = $"nbd://127.0.0.1:{Host.NbdPort}/rel";
        // qemu-io connects and sends its writes; the suspended device holds them.
        var writer = Nbd.ExternalTool.RunAsync("qemu-io", Nbd.ExternalTool.QemuUtils, "-f", "raw",
            "-c", "write -P 0x5a 0 1M", "-c", "write -P 0x5b 4M 1M", "-c", "flush", url);
        // Once qemu-io has the export open its first write follows at once: were it not held, it would be back within the moment given here.
        await Poll.UntilAsync(async () => writer.IsCompleted || (await Host.Dmsetup("info rel")).Out.Contains("Open count:        1\n"),
            "qemu-io to open the export", HostProcess.StartTimeout);
        await Task.WhenAny(writer, Task.Delay(500));
        Assert.False(writer.IsCompleted, "writes completed while the device was suspended");
        // The same mapping cut in two: the held writes go out through the new table.
        Ok(await Host.Dmsetup(["load", "rel", "--table", "0 8192 linear disk0 65536\n8192 8192 linear disk0 73728"]), "");
        Ok(await Host.Dmsetup("resume rel"), "");
        await writer;
        Ok(await Host.Dmsetup("table rel"), "0 8192 linear 7:0 65536\n8192 8192 linear 7:0 73728\n");
        await Nbd.ExternalTool.RunAsync("qemu-io", Nbd.ExternalTool.QemuUtils, "-f", "raw",
            "-c", "read -P 0x5a 0 1M", "-c", "read -P 0x5b 4M 1M", url);
        Ok(await Host.Dmsetup("remove rel"), "");
    }

    [Fact]
    public async Task Device_lifecycle_over_the_wire()
    {
        Ok(await Host.Dmsetup("create life --notable"), "");
        var minor = await MinorOf("life");
        Ok(await Host.Dmsetup("info life"), DmsetupCliTests.Block("life", "ACTIVE", "None", minor, 0));
        Ok(await Host.Dmsetup("load life", stdin: "0 1000 linear disk0 0\n1000 24 zero\n"), "");
        Ok(await Host.Dmsetup("info life"), DmsetupCliTests.Block("life", "ACTIVE", "INACTIVE", minor, 0));
        Ok(await Host.Dmsetup("table life --inactive"), "0 1000 linear 7:0 0\n1000 24 zero \n");
        Ok(await Host.Dmsetup("resume life"), "");
        Ok(await Host.Dmsetup("table life"), "0 1000 linear 7:0 0\n1000 24 zero \n");
        Ok(await Host.Dmsetup("status life"), "0 1000 linear \n1000 24 zero \n");

        Ok(await Host.Dmsetup(["reload", "life", "--table", "0 2048 linear disk0 4096"]), "");
        Ok(await Host.Dmsetup("suspend life"), "");
        Ok(await Host.Dmsetup("info life"), DmsetupCliTests.Block("life", "SUSPENDED", "LIVE & INACTIVE", minor, 2));
        Ok(await Host.Dmsetup("info -c life"),
            "Name             Maj Min Stat Open Targ Event  UUID                            \n" +
            $"life             253 {minor,3} LIsw    0    2      0                                 \n");
        Ok(await Host.Dmsetup("clear life"), "");
        Ok(await Host.Dmsetup("info life"), DmsetupCliTests.Block("life", "SUSPENDED", "LIVE", minor, 2));
        Ok(await Host.Dmsetup("resume life"), "");
        Ok(await Host.Dmsetup("info life"), DmsetupCliTests.Block("life", "ACTIVE", "LIVE", minor, 2));

        Failed(await Host.Dmsetup("message life 0 hello"),
            "device-mapper: message ioctl on life  failed: Invalid argument\nTarget type does not support messages\nCommand failed.\n");
        Failed(await Host.Dmsetup("message life 5000 hello"),
            "device-mapper: message ioctl on life  failed: Invalid argument\nTarget message sector outside device.\nCommand failed.\n");

        Ok(await Host.Dmsetup("rename life life2"), "");
        Ok(await Host.Dmsetup("rename life2 --setuuid TEST-life"), "");
        Ok(await Host.Dmsetup("info life2"), DmsetupCliTests.Block("life2", "ACTIVE", "LIVE", minor, 2, events: 1, uuid: "TEST-life"));
        Failed(await Host.Dmsetup("info life"), "Device does not exist.\nCommand failed.\n");
        Ok(await Host.Dmsetup("remove life2"), "");
        var ls = await Host.Dmsetup("ls");
        Assert.DoesNotContain("life", ls.Out);
        Failed(await Host.Dmsetup("remove life2"), "device-mapper: remove ioctl on life2  failed: No such device or address\nCommand failed.\n");
    }

    [Fact]
    public async Task A_bad_table_fails_with_the_reason_and_leaves_the_devices_unchanged()
    {
        var before = await Host.Dmsetup("ls");
        Failed(await Host.Dmsetup(["create", "broken", "--table", "0 100 linear nodisk 0"]),
            "device-mapper: reload ioctl on broken  failed: Invalid argument\nlinear: Device lookup failed: nodisk\nCommand failed.\n");
        Failed(await Host.Dmsetup("create broken", stdin: "0 100 zero\nbogus line\n"),
            "Invalid format on line 2 of table on stdin.\nCommand failed.\n");
        Failed(await Host.Dmsetup(["load", "demo", "--table", "0 100 frob"]),
            "device-mapper: reload ioctl on demo  failed: Invalid argument\nfrob: unknown target type\nCommand failed.\n");
        Failed(await Host.Dmsetup(["load", "demo", "--table", "0 262144 linear disk0 0"]),
            "device-mapper: reload ioctl on demo  failed: Invalid argument\nlinear: disk0 too small for target: start=0, len=262144, dev_size=131072\nCommand failed.\n");
        var after = await Host.Dmsetup("ls");
        Assert.Equal(before.Out, after.Out);
        Assert.Contains("demo\t(253:0)\n", after.Out);
        Assert.DoesNotContain("INACTIVE", (await Host.Dmsetup("info demo")).Out);
    }

    [Fact]
    public async Task Messages_reach_the_target_and_its_response_comes_back()
    {
        Ok(await Host.Dmsetup(["create", "dusty", "--table", "0 4096 dust disk0 0 512"]), "");
        Ok(await Host.Dmsetup("message dusty 0 addbadblock 7"), "");
        Ok(await Host.Dmsetup("message dusty 0 queryblock 7"), "dust_query_block: block 7 found in badblocklist\n");
        Ok(await Host.Dmsetup("message dusty 0 listbadblocks"), "7\n");
        Failed(await Host.Dmsetup("message dusty 0 removebadblock 8"),
            "device-mapper: message ioctl on dusty  failed: Invalid argument\ndust_remove_block: block 8 not found in badblocklist\nCommand failed.\n");
        Ok(await Host.Dmsetup("remove dusty"), "");
    }

    [Fact]
    public async Task Script_commands_over_the_wire_deps_tree_concise_columns_and_wait()
    {
        Ok(await Host.Dmsetup(["create", "sc-low", "--table", "0 2048 linear disk0 8192"]), "");
        Ok(await Host.Dmsetup(["create", "sc-top", "-u", "SC,1", "--table", "0 2048 linear sc-low 0"]), "");
        int low = await MinorOf("sc-low"), top = await MinorOf("sc-top");
        Ok(await Host.Dmsetup("deps sc-top"), $"1 dependencies\t: (253, {low})\n");
        Ok(await Host.Dmsetup("deps -o devname sc-top"), "1 dependencies\t: (sc-low)\n");
        var tree = await Host.Dmsetup("ls --tree -o ascii");
        Assert.Contains($"sc-top (253:{top})\n `-sc-low (253:{low})\n    `- (7:0)\n", tree.Out);
        Ok(await Host.Dmsetup("table --concise sc-top"), $"sc-top,SC\\,1,{top},rw,0 2048 linear 253:{low} 0\n");
        Ok(await Host.Dmsetup("info -c --noheadings -o name,devs_used,uuid sc-top"), "sc-top:sc-low:SC,1\n");
        // A rename is an event: a wait for the number before it returns at once.
        Ok(await Host.Dmsetup("rename sc-low sc-low2"), "");
        Ok(await Host.Dmsetup("wait sc-low2 0"), "");
        // A wait for the next event ends when the device goes (whether its request got there first or not).
        var waiting = Host.Dmsetup("wait sc-low2 1");
        Ok(await Host.Dmsetup("remove sc-top sc-low2"), "");
        var r = await waiting;
        Assert.True(r.Code == 1 && r.Err.StartsWith("device-mapper: waitevent ioctl on sc-low2  failed: No such device or address\n"), r.ToString());
    }

    [Fact]
    public async Task Targets_and_version_come_from_the_host()
    {
        var targets = await Host.Dmsetup("targets");
        Assert.Equal(0, targets.Code);
        Assert.Contains("linear           v1.4.0\n", targets.Out);
        Ok(await Host.Dmsetup("version"), "Library version:   1.02.199 (dmactors)\nDriver version:    4.48.0\n");
    }
}

/// <summary>Starting and stopping the program, and its errors, each with its own process.</summary>
public sealed class HostLifecycleProcessTests
{
    [Fact]
    public async Task Sigterm_stops_the_host_cleanly_with_exit_code_0()
    {
        using var host = await HostProcess.StartAsync();
        var r = await host.Dmsetup(["create", "t1", "--table", "0 64 linear disk0 0"]);
        Assert.True(r.Code == 0, r.ToString());
        Assert.Equal(0, await host.TerminateAsync());
        Assert.Contains("dmactors: SIGTERM, stopping\n", host.Stdout);
        Assert.Contains("dmactors: devices suspended\n", host.Stdout);
        Assert.EndsWith("dmactors: stopped\n", host.Stdout);
        Assert.Equal("", host.Stderr);
        // And the CLI says so once it is gone.
        var gone = await host.Dmsetup("ls");
        Assert.Equal(1, gone.Code);
        Assert.Equal($"dmactors: cannot reach dmactors host at 127.0.0.1:{host.ControlPort}: Connection refused\n", gone.Err);
    }

    [Theory]
    [InlineData("disks = [ { name = d, size = 1M, create = on", ":4:11: syntax error: '[' is never closed")]
    [InlineData("devices = [ { name = d, table = \"0 10 frob\" } ]", ": device d: frob: unknown target type")]
    [InlineData("disks = [ { name = d, size = 1Q, create = on } ]", ": disk d: bad size '1Q' (expected a positive number with an optional K, M, G or T suffix, e.g. 1G)")]
    [InlineData("devices = [ { name = d, table = \"0 10 linear nope 0\" } ]", ": device d: linear: Device lookup failed: nope")]
    [InlineData("nbd.lisen = off", ":4:7: unknown key 'lisen' in dmactors.nbd (known: listen, unix-socket, max-payload, tls, tls-certificates, tls-verify-peer, tls-unix-socket)")]
    public async Task A_bad_config_exits_1_with_one_line_naming_file_and_problem(string body, string problem)
    {
        using var dir = new TempDir("dmactors-badcfg-");
        var file = dir["bad.hocon"];
        File.WriteAllText(file, $"dmactors {{\n  data-dir = \"{dir}/data\"\n  control.port = 0, nbd.listen = off\n  {body}\n}}\n");
        var r = await HostProcess.Run(["serve", "--config", file]);
        Assert.True(r.Code == 1, r.ToString());
        Assert.Equal($"dmactors: {file}{problem}\n", r.Err);
        Assert.DoesNotContain("ready", r.Out);
    }

    [Fact]
    public async Task A_missing_disk_file_is_named()
    {
        using var dir = new TempDir("dmactors-badcfg-");
        var file = dir["bad.hocon"];
        File.WriteAllText(file, $"dmactors {{ data-dir = \"{dir}/data\", control.port = 0, nbd.listen = off\n" +
                                "disks = [ { name = gone, path = gone.img } ], devices = [] }\n");
        var r = await HostProcess.Run(["serve", "--config", file]);
        Assert.Equal(1, r.Code);
        Assert.Equal($"dmactors: {file}: disk gone: file {dir}/data/gone.img does not exist (create = on makes it)\n", r.Err);
    }

    [Fact]
    public async Task A_busy_control_port_is_reported_without_a_stack_trace()
    {
        using var host = await HostProcess.StartAsync();
        using var dir = new TempDir("dmactors-busy-");
        var file = dir["busy.hocon"];
        File.WriteAllText(file, $"dmactors {{ data-dir = \"{dir}/data\", control.port = {host.ControlPort}, nbd.listen = off, devices = [] }}\n");
        var r = await HostProcess.Run(["serve", "--config", file]);
        Assert.Equal(1, r.Code);
        Assert.Equal($"dmactors: {file}: cannot listen for control on 127.0.0.1:{host.ControlPort}: Address already in use\n", r.Err);
    }

    [Fact]
    public async Task DMACTORS_DATA_sets_the_data_directory()
    {
        using var dir = new TempDir("dmactors-env-");
        var file = dir["env.hocon"];
        // A disk that must exist: the host fails on it, after saying where it looked.
        File.WriteAllText(file, "dmactors { control.port = 0, nbd.listen = off, devices = []\n" +
                                "disks = [ { name = d, path = d.img } ] }\n");
        var r = await HostProcess.Run(["serve", "--config", file], env: new Dictionary<string, string> { ["DMACTORS_DATA"] = $"{dir}/envdata" });
        Assert.Equal(1, r.Code);
        Assert.Equal($"dmactors: {file}: disk d: file {dir}/envdata/d.img does not exist (create = on makes it)\n", r.Err);
        Assert.True(Directory.Exists($"{dir}/envdata"));
    }

    [Fact]
    public async Task Dmsetup_without_a_host_says_it_cannot_reach_it()
    {
        var port = HostProcess.UnusedPort();
        var r = await HostProcess.Run(["dmsetup", "--control", $"127.0.0.1:{port}", "ls"]);
        Assert.Equal(1, r.Code);
        Assert.Equal($"dmactors: cannot reach dmactors host at 127.0.0.1:{port}: Connection refused\n", r.Err);
        Assert.Equal("", r.Out);
    }

    [Fact]
    public async Task Help_and_unknown_commands()
    {
        var help = await HostProcess.Run(["--help"]);
        Assert.Equal(0, help.Code);
        Assert.StartsWith("Usage: dmactors <command> [options]\n", help.Out);
        Assert.Equal(help.Out, (await HostProcess.Run([])).Out);
        var bad = await HostProcess.Run(["frob"]);
        Assert.Equal(2, bad.Code); // a usage error (issue 11: 0 success, 1 failure, 2 usage)
        Assert.StartsWith("dmactors: unknown command 'frob'\nUsage: dmactors", bad.Err);
    }
}
