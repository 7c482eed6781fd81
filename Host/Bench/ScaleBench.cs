using System.CommandLine;
using System.Diagnostics;
using Akka.Actor;
using Akka.Configuration;
using DmActors.Host.CommandLine;

namespace DmActors.Host.Bench;

/// <summary>
/// `dmactors bench-scale [--devices N] [--busy N] [--seconds S]`: many mapped devices on one host. Creates N
/// linear devices over slices of one sparse file disk, reports the memory each idle device costs, then keeps
/// --busy of them busy at once (4 KiB random writes, queue depth 1 each) and reports the total and the spread.
/// </summary>
public static class ScaleBench
{
    public static Command Build()
    {
        var devices = ToolOption.Int("--devices", "N", "Linear devices to create (default 1000).", 1, 1_000_000, t => $"--devices: expected a positive number, got '{t}'");
        var busy = ToolOption.Int("--busy", "N", "Devices kept busy at once (default 64, at most --devices).", 1, 1_000_000, t => $"--busy: expected a positive number, got '{t}'");
        var seconds = ToolOption.Seconds("--seconds", "S", "How long they are kept busy (default 5).", 3600, t => $"--seconds: expected a number of seconds in (0, 3600], got '{t}'");
        var command = new Command("bench-scale",
            "Many devices on one host: creates N linear devices over one sparse file disk, reports the memory each idle " +
            "device costs, then keeps --busy of them busy at once (4 KiB random writes, QD1 each).") { devices, busy, seconds };
        command.SetAction(r => RunAsync(r.GetValue(devices) ?? 1000, r.GetValue(busy) ?? 64, r.GetValue(seconds) ?? 5.0));
        return command;
    }

    private static async Task<int> RunAsync(int devices, int busy, double seconds)
    {
        busy = Math.Min(busy, devices);
        const long slice = 2048; // sectors per device (1 MiB)
        var dir = Directory.CreateTempSubdirectory("dmactors-scale-").FullName;
        var disks = new DiskRegistry();
        var system = ActorSystem.Create("scale", ConfigurationFactory.ParseString("akka.loglevel = WARNING").WithFallback(Configuration.HostConfig.IoDispatcherSection()));
        try
        {
            disks.AddFile("disk0", Path.Combine(dir, "disk0.img"), devices * slice);
            var manager = system.ActorOf(DeviceManager.Props(disks), "devices");
            var timeout = TimeSpan.FromSeconds(30);
            await manager.Ask<object>(Dm.List.Instance, timeout);

            var before = Memory();
            var clock = Stopwatch.StartNew();
            for (var d = 0; d < devices; d++)
                if (await manager.Ask<object>(new Dm.Create($"v{d}", $"0 {slice} linear disk0 {d * slice}"), timeout) is Dm.Failed f)
                    throw new InvalidOperationException($"create v{d}: {f.Reason}");
            var created = clock.Elapsed;
            var after = Memory();
            Console.WriteLine($"{devices} devices created in {created.TotalSeconds:F1} s");
            Console.WriteLine($"memory per idle device: {(after.Managed - before.Managed) / devices / 1024.0:F1} KiB managed heap, " +
                              $"{(after.WorkingSet - before.WorkingSet) / devices / 1024.0:F1} KiB working set");

            var opened = new List<IActorRef>();
            for (var d = 0; d < busy; d++)
                opened.Add(((Dm.Opened)await manager.Ask<object>(new Dm.Open($"v{d * (devices / busy)}"), timeout)).Device);
            var counts = new long[busy];
            var errors = 0L;
            var deadline = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
            var finished = new CountdownEvent(busy);
            for (var d = 0; d < busy; d++)
            {
                var index = d;
                var rnd = new Random(d);
                var buffer = new byte[4096];
                rnd.NextBytes(buffer);
                var device = opened[d];
                Bio Next(IActorRef reply) => Bio.Write(rnd.NextInt64(slice / 8) * 8, buffer, reply);
                IActorRef reply = null!;
                reply = CallbackRef.ForBios(done =>
                {
                    if (done.Status != BioStatus.Ok) Interlocked.Increment(ref errors);
                    counts[index]++;
                    if (Stopwatch.GetTimestamp() < deadline) device.Tell(Next(reply));
                    else finished.Signal();
                });
                device.Tell(Next(reply));
            }
            finished.Wait(TimeSpan.FromSeconds(seconds + 60));
            var total = counts.Sum();
            Console.WriteLine($"{busy} devices busy at once (4 KiB random writes, QD1 each) for {seconds:0.#} s: " +
                              $"{total / seconds:F0} IOPS in all, per device min {counts.Min() / seconds:F0} / median {counts.Order().ElementAt(busy / 2) / seconds:F0} / max {counts.Max() / seconds:F0}, errors {errors}");
            Console.WriteLine($"peak working set {Process.GetCurrentProcess().PeakWorkingSet64 >> 20} MiB, {Environment.ProcessorCount} cores");
            return errors == 0 ? CommandRunner.Success : CommandRunner.Failure;
        }
        finally
        {
            await system.Terminate();
            disks.Dispose();
            try { Directory.Delete(dir, true); } catch (IOException) { }
        }
    }

    private static (long Managed, long WorkingSet) Memory()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        using var p = Process.GetCurrentProcess();
        return (GC.GetTotalMemory(true), p.WorkingSet64);
    }
}
