using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// Runs the real `dmactors` program: a host (`serve --config` with a temp data dir and free ports) and CLI
/// invocations against it. The host is killed in Dispose whatever happened. Timeouts are generous: a loaded
/// 2-core machine may take many seconds to start a .NET process.
/// </summary>
public sealed class HostProcess : IDisposable
{
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);
    public static readonly TimeSpan CliTimeout = TimeSpan.FromSeconds(120);

    private readonly Process _process;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly TaskCompletionSource<bool> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The program, next to the test assembly (Tests references Host).</summary>
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "dmactors.dll");

    public string Dir { get; }
    public string ConfigFile { get; }
    public int ControlPort { get; }
    public int NbdPort { get; }

    private HostProcess(string dir, string configFile, int controlPort, int nbdPort)
    {
        Dir = dir; ConfigFile = configFile; ControlPort = controlPort; NbdPort = nbdPort;
        _process = new Process { StartInfo = StartInfo("serve", "--config", configFile), EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data == null) return;
            lock (_stdout) _stdout.AppendLine(e.Data);
            if (e.Data.StartsWith("dmactors: ready")) _ready.TrySetResult(true);
        };
        _process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (_stderr) _stderr.AppendLine(e.Data); };
        _process.Exited += (_, _) => _ready.TrySetResult(false);
    }

    /// <summary>
    /// Writes a config (<paramref name="extra"/> inside the dmactors section, <paramref name="after"/> after it, e.g.
    /// akka settings) and starts the host on free ports.
    /// </summary>
    public static Task<HostProcess> StartAsync(string extra = "", string after = "") =>
        StartInAsync(Directory.CreateTempSubdirectory("dmactors-host-").FullName, extra, after);

    /// <summary>
    /// Starts a host over <paramref name="dir"/> (its data and journal survive from an earlier host there), on free
    /// ports unless <paramref name="nbdPort"/> or <paramref name="controlPort"/> name one, with its disk0 at
    /// <paramref name="diskPath"/> (relative to the data directory), its config in <paramref name="config"/> in dir,
    /// and <paramref name="after"/> after the dmactors section.
    /// </summary>
    public static async Task<HostProcess> StartInAsync(string dir, string extra = "", string after = "", int? nbdPort = null,
        int? controlPort = null, string diskPath = "disk0.img", string config = "host.hocon")
    {
        var host = Launch(dir, extra, after, nbdPort, controlPort, diskPath, config);
        var started = await host._ready.Task.WaitAsync(StartTimeout);
        if (!started)
        {
            await host._process.WaitForExitAsync(); // drains the redirected output
            throw new InvalidOperationException($"host exited during start:\n{host.Stdout}\n{host.Stderr}");
        }
        return host;
    }

    /// <summary>
    /// Starts a host (as <see cref="StartInAsync"/>) that is expected to refuse to start, and returns how it ended. One
    /// that gets ready instead is killed and fails the test. <paramref name="dir"/> is left for the caller.
    /// </summary>
    public static async Task<CliResult> StartRefusedInAsync(string dir, int? nbdPort = null, int? controlPort = null,
        string diskPath = "disk0.img", string config = "refused.hocon")
    {
        using var host = Launch(dir, "", "", nbdPort, controlPort, diskPath, config);
        host.KeepDir = true;
        if (await host._ready.Task.WaitAsync(StartTimeout)) Assert.Fail($"the host started, expected a refusal:\n{host.Stdout}\n{host.Stderr}");
        await host._process.WaitForExitAsync(); // drains the redirected output
        return new CliResult(host._process.ExitCode, host.Stdout, host.Stderr);
    }

    private static HostProcess Launch(string dir, string extra, string after, int? nbdPort, int? controlPort, string diskPath, string configName)
    {
        var control = controlPort ?? FreePort();
        var nbd = nbdPort ?? FreePort();
        var config = Path.Combine(dir, configName);
        File.WriteAllText(config, $$"""
            dmactors {
              data-dir = "{{dir}}/data"
              disks = [ { name = disk0, path = "{{diskPath}}", size = 64M, create = on } ]
              devices = [ { name = demo, table = "0 131072 linear disk0 0" } ]
              nbd.listen = "127.0.0.1:{{nbd}}"
              control.port = {{control}}
              {{extra}}
            }
            {{after}}
            """);
        var host = new HostProcess(dir, config, control, nbd);
        host._process.Start();
        host._process.BeginOutputReadLine();
        host._process.BeginErrorReadLine();
        return host;
    }

    public string Stdout { get { lock (_stdout) return _stdout.ToString(); } }
    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }
    public bool HasExited => _process.HasExited;
    public int Pid => _process.Id;

    /// <summary>Directory.Delete on Dispose unless a later host is to reuse it.</summary>
    public bool KeepDir { get; set; }

    /// <summary>SIGKILL: no shutdown code runs, like a power cut of the process (the page cache survives).</summary>
    public async Task KillAsync()
    {
        Assert.Equal(0, kill(_process.Id, 9));
        using var cts = new CancellationTokenSource(StartTimeout);
        await _process.WaitForExitAsync(cts.Token);
    }

    /// <summary>Sends SIGTERM and waits for the exit code.</summary>
    public async Task<int> TerminateAsync()
    {
        Assert.Equal(0, kill(_process.Id, 15));
        using var cts = new CancellationTokenSource(StartTimeout);
        await _process.WaitForExitAsync(cts.Token);
        return _process.ExitCode;
    }

    /// <summary>SIGSTOP: the process stops answering while the kernel still accepts its connections.</summary>
    public void Pause() => Assert.Equal(0, kill(_process.Id, 19));

    /// <summary>SIGCONT after <see cref="Pause"/>.</summary>
    public void Continue() => Assert.Equal(0, kill(_process.Id, 18));

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    public sealed record CliResult(int Code, string Out, string Err)
    {
        public override string ToString() => $"exit {Code}\nstdout:\n{Out}\nstderr:\n{Err}";
    }

    /// <summary>`dmactors dmsetup --config HOST_CONFIG args...` with <paramref name="stdin"/> as its input.</summary>
    public Task<CliResult> Dmsetup(string[] args, string stdin = "", IDictionary<string, string>? env = null) =>
        Run(["dmsetup", "--config", ConfigFile, .. args], stdin, env);

    public Task<CliResult> Dmsetup(string commandLine, string stdin = "") => Dmsetup(commandLine.Split(' ', StringSplitOptions.RemoveEmptyEntries), stdin);

    /// <summary>Runs the program once to completion.</summary>
    public static async Task<CliResult> Run(string[] args, string stdin = "", IDictionary<string, string>? env = null)
    {
        using var p = new Process { StartInfo = StartInfo(args) };
        foreach (var (k, v) in env ?? new Dictionary<string, string>()) p.StartInfo.Environment[k] = v;
        p.Start();
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.StandardInput.WriteAsync(stdin);
        p.StandardInput.Close();
        using var cts = new CancellationTokenSource(CliTimeout);
        try { await p.WaitForExitAsync(cts.Token); }
        catch (OperationCanceledException)
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"dmactors {string.Join(' ', args)} did not finish within {CliTimeout}");
        }
        return new CliResult(p.ExitCode, await stdout, await stderr);
    }

    private static ProcessStartInfo StartInfo(params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment.Remove("DMACTORS_DATA");
        return psi;
    }

    /// <summary>A port nothing listens on right now: bind port 0 and let it go.</summary>
    public static int FreePort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    public void Dispose()
    {
        try { if (!_process.HasExited) _process.Kill(entireProcessTree: true); } catch (InvalidOperationException) { }
        _process.Dispose();
        if (KeepDir) return;
        try { Directory.Delete(Dir, recursive: true); } catch (IOException) { }
    }
}

/// <summary>One host shared by the tests of a class (each test uses its own device names).</summary>
public sealed class HostFixture : IAsyncLifetime
{
    public HostProcess Host { get; private set; } = null!;
    public async Task InitializeAsync() => Host = await HostProcess.StartAsync();
    public Task DisposeAsync() { Host?.Dispose(); return Task.CompletedTask; }
}
