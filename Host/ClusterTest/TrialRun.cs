using System.Diagnostics;
using DmActors.Host.Crash;

namespace DmActors.Host.ClusterTest;

/// <summary>What one fault step found: the writes checked and every broken rule, in words.</summary>
public sealed record StepOutcome(ClusterFault Fault, string Action, int Checked, IReadOnlyList<string> Violations, int BioErrors, int Kills, TimeSpan Took);

/// <summary>
/// One run of a trial on the cluster: a fresh mirrored volume in a fresh slot of the disks, then for each fault
/// step its IO phase with the fault striking mid-phase, the recovery (restart, the volume serving again with every
/// leg in sync), and the checks: every write promised durable reads back through NBD (<see cref="DurabilityOracle"/>
/// over the whole trial so far), and the legs' backing files hold the same bytes.
/// </summary>
public sealed class TrialRun(ClusterRig rig, ClusterTestOptions o, ClusterTrial trial, int slot, string volume)
{
    private static readonly TimeSpan IoWait = TimeSpan.FromSeconds(120);
    private readonly IoLedger _ledger = new(trial.Ops.Count);
    private readonly Random _rnd = new(trial.TrialSeed ^ 0x5eed);
    private long Offset => ClusterTestOptions.LogSectors + (long)slot * o.VolumeSectors;
    private string SlowLeg => volume + "-slow";
    private int V => o.VolumeSectors;

    /// <summary>The slow leg by device number, as the cluster records a stacked table, so its log identity survives a failover.</summary>
    private string _slowDevNo = "";
    /// <summary>With no delay the first leg is the other node's disk itself.</summary>
    private bool Stacked => o.LegDelayMs > 0;
    private string FirstLeg => Stacked ? $"{_slowDevNo} 0" : $"disk0@{trial.Leg1Node} {Offset}";

    private string MirrorTable =>
        $"0 {V} mirror disk 2 disk0@{trial.LogNode} {ClusterTestOptions.RegionSectors} 2 {FirstLeg} disk0@{trial.Owner} {Offset} 1 handle_errors";

    public async Task CreateAsync()
    {
        if (!Stacked)
        {
            await rig.Must("create", volume, "--node", trial.Owner, "--table", MirrorTable);
            return;
        }
        // The first leg behind a write delay (reads not delayed): a slow link, so a write is in flight on it
        // well after the second leg has it, which is when an acknowledgement that does not wait shows.
        await rig.Must("create", SlowLeg, "--node", trial.Owner, "--table",
            $"0 {V} delay disk0@{trial.Leg1Node} {Offset} 0 disk0@{trial.Leg1Node} {Offset} {o.LegDelayMs}");
        var info = await rig.Must("info", SlowLeg);
        _slowDevNo = System.Text.RegularExpressions.Regex.Match(info, @"Major, minor:\s+(\d+), (\d+)") is { Success: true } m
            ? $"{m.Groups[1].Value}:{m.Groups[2].Value}" : throw new ClusterTestException($"no device number in: {info.Trim()}");
        await rig.Must("create", volume, "--node", trial.Owner, "--table", MirrorTable);
    }

    /// <summary>Removes the trial's volumes; a client's connection may keep one open a moment after it closed.</summary>
    public async Task RemoveAsync()
    {
        foreach (var name in Stacked ? new[] { volume, SlowLeg } : [volume])
        {
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (true)
            {
                var (code, text) = await rig.Dmsetup("remove", name);
                if (code == 0) break;
                if (DateTime.UtcNow > until) throw new ClusterTestException($"dmsetup remove {name}: exit {code}: {text.Trim()}");
                await Task.Delay(1000);
            }
        }
    }

