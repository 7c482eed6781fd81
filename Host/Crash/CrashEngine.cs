using Akka.Actor;

namespace DmActors.Host.Crash;

/// <summary>An engine step that failed or hung: reported with the seed like a violation (the core broke a rule).</summary>
public sealed class CrashEngineException(string message) : Exception(message);

/// <summary>
/// One power cut: builds the stack over two fresh write-back-cache disks (each cache over a power switch over a
/// memory medium), replays the ops, cuts the power, then restarts a fresh manager and stack over the media alone
/// (no cache) and reads the whole device back.
/// </summary>
public static class CrashEngine
{
    public sealed record Settings(ActorSystem System, BarrierMode Mode, bool LyingFlush, bool Tear, TimeSpan Timeout, bool Jitter = false);

    /// <summary>The ledger of what was acknowledged before the cut, the device image after the restart, or the engine error.</summary>
    public sealed record Outcome(IoLedger Ledger, byte[]? Image, string? EngineError);

    private static readonly TimeSpan AnswerWait = TimeSpan.FromMilliseconds(50);
    private static long _instances;

    public static async Task<Outcome> RunAsync(Settings s, CrashStack stack, IReadOnlyList<CrashOp> ops, CutPlan plan)
    {
        var ledger = new IoLedger(ops.Count);
        var registry = new DiskRegistry();
        var media = new MemoryDisk[2];
        var power = new PowerSwitch[2];
        var caches = new CachedDisk[2];
        for (var i = 0; i < 2; i++)
        {
            media[i] = new MemoryDisk(CrashStack.DiskName(i), stack.DiskSectors, registry.NextDevNo());
            power[i] = new PowerSwitch(media[i], s.Jitter ? new Random(plan.TearSeed + i) : null);
            caches[i] = registry.Add(new CachedDisk(power[i]) { FlushLies = s.LyingFlush });
        }
        var manager = s.System.ActorOf(DeviceManager.Props(registry), $"crash-{Interlocked.Increment(ref _instances)}");
        string? error = null;
        try
        {
            var replay = new Replay(s, manager, ledger);
            var device = await replay.CreateStackAsync(stack);
            for (var i = 0; i < ops.Count; i++) await replay.StepAsync(device, stack, i, ops[i]);
            if (plan.Settle) await replay.SettleAsync();
            // Bios held by a suspended device may never be answered: the abrupt cut waits a moment at most.
            else await Task.WhenAny(ledger.MoreAnswers(plan.Answers), Task.Delay(AnswerWait));
        }
        catch (CrashEngineException e) { error = e.Message; }

        // The cut: the media stop taking IO but the tear, the caches lose what they never flushed (or part of it,
        // torn), then acknowledgements stop counting. In that order, an acknowledgement counted was true (what it
        // stands for reached the media before they froze), and a bio not yet answered at the cut could not release
        // IO held behind it in time to reach the media.
        ledger.PowerFailing();
        foreach (var p in power) p.BeginCut();
        var tear = s.Tear ? new Random(plan.TearSeed) : null;
        foreach (var c in caches) c.PowerCut(tear);
        ledger.Cut();
        foreach (var p in power) p.Off();
        s.System.Stop(manager);
        error ??= ledger.Anomaly;
        if (error != null) return new Outcome(ledger, null, error);

        try { return new Outcome(ledger, await ReadBackAsync(s, stack, media), null); }
        catch (CrashEngineException e) { return new Outcome(ledger, null, $"after restart: {e.Message}"); }
    }

    /// <summary>The restart: a fresh manager and the same stack over what reached the media, read end to end.</summary>
    private static async Task<byte[]> ReadBackAsync(Settings s, CrashStack stack, MemoryDisk[] media)
    {
        var registry = new DiskRegistry();
        foreach (var m in media) registry.Add(m);
        var manager = s.System.ActorOf(DeviceManager.Props(registry), $"restart-{Interlocked.Increment(ref _instances)}");
        try
        {
            var device = await new Replay(s, manager, new IoLedger(0)).CreateStackAsync(stack);
            var image = new byte[stack.Sectors * Bio.Sector512];
            var answered = new TaskCompletionSource<BioStatus>(TaskCreationOptions.RunContinuationsAsynchronously);
            device.Tell(Bio.Read(0, image, CallbackRef.ForBios(d => answered.TrySetResult(d.Status))));
            var status = await Within(answered.Task, s.Timeout, "the read-back of the whole device");
            if (status != BioStatus.Ok) throw new CrashEngineException($"the read-back of the whole device failed: {status}");
            return image;
        }
        finally { s.System.Stop(manager); }
    }

