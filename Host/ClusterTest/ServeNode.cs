using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;

namespace DmActors.Host.ClusterTest;

/// <summary>
/// One `dmactors serve` child process of the test cluster, over its own directory (data, one disk file, the
/// configuration, a log of its output). Ports are picked by the host (port 0) and read from its output, then
/// written into the configuration so `dmsetup --config` finds it; a restart picks new ones.
/// </summary>
public sealed partial class ServeNode : IDisposable
{
    private Process? _process;
    private TaskCompletionSource<bool> _ready = new();
    private StreamWriter? _log;
    private readonly object _gate = new();

    public ServeNode(string name, string dir, long diskMiB, string journal, bool ackAfterFirstLeg)
    {
        Name = name; Dir = dir; DiskMiB = diskMiB; Journal = journal; AckAfterFirstLeg = ackAfterFirstLeg;
        Directory.CreateDirectory(dir);
    }

    public string Name { get; }
    public string Dir { get; }
    public long DiskMiB { get; }
    public string Journal { get; }
    public bool AckAfterFirstLeg { get; }
    public string ConfigFile => Path.Combine(Dir, "node.hocon");
    public string DiskPath => Path.Combine(Dir, "disk0.img");
    public int ControlPort { get; private set; }
    public int NbdPort { get; private set; }
    /// <summary>Running and not stopped by SIGSTOP.</summary>
    public bool Serving => IsRunning && !Paused;
    public bool IsRunning { get { var p = _process; return p != null && !p.HasExited; } }
    public bool Paused { get; private set; }
    public int Starts { get; private set; }
    /// <summary>The last start was refused because the cluster still had a member of this name (a dead incarnation not yet removed).</summary>
    public bool LastStartRefused { get; private set; }

