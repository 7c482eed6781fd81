using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using Xunit;

namespace DmActors.Tests.Support;

/// <summary>
/// Runs the real `dmactors` program: a host (`serve --config` over a data directory, on ports the host picks
/// itself and prints) and CLI invocations against it. The host is killed in Dispose whatever happened. Timeouts
/// are generous: a loaded 2-core machine may take many seconds to start a .NET process.
/// </summary>
public sealed partial class HostProcess : IDisposable
{
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);
    public static readonly TimeSpan CliTimeout = TimeSpan.FromSeconds(120);

    private readonly Process _process;
    private readonly TempDir? _ownDir;
    private readonly StringBuilder _stdout = new();
    private readonly StringBuilder _stderr = new();
    private readonly TaskCompletionSource<bool> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>The program, next to the test assembly (Tests references Host).</summary>
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "dmactors.dll");

    public string Dir { get; }
    /// <summary>The host's configuration; once started it names the bound ports, so `dmsetup --config` finds the host.</summary>
    public string ConfigFile { get; }
    /// <summary>The ports the host reported it bound (0: not reported, e.g. NBD off).</summary>
    public int ControlPort { get; private set; }
    public int NbdPort { get; private set; }

    private readonly string _diskPath;

    private HostProcess(string dir, TempDir? ownDir, string configName = "host.hocon", string diskPath = "disk0.img")
    {
        Dir = dir; _ownDir = ownDir; _diskPath = diskPath;
        ConfigFile = Path.Combine(dir, configName);
        _process = new Process { StartInfo = StartInfo("serve", "--config", ConfigFile), EnableRaisingEvents = true };
        _process.OutputDataReceived += (_, e) =>
        {
            if (e.Data == null) return;
            lock (_stdout) _stdout.AppendLine(e.Data);
            if (ControlListening().Match(e.Data) is { Success: true } c) ControlPort = int.Parse(c.Groups[1].Value);
            else if (NbdListening().Match(e.Data) is { Success: true } n) NbdPort = int.Parse(n.Groups[1].Value);
            else if (e.Data.StartsWith("dmactors: ready")) _ready.TrySetResult(true);
        };
        _process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (_stderr) _stderr.AppendLine(e.Data); };
        _process.Exited += (_, _) => _ready.TrySetResult(false);
    }

    [GeneratedRegex(@"^dmactors: control listening on akka\.tcp://dmactors@[^:]+:(\d+)/user/control$")]
    private static partial Regex ControlListening();

    [GeneratedRegex(@"^dmactors: NBD listening on 127\.0\.0\.1:(\d+)$")]
    private static partial Regex NbdListening();

    /// <summary>
    /// Starts a host over a new temp directory (deleted on Dispose): <paramref name="extra"/> goes inside the
    /// dmactors section of its configuration, <paramref name="after"/> after it (e.g. akka settings).
    /// </summary>
    public static Task<HostProcess> StartAsync(string extra = "", string after = "")
    {
        var dir = new TempDir("dmactors-host-");
        return StartAsync(new HostProcess(dir.Path, dir), extra, after);
    }

    /// <summary>
    /// Starts a host over <paramref name="dir"/>, which the caller owns (its data and journal survive from an earlier
    /// host there), on ports it picks itself unless <paramref name="nbdPort"/> or <paramref name="controlPort"/> name one.
    /// </summary>
    public static Task<HostProcess> StartInAsync(string dir, string extra = "", string after = "", int? nbdPort = null,
        int? controlPort = null) =>
        StartAsync(new HostProcess(dir, ownDir: null), extra, after, nbdPort ?? 0, controlPort ?? 0);

    /// <summary>
    /// Starts a host over <paramref name="dir"/> (the caller's) that is expected to refuse to start, with its disk0 at
    /// <paramref name="diskPath"/> and its config in <paramref name="config"/>, and returns how it ended. One that
    /// gets ready instead fails the test. <paramref name="extra"/> goes inside the dmactors section.
    /// </summary>
    public static async Task<CliResult> StartRefusedInAsync(string dir, int? nbdPort = null, int? controlPort = null,
        string diskPath = "disk0.img", string config = "refused.hocon", string extra = "")
    {
        using var host = new HostProcess(dir, ownDir: null, config, diskPath);
        File.WriteAllText(host.ConfigFile, host.Config(extra, "", controlPort ?? 0, nbdPort ?? 0));
        host.Launch();
        if (await host._ready.Task.WaitAsync(StartTimeout)) Assert.Fail($"the host started, expected a refusal:\n{host.Stdout}\n{host.Stderr}");
        await host._process.WaitForExitAsync(); // drains the redirected output
        return new CliResult(host._process.ExitCode, host.Stdout, host.Stderr);
    }

    private void Launch()
    {
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    private static async Task<HostProcess> StartAsync(HostProcess host, string extra, string after, int nbd = 0, int control = 0)
    {
        File.WriteAllText(host.ConfigFile, host.Config(extra, after, control, nbd));
        try
        {
            host.Launch();
            if (!await host._ready.Task.WaitAsync(StartTimeout))
            {
                await host._process.WaitForExitAsync(); // drains the redirected output
                throw new InvalidOperationException($"host exited during start:\n{host.Stdout}\n{host.Stderr}");
            }
            Assert.True(host.ControlPort != 0, $"the host did not say where it listens for control:\n{host.Stdout}");
        }
        catch
        {
            host.Dispose();
            throw;
        }
        // The bound ports go into the file, as if they had been configured: `dmsetup --config` reads it.
        File.WriteAllText(host.ConfigFile, host.Config(extra, after, host.ControlPort, host.NbdPort));
        return host;
    }

    private string Config(string extra, string after, int control, int nbd) => $$"""
        dmactors {
          data-dir = "{{Dir}}/data"
          disks = [ { name = disk0, path = "{{_diskPath}}", size = 64M, create = on } ]
          devices = [ { name = demo, table = "0 131072 linear disk0 0" } ]
          nbd.listen = "127.0.0.1:{{nbd}}"
          control.port = {{control}}
          {{extra}}
        }
        {{after}}
        """;

    public string Stdout { get { lock (_stdout) return _stdout.ToString(); } }
    public string Stderr { get { lock (_stderr) return _stderr.ToString(); } }
    public bool HasExited => _process.HasExited;
    public int ExitCode => _process.ExitCode;

    /// <summary>Waits up to <paramref name="timeout"/> for the host to exit by itself; true if it did (its output read to the end).</summary>
    public async Task<bool> ExitsWithinAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try { await _process.WaitForExitAsync(cts.Token); return true; }
        catch (OperationCanceledException) { return false; }
    }
    public int Pid => _process.Id;

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

    /// <summary>
    /// SIGSTOP: the process stops answering while the kernel still accepts its connections. Returns once every
    /// thread is stopped: a thread busy in user space (a spinning poll) stops only at its next tick, and could
    /// still take a request sent right after the signal.
    /// </summary>
    public void Pause() => Pause(_process.Id);

    /// <summary>SIGSTOP to any process (nbdkit too), returning once every thread of it is stopped.</summary>
    public static void Pause(int pid)
    {
        Assert.Equal(0, kill(pid, 19));
        Poll.Until(() => Directory.GetDirectories($"/proc/{pid}/task").All(Stopped), $"every thread of process {pid} to stop");
    }

    /// <summary>A thread's state in /proc (the field after the parenthesised name): T is stopped.</summary>
    private static bool Stopped(string task)
    {
        try
        {
            var stat = File.ReadAllText(Path.Combine(task, "stat"));
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('T');
        }
        catch (IOException) { return true; } // a thread that ended
    }

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

    /// <summary>
    /// A port nothing listens on, for tests of a host that is not there (bound to port 0 and let go; hosts
    /// themselves bind port 0 and say which port they got).
    /// </summary>
    public static int UnusedPort()
    {
        var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        var port = ((IPEndPoint)l.LocalEndpoint).Port;
        l.Stop();
        return port;
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.WaitForExit(StartTimeout); // its files closed before the directory goes
        }
        catch (InvalidOperationException) { } // never started
        _process.Dispose();
        _ownDir?.Dispose();
    }
}

/// <summary>One host shared by the tests of a class (each test uses its own device names).</summary>
public sealed class HostFixture : IAsyncLifetime
{
    public HostProcess Host { get; private set; } = null!;
    public async Task InitializeAsync() => Host = await HostProcess.StartAsync();
    public Task DisposeAsync() { Host?.Dispose(); return Task.CompletedTask; }
}
