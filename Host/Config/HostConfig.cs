using System.Net;
using Akka.Configuration;
using Akka.Configuration.Hocon;
using AkkaConfig = Akka.Configuration.Config;

namespace DmActors.Host.Configuration;

/// <summary>
/// Reads the host configuration: the embedded akka.hocon with an optional file layered over it (the file's values
/// win; lists are replaced whole, so a file's <c>devices = []</c> means no devices), then checks the
/// <c>dmactors</c> section so that a mistake stops the host with one clear line instead of a half-started host.
/// </summary>
public static class HostConfig
{
    public const string SystemName = "dmactors";
    public const string ManagerName = "devices";
    /// <summary>The actor remote dmsetup clients talk to (<see cref="Cli.ControlGate"/>).</summary>
    public const string ControlName = "control";
    public const string EmbeddedName = "embedded akka.hocon";
    public const string DataDirVariable = "DMACTORS_DATA";

    /// <summary>The embedded default (resource "akka.hocon" of the dmactors assembly).</summary>
    public static AkkaConfig Embedded() => ConfigurationFactory.ParseString(EmbeddedText());

    private static string EmbeddedText()
    {
        using var stream = typeof(HostConfig).Assembly.GetManifestResourceStream("akka.hocon")
            ?? throw new InvalidOperationException("resource akka.hocon is missing from the dmactors assembly");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    /// <summary>
    /// The IO dispatcher's section of the embedded default alone, for actor systems that run devices without the
    /// host's configuration (bench, crashtest, tests): one declaration, in akka.hocon.
    /// </summary>
    public static AkkaConfig IoDispatcherSection() => IoDispatcherConfig.Value;

    private static readonly Lazy<AkkaConfig> IoDispatcherConfig = new(() =>
        ConfigurationFactory.ParseString($"{IoDispatcher.DispatcherId} {{\n{Embedded().GetConfig(IoDispatcher.DispatcherId)}\n}}"));

    /// <summary>The keys a file may set: those of the embedded default.</summary>
    private static readonly Lazy<ConfigSchema> Schema = new(() => ConfigSchema.From(HoconSyntax.Parse(EmbeddedText()).Root));

    /// <summary>Reads FILE (if any) over the embedded default and checks it; <paramref name="dataDirOverride"/> wins over data-dir.</summary>
    public static HostSettings Load(string? file, string? dataDirOverride = null)
    {
        if (file == null) return FromConfig(Embedded(), EmbeddedName, dataDirOverride);
        string text;
        try { text = File.ReadAllText(file); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConfigException($"{file}: cannot read: {e.Message}");
        }
        return Parse(text, file, dataDirOverride);
    }

    /// <summary>Layers <paramref name="text"/> (named <paramref name="source"/> in errors) over the embedded default.</summary>
    public static HostSettings Parse(string text, string source, string? dataDirOverride = null)
    {
        HoconDocument doc;
        try { doc = HoconSyntax.Parse(text); }
        catch (HoconSyntaxException e) { throw new ConfigException($"{source}:{e.Line}:{e.Column}: syntax error: {e.Message}"); }
        if (Schema.Value.FirstUnknown(doc.Root) is { } unknown)
            throw new ConfigException($"{source}:{unknown.Key.Line}:{unknown.Key.Column}: {unknown.Problem}");
        AkkaConfig layered;
        try { layered = ConfigurationFactory.ParseString(doc.Normalized); }
        catch (Exception e)
        {
            // Akka names a character position ("Unknown token at position 45"): say line and column instead.
            var message = OneLine(e.Message);
            var at = System.Text.RegularExpressions.Regex.Match(message, @"^(.*?) at position (\d+)");
            if (!at.Success || !int.TryParse(at.Groups[2].Value, out var position))
                throw new ConfigException($"{source}: syntax error: {message}");
            var (line, column) = HoconSyntax.Where(text, position);
            throw new ConfigException($"{source}:{line}:{column}: syntax error: {at.Groups[1].Value}");
        }
        return FromConfig(layered.WithFallback(Embedded()), source, dataDirOverride);
    }

    /// <summary>Checks the <c>dmactors</c> section of a merged configuration.</summary>
    public static HostSettings FromConfig(AkkaConfig config, string source, string? dataDirOverride = null)
    {
        string Fail(string problem) => throw new ConfigException($"{source}: {problem}");
        try
        {
            var dataDir = string.IsNullOrWhiteSpace(dataDirOverride) ? config.GetString("dmactors.data-dir", "./data") : dataDirOverride;
            if (string.IsNullOrWhiteSpace(dataDir)) Fail("dmactors.data-dir is empty");

            var disks = Objects(config, "dmactors.disks", Fail).Select((d, i) => Disk(d, $"dmactors.disks[{i}]", Fail)).ToList();
            var devices = Objects(config, "dmactors.devices", Fail).Select((d, i) => Device(d, $"dmactors.devices[{i}]", Fail)).ToList();
            foreach (var dup in disks.GroupBy(d => d.Name).Where(g => g.Count() > 1)) Fail($"disk {dup.Key} is declared twice");
            foreach (var dup in devices.GroupBy(d => d.Name).Where(g => g.Count() > 1)) Fail($"device {dup.Key} is declared twice");

            var listen = config.GetString("dmactors.nbd.listen", "");
            IPEndPoint? tcp = null;
            if (!string.IsNullOrWhiteSpace(listen) && listen != "off" && !IPEndPoint.TryParse(listen, out tcp))
                Fail($"dmactors.nbd.listen: bad address '{listen}' (expected e.g. 127.0.0.1:10809)");
            if (tcp is { Port: 0 } && !listen.EndsWith(":0")) Fail($"dmactors.nbd.listen: '{listen}' has no port");
            var unix = config.GetString("dmactors.nbd.unix-socket", "");
            var maxPayload = MaxPayload(config.GetString("dmactors.nbd.max-payload", "64M"), Fail);
            var tls = Tls(config, Fail);

            var controlHost = config.GetString("dmactors.control.hostname", "127.0.0.1");
            var controlPort = Get(config, "dmactors.control.port", c => c.GetInt("dmactors.control.port", 10810), "a port number", "");
            if (controlPort is < 0 or > 65535) Fail($"dmactors.control.port: {controlPort} is not a port");
            var askTimeout = Get(config, "dmactors.control.ask-timeout", c => c.GetTimeSpan("dmactors.control.ask-timeout", TimeSpan.FromSeconds(30)), "a duration such as 30s", "");
            if (askTimeout <= TimeSpan.Zero) Fail("dmactors.control.ask-timeout must be positive");

            JournalSpec? journal = null;
            if (Bool(config, "dmactors.journal.enabled", true, ""))
            {
                var postgres = config.GetString("dmactors.journal.postgres", "");
                var sqlite = config.GetString("dmactors.journal.sqlite", "state.db");
                if (string.IsNullOrWhiteSpace(postgres) && string.IsNullOrWhiteSpace(sqlite)) Fail("dmactors.journal: sqlite or postgres must be set");
                if (!string.IsNullOrWhiteSpace(postgres)) CheckPostgres(postgres, Fail);
                journal = new JournalSpec(
                    string.IsNullOrWhiteSpace(sqlite) ? null : Path.GetFullPath(Path.Combine(dataDir, sqlite)),
                    string.IsNullOrWhiteSpace(postgres) ? null : postgres,
                    config.GetString("dmactors.journal.persistence-id", "dmactors-devices"));
            }
            var cluster = ClusterSpec.Read(config, Fail, (key, fallback) =>
                Get(config, key, c => c.GetTimeSpan(key, fallback), "a duration such as 20s", ""));
            if (cluster != null && journal?.Postgres == null)
                Fail("dmactors.cluster: a cluster needs one journal shared by its nodes: set dmactors.journal.postgres");
            return new HostSettings(source, dataDir, disks, devices, tcp, string.IsNullOrWhiteSpace(unix) ? null : unix,
                controlHost, controlPort, askTimeout, config, journal, maxPayload, cluster, tls);
        }
        catch (ConfigException) { throw; }
        catch (BadValue e) { throw new ConfigException($"{source}: {e.Message}"); }
        catch (Exception e)
        {
            // HOCON getters throw on values of the wrong type ("size = {}" and the like).
            throw new ConfigException($"{source}: {OneLine(e.Message)}");
        }
    }

    /// <summary>journal.postgres: an Npgsql connection string that names a server (the message never echoes it: it may hold a password).</summary>
    private static void CheckPostgres(string connectionString, Func<string, string> fail)
    {
        Npgsql.NpgsqlConnectionStringBuilder b;
        try { b = new Npgsql.NpgsqlConnectionStringBuilder(connectionString); }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidCastException)
        {
            fail($"dmactors.journal.postgres: not an Npgsql connection string: {OneLine(e.Message)}");
            return;
        }
        if (string.IsNullOrWhiteSpace(b.Host)) fail("dmactors.journal.postgres: the connection string names no Host");
    }