    /// <summary>Starts the host, joining through <paramref name="seedControlPort"/> (null: it starts the cluster).</summary>
    public async Task StartAsync(int? seedControlPort, TimeSpan timeout)
    {
        if (IsRunning) throw new InvalidOperationException($"{Name} is already running");
        Starts++;
        File.WriteAllText(ConfigFile, Config(seedControlPort, 0, 0));
        lock (_gate)
        {
            _log?.Dispose();
            _log = new StreamWriter(Path.Combine(Dir, "serve.log"), append: true) { AutoFlush = true };
            _log.WriteLine($"---- start {Starts} at {DateTime.UtcNow:HH:mm:ss.fff}");
        }
        _ready = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        ControlPort = NbdPort = 0;
        Paused = false;
        LastStartRefused = false;
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        psi.ArgumentList.Add(typeof(ServeNode).Assembly.Location);
        foreach (var a in new[] { "serve", "--config", ConfigFile }) psi.ArgumentList.Add(a);
        psi.Environment.Remove("DMACTORS_DATA");
        if (AckAfterFirstLeg) psi.Environment[Targets.Mirror.AckAfterFirstLegVariable] = "1";
        var p = new Process { StartInfo = psi, EnableRaisingEvents = true };
        var ready = _ready;
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data == null) return;
            Log(e.Data);
            if (ControlListening().Match(e.Data) is { Success: true } c) ControlPort = int.Parse(c.Groups[1].Value);
            else if (NbdListening().Match(e.Data) is { Success: true } n) NbdPort = int.Parse(n.Groups[1].Value);
            else if (e.Data.StartsWith("dmactors: ready")) ready.TrySetResult(true);
            else Refused(e.Data);
        };
        p.ErrorDataReceived += (_, e) => { if (e.Data != null) { Log(e.Data); Refused(e.Data); } };
        p.Exited += (_, _) => ready.TrySetResult(false);
        p.Start();
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _process = p;
        var started = await Task.WhenAny(ready.Task, Task.Delay(timeout)) == ready.Task && ready.Task.Result;
        if (!started || ControlPort == 0 || NbdPort == 0)
        {
            var exited = p.HasExited;
            if (exited) p.WaitForExit(); // its output read to the end
            Kill();
            throw new ClusterTestException($"{Name} {(exited ? $"exited during its start{(LastStartRefused ? " (its name is still taken)" : "")}" : $"did not start within {timeout.TotalSeconds:0}s")} (see {Path.Combine(Dir, "serve.log")})");
        }
        File.WriteAllText(ConfigFile, Config(seedControlPort, ControlPort, NbdPort));
    }

    private void Refused(string line)
    {
        if (line.Contains($"node name {Name} is taken by the member")) LastStartRefused = true;
    }

    private void Log(string line)
    {
        lock (_gate) _log?.WriteLine(line);
    }

    /// <summary>Notes a fault in the node's log, so its output can be read against the test's steps.</summary>
    public void Note(string what) => Log($"---- clustertest: {what} at {DateTime.UtcNow:HH:mm:ss.fff}");

    /// <summary>SIGKILL: no shutdown code runs; its write-back caches are lost, its files' page cache is not.</summary>
    public void Kill()
    {
        var p = _process;
        if (p == null || p.HasExited) return;
        Note("kill -9");
        try { p.Kill(); } catch (InvalidOperationException) { }
        p.WaitForExit(30_000);
        Paused = false;
    }

    /// <summary>SIGSTOP, returning once every thread has stopped (a thread busy in user space stops at its next tick).</summary>
    public async Task PauseAsync()
    {
        var p = _process ?? throw new InvalidOperationException($"{Name} is not running");
        Note("SIGSTOP");
        if (kill(p.Id, 19) != 0) throw new ClusterTestException($"SIGSTOP to {Name} failed");
        Paused = true;
        for (var i = 0; i < 500 && !Directory.GetDirectories($"/proc/{p.Id}/task").All(Stopped); i++) await Task.Delay(10);
    }

    public void Continue()
    {
        var p = _process;
        if (p == null || p.HasExited) { Paused = false; return; }
        Note("SIGCONT");
        kill(p.Id, 18);
        Paused = false;
    }

    /// <summary>Waits up to <paramref name="timeout"/> for the process to exit by itself (a downed node shuts down).</summary>
    public async Task<bool> ExitsWithinAsync(TimeSpan timeout)
    {
        var p = _process;
        if (p == null || p.HasExited) return true;
        using var cts = new CancellationTokenSource(timeout);
        try { await p.WaitForExitAsync(cts.Token); return true; }
        catch (OperationCanceledException) { return false; }
    }

    private static bool Stopped(string task)
    {
        try
        {
            var stat = File.ReadAllText(Path.Combine(task, "stat"));
            return stat[(stat.LastIndexOf(')') + 2)..].StartsWith('T');
        }
        catch (IOException) { return true; }
    }

    private string Config(int? seed, int control, int nbd) => $$"""
        dmactors {
          data-dir = "{{Dir}}/data"
          disks = [ { name = disk0, path = "{{DiskPath}}", size = {{DiskMiB}}M, create = on, write-back-cache = on } ]
          devices = []
          nbd.listen = "127.0.0.1:{{nbd}}"
          control.port = {{control}}
          journal.postgres = "{{Journal}}"
          cluster {
            node = {{Name}}
            secret = "clustertest"
            stable-after = 2s
            heartbeat-pause = 2s
            rebalance-interval = 1s
            seed-nodes = [{{(seed is { } s ? $"\"127.0.0.1:{s}\"" : "")}}]
          }
        }
        akka.cluster.failure-detector.heartbeat-interval = 500ms
        """;

    [GeneratedRegex(@"^dmactors: control listening on akka\.tcp://dmactors@[^:]+:(\d+)/user/control$")]
    private static partial Regex ControlListening();

    [GeneratedRegex(@"^dmactors: NBD listening on 127\.0\.0\.1:(\d+)$")]
    private static partial Regex NbdListening();

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int sig);

    public void Dispose()
    {
        if (Paused) Continue();
        Kill();
        _process?.Dispose();
        lock (_gate) { _log?.Dispose(); _log = null; }
    }
}

/// <summary>A step of the test could not be done (a node that does not start, a command that fails, a bio never answered).</summary>
public sealed class ClusterTestException(string message) : Exception(message);