    private static async Task<T> Within<T>(Task<T> task, TimeSpan timeout, string what)
    {
        if (await Task.WhenAny(task, Task.Delay(timeout)) != task) throw new CrashEngineException($"{what} was not answered within {timeout.TotalSeconds:0}s");
        return await task;
    }

    /// <summary>Drives one manager: control commands as Asks with a timeout (this is an edge), bios as Tells.</summary>
    private sealed class Replay(Settings s, IActorRef manager, IoLedger ledger)
    {
        private readonly IActorRef _replies = CallbackRef.ForBios(d => ledger.Answered((int)d.Bio.Tag!, d.Status));
        private readonly List<string> _suspended = new();

        public async Task<IActorRef> CreateStackAsync(CrashStack stack)
        {
            await Control(new Dm.Create(CrashStack.Lower, stack.Table(Layer.Lower, 0), Mode: s.Mode));
            await Control(new Dm.Create(CrashStack.Top, stack.Table(Layer.Top, 0), Mode: s.Mode));
            return ((Dm.Opened)await Control(new Dm.Open(CrashStack.Top))).Device;
        }

        public async Task StepAsync(IActorRef device, CrashStack stack, int index, CrashOp op)
        {
            switch (op)
            {
                case CrashOp.Write w:
                    var data = SectorStamp.Make(w.Id, w.Sector, w.Sectors);
                    ledger.Sent(index);
                    device.Tell(Bio.Write(w.Sector, data, _replies, w.Flags, index));
                    break;
                case CrashOp.Flush:
                    ledger.Sent(index);
                    device.Tell(Bio.Flush(_replies, index));
                    break;
                case CrashOp.ClientFlush:
                    ledger.Sent(index);
                    device.Tell(Bio.FlushCompleted(_replies, index));
                    break;
                case CrashOp.Suspend p:
                    // One suspended device at a time: suspending top while lower holds top's IO would wait forever.
                    if (_suspended.Count > 0) break;
                    await Control(new Dm.Suspend(CrashStack.NameOf(p.Layer), p.NoFlush));
                    ledger.Suspended();
                    _suspended.Add(CrashStack.NameOf(p.Layer));
                    break;
                case CrashOp.Resume:
                    await ResumeAllAsync();
                    break;
                case CrashOp.Reload r:
                    // Onto the suspended device itself: swapped while suspended (suspend, load, resume). Else the
                    // other device is resumed first, or the reload's own suspend could wait on its held IO forever.
                    var name = CrashStack.NameOf(r.Layer);
                    if (!_suspended.SequenceEqual([name])) await ResumeAllAsync();
                    await Control(new Dm.Load(name, stack.Table(r.Layer, r.Variant)));
                    ledger.Resuming();
                    await Control(new Dm.Resume(name));
                    _suspended.Clear();
                    break;
                case CrashOp.Wait:
                    await SettleAsync();
                    break;
            }
        }

        /// <summary>Resumes what is suspended, then waits until every bio sent is answered.</summary>
        public async Task SettleAsync()
        {
            await ResumeAllAsync();
            await Within(ledger.Idle().ContinueWith(_ => true), s.Timeout, $"{ledger.Outstanding} bio(s)");
        }

        private async Task ResumeAllAsync()
        {
            if (_suspended.Count > 0) ledger.Resuming();
            foreach (var name in _suspended) await Control(new Dm.Resume(name));
            _suspended.Clear();
        }

        private async Task<object> Control(object command)
        {
            object reply;
            try { reply = await manager.Ask<object>(command, s.Timeout); }
            catch (AskTimeoutException) { throw new CrashEngineException($"{command} was not answered within {s.Timeout.TotalSeconds:0}s"); }
            return reply is Dm.Failed f ? throw new CrashEngineException($"{command} failed: {f.Error}: {f.Reason}") : reply;
        }
    }
}
