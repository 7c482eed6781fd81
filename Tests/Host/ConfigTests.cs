using System.Net;
using DmActors.Host;
using DmActors.Host.Configuration;
using Xunit;

namespace DmActors.Tests.Host;

public class ByteSizeTests
{
    [Theory]
    [InlineData("1G", 1L << 30)]
    [InlineData("1GiB", 1L << 30)]
    [InlineData("1GB", 1L << 30)]
    [InlineData("64M", 64L << 20)]
    [InlineData("512k", 512L << 10)]
    [InlineData("2T", 2L << 40)]
    [InlineData("2048s", 2048L * 512)]
    [InlineData("1048576", 1048576)]
    [InlineData(" 4K ", 4096)]
    public void Parses_sizes_with_binary_suffixes(string text, long bytes) => Assert.Equal(bytes, ByteSize.Parse(text));

    [Theory]
    [InlineData("1X")]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("-1G")]
    [InlineData("G")]
    [InlineData("1.5G")]
    [InlineData("1000")]
    [InlineData("99999999999999999T")]
    public void Rejects_bad_sizes_naming_them(string text)
    {
        var e = Assert.Throws<FormatException>(() => ByteSize.Parse(text));
        Assert.Contains($"'{text}'", e.Message);
    }
}

public class HostConfigTests
{
    [Fact]
    public void Embedded_default_has_disk0_and_demo_on_the_standard_ports()
    {
        var s = HostConfig.Load(null);
        Assert.Equal(HostConfig.EmbeddedName, s.Source);
        Assert.Equal("./data", s.DataDir);
        var disk = Assert.Single(s.Disks);
        Assert.Equal(new DiskSpec("disk0", "disk0.img", 2097152, true, false), disk);
        var demo = Assert.Single(s.Devices);
        Assert.Equal(new DeviceSpec("demo", "0 2097152 linear disk0 0", false, BarrierMode.Ordered), demo);
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 10809), s.NbdListen);
        Assert.Null(s.UnixSocket);
        Assert.Equal("127.0.0.1", s.ControlHost);
        Assert.Equal(10810, s.ControlPort);
        Assert.Equal(TimeSpan.FromSeconds(30), s.AskTimeout);
        Assert.Equal("akka.tcp://dmactors@127.0.0.1:10810/user/control", s.ControlPath);
        // Control messages cross the wire with Hyperion.
        Assert.Equal("hyperion", s.Akka.GetString("akka.actor.serialization-bindings.\"DmActors.IControlMessage, DmActors.Actors\""));
    }

    [Fact]
    public void Data_dir_override_wins_over_the_config()
    {
        var s = HostConfig.Parse("dmactors.data-dir = /from/file", "f.hocon", dataDirOverride: "/from/env");
        Assert.Equal("/from/env", s.DataDir);
        Assert.Equal("/from/file", HostConfig.Parse("dmactors.data-dir = /from/file", "f.hocon").DataDir);
    }

    [Fact]
    public void A_file_overrides_single_values_and_keeps_the_rest_of_the_default()
    {
        var s = HostConfig.Parse("""
            dmactors {
              nbd { listen = "127.0.0.1:12345", unix-socket = /tmp/x.sock }
              control.port = 23456
            }
            """, "f.hocon");
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 12345), s.NbdListen);
        Assert.Equal("/tmp/x.sock", s.UnixSocket);
        Assert.Equal(23456, s.ControlPort);
        Assert.Equal("disk0", Assert.Single(s.Disks).Name);
        Assert.Equal("demo", Assert.Single(s.Devices).Name);
        Assert.Equal("f.hocon", s.Source);
    }

    [Fact]
    public void Lists_in_a_file_replace_the_default_lists_whole()
    {
        var s = HostConfig.Parse("""
            dmactors {
              disks = [
                { name = a, path = "x/a.img", size = 64M, create = on, write-back-cache = on }
                { name = b, path = /abs/b.img }
              ]
              devices = [
                { name = s, table = "0 1024 striped 2 8 a 0 b 0", read-only = on, barrier-mode = flush }
                { name = empty }
              ]
              nbd.listen = off
            }
            """, "f.hocon");
        Assert.Equal([new DiskSpec("a", "x/a.img", 131072, true, true), new DiskSpec("b", "/abs/b.img", 0, false, false)], s.Disks);
        Assert.Equal([new DeviceSpec("s", "0 1024 striped 2 8 a 0 b 0", true, BarrierMode.Flush), new DeviceSpec("empty", "", false, BarrierMode.Ordered)],
            s.Devices);
        Assert.Null(s.NbdListen);
        Assert.Equal("/abs/b.img", s.DiskPath(s.Disks[1]));
        Assert.EndsWith("/x/a.img", s.DiskPath(s.Disks[0]));
    }

    [Fact]
    public void An_empty_device_list_means_no_devices() =>
        Assert.Empty(HostConfig.Parse("dmactors.devices = []", "f.hocon").Devices);

    [Theory]
    [InlineData("dmactors {\n  disks = [ { name = a", "f.hocon: syntax error: line 2: '{' is never closed")]
    [InlineData("dmactors { x = = 1 }", "f.hocon: syntax error: line 1: missing value after '='")]
    [InlineData("dmactors { devices = [ { name = d } ] ] }", "f.hocon: syntax error: line 1: unexpected ']'")]
    [InlineData("a = \"abc\nb = 1", "f.hocon: syntax error: line 1: unterminated string")]
    [InlineData("dmactors.devices = [ { name = d, table = \"0 10 frob\" } ]", "f.hocon: device d: frob: unknown target type")]
    [InlineData("dmactors.devices = [ { name = d, table = \"0 10 zero\\n20 10 zero\" } ]", "f.hocon: device d: Gap in table")]
    [InlineData("dmactors.devices = [ { name = d, table = \"0 x zero\" } ]", "f.hocon: device d: Invalid format on line 1 of table")]
    [InlineData("dmactors.devices = [ { name = \"a/b\", table = \"0 10 zero\" } ]", "f.hocon: dmactors.devices[0]: device name cannot contain '/'")]
    [InlineData("dmactors.devices = [ { name = d, table = \"0 10 zero\", barrier-mode = sometimes } ]", "f.hocon: device d: barrier-mode 'sometimes' is not ordered or flush")]
    [InlineData("dmactors.devices = [ { name = d }, { name = d } ]", "f.hocon: device d is declared twice")]
    [InlineData("dmactors.disks = [ { name = a, size = 1X, create = on } ]", "f.hocon: disk a: bad size '1X' (expected a positive number with an optional K, M, G or T suffix, e.g. 1G)")]
    [InlineData("dmactors.disks = [ { name = a, size = 1000, create = on } ]", "f.hocon: disk a: bad size '1000': not a multiple of 512 bytes")]
    [InlineData("dmactors.disks = [ { name = a, create = on } ]", "f.hocon: disk a: create = on needs a size")]
    [InlineData("dmactors.disks = [ { name = a, size = 1G, create = maybe } ]", "f.hocon: disk a: create: 'maybe' is not on or off")]
    [InlineData("dmactors.disks = [ { path = x.img } ]", "f.hocon: dmactors.disks[0]: name is missing")]
    [InlineData("dmactors.disks { a = 1 }", "f.hocon: dmactors.disks must be a list [ { ... }, ... ]")]
    [InlineData("dmactors.nbd.listen = nowhere", "f.hocon: dmactors.nbd.listen: bad address 'nowhere' (expected e.g. 127.0.0.1:10809)")]
    [InlineData("dmactors.control.port = abc", "f.hocon: dmactors.control.port: 'abc' is not a port number")]
    public void Bad_config_gives_one_line_naming_file_and_problem(string text, string message)
    {
        var e = Assert.Throws<ConfigException>(() => HostConfig.Parse(text, "f.hocon"));
        Assert.Equal(message, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void A_missing_config_file_is_named()
    {
        var path = Path.Combine(Path.GetTempPath(), $"dmactors-missing-{Guid.NewGuid():N}.hocon");
        var e = Assert.Throws<ConfigException>(() => HostConfig.Load(path));
        Assert.StartsWith($"{path}: cannot read: ", e.Message);
    }
}
