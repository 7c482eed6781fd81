using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace DmActors;

/// <summary>An IO or a claim of an epoch older than the one that has claimed a disk for a volume.</summary>
public sealed class FencedException(string message) : Exception(message);

/// <summary>
/// The fence of one disk for one volume: the highest epoch that has claimed it. Every activation of a volume
/// claims with a higher epoch; IO of older epochs is refused from then on (see <see cref="FencedDisk"/>).
/// </summary>
public sealed class FenceCell
{
    private long _epoch;
    /// <summary>The disks handed out for this cell that may still have bios in flight (guarded by the list).</summary>
    internal readonly List<FencedDisk> Holders = new();

    internal FenceCell(string disk, string volumeId, long epoch)
    {
        Disk = disk; VolumeId = volumeId; _epoch = epoch;
    }

    public string Disk { get; }
    public string VolumeId { get; }
    public long Epoch => Volatile.Read(ref _epoch);

    /// <summary>A full fence (not a plain volatile write): the claim reads the holders' in-flight counts after it.</summary>
    internal void Raise(long epoch) => Interlocked.Exchange(ref _epoch, epoch);

    public override string ToString() => $"{Disk}: volume {VolumeId} at epoch {Epoch}";
}

/// <summary>
/// The fences of the disks of one node, by (disk, volume). A claim of an epoch at least the current one raises
/// it and returns the cell; an older one is refused, naming both epochs. With a file, a raise is on stable
/// storage before <see cref="Claim"/> returns (written to a temporary file, fsynced, renamed over the old one,
/// directory fsynced), and the file is read at start, so a restarted node still fences an old owner. A raise
/// then waits until the bios of older epochs that were already in flight have completed, so no write of an old
/// epoch lands after the claim returned. Claim blocks (file IO, that wait): call it off the actor dispatchers.
/// </summary>
public sealed class FenceTable
{
    public static readonly TimeSpan DefaultDrainTimeout = TimeSpan.FromSeconds(30);

    private readonly Dictionary<(string Disk, string Volume), FenceCell> _cells = new();
    private readonly object _gate = new();
    private readonly string? _path;
    private string? _revoked;
    /// <summary>Cells read from the file and not claimed since this start: only these may be pruned.</summary>
    private readonly HashSet<(string Disk, string Volume)> _unclaimed = new();

    /// <param name="path">The fence file (e.g. <c>&lt;data-dir&gt;/fences.json</c>); null keeps the fences in memory.</param>
    /// <param name="drainTimeout">How long a claim waits for older epochs' bios in flight before it fails.</param>
    public FenceTable(string? path = null, TimeSpan? drainTimeout = null)
    {
        _path = path;
        DrainTimeout = drainTimeout ?? DefaultDrainTimeout;
        if (path != null) Load(path);
    }

    public TimeSpan DrainTimeout { get; }

    /// <summary>After every raise (disk, volume, new epoch), once it is durable; e.g. to stop the devices of older epochs.</summary>
    public event Action<string, string, long>? Raised;

    /// <summary>The current epoch of (disk, volume); 0 when none has claimed it.</summary>
    public long Current(string disk, string volumeId)
    {
        lock (_gate) return _cells.TryGetValue((disk, volumeId), out var c) ? c.Epoch : 0;
    }

    /// <summary>The text of a refusal, as <see cref="Claim"/> and the disks word it.</summary>
    public static string Refusal(string disk, string volumeId, long current, long epoch) =>
        $"{disk}: volume {volumeId} is claimed by epoch {current}; epoch {epoch} is fenced";

