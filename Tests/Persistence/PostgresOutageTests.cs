using Akka.Actor;
using DmActors;
using DmActors.Tests.Core;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Persistence;

/// <summary>
/// A PostgreSQL journal whose server goes away while devices run (on a private server of the test's, stopped and
/// started again): changes fail naming the journal, IO on the devices goes on, and once the server is back changes
/// are recorded again.
/// </summary>
public sealed class PostgresOutageTests : Akka.TestKit.Xunit2.TestKit
{
    private static readonly TimeSpan Back = TimeSpan.FromSeconds(60); // the journal's retries back off to a few seconds
    private const string Name = "journal postgres (test)";
    private readonly PostgresServer _pg;
    private readonly string _db;
    private readonly DiskRegistry _disks = new();

    public PostgresOutageTests() : this(Postgres.StartPrivate()) { }
    private PostgresOutageTests(PostgresServer pg) : this(pg, pg.NewDatabase()) { }
    private PostgresOutageTests(PostgresServer pg, string db) : base(Engine.AkkaConfig(Journal(db))) { _pg = pg; _db = db; }

    private static string Journal(string db) => JournalConfig.Postgres(db) + "\nakka.loglevel = OFF";

    private Engine Start() => Engine.On(Sys, new DeviceManager.Options(PersistenceId: "host", JournalName: Name), _disks);

    private void Io(Engine e, string device, long sector, byte fill)
    {
        var actor = e.Open(device);
        var probe = CreateTestProbe();
        actor.Tell(Bio.Write(sector, DeviceHarness.Pattern(8, fill), probe.Ref));
        Assert.Equal(BioStatus.Ok, probe.ExpectMsg<BioDone>(Engine.Timeout).Status);
        var read = new Bio(BioOp.Read, sector, 8, new byte[8 * 512], probe.Ref);
        actor.Tell(read);
        Assert.Equal(BioStatus.Ok, probe.ExpectMsg<BioDone>(Engine.Timeout).Status);
        Assert.Equal(DeviceHarness.Pattern(8, fill), read.Data.ToArray());
        e.Ok(new Dm.Close(device));
    }

    [Fact]
    public async Task Changes_fail_naming_the_journal_while_postgres_is_down_io_goes_on_and_changes_record_again_after()
    {
        _disks.AddMemory("d0", 4096);
        var e = Start();
        {
            e.Ok(new Dm.Create("x", "0 1000 linear d0 0"));
            _pg.Stop();

            // The first change after the outage fails in its write, the next ones because the journal cannot replay.
            var write = e.Fails(new Dm.Create("y", "0 100 linear d0 1000"));
            Assert.Equal("create", write.Op);
            Assert.StartsWith("journal postgres (test): write failed: ", write.Reason);
            var down = e.Fails(new Dm.Load("x", "0 500 linear d0 0"));
            Assert.StartsWith("journal postgres (test): unavailable: ", down.Reason);
            Assert.Contains("refused", down.Reason); // the driver's reason (Connection refused)

            // The devices serve on, and what needs no record is answered.
            Io(e, "x", 16, 7);
            Assert.False(e.Info("x").InactiveTable);
            Assert.Equal(new[] { new Dm.DeviceEntry("x", 253, 0) }, Assert.IsType<Dm.DeviceList>(e.Command(Dm.List.Instance)).Devices);

            _pg.Start();
            await Poll.UntilAsync(() => Task.FromResult(e.Command(new Dm.Create("y", "0 100 linear d0 1000")) is Dm.Done),
                "the journal to record again", Back);
            Io(e, "x", 24, 8);
        }

        // What was recorded after the outage is there for the next start; nothing of the failed changes is.
        using var again = Engine.Start("again", Journal(_db), new DeviceManager.Options(PersistenceId: "host"), _disks);
        Assert.Equal(new[] { new Dm.DeviceEntry("x", 253, 0), new Dm.DeviceEntry("y", 253, 1) },
            Assert.IsType<Dm.DeviceList>(again.Command(Dm.List.Instance)).Devices);
        Assert.Equal(1000, again.Info("x").Sectors);
        Assert.False(again.Info("x").InactiveTable);
    }

    protected override void AfterAll()
    {
        base.AfterAll();
        _disks.Dispose();
        _pg.Dispose();
    }
}
