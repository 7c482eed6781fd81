using System.Net;
using DmActors.Host;
using DmActors.Host.Configuration;
using DmActors.Tests.Support;
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

    [Theory]
    [InlineData("dmactors.devices = []")]
    [InlineData("dmactors.devices = [ ]")]
    [InlineData("dmactors { devices = [\n    # none yet\n  ]\n}")]
    public void An_empty_device_list_means_no_devices(string text) =>
        Assert.Empty(HostConfig.Parse(text, "f.hocon").Devices);

    [Fact]
    public void Nbd_max_payload_is_64M_by_default_and_a_size_from_1M_to_256M()
    {
        Assert.Equal(64 << 20, HostConfig.Parse("", "f.hocon").NbdMaxPayload);
        Assert.Equal(8 << 20, HostConfig.Parse("dmactors.nbd.max-payload = 8M", "f.hocon").NbdMaxPayload);
        Assert.Equal("f.hocon: dmactors.nbd.max-payload: 512M is not between 1M and 256M",
            Assert.Throws<ConfigException>(() => HostConfig.Parse("dmactors.nbd.max-payload = 512M", "f.hocon")).Message);
        Assert.StartsWith("f.hocon: dmactors.nbd.max-payload: bad size 'lots'",
            Assert.Throws<ConfigException>(() => HostConfig.Parse("dmactors.nbd.max-payload = lots", "f.hocon")).Message);
    }

    [Fact]
    public void Nbd_tls_is_off_by_default_and_on_or_require_needs_a_certificate_directory()
    {
        Assert.Null(HostConfig.Parse("", "f.hocon").NbdTls);
        Assert.Null(HostConfig.Parse("dmactors.nbd.tls = off", "f.hocon").NbdTls);
        Assert.Equal("f.hocon: dmactors.nbd.tls: 'maybe' is not off, on or require",
            Assert.Throws<ConfigException>(() => HostConfig.Parse("dmactors.nbd.tls = maybe", "f.hocon")).Message);
        Assert.StartsWith("f.hocon: dmactors.nbd.tls = require needs dmactors.nbd.tls-certificates",
            Assert.Throws<ConfigException>(() => HostConfig.Parse("dmactors.nbd.tls = require", "f.hocon")).Message);
        using var empty = new Support.TempDir();
        Assert.Equal($"f.hocon: nbd.tls-certificates: {Path.Combine(empty.Path, "server-cert.pem")} does not exist",
            Assert.Throws<ConfigException>(() => HostConfig.Parse($"dmactors.nbd {{ tls = on, tls-certificates = \"{empty.Path}\" }}", "f.hocon")).Message);
        using var certs = new Nbd.TestCertificates();
        var tls = HostConfig.Parse($"dmactors.nbd {{ tls = require, tls-certificates = \"{certs.ServerDir}\", tls-verify-peer = on }}", "f.hocon").NbdTls!;
        Assert.Equal((DmActors.Host.Nbd.NbdTlsMode.Require, true, false), (tls.Mode, tls.VerifyPeer, tls.OnUnixSocket));
    }

    [Theory]
    [InlineData("dmactors {\n  disks = [ { name = a", "f.hocon:2:13: syntax error: '{' is never closed")]
    [InlineData("dmactors { x = = 1 }", "f.hocon:1:16: syntax error: missing value after '='")]
    [InlineData("dmactors { devices = [ { name = d } ] ] }", "f.hocon:1:39: syntax error: unexpected ']'")]
    [InlineData("a = \"abc\nb = 1", "f.hocon:1:5: syntax error: unterminated string")]
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
    [InlineData("dmactors.disks = [ { name = a, size = 1G, size-mismatch = shrink } ]", "f.hocon: disk a: size-mismatch 'shrink' is not error, use-file or grow")]
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

    [Theory]
    [InlineData("dmactors {\n  disks = [\n    { name = a, size = 1G, create = on,\n      write-back-cahce = on }\n  ]\n}",
        "f.hocon:4:7: unknown key 'write-back-cahce' in dmactors.disks[0] (known: name, path, size, create, write-back-cache, size-mismatch)")]
    [InlineData("dmactors.nbd.lisen = off", "f.hocon:1:14: unknown key 'lisen' in dmactors.nbd (known: listen, unix-socket, max-payload, tls, tls-certificates, tls-verify-peer, tls-unix-socket)")]
    [InlineData("dmactors { nbd { listen = off }, contrl { port = 1 } }",
        "f.hocon:1:34: unknown key 'contrl' in dmactors (known: data-dir, disks, devices, journal, nbd, cluster, control)")]
    [InlineData("dmactors.devices = [ { name = a }\n  { name = b, tabel = \"0 8 zero\" } ]",
        "f.hocon:2:15: unknown key 'tabel' in dmactors.devices[1] (known: name, table, read-only, barrier-mode)")]
    [InlineData("dmactor { data-dir = /x }", "f.hocon:1:1: unknown top-level key 'dmactor' (known: dmactors, akka)")]
    public void An_unknown_key_is_an_error_naming_it_its_line_and_the_keys_known_there(string text, string message)
    {
        var e = Assert.Throws<ConfigException>(() => HostConfig.Parse(text, "f.hocon"));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void Keys_of_the_akka_section_are_akkas_business() =>
        Assert.Equal("DEBUG", HostConfig.Parse("akka { loglevel = DEBUG, some-future-setting = 1 }", "f.hocon").Akka.GetString("akka.loglevel"));

    [Fact]
    public void Commas_separate_fields_after_objects_too()
    {
        var s = HostConfig.Parse("""dmactors { nbd { listen = "127.0.0.1:11809" }, control.port = 11811 }""", "f.hocon");
        Assert.Equal(new IPEndPoint(IPAddress.Loopback, 11809), s.NbdListen);
        Assert.Equal(11811, s.ControlPort);
    }

    [Theory]
    // A comma on the next line, before the next element or field.
    [InlineData("dmactors {\n  disks = [\n    { name = a, path = a.img }\n    , { name = b, path = b.img }\n  ]\n  , devices = []\n}")]
    // Trailing commas in objects and lists.
    [InlineData("dmactors { disks = [ { name = a, path = a.img, }, { name = b, path = b.img }, ], devices = [], }")]
    // Newlines alone, and a comment between elements.
    [InlineData("dmactors.disks = [\n  { name = a, path = a.img } # first\n\n  { name = b, path = b.img }\n]\ndmactors.devices = []")]
    public void Commas_or_newlines_separate_fields_and_list_elements_with_one_trailing_comma_allowed(string text)
    {
        var s = HostConfig.Parse(text, "f.hocon");
        Assert.Equal(["a", "b"], s.Disks.Select(d => d.Name));
        Assert.Empty(s.Devices);
    }

    [Theory]
    [InlineData("dmactors.devices = [ { name = a },, { name = b } ]", "f.hocon:1:35: syntax error: unexpected ','")]
    [InlineData("dmactors { data-dir = /x,, control.port = 1 }", "f.hocon:1:26: syntax error: unexpected ','")]
    [InlineData(", dmactors.data-dir = /x", "f.hocon:1:1: syntax error: unexpected ','")]
    [InlineData("dmactors.devices = [ , { name = a } ]", "f.hocon:1:22: syntax error: unexpected ','")]
    // Without a separator two objects would be merged into one device, b.
    [InlineData("dmactors.devices = [ { name = a } { name = b } ]", "f.hocon:1:35: syntax error: expected ',' or a newline between list elements, found '{'")]
    [InlineData("dmactors {\n  control.port = 1 nbd.listen = off\n}", "f.hocon:2:31: syntax error: expected ',' or a newline after the value of 'control.port', found '='")]
    [InlineData("dmactors.nbd.listen = 127.0.0.1:10809", "f.hocon:1:32: syntax error: ':' is not allowed in an unquoted value; put the value in double quotes")]
    [InlineData("dmactors { nbd { listen = off } } }", "f.hocon:1:35: syntax error: unexpected '}'")]
    [InlineData("dmactors { disks += { name = a } }", "f.hocon:1:18: syntax error: '+=' is not supported (in 'disks'): write the whole value")]
    [InlineData("dmactors.data-dir = \"a\\qb\"", "f.hocon:1:23: syntax error: bad escape '\\q' in a string (a backslash is written \\\\)")]
    [InlineData("dmactors { data-dir }", "f.hocon:1:21: syntax error: expected '=', ':' or '{' after the key 'data-dir', found '}'")]
    [InlineData("dmactors.a..b = 1", "f.hocon:1:12: syntax error: empty element in the key 'dmactors.a..'")]
    public void Bad_separators_and_values_are_syntax_errors_naming_line_and_column(string text, string message)
    {
        var e = Assert.Throws<ConfigException>(() => HostConfig.Parse(text, "f.hocon"));
        Assert.Equal(message, e.Message);
    }

    [Fact]
    public void Size_mismatch_defaults_to_error_and_reads_use_file_and_grow()
    {
        var s = HostConfig.Parse("""
            dmactors.disks = [
              { name = a, size = 1M }
              { name = b, size = 1M, size-mismatch = use-file }
              { name = c, size = 1M, size-mismatch = grow }
            ]
            dmactors.devices = []
            """, "f.hocon");
        Assert.Equal([SizeMismatch.Error, SizeMismatch.UseFile, SizeMismatch.Grow], s.Disks.Select(d => d.SizeMismatch));
    }

    [Fact]
    public void A_missing_config_file_is_named()
    {
        var path = Path.Combine(Path.GetTempPath(), $"dmactors-missing-{Guid.NewGuid():N}.hocon");
        var e = Assert.Throws<ConfigException>(() => HostConfig.Load(path));
        Assert.StartsWith($"{path}: cannot read: ", e.Message);
    }
}