    /// <summary>
    /// Claims <paramref name="disk"/> for <paramref name="volumeId"/> at <paramref name="epoch"/>: returns the cell
    /// when no newer epoch has claimed it, else throws <see cref="FencedException"/>. A raise is durable and older
    /// epochs' bios in flight have completed when it returns; if they have not within the drain timeout, the claim
    /// fails with a <see cref="TimeoutException"/> (the raise stays: the old epoch remains fenced).
    /// </summary>
    public FenceCell Claim(string disk, string volumeId, long epoch)
    {
        if (epoch <= 0) throw new ArgumentOutOfRangeException(nameof(epoch), epoch, "an epoch is positive");
        FenceCell cell;
        bool raised;
        List<FencedDisk> older;
        lock (_gate)
        {
            if (_revoked is { } why) throw new FencedException($"{disk}: volume {volumeId}: {why}");
            _cells.TryGetValue((disk, volumeId), out var existing);
            var current = existing?.Epoch ?? 0;
            if (epoch < current) throw new FencedException(Refusal(disk, volumeId, current, epoch));
            raised = epoch > current;
            // Durable first: if the write fails nothing changed, and a restart never forgets a claim it granted.
            if (raised && _path != null) Save(_path, disk, volumeId, epoch);
            cell = existing ?? (_cells[(disk, volumeId)] = new FenceCell(disk, volumeId, epoch));
            _unclaimed.Remove((disk, volumeId));
            if (raised) cell.Raise(epoch);
            lock (cell.Holders) older = cell.Holders.Where(h => h.Epoch < epoch).ToList();
        }
        if (raised) Raised?.Invoke(disk, volumeId, epoch);
        // A retried claim of the same epoch waits again for what an earlier one timed out on.
        var deadline = DateTime.UtcNow + DrainTimeout;
        foreach (var h in older)
        {
            if (!h.WaitDrained(deadline - DateTime.UtcNow))
                throw new TimeoutException($"{disk}: volume {volumeId}: epoch {h.Epoch} still has {h.InFlight} bios in flight " +
                    $"after {DrainTimeout.TotalSeconds:0} s; the claim of epoch {epoch} waits for them to complete (retry it)");
            lock (cell.Holders) cell.Holders.Remove(h);
        }
        return cell;
    }

    /// <summary>
    /// This node may no longer write for anyone (it was removed from its cluster, and its volumes run elsewhere):
    /// every fenced disk refuses IO from now on and no claim is granted. In memory only: the file keeps the
    /// epochs that really claimed the disks (no claim, so no save, follows a revoke).
    /// </summary>
    public void Revoke(string reason)
    {
        lock (_gate)
        {
            _revoked = reason;
            foreach (var c in _cells.Values) c.Raise(long.MaxValue);
        }
    }

    /// <summary>
    /// Forgets the fences of volumes that no longer exist (<paramref name="volumes"/>: every volume id the cluster
    /// has, listed after this start), so the file does not grow for ever with removed volumes. Only a cell read
    /// from the file and not claimed or held since is dropped: a volume created after the listing claims a new cell,
    /// and the newest epoch of a volume that exists is always kept (it refuses that volume's old owners). The
    /// smaller file is on stable storage before this returns. Returns the cells dropped.
    /// </summary>
    public IReadOnlyList<FenceCell> Prune(IReadOnlySet<string> volumes)
    {
        lock (_gate)
        {
            if (_revoked != null) return [];
            var gone = _cells.Values.Where(c => _unclaimed.Contains((c.Disk, c.VolumeId)) && !volumes.Contains(c.VolumeId) && Unheld(c)).ToList();
            if (gone.Count == 0) return [];
            // Durable first, as a raise: a failed write leaves the table as it was.
            if (_path != null) Write(_path, _cells.Values.Except(gone).Select(c => new FenceRecord(c.Disk, c.VolumeId, c.Epoch)));
            foreach (var c in gone)
            {
                _cells.Remove((c.Disk, c.VolumeId));
                _unclaimed.Remove((c.Disk, c.VolumeId));
            }
            return gone;
        }
    }

    private static bool Unheld(FenceCell c)
    {
        lock (c.Holders) return c.Holders.Count == 0;
    }

    // ---- the file ------------------------------------------------------------------------------------------------

    private sealed record FenceRecord(
        [property: JsonPropertyName("disk")] string Disk,
        [property: JsonPropertyName("volume")] string Volume,
        [property: JsonPropertyName("epoch")] long Epoch);

    private sealed record FenceFile([property: JsonPropertyName("fences")] List<FenceRecord> Fences);

    private void Load(string path)
    {
        if (!File.Exists(path)) return;
        FenceFile? file;
        try { file = JsonSerializer.Deserialize<FenceFile>(File.ReadAllText(path)); }
        catch (JsonException e) { throw new InvalidDataException($"fence file {path} is unreadable ({e.Message}); refusing to start without the fences it records"); }
        foreach (var r in file?.Fences ?? [])
        {
            if (r.Disk is null || r.Volume is null || r.Epoch <= 0)
                throw new InvalidDataException($"fence file {path} has an invalid entry ({r}); refusing to start without the fences it records");
            _cells[(r.Disk, r.Volume)] = new FenceCell(r.Disk, r.Volume, r.Epoch);
            _unclaimed.Add((r.Disk, r.Volume));
        }
    }

    /// <summary>Writes every fence, with (disk, volume) at <paramref name="epoch"/>: temp file, fsync, rename, fsync the directory.</summary>
    private void Save(string path, string disk, string volumeId, long epoch) =>
        Write(path, _cells.Values.Where(c => (c.Disk, c.VolumeId) != (disk, volumeId))
            .Select(c => new FenceRecord(c.Disk, c.VolumeId, c.Epoch))
            .Append(new FenceRecord(disk, volumeId, epoch)));

