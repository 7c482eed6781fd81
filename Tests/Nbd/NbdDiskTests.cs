using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using DmActors.Host.Nbd;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Nbd;

/// <summary>
/// NbdDisk, the NBD client disk, against nbdkit (memory plugin, with filters that log or change what it offers) and
/// against DmActors' own NbdServer in process: data, concurrency, flush and FUA on the wire, refusals, reconnects.
/// </summary>
[Collection(NbdCollection.Name)]
public sealed partial class NbdDiskTests(NbdFixture fx) : IDisposable
{
    private readonly TempDir _dir = new("dmactors-nbddisk-");
    private readonly List<IDisposable> _cleanup = new();
    private int _next;

    public void Dispose()
    {
        foreach (var c in Enumerable.Reverse(_cleanup)) c.Dispose();
        _dir.Dispose();
    }

    private static readonly TimeSpan Wait = Engine.Timeout;

    // ---- helpers ------------------------------------------------------------------------------------------------

    private NbdDisk Connect(EndPoint endpoint, string export, NbdDiskOptions? options = null) =>
        Connect(() => endpoint, export, options);

    private NbdDisk Connect(Func<EndPoint> endpoint, string export, NbdDiskOptions? options = null)
    {
        var disk = NbdDisk.Connect($"nbd{Interlocked.Increment(ref _next)}", "43:0", new NbdDiskTarget(endpoint, export), options);
        _cleanup.Add(new Disposer(disk.Dispose));
        return disk;
    }

    /// <summary>nbdkit serving on a unix socket in the test's directory, killed with the test.</summary>
    private NbdKit StartNbdkit(params string[] args)
    {
        var kit = new NbdKit(_dir[$"kit{Interlocked.Increment(ref _next)}.sock"], args);
        _cleanup.Add(kit);
        return kit;
    }

    private sealed class NbdKit : IDisposable
    {
        private readonly Process _process;
        private readonly ManualResetEventSlim _stop = new();
        private readonly Thread _parent;
        private bool _disposed;
        public readonly System.Text.StringBuilder Stderr = new();
        public string Socket { get; }
        public EndPoint Endpoint => new UnixDomainSocketEndPoint(Socket);
        public int Pid => _process.Id;

        public NbdKit(string socket, string[] args)
        {
            Socket = socket;
            var psi = new ProcessStartInfo(ExternalTool.Find("nbdkit", "nbdkit")) { UseShellExecute = false, RedirectStandardError = true };
            // The pid file is written once nbdkit accepts connections; the socket file exists from bind(), before
            // listen(), so waiting for it alone sometimes saw "connection refused".
            var pidFile = socket + ".pid";
            foreach (var a in new[] { "-f", "-U", socket, "-P", pidFile }.Concat(args)) psi.ArgumentList.Add(a);
            // nbdkit sets PR_SET_PDEATHSIG, which fires when the *thread* that started it ends (thread-pool threads
            // do): a thread of its own starts it and lives until the test is done with it.
            Process? started = null;
            Exception? failed = null;
            var ready = new ManualResetEventSlim();
            _parent = new Thread(() =>
            {
                try { started = Process.Start(psi)!; }
                catch (Exception e) { failed = e; }
                ready.Set();
                _stop.Wait();
            }) { IsBackground = true, Name = "nbdkit-parent" };
            _parent.Start();
            ready.Wait();
            if (failed != null) throw failed;
            _process = started!;
            _process.ErrorDataReceived += (_, e) => { if (e.Data != null) lock (Stderr) Stderr.AppendLine(e.Data); };
            _process.BeginErrorReadLine();
            Poll.Until(() => (File.Exists(pidFile) && new FileInfo(pidFile).Length > 0) || _process.HasExited, $"nbdkit {string.Join(' ', args)} to listen");
            if (_process.HasExited)
            {
                _process.WaitForExit();
                Assert.Fail($"nbdkit {string.Join(' ', args)} exited with {_process.ExitCode}: {Stderr}");
            }
        }