    public async Task<StepOutcome> StepAsync(ClusterFault f)
    {
        var clock = Stopwatch.StartNew();
        var owner = await rig.OwnerAsync(volume) ?? trial.Owner;
        var victim = Victim(f.Kind, owner);
        // The client reaches the volume through a node the fault spares.
        var spared = rig.Serving.Where(n => n.Name != victim).OrderBy(_ => _rnd.Next()).FirstOrDefault();
        ServeNode? preferred = spared;
        Func<Task>? recover = null;
        string action = "";
        var kills = 0;
        var violations = new List<string>();
        // A recovery that never comes (a bio never answered, a node that cannot rejoin) breaks a rule too.
        try
        {
            using (var client = await VolumeClient.OpenAsync(volume, () => rig.Endpoint(() => preferred), IoWait))
            {
                var (start, end) = trial.Phase(f.Step);
                for (var i = start; i < end; i++)
                {
                    if (trial.Ops[i] is CrashOp.Wait)
                    {
                        if (recover != null) break; // the fault struck in this batch: no more IO until it is over
                        await IdleAsync();
                        continue;
                    }
                    var answered = client.Send(_ledger, i, trial.Ops[i]);
                    if (recover != null || i - start < f.FaultAfter) continue;
                    // The fault strikes right after a promise: the answer of the phase's next FUA write from here.
                    if (trial.Ops[i] is CrashOp.Write { Kind: WriteKind.Fua }) await Task.WhenAny(answered, Task.Delay(IoWait));
                    else if (trial.Ops.Skip(i + 1).Take(end - i - 1).Any(op => op is CrashOp.Write { Kind: WriteKind.Fua })) continue;
                    (action, recover, kills) = await StrikeAsync(f, owner, victim);
                }
                if (recover == null) (action, recover, kills) = await StrikeAsync(f, owner, victim);
                await Task.WhenAll(recover(), IdleAsync());
            }
        }
        catch (ClusterTestException e)
        {
            violations.Add($"during {FaultKinds.Name(f.Kind)}{(action.Length > 0 ? $" ({action})" : "")}: {e.Message}");
            return new StepOutcome(f, action, 0, violations, Errors(), kills, clock.Elapsed);
        }
        var promised = 0;
        try
        {
            await InSyncAsync();
            using var reader = await VolumeClient.OpenAsync(volume, () => rig.Endpoint(() => null), IoWait);
            // Through the mirror to every leg: the write-back caches write out, so the legs' files can be compared.
            // That flush may be what tells the mirror that a leg lost writes (it fails the leg, the resync brings it
            // back): the files are compared only after a flush that left every leg in sync.
            var flushed = await reader.FlushAsync(IoWait);
            for (var again = 0; flushed == BioStatus.Ok && !await InSyncNowAsync() && again < 3; again++)
            {
                await InSyncAsync();
                flushed = await reader.FlushAsync(IoWait);
            }
            if (flushed != BioStatus.Ok) violations.Add($"a flush after the recovery failed: {flushed}");
            var image = await reader.ReadAllAsync(V, IoWait);
            var verdict = DurabilityOracle.Check(trial.Ops, _ledger, BarrierMode.Flush, image);
            promised = verdict.Promised;
            violations.AddRange(verdict.Violations.Select(v => v.ToString()));
            // Without that flush a leg's cache may still hold what its file lacks: the files are compared only after one.
            if (flushed == BioStatus.Ok) violations.AddRange(CompareLegs());
        }
        catch (ClusterTestException e) { violations.Add(e.Message); }
        return new StepOutcome(f, action, promised, violations, Errors(), kills, clock.Elapsed);
    }

    private int Errors() => Enumerable.Range(0, trial.Ops.Count).Count(i => _ledger.Status(i) is { } st && st != BioStatus.Ok);

    private string? Victim(FaultKind kind, string owner) => kind switch
    {
        FaultKind.KillOwner or FaultKind.KillTwo or FaultKind.StopOwner => owner,
        FaultKind.KillLeg => new[] { trial.Leg1Node, trial.Owner }.FirstOrDefault(n => n != owner) ?? owner,
        FaultKind.KillLog => trial.LogNode,
        _ => null,
    };

    /// <summary>The fault itself, while IO is in flight; returns what recovers from it.</summary>
    private async Task<(string Action, Func<Task> Recover, int Kills)> StrikeAsync(ClusterFault f, string owner, string? victim)
    {
        switch (f.Kind)
        {
            case FaultKind.KillOwner or FaultKind.KillLeg or FaultKind.KillLog:
            {
                var node = rig[victim!];
                node.Kill();
                return ($"kill -9 {node.Name} ({Roles(node.Name, owner)})", () => RestartAsync(node), 1);
            }
            case FaultKind.KillTwo:
            {
                var first = rig[owner];
                first.Kill();
                async Task Both()
                {
                    await RestartAsync(first);
                    // Only once the new owner has recovered (fenced, resynced, flushed every leg): an answered write
                    // not flushed yet is in the legs' caches, and killing both leg holders before then loses it with
                    // every copy (two of the two failures a two-leg mirror cannot take).
                    await InSyncAsync();
                    var now = await rig.OwnerAsync(volume) ?? owner;
                    var second = rig[new[] { trial.Leg1Node, trial.Owner }.FirstOrDefault(n => n != now) ?? now];
                    second.Kill();
                    await RestartAsync(second);
                }
                var then = new[] { trial.Leg1Node, trial.Owner }.FirstOrDefault(n => n != owner) ?? owner;
                return ($"kill -9 {owner} (owner), restart, resync, then kill -9 a leg holder (likely {then})", Both, 2);
            }
            case FaultKind.StopOwner:
            {
                var node = rig[owner];
                await node.PauseAsync();
                var pause = f.LongStop ? TimeSpan.FromSeconds(8) : TimeSpan.FromSeconds(1);
                async Task Resume()
                {
                    await Task.Delay(pause);
                    node.Continue();
                    // A node the cluster downed meanwhile shuts itself down when it wakes: start it again.
                    if (await node.ExitsWithinAsync(TimeSpan.FromSeconds(f.LongStop ? 30 : 5))) { await RestartAsync(node); return; }
                    // One that runs on after the cluster removed it would go on serving volumes that moved away.
                    if (rig.Serving.FirstOrDefault(n => n != node) is { } via && !await rig.IsMemberAsync(node.Name, via))
                        throw new ClusterTestException($"{node.Name} was removed from the cluster (downed while stopped) but still runs after SIGCONT; a downed node must stop serving and exit");
                }
                return ($"SIGSTOP {owner} (owner) for {pause.TotalSeconds:0}s, SIGCONT", Resume, 0);
            }
            case FaultKind.Move:
            {
                var to = rig.Serving.Select(n => n.Name).Where(n => n != owner).OrderBy(_ => _rnd.Next()).First();
                var move = rig.Move(volume, to);
                async Task Done()
                {
                    var (code, text) = await move;
                    if (code != 0) Console.Error.WriteLine($"clustertest: note: move of {volume} to {to} failed: {text.Trim()}");
                }
                return ($"move {owner} -> {to}", Done, 0);
            }
            default:
            {
                var load = Task.Run(async () =>
                {
                    await rig.Must("load", volume, "--table", MirrorTable);
                    await rig.Must("resume", volume);
                });
                return ("reload (same table) and resume", () => load, 0);
            }
        }
    }