/// <summary>Disk files as the host opens them at start: directories, and files whose size is not the configured one.</summary>
public sealed class DiskFileTests : IDisposable
{
    private readonly TempDir _dir = new("dmactors-disks-");
    private string Data => _dir["data"];

    private HostSettings Settings(string disks) => HostConfig.Parse($$"""
        dmactors {
          data-dir = "{{Data}}"
          disks = [ {{disks}} ]
          devices = []
          journal.enabled = off
          nbd.listen = off
          control.port = 0
        }
        """, "f.hocon");

    private static async Task<long> StartAndStop(HostSettings s, string disk)
    {
        var host = await DmHost.StartAsync(s, TextWriter.Null);
        var sectors = host.Disks.Find(disk)!.Sectors;
        await host.StopAsync(TextWriter.Null);
        return sectors;
    }

    private void WriteFile(string name, long bytes)
    {
        Directory.CreateDirectory(Data);
        using var f = File.Create(Path.Combine(Data, name));
        f.SetLength(bytes);
    }

    [Fact]
    public async Task A_disk_in_a_missing_directory_is_an_error_and_the_directory_is_not_created()
    {
        var s = Settings("{ name = a, path = \"sub/a.img\", size = 1M, create = on }");
        var e = await Assert.ThrowsAsync<ConfigException>(() => DmHost.StartAsync(s, TextWriter.Null));
        Assert.Equal($"f.hocon: disk a: directory {Data}/sub does not exist (for {Data}/sub/a.img)", e.Message);
        Assert.False(Directory.Exists(Path.Combine(Data, "sub")));
        Assert.True(Directory.Exists(Data)); // the data directory itself is created, as on a first start
    }

