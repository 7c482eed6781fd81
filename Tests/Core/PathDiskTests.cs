using DmActors;
using DmActors.Targets;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>
/// Files a table names by path: locked while a device uses them (as qemu locks images), refused while another
/// process holds them, and let go once no device needs them any more.
/// </summary>
public sealed class PathDiskTests : DeviceHarness
{
    private readonly string _dir = Directory.CreateTempSubdirectory("dmactors-pathdisk").FullName;

    private string NewFile(string name)
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, new byte[128 * Bio.Sector512]);
        return path;
    }

    /// <summary>Whether another opener (as another process would) can have <paramref name="path"/> now.</summary>
    private static bool Free(string path)
    {
        try { FileDisk.Open("probe", path, "7:99").Dispose(); return true; }
        catch (DiskInUseException) { return false; }
    }

    private bool Gone(Akka.Actor.ActorPath path)
    {
        try { Sys.ActorSelection(path).ResolveOne(TimeSpan.FromSeconds(5)).Wait(); return false; }
        catch (AggregateException) { return true; }
    }

    [Fact]
    public void A_file_is_locked_while_a_device_uses_it_and_let_go_when_the_device_is_removed()
    {
        var file = NewFile("a.img");
        Ok(new Dm.Create("pa", $"0 128 linear {file} 0"));
        Assert.False(Free(file));
        Ok(new Dm.Remove("pa"));
        Assert.True(Free(file));
        Ok(new Dm.Create("pa", $"0 128 linear {file} 0")); // and the same host opens it again
        Assert.False(Free(file));
    }

    [Fact]
    public void A_file_a_table_was_reloaded_away_from_is_let_go_once_the_device_has_flushed_it()
    {
        var (a, b) = (NewFile("a.img"), NewFile("b.img"));
        var dev = Create("pm", $"0 128 linear {a} 0");
        var p = CreateTestProbe();
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(1, 1), p)));
        Ok(new Dm.Load("pm", $"0 128 linear {b} 0"));
        Ok(new Dm.Resume("pm"));
        // The write made through the old table is not durable yet: the device keeps a, to flush it, also once the
        // old table's target has let it go.
        Eventually(() => Gone(dev.Path / "g1-0-linear"), "the old table's target to stop");
        Assert.False(Free(a));
        Assert.Equal(BioStatus.Ok, Run(dev, Bio.Flush(p.Ref)));
        Eventually(() => Free(a), "the old table's file to be let go");
        Assert.False(Free(b));
    }

    [Fact]
    public void A_file_another_process_holds_is_a_table_error_naming_it_and_the_device_is_not_created()
    {
        var file = NewFile("held.img");
        var holder = FileDisk.Open("holder", file, "7:98");
        try
        {
            var f = Fails(new Dm.Create("ph", $"0 128 linear {file} 0"));
            Assert.Equal($"linear: {file} is in use by another process (locked)", f.Reason);
            Assert.IsType<Dm.Failed>(Control(new Dm.GetInfo("ph")));
        }
        finally { holder.Dispose(); }
        Ok(new Dm.Create("ph", $"0 128 linear {file} 0"));
    }

    [Fact]
    public void A_log_on_a_file_gets_its_last_entries_before_the_file_is_let_go()
    {
        var (data, log) = (NewFile("data.img"), NewFile("log.img"));
        var dev = Create("pl", $"0 128 log-writes {data} {log}");
        var p = CreateTestProbe();
        // Not flushed: logged when the table goes away, with the end mark after it. 32 KiB, so that the log's
        // writes go through the IO threads and are still under way when the target is destroyed.
        Assert.Equal(BioStatus.Ok, Run(dev, Write(0, Pattern(64, 1), p)));
        Ok(new Dm.Close("pl"));
        Ok(new Dm.Remove("pl"));
        Eventually(() => Free(log), "the log file to be let go");
        using var store = FileStore.Open(log, write: false);
        var entries = new LogReader(store).Entries().ToList();
        Assert.Equal(2, entries.Count);
        Assert.Equal(LogFormat.EndMark, entries[^1].Mark);
    }

    protected override void AfterAll()
    {
        base.AfterAll();
        try { Directory.Delete(_dir, true); } catch (IOException) { }
    }
}
