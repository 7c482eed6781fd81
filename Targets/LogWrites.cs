using System.Text;
using Akka.Actor;

namespace DmActors.Targets;

/// <summary>
/// log-writes &lt;dev&gt; &lt;logdev&gt; (drivers/md/dm-log-writes.c): passes IO to dev and records every write on logdev
/// in the order it became durable, in <see cref="LogFormat"/>. A plain write or discard is put on the unflushed
/// list when it completes; an empty flush takes that list when it is mapped and, when it completes, logs those
/// writes and then itself; a FUA write is logged as soon as it completes. The super is rewritten after each FUA
/// or mark entry. Like dm, sectors are not remapped (the dm sector is the dev sector) and a write is logged
/// whatever its status. Message `mark &lt;label&gt;`. Status `&lt;logged_entries&gt; &lt;highest_allocated_sector&gt;`
/// [` logging_disabled`] once the log is full or failed; IO to dev continues. On destroy the unflushed writes
/// are logged, then the mark `dm-log-writes-end`.
/// </summary>
[TargetType("log-writes", 1, 1, 0)]
public sealed class LogWrites : Target
{
    /// <summary>Our devices have 512-byte logical blocks, so the log's units are sectors.</summary>
    private const int SectorSize = Bio.Sector512;

    private readonly IBlockDevice _dev;
    private readonly IBlockDevice _logDev;
    private readonly LogWriter _writer;
    private readonly object _gate = new();
    private List<PendingBlock> _unflushed = new();
    /// <summary>The block each logged clone will become (per_bio_data), keyed by the clone.</summary>
    private readonly Dictionary<Bio, PendingBlock> _blocks = new(ReferenceEqualityComparer.Instance);

    public LogWrites(TargetArgs a) : base(a)
    {
        a.ExpectArgs(2);
        _dev = a.GetDevice(a.Args[0], 0, a.Length);
        _logDev = a.GetWholeDevice(a.Args[1], "Log device lookup failed");
        _writer = new LogWriter(_logDev, SectorSize);
    }

    /// <summary>iterate_devices reports only dev: the log device is the target's private business.</summary>
    public override IReadOnlyList<IBlockDevice> Devices => [_dev];
    public override int NumFlushBios => 1;
    public override int NumDiscardBios => 1;
    // Flushes must pass through map (never FlushBypassesMap): they are what moves writes into the log.

    public override MapResult Map(Bio clone, int index, ITargetContext ctx)
    {
        var flush = clone.Op == BioOp.Flush || (clone.Flags & BioFlags.Preflush) != 0;
        if (!_writer.Enabled || !clone.IsWriteDirection || (clone.Sectors == 0 && !flush) || clone.Op == BioOp.WriteZeroes)
            return MapResult.Remapped(_dev);

        var block = new PendingBlock(
            (flush ? LogFlags.Flush : 0) | ((clone.Flags & BioFlags.Fua) != 0 ? LogFlags.Fua : 0) | (clone.Op == BioOp.Discard ? LogFlags.Discard : 0),
            (ulong)clone.Sector, (ulong)clone.Sectors,
            // Copy now: the submitter may reuse its buffer once the write completes, long before the log is written.
            clone.Op == BioOp.Write ? clone.Data.ToArray() : null, null);
        lock (_gate)
        {
            if (flush)
            {
                block.Stolen = _unflushed;
                _unflushed = new List<PendingBlock>();
            }
            _blocks[clone] = block;
        }
        return MapResult.Remapped(_dev);
    }

    public override BioStatus EndIo(Bio clone, BioStatus status, ITargetContext ctx)
    {
        List<PendingBlock>? toLog = null;
        lock (_gate)
        {
            if (!_blocks.Remove(clone, out var block)) return status;
            if ((block.Flags & LogFlags.Flush) != 0) toLog = [.. block.Stolen!, block];
            else if ((block.Flags & LogFlags.Fua) != 0) toLog = [block];
            else _unflushed.Add(block);
        }
        if (toLog != null) _writer.Log(toLog);
        return status;
    }

    public override string? Message(string[] args, ITargetContext ctx)
    {
        if (args.Length != 2) throw new TargetException($"Invalid log-writes message arguments, expect 2 arguments, got {args.Length}");
        if (!args[0].Equals("mark", StringComparison.OrdinalIgnoreCase))
            throw new TargetException($"Unrecognised log writes target message received: {args[0]}");
        _writer.Log([PendingBlock.MarkOf(args[1], SectorSize)]);
        return null;
    }

    public override string StatusParams()
    {
        var (logged, next, enabled) = _writer.Status;
        return $"{logged} {next - 1}{(enabled ? "" : " logging_disabled")}";
    }

    public override string TableParams() => $"{_dev.DevNo} {_logDev.DevNo}";

