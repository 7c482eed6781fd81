using System.Diagnostics;
using Akka.Actor;

namespace DmActors.Host.Bench;

/// <summary>
/// IO through a mapped device, the way the NBD server does it: bios Told to the device actor with a
/// <see cref="CallbackRef"/> reply, QD of them in flight, the next one submitted from the completion callback.
/// Each slot reuses its own Bio and buffer (the submitter owns both again once the bio is answered), so whatever
/// a run allocates per IO is the engine's. The same loop over a bare disk (no actors) shows what the
/// DiskIoPool alone costs. <paramref name="disks"/> are the file disks below, whose fdatasyncs are counted.
/// With several submitters (opens of one device: its lanes), slot i always submits through submitter i mod n, as
/// n NBD connections would, each with its share of the queue depth.
/// </summary>
public sealed class DevicePath(string name, Action<Bio>[] submitters, long bytes, params FileDisk[] disks) : BenchPath(name, bytes)
{
    public DevicePath(string name, Action<Bio> submit, long bytes, params FileDisk[] disks) : this(name, [submit], bytes, disks) { }

    public DevicePath(string name, IActorRef device, long bytes, params FileDisk[] disks) : this(name, [device], bytes, disks) { }

    public DevicePath(string name, IReadOnlyList<IActorRef> opens, long bytes, params FileDisk[] disks)
        : this(name, opens.Select(o => (Action<Bio>)(bio => o.Tell(bio, ActorRefs.NoSender))).ToArray(), bytes, disks) { }

    private long Syncs => disks.Sum(d => d.FlushesIssued);

    public override bool IsDirect => false;

    private sealed class Slot(int index, Bio bio, Memory<byte> data)
    {
        public readonly int Index = index;
        public readonly Bio Bio = bio;
        public readonly Memory<byte> Data = data;
        public long Submitted;
    }

    public override async Task<RunSample> RunAsync(Workload w, double seconds, int seed)
    {
        var run = new Run(this, w, seconds, seed);
        return await run.ExecuteAsync();
    }

    private sealed class Run
    {
        private readonly DevicePath _path;
        private readonly Workload _w;
        private readonly double _seconds;
        private readonly IoPattern _pattern;
        private readonly byte[][] _buffers;
        private readonly Slot[] _slots;
        private readonly CallbackRef _reply;
        private readonly LatencyHistogram _hist = new();
        private readonly TaskCompletionSource _finished = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private long _ops, _deadline;
        private int _errors, _active;

        public Run(DevicePath path, Workload w, double seconds, int seed)
        {
            _path = path; _w = w; _seconds = seconds;
            _pattern = new IoPattern(w, path.Bytes, seed);
            _buffers = RentBuffers(w, seed);
            _reply = CallbackRef.ForBios(OnDone);
            _slots = new Slot[w.QueueDepth];
            for (var i = 0; i < _slots.Length; i++) _slots[i] = new Slot(i, new Bio(), _buffers[i].AsMemory(0, w.BlockBytes));
        }

        public async Task<RunSample> ExecuteAsync()
        {
            var syncs0 = _path.Syncs;
            var alloc0 = GC.GetTotalAllocatedBytes(true);
            var start = Stopwatch.GetTimestamp();
            _deadline = Deadline(_seconds);
            _active = _slots.Length;
            foreach (var s in _slots) Submit(s);
            try { await _finished.Task.WaitAsync(TimeSpan.FromSeconds(_seconds + 120)); }
            catch (TimeoutException)
            {
                // A bio that never completes is a bug in the engine: report it, keep the buffers (still in use).
                Console.Error.WriteLine($"bench: {_path.Name}: {_active} bio(s) never completed");
                return new RunSample(_ops, _ops * _w.BlockBytes, Stopwatch.GetElapsedTime(start).TotalSeconds, 0, _hist, _errors + _active);
            }
            var elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
            var alloc = GC.GetTotalAllocatedBytes(true) - alloc0;
            // A failed bio may have been answered before the IO below it ended (a crashed target): keep those buffers too.
            if (_errors == 0) ReturnBuffers(_buffers);
            return new RunSample(_ops, _ops * _w.BlockBytes, elapsed, alloc, _hist, _errors, _path.Syncs - syncs0);
        }

        private void Submit(Slot s)
        {
            var bio = s.Bio;
            bio.Op = _w.Write ? BioOp.Write : BioOp.Read;
            bio.Flags = _w.Write && _pattern.NextIsBarrier() ? BioFlags.Barrier : BioFlags.None;
            bio.Sector = _pattern.NextOffset(s.Index) >> Bio.SectorShift;
            bio.Sectors = _w.BlockBytes >> Bio.SectorShift;
            bio.Data = s.Data;
            bio.ReplyTo = _reply;
            bio.Tag = s;
            bio.Device = null;
            bio.Index = 0;
            s.Submitted = Stopwatch.GetTimestamp();
            _path._submitters[s.Index % _path._submitters.Length](bio);
        }

        /// <summary>Runs on the device actor's thread (or the disk's IO thread): record, then keep the slot busy until the deadline.</summary>
        private void OnDone(Bio bio, BioStatus status)
        {
            var s = (Slot)bio.Tag!;
            var now = Stopwatch.GetTimestamp();
            _hist.Record(ToNanos(now - s.Submitted));
            Interlocked.Increment(ref _ops);
            if (status != BioStatus.Ok && Interlocked.Increment(ref _errors) == 1)
                Console.Error.WriteLine($"bench: {_path.Name}: {bio} failed: {status}");
            if (now < _deadline && Volatile.Read(ref _errors) == 0) Resubmit(s);
            else if (Interlocked.Decrement(ref _active) == 0) _finished.TrySetResult();
        }

        [ThreadStatic] private static int _depth;

        /// <summary>
        /// A disk may answer on the submitting thread (a cached read, a memory disk): resubmitting from inside that
        /// answer would recurse without end, so past a few levels the next bio starts from the thread pool.
        /// </summary>
        private void Resubmit(Slot s)
        {
            if (_depth >= 8) { ThreadPool.UnsafeQueueUserWorkItem(static x => x.Run.Submit(x.Slot), (Run: this, Slot: s), false); return; }
            _depth++;
            try { Submit(s); }
            finally { _depth--; }
        }
    }

    private readonly Action<Bio>[] _submitters = submitters;
}
