using Akka.Actor;

namespace DmActors;

/// <summary>
/// A device's flush bookkeeping (flush skipping). A flush covers the writes completed before it went out, so when
/// no write has completed since the last successful flush there is nothing to make durable (the common
/// barrier-after-barrier case). A table that goes live counts as one unflushed write: its devices may hold writes
/// acknowledged before it, by an earlier process or through another device, so the first flush after it goes
/// through to them. Used only on the device actor's thread, except <see cref="Completed"/>, which the device's
/// lanes count into from their own threads.
/// </summary>
public sealed class FlushTracker
{
    private readonly CompletedWrites _completed = new();
    private long _writesFlushed;

    /// <summary>The device's count of completed writes, shared with its lanes: a flush covers writes answered on any of them.</summary>
    public CompletedWrites Completed => _completed;
    private long WritesCompleted => _completed.Value;

    /// <summary>
    /// Cached devices of swapped-out tables that may still hold this device's unflushed writes. Disks among them are
    /// kept open until flushed (a file a table named by path is closed once unused, and a closed file cannot sync).
    /// </summary>
    private readonly List<IBlockDevice> _stale = new();
    /// <summary>Per stale device, the swapped-out targets that used it: whether its loss loses their writes.</summary>
    private readonly Dictionary<IBlockDevice, Target[]> _staleUsers = new();

    public bool HasStale => _stale.Count > 0;

    /// <summary>A write (or discard / write-zeroes) completed: it is unflushed until the next flush covers it.</summary>
    public void WriteCompleted(Bio bio)
    {
        _completed.Record(bio);
    }

    /// <summary>
    /// <paramref name="next"/> replaces <paramref name="old"/>: the cached devices only the old table used are
    /// remembered (and held open) while they may hold unflushed writes; the new table counts as an unflushed write.
    /// </summary>
    public void Swap(Table? old, Table next)
    {
        if (old != null && WritesCompleted != _writesFlushed)
            foreach (var dev in old.Devices)
                if (dev.HasVolatileCache && !next.Devices.Contains(dev) && !_stale.Contains(dev))
                {
                    dev.Open();
                    _stale.Add(dev);
                    _staleUsers[dev] = old.Targets.Where(t => t.Devices.Contains(dev)).ToArray();
                }
        _completed.Add();
    }

    /// <summary>An empty flush can complete at once: it would go straight to disks that hold nothing unflushed of ours.</summary>
    public bool CanSkip(Table live) => live.FlushBypassesMap && WritesCompleted == _writesFlushed && _stale.Count == 0;

    /// <summary>
    /// A barrier's flush can be skipped only when it would go straight to disks that have no cache; targets that
    /// see flushes (log-writes, flakey, delay) always get them.
    /// </summary>
    public bool NothingToFlush(Table live) => live.FlushBypassesMap && !live.HasVolatileCache && _stale.Count == 0;

    /// <summary>A flush goes out as <paramref name="io"/>: remember what it covers; returns the stale devices it must also reach.</summary>
    public IBlockDevice[]? Begin(DmIo io)
    {
        // A device that is gone, whose targets have every write of theirs elsewhere too (a mirror's leg), is let
        // go unflushed: flushing it could only fail, and lose nothing.
        foreach (var d in _stale.Where(d => d.IsGone && _staleUsers[d].All(t => t.SurvivesLossOf(d))).ToList()) Release(d);
        io.FlushUpTo = WritesCompleted;
        return _stale.Count == 0 ? null : io.FlushedStale = _stale.ToArray();
    }

    /// <summary>
    /// An empty flush to every cache below, as clones of <paramref name="io"/>: straight to each distinct device when
    /// all targets allow it (flush_bypasses_map), else num_flush_bios clones through each target's actor. The clones
    /// are NoDrain: what they must cover already completed below, so a mapped device below need not drain for them.
    /// Devices without a volatile cache are skipped on the direct path: they have nothing to flush.
    /// </summary>
    public void Issue(DmIo io, Table live, IActorRef[] targets, IActorRef replyTo)
    {
        if (CanSkip(live)) return;
        if (Begin(io) is { } stale)
            foreach (var dev in stale) FlushDevice(io, dev, replyTo);
        if (live.FlushBypassesMap)
        {
            foreach (var dev in live.Devices)
                if (dev.HasVolatileCache) FlushDevice(io, dev, replyTo);
            return;
        }
        for (var t = 0; t < live.Targets.Count; t++)
            for (var i = 0; i < live.Targets[t].NumFlushBios; i++)
            {
                io.Refs++;
                targets[t].Tell(new Bio(BioOp.Flush, live.Targets[t].Begin, 0, Memory<byte>.Empty, replyTo, BioFlags.NoDrain, io) { Index = i },
                    ActorRefs.NoSender);
            }
    }

    private static void FlushDevice(DmIo io, IBlockDevice dev, IActorRef replyTo)
    {
        io.Refs++;
        dev.Submit(new Bio(BioOp.Flush, 0, 0, Memory<byte>.Empty, replyTo, BioFlags.NoDrain, io) { Device = dev });
    }

    /// <summary>
    /// A flush completed: what had completed before it went out is durable; stale disks it reached are closed. A
    /// failed flush keeps them (the next one tries again), except those gone for good: what they held is lost, this
    /// flush reported it, and no later flush can do better (else every flush of the device would fail from now on).
    /// </summary>
    public void Flushed(DmIo io, BioStatus status)
    {
        if (io.FlushUpTo < 0) return;
        if (status != BioStatus.Ok)
        {
            if (status != BioStatus.Shutdown && io.FlushedStale != null) // ESHUTDOWN: not run, to be sent again
                foreach (var d in io.FlushedStale)
                    if (d.IsGone) Release(d);
            return;
        }
        _writesFlushed = Math.Max(_writesFlushed, io.FlushUpTo);
        if (io.FlushedStale != null)
            foreach (var d in io.FlushedStale) Release(d);
        io.FlushUpTo = -1;
    }

    private void Release(IBlockDevice d)
    {
        if (!_stale.Remove(d)) return;
        _staleUsers.Remove(d);
        d.Close();
    }

    /// <summary>The device is gone: release the stale disks still held open.</summary>
    public void Close()
    {
        foreach (var d in _stale) d.Close();
        _stale.Clear();
        _staleUsers.Clear();
    }
}

/// <summary>
/// Completed writes of one device, counted from every thread that completes them (the device and its lanes). A
/// write is counted before it is answered, so a flush issued after the answer sees it.
/// </summary>
public sealed class CompletedWrites
{
    private long _count;

    public long Value => Volatile.Read(ref _count);
    public void Add() => Interlocked.Increment(ref _count);

    /// <summary>Counts <paramref name="bio"/> if it writes (a write, discard or write-zeroes).</summary>
    public void Record(Bio bio)
    {
        if (bio.Op is BioOp.Write or BioOp.Discard or BioOp.WriteZeroes) Add();
    }
}
