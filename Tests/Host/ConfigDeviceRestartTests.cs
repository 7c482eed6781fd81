using Akka.Actor;
using DmActors.Host;
using DmActors.Host.Cli;
using DmActors.Host.Configuration;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// Hosts started in-process over one data directory with its SQLite journal, one after the other: configuration
/// devices against what the journal recorded, an empty journal next to disks in use, and devices whose disk file
/// went missing.
/// </summary>
public sealed class ConfigDeviceRestartTests : IDisposable
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(60);
    private const string Demo = "{ name = demo, table = \"0 2048 linear disk0 0\" }";
    private readonly TempDir _dir = new("dmactors-cfgdev-");
    private readonly List<DmHost> _running = new();
    private string Data => _dir["data"];
    private string Journal => Path.Combine(Data, "state.db");

    private HostSettings Settings(string devices = Demo) => HostConfig.Parse($$"""
        dmactors {
          data-dir = "{{Data}}"
          disks = [ { name = disk0, path = disk0.img, size = 4M, create = on } ]
          devices = [{{devices}}]
          nbd.listen = off
          control.port = 0
        }
        """, "f.hocon");

    /// <summary>A started host and the "config device" lines it printed.</summary>
    private async Task<(DmHost Host, string[] Notes)> Start(string devices = Demo)
    {
        var log = new StringWriter { NewLine = "\n" };
        var host = await DmHost.StartAsync(Settings(devices), log);
        _running.Add(host);
        return (host, log.ToString().Split('\n').Where(l => l.Contains("config device")).ToArray());
    }

    private async Task Stop(DmHost host)
    {
        _running.Remove(host);
        await host.StopAsync(TextWriter.Null);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
    }

    private static async Task Ok(DmHost host, IControlMessage command)
    {
        var reply = await host.Manager.Ask<object>(command, Wait);
        Assert.True(reply is Dm.Done, $"{command}: {reply}");
    }

    private static async Task<string[]> Names(DmHost host) =>
        (await host.Manager.Ask<Dm.DeviceList>(Dm.List.Instance, Wait)).Devices.Select(d => d.Name).ToArray();

    private static async Task<string> Table(DmHost host, string name) =>
        string.Join("\n", (await host.Manager.Ask<Dm.Done>(new Dm.GetTable(name), Wait)).Lines);

    /// <summary>`dmsetup info NAME` as printed.</summary>
    private static async Task<string> Info(DmHost host, string name) =>
        string.Join("\n", DmsetupFormat.InfoBlock(await host.Manager.Ask<Dm.DeviceInfo>(new Dm.GetInfo(name), Wait)));

    [Fact]
    public async Task A_config_device_removed_with_dmsetup_stays_removed_and_the_host_says_so()
    {
        var (first, notes) = await Start();
        Assert.Empty(notes);
        await Ok(first, new Dm.Remove("demo"));
        await Stop(first);

        var (second, notes2) = await Start();
        Assert.Empty(await Names(second));
        Assert.Equal(["dmactors: config device 'demo' left as recorded: removed with dmsetup"], notes2);
        await Stop(second);

        var (third, notes3) = await Start();
        Assert.Empty(await Names(third));
        Assert.Equal(notes2, notes3);
    }

    [Fact]
    public async Task A_config_device_reloaded_or_renamed_with_dmsetup_is_left_as_recorded_and_the_host_says_so()
    {
        var (first, _) = await Start();
        await Ok(first, new Dm.Load("demo", "0 1024 linear disk0 2048"));
        await Ok(first, new Dm.Resume("demo"));
        await Ok(first, new Dm.Create("other", "0 8 zero"));
        await Stop(first);

        var (second, notes) = await Start();
        Assert.Equal("0 1024 linear 7:0 2048", await Table(second, "demo"));
        Assert.Equal(["dmactors: config device 'demo' left as recorded: table changed with dmsetup"], notes);
        await Ok(second, new Dm.Rename("demo", "moved"));
        await Stop(second);

        var (third, notes3) = await Start();
        Assert.Equal(["moved", "other"], await Names(third));
        Assert.Equal(["dmactors: config device 'demo' left as recorded: renamed to 'moved' with dmsetup"], notes3);
    }

    [Fact]
    public async Task A_table_changed_in_the_configuration_keeps_the_recorded_table_and_the_host_says_so()
    {
        var (first, _) = await Start();
        await Stop(first);
        var (second, notes) = await Start("{ name = demo, table = \"0 4096 linear disk0 0\" }");
        Assert.Equal("0 2048 linear 7:0 0", await Table(second, "demo"));
        Assert.Equal(["dmactors: config device 'demo' left as recorded: the configuration's table differs from the recorded one " +
                      "(dmsetup load and resume apply it)"], notes);
    }

    [Fact]
    public async Task Unchanged_config_devices_come_back_silently_and_a_new_one_is_created()
    {
        var (first, _) = await Start();
        await Stop(first);
        var (second, notes) = await Start(Demo + ", { name = more, table = \"0 1024 linear demo 1024\" }");
        Assert.Empty(notes);
        Assert.Equal(["demo", "more"], await Names(second));
        Assert.Equal("0 1024 linear 253:0 1024", await Table(second, "more"));
    }

    [Fact]
    public async Task A_device_created_with_dmsetup_before_the_configuration_named_it_becomes_the_configurations()
    {
        var (first, _) = await Start("");
        await Ok(first, new Dm.Create("demo", "0 100 zero"));
        await Stop(first);

        var (second, notes) = await Start();
        Assert.Equal("0 100 zero ", await Table(second, "demo"));
        Assert.Equal(["dmactors: config device 'demo' left as recorded: the configuration's table differs from the recorded one " +
                      "(dmsetup load and resume apply it)"], notes);
        await Ok(second, new Dm.Remove("demo"));
        await Stop(second);

        var (third, notes3) = await Start();
        Assert.Empty(await Names(third));
        Assert.Equal(["dmactors: config device 'demo' left as recorded: removed with dmsetup"], notes3);
    }

    [Fact]
    public async Task An_empty_journal_next_to_disks_in_use_stops_the_host_naming_the_file_and_what_to_do()
    {
        var (first, _) = await Start();
        await Ok(first, new Dm.Create("mine", "0 100 linear disk0 2048"));
        await Stop(first);
        File.WriteAllBytes(Journal, []);

        var e = await Assert.ThrowsAsync<ConfigException>(() => DmHost.StartAsync(Settings(), TextWriter.Null));
        Assert.Equal($"f.hocon: journal {Journal} is empty (0 bytes) while disk files exist ({Data}/disk0.img): " +
                     "the devices on them are no longer recorded; restore it from a backup, or move it aside to start with no recorded devices",
            e.Message);
        Assert.Equal(0, new FileInfo(Journal).Length); // left as it was

        File.Move(Journal, Journal + ".bad");
        var (second, _) = await Start();
        Assert.Equal(["demo"], await Names(second));
    }

    [Fact]
    public async Task A_fresh_data_dir_starts_and_so_does_an_empty_journal_with_no_disks_yet()
    {
        Directory.CreateDirectory(Data);
        File.WriteAllBytes(Journal, []);
        var (host, _) = await Start();
        Assert.Equal(["demo"], await Names(host));
    }

    [Fact]
    public async Task A_device_whose_disk_file_is_missing_says_why_in_info_and_comes_back_with_the_file()
    {
        var file = _dir["ext.img"];
        using (var f = File.Create(file)) f.SetLength(1 << 20);
        var (first, _) = await Start("");
        await Ok(first, new Dm.Create("lower", $"0 2048 linear {file} 0"));
        await Ok(first, new Dm.Create("vol", "0 1024 linear lower 512"));
        await Stop(first);
        File.Move(file, file + ".away");

        var (second, _) = await Start("");
        var lower = await Info(second, "lower");
        Assert.Contains("\nTables present:    None\n", lower);
        Assert.EndsWith($"\nError:             live table could not be rebuilt: linear: Device lookup failed: {file}: No such file or directory\n", lower);
        var vol = await Info(second, "vol");
        Assert.EndsWith("\nError:             live table could not be rebuilt: linear: lower device 'lower' has no live table " +
                        $"(linear: Device lookup failed: {file}: No such file or directory)\n", vol);
        await Stop(second);
        File.Move(file + ".away", file);

        var (third, _) = await Start("");
        var back = await Info(third, "lower");
        Assert.Contains("\nTables present:    LIVE\nOpen count:        1\n", back); // vol holds it open
        Assert.DoesNotContain("Error:", back);
        Assert.Equal(DmsetupCliTests.Block("vol", "ACTIVE", "LIVE", 1, 1), await Info(third, "vol") + "\n");
        Assert.Equal("0 1024 linear 253:0 512", await Table(third, "vol"));
    }

    public void Dispose()
    {
        foreach (var host in _running.ToList()) host.StopAsync(TextWriter.Null).Wait(Wait);
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        _dir.Dispose();
    }
}
