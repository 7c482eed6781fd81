using System.Diagnostics;
using Akka.Actor;

namespace DmActors;

/// <summary>
/// How long the journal takes to record a change (from the write's start to its acknowledgement), reported to
/// whoever listens (the host's metrics endpoint); nothing listens by default. One per actor system.
/// </summary>
public sealed class JournalTiming : IExtension
{
    /// <summary>Called once per recorded change with its latency, on the journal actor's thread: must be cheap.</summary>
    public Action<TimeSpan>? Listener { get; set; }

    public static JournalTiming Get(ActorSystem system) => system.WithExtension<JournalTiming, JournalTimingProvider>();

    public static long Now() => Stopwatch.GetTimestamp();

    public void Recorded(long started) => Listener?.Invoke(Stopwatch.GetElapsedTime(started));
}

public sealed class JournalTimingProvider : ExtensionIdProvider<JournalTiming>
{
    public override JournalTiming CreateExtension(ExtendedActorSystem system) => new();
}
