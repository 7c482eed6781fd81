using DmActors.Host.Configuration;
using DmActors.Tests.Nbd;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>`dmactors serve` with <c>journal.postgres</c>: devices come back from PostgreSQL, and its outages are named.</summary>
public sealed class PostgresHostProcessTests
{
    private static string Journal(string connectionString) => $"journal.postgres = \"{connectionString}\"";

    private static Task Qemu(HostProcess host, string device, string command) =>
        ExternalTool.RunAsync("qemu-io", ExternalTool.QemuUtils, "-f", "raw", "-c", command, $"nbd://127.0.0.1:{host.NbdPort}/{device}");

    [Fact]
    public async Task A_host_on_postgres_brings_its_devices_back_after_a_restart()
    {
        var db = Postgres.NewDatabase();
        var where = JournalSpec.Where(db);
        using var dir = new TempDir("dmactors-pg-host-");
        using (var first = await HostProcess.StartInAsync(dir.Path, Journal(db)))
        {
            Assert.Contains($"dmactors: journal postgres ({where}): 0 device(s) recovered\n", first.Stdout);
            var create = await first.Dmsetup(["create", "extra", "--table", "0 2048 linear disk0 8192"]);
            Assert.True(create.Code == 0, create.ToString());
            await Qemu(first, "extra", "write -P 0x3c 0 64k");
            Assert.Equal(0, await first.TerminateAsync());
        }
        Assert.False(File.Exists(Path.Combine(dir.Path, "data", "state.db"))); // postgres takes precedence over sqlite

        using var second = await HostProcess.StartInAsync(dir.Path, Journal(db));
        Assert.Contains($"dmactors: journal postgres ({where}): 2 device(s) recovered\n", second.Stdout);
        Assert.Equal("0 2048 linear 7:0 8192\n", (await second.Dmsetup("table extra")).Out);
        await Qemu(second, "extra", "read -P 0x3c 0 64k");
    }

    [Fact]
    public async Task A_host_whose_postgres_is_down_exits_1_naming_the_database_in_one_line()
    {
        var port = HostProcess.UnusedPort();
        using var dir = new TempDir("dmactors-pg-down-");
        var refused = await HostProcess.StartRefusedInAsync(dir.Path,
            extra: Journal($"Host=127.0.0.1;Port={port};Database=devices;Username=dm;Password=s3cret"));
        Assert.Equal(1, refused.Code);
        Assert.Equal($"dmactors: {dir.Path}/refused.hocon: journal postgres (host=127.0.0.1 port={port} db=devices): " +
                     $"cannot connect: Failed to connect to 127.0.0.1:{port}: Connection refused\n", refused.Err);
        Assert.DoesNotContain("s3cret", refused.Out + refused.Err);
    }

    [Fact]
    public async Task While_postgres_is_down_changes_fail_naming_the_journal_io_goes_on_and_changes_work_again_once_it_is_back()
    {
        using var pg = Postgres.StartPrivate();
        var db = pg.NewDatabase();
        var name = $"journal postgres ({JournalSpec.Where(db)})";
        using var host = await HostProcess.StartAsync(Journal(db));
        await Qemu(host, "demo", "write -P 0x11 0 64k");

        pg.Stop();
        var failed = await host.Dmsetup(["create", "later", "--table", "0 2048 linear disk0 8192"]);
        Assert.Equal(1, failed.Code);
        Assert.StartsWith($"device-mapper: create ioctl on later  failed: Input/output error\n{name}: write failed: ", failed.Err);
        // The device serves on: IO needs no journal, nor do the commands that only read.
        await Qemu(host, "demo", "read -P 0x11 0 64k");
        await Qemu(host, "demo", "write -P 0x22 64k 64k");
        Assert.Contains("State:             ACTIVE\n", (await host.Dmsetup("info demo")).Out);
        var again = await host.Dmsetup(["create", "later", "--table", "0 2048 linear disk0 8192"]);
        Assert.Equal(1, again.Code);
        Assert.StartsWith($"device-mapper: create ioctl on later  failed: Input/output error\n{name}: unavailable: ", again.Err);
        Assert.EndsWith("Command failed.\n", again.Err);

        pg.Start();
        await Poll.UntilAsync(async () => (await host.Dmsetup(["create", "later", "--table", "0 2048 linear disk0 8192"])).Code == 0,
            "dmsetup create to work once PostgreSQL is back", HostProcess.StartTimeout);
        await Qemu(host, "demo", "read -P 0x22 64k 64k");
        Assert.Contains("later\t(253:", (await host.Dmsetup("ls")).Out);
    }

    [Fact]
    public void The_journal_is_described_by_server_and_database_never_by_its_password()
    {
        var s = HostConfig.Parse("""dmactors.journal.postgres = "Host=db1;Port=5433;Database=dm;Username=u;Password=hunter2" """, "test.hocon");
        Assert.Equal("journal postgres (host=db1 port=5433 db=dm)", s.Journal!.Describe);
        Assert.DoesNotContain("hunter2", s.ToString());
        Assert.DoesNotContain("hunter2", s.Journal.ToString());
        var bad = Assert.Throws<ConfigException>(() => HostConfig.Parse("""dmactors.journal.postgres = "Host=db1;Nonsense=1;Password=hunter2" """, "test.hocon"));
        Assert.StartsWith("test.hocon: dmactors.journal.postgres: not an Npgsql connection string: ", bad.Message);
        Assert.DoesNotContain("hunter2", bad.Message);
    }
}