    [Fact]
    public async Task An_existing_disk_file_of_another_size_is_an_error_naming_both_sizes()
    {
        WriteFile("a.img", 1 << 20);
        var e = await Assert.ThrowsAsync<ConfigException>(() => DmHost.StartAsync(Settings("{ name = a, path = a.img, size = 2M, create = on }"), TextWriter.Null));
        Assert.Equal($"f.hocon: disk a: {Data}/a.img holds 2048 sectors (1 MiB), not the configured size 4096 sectors (2 MiB) " +
                     "(size-mismatch = use-file uses it as it is, grow extends a smaller file)", e.Message);
        Assert.Equal(1 << 20, new FileInfo(Path.Combine(Data, "a.img")).Length);
    }

    [Fact]
    public async Task Size_mismatch_use_file_takes_the_file_as_it_is_and_grow_extends_a_smaller_file()
    {
        WriteFile("a.img", 1 << 20);
        Assert.Equal(2048, await StartAndStop(Settings("{ name = a, path = a.img, size = 2M, size-mismatch = use-file }"), "a"));
        Assert.Equal(1 << 20, new FileInfo(Path.Combine(Data, "a.img")).Length);

        Assert.Equal(4096, await StartAndStop(Settings("{ name = a, path = a.img, size = 2M, size-mismatch = grow }"), "a"));
        Assert.Equal(2 << 20, new FileInfo(Path.Combine(Data, "a.img")).Length);

        // grow never shrinks.
        var e = await Assert.ThrowsAsync<ConfigException>(() => DmHost.StartAsync(Settings("{ name = a, path = a.img, size = 1M, size-mismatch = grow }"), TextWriter.Null));
        Assert.Equal($"f.hocon: disk a: {Data}/a.img holds 4096 sectors (2 MiB), not the configured size 2048 sectors (1 MiB); " +
                     "size-mismatch = grow never shrinks a disk (size-mismatch = use-file uses it as it is)", e.Message);
        Assert.Equal(2 << 20, new FileInfo(Path.Combine(Data, "a.img")).Length);
    }