    /// <summary>nbd.tls (off | on | require), nbd.tls-certificates (a directory), nbd.tls-verify-peer, nbd.tls-unix-socket.</summary>
    private static Nbd.NbdTls? Tls(AkkaConfig config, Func<string, string> fail)
    {
        var mode = config.GetString("dmactors.nbd.tls", "off")?.Trim().ToLowerInvariant() switch
        {
            "off" or "false" or "no" or "" or null => Nbd.NbdTlsMode.Off,
            "on" or "true" or "yes" => Nbd.NbdTlsMode.On,
            "require" => Nbd.NbdTlsMode.Require,
            var other => throw new ConfigException(fail($"dmactors.nbd.tls: '{other}' is not off, on or require")),
        };
        if (mode == Nbd.NbdTlsMode.Off) return null;
        var dir = config.GetString("dmactors.nbd.tls-certificates", "");
        if (string.IsNullOrWhiteSpace(dir)) fail($"dmactors.nbd.tls = {mode.ToString().ToLowerInvariant()} needs dmactors.nbd.tls-certificates (a directory with server-cert.pem and server-key.pem)");
        try
        {
            return new Nbd.NbdTls(mode, Path.GetFullPath(dir), Bool(config, "dmactors.nbd.tls-verify-peer", false), Bool(config, "dmactors.nbd.tls-unix-socket", false));
        }
        catch (ArgumentException e) { fail(e.Message); return null; }
    }

