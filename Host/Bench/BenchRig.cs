using Akka.Actor;
using Akka.Configuration;
using Microsoft.Win32.SafeHandles;

namespace DmActors.Host.Bench;

/// <summary>
/// The engine as the host builds it (an ActorSystem, a DiskRegistry of file disks, a DeviceManager, devices
/// created and opened by name) plus the files and paths the benchmark runs over: direct (one file), filedisk
/// (a FileDisk without actors: the DiskIoPool's share of the cost), linear (over one FileDisk), striped (two
/// FileDisks, chunk 128), stack3 (linear over linear over linear over a FileDisk), and linear/striped again in
/// BarrierMode.Flush for the barrier workloads; linear-mem (linear over a 64 MiB MemoryDisk, which completes
/// inline: the actors' share of the cost, no IO threads) for the 4 KiB workloads; linear-lanes (linear over the
/// same FileDisk, opened once per IO thread: several submitters on one device, as several NBD connections); with
/// `--mirror`, mirror (two legs over two FileDisks, core log, nosync) for the workloads without barriers, to set
/// beside linear.
/// </summary>
public sealed class BenchRig : IAsyncDisposable
{
    private static readonly TimeSpan AskTimeout = TimeSpan.FromSeconds(30);

    private readonly string _dir;
    private readonly bool _ownsDir;
    private readonly List<string> _files = new();
    private DiskIoPool? _pool;
    private DiskRegistry? _disks;
    private ActorSystem? _system;
    private SafeFileHandle? _direct;

    private BenchRig(string dir, bool ownsDir, int ioThreads) { _dir = dir; _ownsDir = ownsDir; IoThreads = ioThreads; }

    /// <summary>Threads of the engine's DiskIoPool; the direct baseline uses as many.</summary>
    public int IoThreads { get; }

    public List<BenchPath> Paths { get; } = new();

    public static async Task<BenchRig> StartAsync(string? dir, long bytes, int ioThreads, Action<string> progress, bool mirror = false)
    {
        var rig = new BenchRig(dir ?? Directory.CreateTempSubdirectory("dmactors-bench-").FullName, dir == null, ioThreads);
        try
        {
            await rig.SetUpAsync(bytes, progress);
            if (mirror) await rig.AddMirrorAsync(bytes);
        }
        catch { await rig.DisposeAsync(); throw; }
        return rig;
    }