    /// <summary>dtr: log what is still unflushed, then the end mark (which also rewrites the super).</summary>
    public override void Destroy()
    {
        List<PendingBlock> rest;
        lock (_gate)
        {
            rest = _unflushed;
            _unflushed = new List<PendingBlock>();
            _blocks.Clear();
        }
        rest.Add(PendingBlock.MarkOf(LogFormat.EndMark, SectorSize));
        _writer.Log(rest);
        // Not base.Destroy: the last entries are still being written, so a file log closes only after them.
        _dev.Close();
        _writer.WhenIdle(_logDev.Close);
    }

    /// <summary>A write (or flush, discard, mark) waiting to be logged.</summary>
    private sealed class PendingBlock(LogFlags flags, ulong sector, ulong nrSectors, byte[]? data, byte[]? mark)
    {
        public LogFlags Flags { get; } = flags;
        public ulong Sector { get; } = sector;
        public ulong NrSectors { get; } = nrSectors;
        public byte[]? Data { get; } = data;
        public byte[]? MarkText { get; } = mark;
        /// <summary>For a flush: the unflushed writes it took when it was mapped.</summary>
        public List<PendingBlock>? Stolen { get; set; }

        public static PendingBlock MarkOf(string label, int sectorSize) =>
            new(LogFlags.Mark, 0, 0, null, LogFormat.MarkBytes(label, sectorSize));

        public override string ToString() => $"{Flags} {Sector}+{NrSectors}";
    }

    /// <summary>
    /// Writes entries to the log device one bio at a time, in the order they were logged (dm's log kthread).
    /// Space and entry numbers are given out when an entry is logged, so status is exact at once; the bios follow
    /// in order. It completes through its own callback rather than the target actor, because the last entries are
    /// logged by Destroy, when the actor is already gone.
    /// </summary>
    private sealed class LogWriter
    {
        private readonly IBlockDevice _log;
        private readonly int _sectorSize;
        private readonly object _gate = new();
        private readonly Queue<Bio> _queue = new();
        private readonly IActorRef _reply;
        private long _next;
        private ulong _logged;
        private bool _enabled = true;
        private bool _inFlight, _pumping;
        private Action? _whenIdle;

        public LogWriter(IBlockDevice log, int sectorSize)
        {
            _log = log;
            _sectorSize = sectorSize;
            _next = sectorSize >> Bio.SectorShift; // block 0 is the super
            _reply = CallbackRef.ForBios(OnWritten);
        }

        public bool Enabled { get { lock (_gate) return _enabled; } }
        public (ulong Logged, long Next, bool Enabled) Status { get { lock (_gate) return (_logged, _next, _enabled); } }

        public void Log(IEnumerable<PendingBlock> blocks)
        {
            lock (_gate)
                foreach (var b in blocks)
                {
                    if (!_enabled) break;
                    var sector = _next;
                    if ((b.Flags & LogFlags.Discard) == 0) _next += (long)b.NrSectors;
                    _next++;
                    if (_next >= _log.Sectors)
                    {
                        _enabled = false; // "Ran out of space on the logdev"
                        break;
                    }
                    _logged++;
                    var entry = new byte[_sectorSize];
                    LogFormat.WriteEntry(entry, b.Sector, b.NrSectors, b.Flags, b.MarkText);
                    Enqueue(sector, entry);
                    if (b.Data is { Length: > 0 } data) Enqueue(sector + 1, data);
                    if ((b.Flags & (LogFlags.Fua | LogFlags.Mark)) != 0)
                    {
                        var super = new byte[_sectorSize];
                        LogFormat.WriteSuper(super, _logged, (uint)_sectorSize);
                        Enqueue(0, super);
                    }
                }
            Pump();
        }

        /// <summary>Runs <paramref name="then"/> once every queued entry is written (at once if none is).</summary>
        public void WhenIdle(Action then)
        {
            lock (_gate) _whenIdle = then;
            Pump();
        }

        private void Enqueue(long sector, byte[] data) => _queue.Enqueue(Bio.Write(sector, data, _reply));

        /// <summary>Issues queued writes one after another; a loop, not recursion, since disks may complete inline.</summary>
        private void Pump()
        {
            lock (_gate)
            {
                if (_pumping) return;
                _pumping = true;
            }
            while (true)
            {
                Bio? next = null;
                Action? idle = null;
                lock (_gate)
                {
                    if (!_inFlight && _queue.Count > 0) { next = _queue.Dequeue(); _inFlight = true; }
                    else
                    {
                        _pumping = false;
                        if (!_inFlight) (idle, _whenIdle) = (_whenIdle, null);
                    }
                }
                if (next == null) { idle?.Invoke(); return; }
                next.Device = _log;
                _log.Submit(next);
            }
        }

        private void OnWritten(BioDone done)
        {
            lock (_gate)
            {
                _inFlight = false;
                if (done.Status != BioStatus.Ok)
                {
                    // "Error writing log block": stop logging; the data device carries on.
                    _enabled = false;
                    _queue.Clear();
                }
            }
            Pump();
        }
    }
}
