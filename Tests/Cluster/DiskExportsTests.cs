using DmActors.Host.Nbd;
using DmActors.Tests.Nbd;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Cluster;

/// <summary>
/// The bookkeeping of internal exports (<see cref="DiskExports"/>) without a server in front: every open is held
/// until its one close, a second close of it releases nothing, and an open whose caller gave up (its answer came
/// after the timeout) is not left holding the export's device and disk.
/// </summary>
[Collection(NbdCollection.Name)]
public sealed class DiskExportsTests(NbdFixture fx) : IDisposable
{
    private const string Token = "s3cret";
    private static int _next;
    private readonly FenceTable _fences = new();
    private readonly List<DiskExports> _exports = new();
    private readonly MemoryDisk _disk = fx.Disks.AddMemory($"dx{Interlocked.Increment(ref _next)}", 2048);

    private DiskExports Exports(TimeSpan? askTimeout = null)
    {
        var e = new DiskExports(fx.System, fx.Disks, _fences, Token, askTimeout);
        _exports.Add(e);
        return e;
    }

    private string Name(long epoch) => new InternalExport(Token, _disk.Name, "V", epoch).Format();

    public void Dispose()
    {
        foreach (var e in _exports) e.Dispose();
    }

    [Fact]
    public async Task A_second_close_of_one_open_leaves_the_other_connections_open_served()
    {
        var exports = Exports();
        var first = (await exports.OpenAsync(Name(1))).Opened!;
        var second = (await exports.OpenAsync(Name(1))).Opened!;
        Assert.NotEqual(first.Name, second.Name); // each open is named, so its close ends it and no other
        Assert.Equal(first.Device, second.Device); // one device per epoch, shared
        await exports.CloseAsync(first.Name);
        await exports.CloseAsync(first.Name);
        Assert.Equal(1, await exports.OpenCountAsync());
        Assert.Equal(1, _disk.OpenCount); // the second connection's device still has the disk open

        await exports.CloseAsync(second.Name);
        Assert.Equal(0, await exports.OpenCountAsync());
        Poll.Until(() => _disk.OpenCount == 0, "the export's device to close the disk");
    }

    [Fact]
    public async Task An_open_whose_caller_gave_up_before_it_was_served_holds_nothing()
    {
        // The serve is held (the disk's first open waits on a gate) until the caller has given up, so the answer
        // always comes too late; the serve itself still happens.
        using var gate = new ManualResetEventSlim();
        var slow = fx.Disks.Add(new GatedOpenDisk($"dxs{Interlocked.Increment(ref _next)}", 2048, gate));
        var exports = Exports(TimeSpan.FromMilliseconds(200));
        var (opened, error) = await exports.OpenAsync(new InternalExport(Token, slow.Name, "V", 1).Format());
        gate.Set();
        Assert.Null(opened);
        Assert.Contains("no answer within", error);
        // Asked after the serve and the release of the late open (one mailbox, in order).
        Assert.Equal(0, await exports.OpenCountAsync(TimeSpan.FromSeconds(30)));
        Poll.Until(() => slow.OpenCount == 0, "the late open's device to close the disk");
    }

    /// <summary>A disk of zeroes whose first open waits for <paramref name="gate"/>.</summary>
    private sealed class GatedOpenDisk(string name, long sectors, ManualResetEventSlim gate) : Disk(name, sectors, "250:" + name.Length)
    {
        public override bool HasVolatileCache => false;
        protected override void FirstOpen() => gate.Wait(TimeSpan.FromSeconds(30));
        protected override void Run(Bio bio, Action<Bio, BioStatus> done)
        {
            if (bio.Op == BioOp.Read) bio.Data.Span.Clear();
            done(bio, BioStatus.Ok);
        }
    }
}