    private string Roles(string node, string owner)
    {
        var roles = new List<string>();
        if (node == owner) roles.Add("owner");
        if (node == trial.Leg1Node) roles.Add("leg 1");
        if (node == trial.Owner) roles.Add("leg 2");
        if (node == trial.LogNode) roles.Add("log");
        return roles.Count == 0 ? "no role" : string.Join(", ", roles);
    }

    private async Task RestartAsync(ServeNode node)
    {
        // Let the cluster notice first (as after a real crash), unless the node already shut down by itself.
        await Task.Delay(TimeSpan.FromSeconds(1));
        await rig.RestartAsync(node);
    }

    private async Task IdleAsync()
    {
        var idle = _ledger.Idle();
        if (await Task.WhenAny(idle, Task.Delay(IoWait)) != idle)
            throw new ClusterTestException($"{_ledger.Outstanding} bio(s) not answered within {IoWait.TotalSeconds:0}s");
    }

    /// <summary>Waits until the volume is active with no error and the mirror reports every region in sync on healthy legs.</summary>
    private async Task InSyncAsync()
    {
        var until = DateTime.UtcNow + o.Recover;
        var last = "no status";
        while (DateTime.UtcNow < until)
        {
            if (await rig.ServesAsync(volume) && await rig.MirrorStatusAsync(volume) is { } s)
            {
                last = $"{s.InSync}/{s.Regions} in sync, legs {s.Health}";
                if (AllInSync(s)) return;
                // The first leg is a volume over another node's disk: the mirror does not see that node come
                // back (only volumes over its disks are rebuilt), so, as an operator would, say the leg is back.
                if (Stacked && s.Health[0] != 'A' && rig.Nodes.All(n => n.Serving) && await rig.ServesAsync(SlowLeg))
                    await rig.Dmsetup("message", volume, "0", "return_leg", _slowDevNo);
            }
            await Task.Delay(500);
        }
        throw new ClusterTestException($"{volume} did not serve with every region in sync within {o.Recover.TotalSeconds:0}s (last: {last})");
    }

    private async Task<bool> InSyncNowAsync() => await rig.MirrorStatusAsync(volume) is { } s && AllInSync(s);

    private static bool AllInSync((long InSync, long Regions, string Health) s) => s.InSync == s.Regions && s.Health.All(c => c == 'A');

    /// <summary>The legs' backing files, sector by sector over the mirrored range (read beside the hosts, which keep them open).</summary>
    private IEnumerable<string> CompareLegs()
    {
        var a = ReadLeg(rig[trial.Leg1Node].DiskPath);
        var b = ReadLeg(rig[trial.Owner].DiskPath);
        var differing = new List<string>();
        for (var s = 0; s < V; s++)
        {
            var x = a.AsSpan(s * Bio.Sector512, Bio.Sector512);
            var y = b.AsSpan(s * Bio.Sector512, Bio.Sector512);
            if (x.SequenceEqual(y)) continue;
            differing.Add($"legs differ at sector {s}: leg 1 ({trial.Leg1Node}) holds {SectorStamp.Describe(x, s)}, leg 2 ({trial.Owner}) holds {SectorStamp.Describe(y, s)}");
        }
        return differing;
    }

    private byte[] ReadLeg(string path)
    {
        var data = new byte[(long)V * Bio.Sector512];
        using var h = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        var n = RandomAccess.Read(h, data, Offset * Bio.Sector512);
        if (n != data.Length) throw new ClusterTestException($"{path}: short read of the leg ({n} of {data.Length} bytes)");
        return data;
    }
}