    private static void Write(string path, IEnumerable<FenceRecord> fences)
    {
        var records = fences.OrderBy(r => r.Disk, StringComparer.Ordinal).ThenBy(r => r.Volume, StringComparer.Ordinal).ToList();
        var bytes = JsonSerializer.SerializeToUtf8Bytes(new FenceFile(records), new JsonSerializerOptions { WriteIndented = true });
        var temp = path + ".tmp";
        using (var f = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            f.Write(bytes);
            f.Flush(flushToDisk: true);
        }
        File.Move(temp, path, overwrite: true);
        SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
    }

    /// <summary>fsync of the directory, so the rename itself survives a power cut.</summary>
    private static void SyncDirectory(string dir)
    {
        var fd = Native.open(dir, 0 /* O_RDONLY */, 0);
        if (fd < 0) throw new IOException($"cannot open directory {dir} to sync it (errno {Marshal.GetLastPInvokeError()})");
        try
        {
            if (Native.fsync(fd) != 0) throw new IOException($"fsync of directory {dir} failed (errno {Marshal.GetLastPInvokeError()})");
        }
        finally { Native.close(fd); }
    }

    private static class Native
    {
        [DllImport("libc", SetLastError = true)] public static extern int open(string path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] public static extern int fsync(int fd);
        [DllImport("libc", SetLastError = true)] public static extern int close(int fd);
    }
}

/// <summary>
/// A disk as one epoch of one volume sees it. Each bio first checks the cell (one volatile read): once a newer
/// epoch has claimed the disk, it completes with EIO without touching the disk. Bios that passed the check are
/// counted until they complete, so a claim can wait for them (<see cref="FenceTable.Claim"/>): the count is
/// raised before the check and the claim raises the epoch before it reads the count, both with full fences, so
/// a bio is either refused or waited for.
/// </summary>
public sealed class FencedDisk : IBlockDevice
{
    private readonly Disk _inner;
    private readonly FenceCell _cell;
    private readonly Action<Bio, BioStatus> _done;
    private int _inFlight;
    private int _opens;
    private TaskCompletionSource? _drained;

    public FencedDisk(Disk inner, FenceCell cell, long epoch)
    {
        _inner = inner; _cell = cell; Epoch = epoch;
        _done = (b, s) => { b.Complete(s); Leave(); }; // answered before a claim waiting for it goes on
        lock (cell.Holders) cell.Holders.Add(this);
    }

    public long Epoch { get; }
    public Disk Inner => _inner;
    public FenceCell Cell => _cell;
    public bool IsFenced => _cell.Epoch > Epoch;
    public int InFlight => Volatile.Read(ref _inFlight);

    public string Name => _inner.Name;
    public string DevNo => _inner.DevNo;
    public long Sectors => _inner.Sectors;
    public bool HasVolatileCache => _inner.HasVolatileCache;
    public long WritesLost => _inner.WritesLost;

    public void Open()
    {
        _inner.Open();
        if (Interlocked.Increment(ref _opens) == 1) lock (_cell.Holders) if (!_cell.Holders.Contains(this)) _cell.Holders.Add(this);
    }

    public void Close()
    {
        // Unused and idle: nothing for a claim to wait for (a later open registers again).
        if (Interlocked.Decrement(ref _opens) == 0)
            lock (_cell.Holders) if (InFlight == 0) _cell.Holders.Remove(this);
        _inner.Close();
    }

    public void Submit(Bio bio)
    {
        Interlocked.Increment(ref _inFlight);
        if (_cell.Epoch > Epoch)
        {
            Leave();
            bio.Complete(BioStatus.IoError);
            return;
        }
        _inner.Start(bio, _done);
    }

    private void Leave()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && Volatile.Read(ref _drained) is { } waiter) waiter.TrySetResult();
    }

    /// <summary>Waits until no bio that passed the epoch check is in flight; false on timeout.</summary>
    internal bool WaitDrained(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            // The waiter is published before the count is read, and Leave reads it after the count fell: one of
            // the two sees the other.
            var waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Interlocked.Exchange(ref _drained, waiter);
            if (InFlight == 0) return true;
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero || !waiter.Task.Wait(left)) return InFlight == 0;
            // Woken at zero: a refused bio may have raised and dropped the count meanwhile; check again.
        }
    }

    public override string ToString() => $"{_inner.Name} (volume {_cell.VolumeId}, epoch {Epoch})";
}