    private async Task SetUpAsync(long bytes, Action<string> progress)
    {
        Directory.CreateDirectory(_dir);
        var sectors = bytes >> Bio.SectorShift;
        progress($"preparing {bytes >> 20} MiB files in {_dir} (pre-written, so reads hit real data)");
        var direct = Prefill("direct.img", bytes);
        var linear = Prefill("linear.img", bytes);
        var stripeA = Prefill("stripe-a.img", bytes / 2);
        var stripeB = Prefill("stripe-b.img", bytes / 2);
        var stack = Prefill("stack.img", bytes);

        _direct = File.OpenHandle(direct, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
        Paths.Add(new DirectPath("direct", _direct, bytes, IoThreads));
        Paths.Add(new DirectPath("direct-ordered", _direct, bytes, IoThreads, ordered: true));

        _pool = new DiskIoPool(IoThreads);
        _disks = new DiskRegistry(_pool);
        var linearDisk = (FileDisk)_disks.AddFile("d-linear", linear, sectors);
        Paths.Add(new DevicePath("filedisk", linearDisk.Submit, bytes, linearDisk));
        var stripes = new[] { (FileDisk)_disks.AddFile("d-stripe-a", stripeA, sectors / 2), (FileDisk)_disks.AddFile("d-stripe-b", stripeB, sectors / 2) };
        var stackDisk = (FileDisk)_disks.AddFile("d-stack", stack, sectors);

        const long memBytes = 64 << 20;
        _disks.AddMemory("d-mem", memBytes >> Bio.SectorShift);

        _system = ActorSystem.Create("dmactors-bench", HostAkkaConfig());
        var manager = _system.ActorOf(DeviceManager.Props(_disks), "devices");
        var striped = $"0 {sectors} striped 2 128 d-stripe-a 0 d-stripe-b 0";
        async Task<IActorRef> Create(string name, string table, BarrierMode mode = BarrierMode.Ordered)
        {
            Expect(await manager.Ask<object>(new Dm.Create(name, table, Mode: mode), AskTimeout), "create", name);
            return await Open(name);
        }
        async Task<IActorRef> Open(string name)
        {
            var opened = await manager.Ask<object>(new Dm.Open(name), AskTimeout);
            return opened is Dm.Opened o ? o.Device : throw new InvalidOperationException($"open {name}: {opened}");
        }
        Paths.Add(new DevicePath("linear", await Create("linear", $"0 {sectors} linear d-linear 0"), bytes, linearDisk));
        Paths.Add(new DevicePath("striped", await Create("striped", striped), bytes, stripes));
        await Create("stack1", $"0 {sectors} linear d-stack 0");
        await Create("stack2", $"0 {sectors} linear stack1 0");
        Paths.Add(new DevicePath("stack3", await Create("stack3", $"0 {sectors} linear stack2 0"), bytes, stackDisk));
        var lanes = new List<IActorRef> { await Create("linear-lanes", $"0 {sectors} linear d-linear 0") };
        while (lanes.Count < Math.Max(2, IoThreads)) lanes.Add(await Open("linear-lanes"));
        Paths.Add(new DevicePath("linear-lanes", lanes, bytes, linearDisk));
        Paths.Add(new DevicePath("linear-mem", await Create("linear-mem", $"0 {memBytes >> Bio.SectorShift} linear d-mem 0"), memBytes));
        Paths.Add(new DevicePath("linear-flush", await Create("linear-flush", $"0 {sectors} linear d-linear 0", BarrierMode.Flush), bytes, linearDisk));
        Paths.Add(new DevicePath("striped-flush", await Create("striped-flush", striped, BarrierMode.Flush), bytes, stripes));
    }

    /// <summary>A two-leg mirror over two more files, core log, nosync: the legs' contents differ, which no workload here reads back.</summary>
    private async Task AddMirrorAsync(long bytes)
    {
        var (a, b, _) = MirrorFiles("mirror", bytes);
        var table = $"0 {bytes >> Bio.SectorShift} mirror core 2 1024 nosync 2 {a.Name} 0 {b.Name} 0";
        Expect(await Manager.Ask<object>(new Dm.Create("mirror", table), AskTimeout), "create", "mirror");
        var opened = await Manager.Ask<object>(new Dm.Open("mirror"), AskTimeout);
        Paths.Add(new DevicePath("mirror", opened is Dm.Opened o ? o.Device : throw new InvalidOperationException($"open mirror: {opened}"), bytes, a, b));
    }

    /// <summary>The device manager, for benches that make their own devices.</summary>
    public ActorSelection Manager => _system!.ActorSelection("/user/devices");

    /// <summary>Two leg disks of <paramref name="bytes"/> and a 4 MiB log disk for a mirror named <paramref name="name"/>, written alike.</summary>
    public (FileDisk A, FileDisk B, FileDisk Log) MirrorFiles(string name, long bytes)
    {
        FileDisk Disk(string part, long size) => (FileDisk)_disks!.AddFile($"d-{name}-{part}", Prefill($"{name}-{part}.img", size), size >> Bio.SectorShift);
        return (Disk("a", bytes), Disk("b", bytes), Disk("log", 4 << 20));
    }

    /// <summary>
    /// Which paths a workload runs on: barrier workloads compare both barrier modes on linear and striped, against
/// direct (write + fdatasync) and direct-ordered (the ordered barrier's steps without an engine); the
    /// memory-backed device only runs small blocks (it isolates per-bio overhead).
    /// </summary>
    public IEnumerable<BenchPath> PathsFor(Workload w) => Paths.Where(p => w.IsBarrier
        ? p.Name is "direct" or "direct-ordered" or "linear" or "linear-flush" or "striped" or "striped-flush"
        : p.Name is "direct" or "filedisk" or "linear" or "linear-lanes" or "striped" or "stack3" or "mirror" || (p.Name == "linear-mem" && w.BlockBytes <= 4096));

    private static void Expect(object reply, string op, string name)
    {
        if (reply is not Dm.Done) throw new InvalidOperationException($"{op} {name}: {reply}");
    }

    /// <summary>The host's embedded akka.hocon, kept local: the bench never opens a port.</summary>
    private static Config HostAkkaConfig() =>
        ConfigurationFactory.ParseString("akka.actor.provider = local\nakka.loglevel = WARNING\nakka.stdout-loglevel = WARNING")
            .WithFallback(Configuration.HostConfig.Embedded());

    /// <summary>Creates the file and writes it full of non-zero data, then syncs it so writeback does not run during the timed slices.</summary>
    private string Prefill(string name, long bytes)
    {
        var path = Path.Combine(_dir, name);
        _files.Add(path);
        using var h = File.OpenHandle(path, FileMode.Create, FileAccess.ReadWrite, FileShare.ReadWrite);
        var chunk = new byte[1 << 20];
        new Random(name.GetHashCode()).NextBytes(chunk);
        for (long off = 0; off < bytes; off += chunk.Length)
            RandomAccess.Write(h, chunk.AsSpan(0, (int)Math.Min(chunk.Length, bytes - off)), off);
        using var fs = new FileStream(h, FileAccess.ReadWrite);
        fs.Flush(flushToDisk: true);
        return path;
    }

    /// <summary>
    /// Writes back what earlier slices left dirty (untimed, before every slice), so no slice pays for another's
    /// writeback: fdatasync cost swings 10x with dirty data on a shared disk.
    /// </summary>
    public void SyncFiles()
    {
        foreach (var f in _files)
        {
            using var h = File.OpenHandle(f, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite);
            fdatasync((int)h.DangerousGetHandle());
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)] private static extern int fdatasync(int fd);

    public async ValueTask DisposeAsync()
    {
        if (_system != null)
        {
            try { await _system.Terminate().WaitAsync(TimeSpan.FromSeconds(15)); }
            catch (TimeoutException) { Console.Error.WriteLine("bench: actor system did not stop within 15 s"); }
        }
        _disks?.Dispose();
        _pool?.Dispose();
        _direct?.Dispose();
        foreach (var f in _files) TryDelete(() => File.Delete(f));
        if (_ownsDir) TryDelete(() => Directory.Delete(_dir, recursive: true));
    }

    private static void TryDelete(Action delete)
    {
        try { delete(); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
