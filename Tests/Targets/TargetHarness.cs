using System.Security.Cryptography;
using Akka.Actor;
using DmActors;
using DmActors.Tests.Core;
using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>The core <see cref="DeviceHarness"/> plus what target tests keep asking: memory disks, status and table
/// text, messages, whole-bio helpers and disk contents.</summary>
public abstract class TargetHarness(ITargetRecords? records = null) : DeviceHarness(records: records)
{
    protected MemoryDisk Mem(string name, long sectors = 2048) => Disks.AddMemory(name, sectors);

    protected string Status(string dev) => Ok(new Dm.GetStatus(dev)).Lines.Single();
    protected string TableOf(string dev) => Ok(new Dm.GetTable(dev)).Lines.Single();
    protected IReadOnlyList<string> Message(string dev, params string[] args) => Ok(new Dm.Message(dev, 0, args)).Lines;
    protected string MessageError(string dev, params string[] args) => Fails(new Dm.Message(dev, 0, args)).Reason;

    /// <summary>The kernel-log reason a table fails to load with (e.g. "flakey: Invalid argument count").</summary>
    protected string LoadError(string table) => Fails(new Dm.Create("bad", table)).Reason;

    /// <summary>Loads <paramref name="table"/> into the inactive slot and swaps it in (reload + resume).</summary>
    protected void Reload(string dev, string table)
    {
        Ok(new Dm.Load(dev, table));
        Ok(new Dm.Resume(dev));
    }

    protected BioStatus WriteAt(IActorRef dev, long sector, byte[] data, BioFlags flags = BioFlags.None) =>
        Run(dev, Bio.Write(sector, data, ActorRefs.Nobody, flags));

    protected BioStatus ReadInto(IActorRef dev, long sector, byte[] into) => Run(dev, Bio.Read(sector, into, ActorRefs.Nobody));

    protected BioStatus Flush(IActorRef dev) => Run(dev, Bio.Flush(ActorRefs.Nobody));

    protected BioStatus Discard(IActorRef dev, long sector, long sectors) =>
        Run(dev, new Bio(BioOp.Discard, sector, sectors, Memory<byte>.Empty, ActorRefs.Nobody));

    protected static byte[] Contents(MemoryDisk disk, long sector, int sectors)
    {
        var data = new byte[sectors * Bio.Sector512];
        disk.ReadAt(sector * Bio.Sector512, data);
        return data;
    }

    protected static string Hash(MemoryDisk disk) => Convert.ToHexString(SHA256.HashData(Contents(disk, 0, (int)disk.Sectors)));

    protected static void AssertBytes(byte[] expected, byte[] actual, string what)
    {
        if (!expected.AsSpan().SequenceEqual(actual))
        {
            var at = expected.AsSpan().CommonPrefixLength(actual);
            Assert.Fail($"{what}: first difference at byte {at}");
        }
    }
}