    [Fact]
    public async Task A_file_of_the_configured_size_or_a_disk_without_a_size_starts()
    {
        WriteFile("a.img", 1 << 20);
        Assert.Equal(2048, await StartAndStop(Settings("{ name = a, path = a.img, size = 1M }"), "a"));
        Assert.Equal(2048, await StartAndStop(Settings("{ name = a, path = a.img }"), "a"));
    }

    public void Dispose() => _dir.Dispose();
}

/// <summary>Port 0 for NBD and control (as the process tests use): the host binds free ports and reports the ones it got.</summary>
public sealed class PortZeroTests : IDisposable
{
    private readonly TempDir _dir = new("dmactors-port0-");

    [Fact]
    public async Task A_host_on_port_0_reports_the_ports_it_bound()
    {
        var settings = HostConfig.Parse($$"""
            dmactors {
              data-dir = "{{_dir}}/data"
              disks = []
              devices = [ { name = z, table = "0 8 zero" } ]
              journal.enabled = off
              nbd.listen = "127.0.0.1:0"
              control.port = 0
            }
            """, "p.hocon");
        var log = new StringWriter { NewLine = "\n" };
        var host = await DmHost.StartAsync(settings, log);
        try
        {
            var control = host.Settings.ControlPort;
            var nbd = host.Nbd!.TcpEndpoint!.Port;
            Assert.NotEqual(0, control);
            Assert.NotEqual(0, nbd);
            Assert.Contains($"dmactors: control listening on akka.tcp://dmactors@127.0.0.1:{control}/user/control\n", log.ToString());
            Assert.Contains($"dmactors: NBD listening on 127.0.0.1:{nbd}\n", log.ToString());
            Assert.Contains($"dmactors: exporting z at nbd://127.0.0.1:{nbd}/z\n", log.ToString());
            using var client = new System.Net.Sockets.TcpClient();
            await client.ConnectAsync(IPAddress.Loopback, control); // the reported port is the one listening
        }
        finally { await host.StopAsync(TextWriter.Null); }
    }

    public void Dispose() => _dir.Dispose();
}
