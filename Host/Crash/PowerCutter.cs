using Akka.Actor;

namespace DmActors.Host.Crash;

/// <summary>
/// Power loss on write-back-cache disks (`dmactors powercut`, our addition): what they cached and never flushed is
/// gone; with <paramref name="Tear"/> a random part of it reached the disk first. No disks named: every cached disk.
/// </summary>
public sealed record PowerCut(string[] Disks, bool Tear = false) : IControlMessage;

/// <summary>
/// Cuts the power of a running host's disks on request: started by the host beside the device manager (it needs
/// only the disks, no device), reached through the control gate like dmsetup's commands. Answers Dm.Done with a
/// line per disk, or Dm.Failed naming a disk the host does not have.
/// </summary>
public sealed class PowerCutter : ReceiveActor
{
    public const string Name = "powercut";

    public static Props Props(DiskRegistry disks) => Akka.Actor.Props.Create(() => new PowerCutter(disks));

    public PowerCutter(DiskRegistry disks) => Receive<PowerCut>(p => Cut(disks, p));

    /// <summary>Off the actor's thread, since a torn cut writes to the disks below.</summary>
    private void Cut(DiskRegistry registry, PowerCut p)
    {
        if (p.Disks.FirstOrDefault(n => registry.Find(n) == null) is { } missing)
        {
            Sender.Tell(new Dm.Failed("powercut", missing, Dm.Failed.NoDevice, $"no disk {missing}"));
            return;
        }
        var disks = p.Disks.Length == 0 ? registry.All.Where(d => d.HasVolatileCache).ToList() : p.Disks.Select(n => registry.Find(n)!).ToList();
        Task.Run(() => (object)new Dm.Done(disks.Select(d =>
        {
            if (d is not CachedDisk c) return $"{d.Name}: no write-back cache, nothing lost";
            var lost = c.CachedSectors;
            c.PowerCut(p.Tear ? new Random() : null);
            return $"{d.Name}: power cut, {lost} cached sector(s) {(p.Tear ? "torn" : "lost")}";
        }).ToArray())).PipeTo(Sender);
    }
}