    /// <summary>nbd.max-payload: a size from 1 MiB (the spec's least maximum) up to the length taken as abuse.</summary>
    private static int MaxPayload(string text, Func<string, string> fail)
    {
        long bytes = 0;
        try { bytes = ByteSize.Parse(text); }
        catch (FormatException e) { fail($"dmactors.nbd.max-payload: {e.Message}"); }
        if (bytes < 1 << 20 || bytes > Nbd.NbdProtocol.AbusiveLength)
            fail($"dmactors.nbd.max-payload: {text} is not between 1M and {Nbd.NbdProtocol.AbusiveLength >> 20}M");
        return (int)bytes;
    }

    private static DiskSpec Disk(AkkaConfig d, string where, Func<string, string> fail)
    {
        var name = Required(d, "name", where, fail);
        where = $"disk {name}";
        var path = d.GetString("path", name + ".img");
        if (string.IsNullOrWhiteSpace(path)) fail($"{where}: path is empty");
        var create = Bool(d, "create", false, where + ": ");
        long sectors = 0;
        var size = d.HasPath("size") ? Get(d, "size", x => x.GetValue("size").IsString() ? x.GetString("size") : throw new FormatException(),
            "a size such as 1G", where + ": ") : null;
        if (size != null)
        {
            try { sectors = ByteSize.ParseSectors(size); }
            catch (FormatException e) { fail($"{where}: {e.Message}"); }
        }
        else if (create) fail($"{where}: create = on needs a size");
        var mismatchText = d.GetString("size-mismatch", "error");
        var mismatch = mismatchText switch
        {
            "error" => SizeMismatch.Error,
            "use-file" => SizeMismatch.UseFile,
            "grow" => SizeMismatch.Grow,
            _ => throw new BadValue($"{where}: size-mismatch '{mismatchText}' is not error, use-file or grow"),
        };
        return new DiskSpec(name, path, sectors, create, Bool(d, "write-back-cache", false, where + ": "), mismatch);
    }