        /// <summary>Whether nbdkit still runs, or how it ended and what it said: for failure messages.</summary>
        public string State()
        {
            if (!_process.HasExited) return "nbdkit is running";
            _process.WaitForExit();
            lock (Stderr) return $"nbdkit exited with {_process.ExitCode}; its stderr: {Stderr}";
        }

        public void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
            _process.Dispose();
            _stop.Set();
        }
    }

    /// <summary>Starts a bio on a disk; the task completes with its status. Counts completions to prove "exactly once".</summary>
    private sealed class Io
    {
        public readonly ConcurrentDictionary<Bio, int> Completions = new();

        public Task<BioStatus> Start(Disk disk, Bio bio)
        {
            var tcs = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
            disk.Start(bio, (b, s) =>
            {
                Completions.AddOrUpdate(b, 1, (_, n) => n + 1);
                tcs.TrySetResult(s);
            });
            return tcs.Task;
        }

        public async Task<BioStatus> Run(Disk disk, Bio bio) => await Start(disk, bio).WaitAsync(Wait);
    }

    private readonly Io _io = new();

    private static Bio WriteBio(long sector, byte[] data, BioFlags flags = BioFlags.None) =>
        new(BioOp.Write, sector, data.Length / 512, data, Akka.Actor.ActorRefs.Nobody, flags);

    private static Bio ReadBio(long sector, byte[] into) => new(BioOp.Read, sector, into.Length / 512, into, Akka.Actor.ActorRefs.Nobody);

    private static Bio OpBio(BioOp op, long sector = 0, long sectors = 0, BioFlags flags = BioFlags.None) =>
        new(op, sector, sectors, Memory<byte>.Empty, Akka.Actor.ActorRefs.Nobody, flags);

    private async Task Write(Disk disk, long sector, byte[] data, BioFlags flags = BioFlags.None) =>
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, WriteBio(sector, data, flags)));

    private async Task<byte[]> Read(Disk disk, long sector, int bytes)
    {
        var b = new byte[bytes];
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, ReadBio(sector, b)));
        return b;
    }

    private async Task<(NbdServer Server, string Socket)> StartOwnServerAsync(string? socket = null)
    {
        socket ??= _dir[$"own{Interlocked.Increment(ref _next)}.sock"];
        var server = await fx.StartServerAsync(new NbdServerOptions { Tcp = null, UnixSocket = socket });
        return (server, socket);
    }

    // ---- data ---------------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(512)]
    [InlineData(4096)]
    [InlineData(65536 + 512)]
    [InlineData(1 << 20)]
    [InlineData(5 << 20)]
    public async Task Data_round_trips_against_nbdkit(int bytes)
    {
        var kit = StartNbdkit("memory", "64M");
        var disk = Connect(kit.Endpoint, "");
        Assert.Equal(64L << 20 >> 9, disk.Sectors);
        var data = RawNbdClient.Pattern(bytes, bytes);
        await Write(disk, 7, data);
        Assert.Equal(data, await Read(disk, 7, bytes));
    }

    [Theory]
    [InlineData(512)]
    [InlineData(12288)]
    [InlineData(3 << 20)]
    public async Task Data_round_trips_against_the_own_server_over_tcp_and_through_its_disk(int bytes)
    {
        var export = await fx.CreateExportAsync(sectors: 16384);
        var disk = Connect(new IPEndPoint(IPAddress.Loopback, fx.Port), export);
        Assert.Equal(16384, disk.Sectors);
        Assert.True(disk.HasVolatileCache); // the server offers FLUSH
        var data = RawNbdClient.Pattern(bytes, bytes + 1);
        await Write(disk, 100, data);
        Assert.Equal(data, await Read(disk, 100, bytes));
        // The server's disk saw the bytes (not only the client's own view).
        var mem = (MemoryDisk)fx.Disks.Find(export["export-".Length..])!;
        var back = new byte[bytes];
        mem.ReadAt(100 * 512, back);
        Assert.Equal(data, back);
    }

    [Fact]
    public async Task Sixty_four_requests_in_flight_complete_with_the_right_data()
    {
        var kit = StartNbdkit("memory", "64M");
        foreach (var maxInFlight in new[] { 128, 8 }) // 8: the rest wait in the queue
        {
            var disk = Connect(kit.Endpoint, "", new NbdDiskOptions { MaxInFlight = maxInFlight });
            var data = Enumerable.Range(0, 64).Select(i => RawNbdClient.Pattern(8192, i * 31 + maxInFlight)).ToArray();
            var writes = data.Select((d, i) => _io.Start(disk, WriteBio(i * 16, d))).ToArray();
            Assert.All(await Task.WhenAll(writes).WaitAsync(Wait), s => Assert.Equal(BioStatus.Ok, s));
            var into = data.Select(_ => new byte[8192]).ToArray();
            var reads = into.Select((b, i) => _io.Start(disk, ReadBio(i * 16, b))).ToArray();
            Assert.All(await Task.WhenAll(reads).WaitAsync(Wait), s => Assert.Equal(BioStatus.Ok, s));
            for (var i = 0; i < 64; i++) Assert.True(data[i].SequenceEqual(into[i]), $"request {i} read other data");
            Assert.True(disk.RequestsSent >= 128);
        }
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
    }

    // ---- flush and FUA --------------------------------------------------------------------------------------------

    [Fact]
    public async Task Flush_fua_and_preflush_reach_the_server()
    {
        var log = _dir["nbdkit.log"];
        var kit = StartNbdkit("--filter=log", "memory", "16M", $"logfile={log}");
        var disk = Connect(kit.Endpoint, "");
        Assert.True(disk.HasVolatileCache);
        await Write(disk, 0, new byte[4096], BioFlags.Fua);
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, OpBio(BioOp.Flush)));
        await Write(disk, 8, new byte[512], BioFlags.Preflush);
        disk.Dispose(); // the log is complete once the connection is closed
        await Poll.UntilAsync(() => Task.FromResult(File.ReadAllText(log).Contains("Disconnect")), "nbdkit to log the disconnect");
        var lines = File.ReadAllLines(log).Where(l => l.Contains(" Write ") || l.Contains(" Flush ")).ToList();
        Assert.True(lines.Count == 4, string.Join('\n', lines));
        Assert.Matches("Write.*offset=0x0 count=0x1000 fua=1", lines[0]);
        Assert.Contains("Flush", lines[1]);
        Assert.Contains("Flush", lines[2]);  // the preflush, before its write
        Assert.Matches("Write.*offset=0x1000 count=0x200 fua=0", lines[3]);
    }

    [Fact]
    public async Task Fua_without_server_fua_is_a_write_then_a_flush()
    {
        var log = _dir["nbdkit-nofua.log"];
        // A shell-script plugin that can flush but not FUA.
        var kit = StartNbdkit("--filter=log", "eval", $"logfile={log}", "get_size=echo 1048576",
            "pread=dd if=/dev/zero count=$3 iflag=count_bytes status=none", "pwrite=cat >/dev/null",
            "flush=exit 0", "can_flush=exit 0", "can_fua=echo none");
        var disk = Connect(kit.Endpoint, "");
        await Write(disk, 0, new byte[4096], BioFlags.Fua);
        disk.Dispose();
        await Poll.UntilAsync(() => Task.FromResult(File.ReadAllText(log).Contains("Disconnect")), "nbdkit to log the disconnect");
        var lines = File.ReadAllLines(log).Where(l => l.Contains(" Write ") || l.Contains(" Flush ")).ToList();
        Assert.True(lines.Count == 2, string.Join('\n', lines));
        Assert.Matches("Write.*fua=0", lines[0]);
        Assert.Contains("Flush", lines[1]);
    }

    [Fact]
    public async Task Discard_and_write_zeroes_map_to_trim_and_write_zeroes_or_fall_back()
    {
        var kit = StartNbdkit("memory", "16M");
        var disk = Connect(kit.Endpoint, "");
        await Write(disk, 0, RawNbdClient.Pattern(8192, 1));
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, OpBio(BioOp.WriteZeroes, 0, 8)));
        Assert.Equal(new byte[4096], (await Read(disk, 0, 8192))[..4096]);
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, OpBio(BioOp.Discard, 8, 8)));

        // Without WRITE_ZEROES (nozero filter): zeroes are written as data.
        var plain = StartNbdkit("--filter=nozero", "memory", "16M");
        var noZero = Connect(plain.Endpoint, "");
        await Write(noZero, 0, RawNbdClient.Pattern(8192, 2));
        Assert.Equal(BioStatus.Ok, await _io.Run(noZero, OpBio(BioOp.WriteZeroes, 0, 16)));
        Assert.Equal(new byte[8192], await Read(noZero, 0, 8192));
    }

    [Fact]
    public async Task A_server_without_flush_or_trim_answers_flush_at_once_and_discard_not_supported()
    {
        // A shell-script plugin with only pread and pwrite: no FLUSH, no FUA, no TRIM.
        var kit = StartNbdkit("eval", "get_size=echo 1048576", "pread=dd if=/dev/zero count=$3 iflag=count_bytes status=none",
            "pwrite=cat >/dev/null");
        var disk = Connect(kit.Endpoint, "");
        Assert.False(disk.HasVolatileCache);
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, WriteBio(0, new byte[512], BioFlags.Fua | BioFlags.Preflush)));
        Assert.Equal(BioStatus.Ok, await _io.Run(disk, OpBio(BioOp.Flush)));
        Assert.Equal(BioStatus.NotSupported, await _io.Run(disk, OpBio(BioOp.Discard, 0, 8)));
    }

    // ---- read-only and refusals -----------------------------------------------------------------------------------

    [Fact]
    public async Task A_read_only_export_refuses_writes_with_ReadOnly()
    {
        var kit = StartNbdkit("-r", "memory", "16M");
        var disk = Connect(kit.Endpoint, "");
        Assert.True(disk.IsReadOnly);
        Assert.Equal(BioStatus.ReadOnly, await _io.Run(disk, WriteBio(0, new byte[512])));
        Assert.Equal(BioStatus.ReadOnly, await _io.Run(disk, OpBio(BioOp.WriteZeroes, 0, 1)));
        Assert.Equal(new byte[512], await Read(disk, 0, 512));

        var own = await fx.CreateExportAsync(readOnly: true);
        var ownDisk = Connect(new UnixDomainSocketEndPoint(fx.UnixSocket), own);
        Assert.True(ownDisk.IsReadOnly);
        Assert.Equal(BioStatus.ReadOnly, await _io.Run(ownDisk, WriteBio(0, new byte[512])));
    }

    [Fact]
    public void Connect_to_nothing_listening_throws_naming_the_server_and_connection_refused()
    {
        var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        var port = ((IPEndPoint)probe.LocalEndPoint!).Port;
        probe.Dispose(); // bound, never listening, now closed: nothing listens there
        var e = Assert.Throws<TargetException>(() => Connect(new IPEndPoint(IPAddress.Loopback, port), "x"));
        Assert.Contains($"127.0.0.1:{port}", e.Message);
        Assert.Contains("connection refused", e.Message);
        Assert.Contains("export 'x'", e.Message);
    }

    [Fact]
    public async Task Connect_to_an_unknown_export_throws_with_the_servers_error_text()
    {
        var e = Assert.Throws<TargetException>(() => Connect(new IPEndPoint(IPAddress.Loopback, fx.Port), "no-such-export"));
        Assert.Contains("NBD_REP_ERR_UNKNOWN", e.Message);
        Assert.Contains("no-such-export", e.Message);
        Assert.Contains($"127.0.0.1:{fx.Port}", e.Message);
        await Task.CompletedTask;
    }

    [Fact]
    public void Connect_to_an_export_whose_size_is_not_sectors_throws()
    {
        var kit = StartNbdkit("memory", "1000");
        var e = Assert.Throws<TargetException>(() => Connect(kit.Endpoint, ""));
        Assert.Contains("export size 1000 is not a multiple of 512", e.Message);
    }

    [Fact]
    public async Task Connect_to_a_server_that_sends_garbage_or_nothing_throws()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen();
        var ep = (IPEndPoint)listener.LocalEndPoint!;
        var accepted = new List<Socket>();
        var serve = Task.Run(async () =>
        {
            var garbage = await listener.AcceptAsync();
            accepted.Add(garbage);
            await garbage.SendAsync("HTTP/1.1 400 Bad Request\r\n\r\n"u8.ToArray());
            accepted.Add(await listener.AcceptAsync()); // says nothing at all
        });
        var e = Assert.Throws<TargetException>(() => Connect(ep, "x"));
        Assert.Contains("not an NBD server", e.Message);
        Assert.Contains(ep.ToString(), e.Message);
        var silent = Assert.Throws<TargetException>(() => Connect(ep, "x", new NbdDiskOptions { ConnectTimeout = TimeSpan.FromMilliseconds(300) }));
        Assert.Contains("timed out", silent.Message);
        await serve.WaitAsync(Wait);
        foreach (var s in accepted) s.Dispose();
    }

    // ---- reconnect ------------------------------------------------------------------------------------------------

    [Fact]
    public async Task Requests_held_while_the_server_is_down_complete_after_it_returns()
    {
        var export = await fx.CreateExportAsync(sectors: 4096);
        var (server, socket) = await StartOwnServerAsync();
        var disk = Connect(new UnixDomainSocketEndPoint(socket), export);
        var before = RawNbdClient.Pattern(4096, 5);
        await Write(disk, 0, before);

        await server.StopAsync();
        await Poll.UntilAsync(() => Task.FromResult(!disk.IsConnected), "the disk to see the connection end");
        var held = RawNbdClient.Pattern(65536, 6);
        var write = _io.Start(disk, WriteBio(64, held, BioFlags.Fua));
        var into = new byte[4096];
        var read = _io.Start(disk, ReadBio(0, into));
        Assert.False(write.IsCompleted || read.IsCompleted, "a request completed with no server");

        var (again, _) = await StartOwnServerAsync(socket);
        _cleanup.Add(new Stopper(again));
        Assert.Equal(BioStatus.Ok, await write.WaitAsync(Wait));
        Assert.Equal(BioStatus.Ok, await read.WaitAsync(Wait));
        Assert.Equal(before, into);
        Assert.Equal(held, await Read(disk, 64, held.Length));
        Assert.True(disk.Reconnects >= 1);
    }

    [Fact]
    public async Task Reads_in_flight_when_the_connection_breaks_are_resent()
    {
        // nbdkit with a slow read: the reads are in flight when it is killed; a new nbdkit on the same socket answers them.
        var kit = StartNbdkit("--filter=delay", "memory", "16M", "delay-read=5");
        var endpoint = kit.Endpoint;
        var disk = Connect(() => endpoint, "");
        var into = Enumerable.Range(0, 4).Select(_ => new byte[4096]).ToArray();
        var reads = into.Select((b, i) => _io.Start(disk, ReadBio(i * 8, b))).ToArray();
        await Poll.UntilAsync(() => Task.FromResult(disk.RequestsSent >= 4), "the reads to be sent");
        kit.Dispose();
        var second = StartNbdkit("data", "data=@0x0 1 2 3 4", "size=16M");
        endpoint = second.Endpoint; // the cluster pointed the disk elsewhere
        Assert.All(await Task.WhenAll(reads).WaitAsync(Wait), s => Assert.Equal(BioStatus.Ok, s));
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, into[0][..4]);
        Assert.True(disk.Reconnects >= 1);
        Assert.True(disk.RequestsSent >= 8, $"sent {disk.RequestsSent}");
    }

    [Fact]
    public async Task A_server_gone_longer_than_ReconnectFor_fails_held_requests_and_later_ones_try_again()
    {
        var export = await fx.CreateExportAsync(sectors: 4096);
        var (server, socket) = await StartOwnServerAsync();
        var disk = Connect(new UnixDomainSocketEndPoint(socket), export,
            new NbdDiskOptions { ReconnectFor = TimeSpan.FromMilliseconds(300), RetryWhenFailing = TimeSpan.FromMilliseconds(100) });
        await server.StopAsync();
        Assert.Equal(BioStatus.IoError, await _io.Run(disk, WriteBio(0, new byte[512])));
        Assert.Equal(BioStatus.IoError, await _io.Run(disk, OpBio(BioOp.Flush)));

        var (again, _) = await StartOwnServerAsync(socket);
        _cleanup.Add(new Stopper(again));
        var data = RawNbdClient.Pattern(512, 9);
        await Poll.UntilAsync(async () => await _io.Run(disk, WriteBio(0, data)) == BioStatus.Ok, "a write to succeed once the server is back");
        Assert.Equal(data, await Read(disk, 0, 512));
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
    }

    [Fact]
    public async Task An_export_refused_on_reconnect_fails_held_requests_at_once()
    {
        var export = await fx.CreateExportAsync(sectors: 4096);
        var (server, socket) = await StartOwnServerAsync();
        var disk = Connect(new UnixDomainSocketEndPoint(socket), export, new NbdDiskOptions { ReconnectFor = TimeSpan.FromMinutes(10) });
        await Write(disk, 0, new byte[512]);
        await server.StopAsync();
        await fx.RemoveWhenClosedAsync(export); // the export is gone (as a fenced epoch is refused)
        var held = _io.Start(disk, WriteBio(0, new byte[512]));
        var (again, _) = await StartOwnServerAsync(socket);
        _cleanup.Add(new Stopper(again));
        // Well before ReconnectFor (10 minutes): the refusal fails it.
        Assert.Equal(BioStatus.IoError, await held.WaitAsync(Wait));
        Assert.Equal(BioStatus.IoError, await _io.Run(disk, ReadBio(0, new byte[512])));
    }

    [Fact]
    public async Task Dispose_with_requests_in_flight_answers_each_once()
    {
        var kit = StartNbdkit("--filter=delay", "memory", "16M", "delay-read=30");
        var disk = Connect(kit.Endpoint, "", new NbdDiskOptions { MaxInFlight = 4 });
        var reads = Enumerable.Range(0, 10).Select(i => _io.Start(disk, ReadBio(i, new byte[512]))).ToArray();
        await Poll.UntilAsync(() => Task.FromResult(disk.RequestsSent >= 4), "the reads to be sent");
        disk.Dispose();
        Assert.All(reads, r => Assert.True(r.IsCompleted));
        Assert.All(await Task.WhenAll(reads), s => Assert.Equal(BioStatus.IoError, s));
        Assert.Equal(10, _io.Completions.Count);
        Assert.All(_io.Completions.Values, n => Assert.Equal(1, n));
        Assert.Equal(BioStatus.IoError, await _io.Run(disk, ReadBio(0, new byte[512]))); // and after
    }

    // ---- a table over an NbdDisk ------------------------------------------------------------------------------------

    [Fact]
    public async Task A_linear_table_over_an_nbd_disk_serves_io()
    {
        var kit = StartNbdkit("memory", "8M");
        using var engine = Engine.Start("nbddisk-table");
        var disk = engine.Disks.Add(NbdDisk.Connect("nbd0", engine.Disks.NextDevNo(), new NbdDiskTarget(() => kit.Endpoint, "")));
        engine.Ok(new Dm.Create("over-nbd", $"0 {disk.Sectors} linear nbd0 0"));
        var dev = engine.Open("over-nbd");
        var data = RawNbdClient.Pattern(16384, 77);
        Assert.Equal(BioStatus.Ok, await Submit(dev, Bio.Write(2048, data, Akka.Actor.ActorRefs.Nobody)));
        var back = new byte[16384];
        Assert.Equal(BioStatus.Ok, await Submit(dev, Bio.Read(2048, back, Akka.Actor.ActorRefs.Nobody)));
        Assert.Equal(data, back);
        Assert.Equal(data, await Read(disk, 2048, 16384)); // the NBD server has it
    }

    private static Task<BioStatus> Submit(Akka.Actor.IActorRef device, Bio bio)
    {
        var tcs = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
        bio.ReplyTo = CallbackRef.ForBios(d => tcs.TrySetResult(d.Status));
        device.Tell(bio, Akka.Actor.ActorRefs.NoSender);
        return tcs.Task.WaitAsync(Wait);
    }

    private sealed class Disposer(Action dispose) : IDisposable
    {
        public void Dispose() => dispose();
    }

    private sealed class Stopper(NbdServer server) : IDisposable
    {
        public void Dispose() => server.StopAsync().Wait(Wait);
    }
}