    private static DeviceSpec Device(AkkaConfig d, string where, Func<string, string> fail)
    {
        var name = Required(d, "name", where, fail);
        if (DeviceCommands.CheckName(name) is { } bad) fail($"{where}: {bad}");
        where = $"device {name}";
        var table = d.GetString("table", "");
        try
        {
            // Syntax and layout (unknown target types, gaps) are known now; device arguments only when it is built.
            if (!string.IsNullOrWhiteSpace(table)) Table.CheckLayout(Table.Parse(table));
        }
        catch (TableException e) { fail($"{where}: {e.Message}"); }
        var modeText = d.GetString("barrier-mode", "ordered");
        if (!Enum.TryParse<BarrierMode>(modeText, ignoreCase: true, out var mode) || !Enum.IsDefined(mode))
            fail($"{where}: barrier-mode '{modeText}' is not ordered or flush");
        return new DeviceSpec(name, table, Bool(d, "read-only", false, where + ": "), mode);
    }

    /// <summary>Getters that name the key when a value has the wrong type (Akka's own messages do not).</summary>
    private static T Get<T>(AkkaConfig c, string key, Func<AkkaConfig, T> get, string what, string where)
    {
        try { return get(c); }
        catch (Exception e) when (e is not ConfigException)
        {
            var raw = c.HasPath(key) ? c.GetValue(key)?.ToString() : null;
            throw new BadValue($"{where}{key}: '{raw}' is not {what}");
        }
    }

    /// <summary>A value of the wrong type; <see cref="FromConfig"/> adds the file name.</summary>
    private sealed class BadValue(string message) : Exception(message);

    private static bool Bool(AkkaConfig c, string key, bool fallback, string where = "") =>
        Get(c, key, x => x.GetBoolean(key, fallback), "on or off", where);

    private static string Required(AkkaConfig d, string key, string where, Func<string, string> fail)
    {
        var value = d.GetString(key, null);
        if (string.IsNullOrWhiteSpace(value)) fail($"{where}: {key} is missing");
        return value!;
    }

    /// <summary>The objects of a HOCON list (absent = empty).</summary>
    private static IEnumerable<AkkaConfig> Objects(AkkaConfig config, string path, Func<string, string> fail)
    {
        if (!config.HasPath(path)) return [];
        // Akka's parser may append a whitespace literal to a value (`devices = [] }`): not part of the list.
        var parts = config.GetValue(path).Values.Where(v => !(v.IsString() && string.IsNullOrWhiteSpace(v.GetString()))).ToList();
        if (parts.Any(v => !v.IsArray())) fail($"{path} must be a list [ {{ ... }}, ... ]");
        return parts.SelectMany(v => v.GetArray()).Select((v, i) =>
        {
            if (!v.IsObject()) fail($"{path}[{i}] must be an object {{ name = ..., ... }}");
            return new AkkaConfig(new HoconRoot(v));
        }).ToList();
    }

    private static string OneLine(string message) => string.Join(' ', message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    /// <summary>
    /// The Akka configuration for the host's actor system: remoting on the control endpoint, and (unless the file
    /// names its own loggers) the logger that keeps Akka.Remote's reports about control connections to one line.
    /// </summary>
    public static AkkaConfig HostAkka(HostSettings s) =>
        ConfigurationFactory.ParseString($$"""
            akka.remote.dot-netty.tcp { hostname = "{{s.ControlHost}}", port = {{s.ControlPort}} }
            {{(s.Akka.HasPath("akka.loggers") ? "" : $"akka.loggers = [\"{typeof(HostLogger).FullName}, {typeof(HostLogger).Assembly.GetName().Name}\"]")}}
            """)
            .WithFallback(s.Cluster is { } c
                ? ConfigurationFactory.ParseString(c.Hocon).WithFallback(ConfigurationFactory.ParseString(
                    DmActors.Cluster.ClusterDefaults.Hocon(c.Node, c.StableAfter, c.RebalanceInterval)))
                : AkkaConfig.Empty)
            .WithFallback(s.Journal is { } j ? ConfigurationFactory.ParseString(j.Hocon) : AkkaConfig.Empty)
            .WithFallback(s.Akka);

    /// <summary>The dmsetup client's actor system: remoting on a free port of <paramref name="localAddress"/>, silent logs.</summary>
    public static AkkaConfig ClientAkka(HostSettings s, string localAddress) =>
        ConfigurationFactory.ParseString($$"""
            akka.remote.dot-netty.tcp { hostname = "{{localAddress}}", port = 0 }
            akka.loglevel = OFF
            akka.stdout-loglevel = OFF
            akka.suppress-json-serializer-warning = on
            """).WithFallback(s.Akka);
}
