using Akka.Actor;

namespace DmActors;

/// <summary>
/// The device's lanes (<see cref="DeviceLane"/>, one per open): while the live table is stateless and no barrier or
/// suspend is active the lanes are released and map bios on their openers' threads; a barrier or a suspend first
/// takes every lane back (quiesce) and counts each lane that has not reported drained as pending IO, so the
/// barrier's drain and the suspend's wait include the lanes' IO. See docs/threading.md.
///
/// The invariant: while any lane is released, no barrier is in flight or deferred, IO is not blocked, and the device
/// has run every bio it deferred (no replay is pending) and every bio a lane forwarded before its latest hold. So
/// when the device takes up a barrier, all IO issued before it is the device's pending IO or a released lane's
/// in-flight IO, both counted in <see cref="Outstanding"/>, and until it completes no lane maps.
/// </summary>
public sealed partial class MappedDevice
{
    /// <summary>From the manager: a new open; answer the opener with <paramref name="Reply"/> naming the lane.</summary>
    public sealed record OpenLane(Dm.Opened Reply);
    /// <summary>From the manager: an open was closed; its lane goes once its IO has completed.</summary>
    public sealed record CloseLane(IActorRef Lane);

    private sealed class Lane(IActorRef actor)
    {
        public readonly IActorRef Actor = actor;
        /// <summary>The lane's last hold the device has handled; a release names it.</summary>
        public long Holds;
        /// <summary>Quiesced and not yet drained: counted as pending.</summary>
        public bool Busy;
        public bool Retiring;
    }

    private readonly Dictionary<IActorRef, Lane> _lanes = new();
    private int _nextLane;
    /// <summary>The lanes are released (they map themselves).</summary>
    private bool _released;
    /// <summary>Lanes quiesced that have not reported drained yet.</summary>
    private int _lanesBusy;
    /// <summary>Replays of deferred bios whose <see cref="ReplayDone"/> marker the device has not reached yet.</summary>
    private int _replays;

    /// <summary>
    /// Follows the deferred bios when they replay (ReleaseDeferred): the device has run every one of them. Until then
    /// no lane maps: a bio a lane would map now was sent after them, so a deferred barrier among them must first take
    /// the lanes back (else the barrier would drain bios sent after it, and they would finish before it).
    /// </summary>
    private sealed record ReplayDone { public static readonly ReplayDone Instance = new(); }

    /// <summary>What a barrier drains and a suspend waits for: the device's pending IO and every lane not yet drained.</summary>
    private int Outstanding => _pending + _lanesBusy;

    /// <summary>True while the device defers bios (and so the holds of lanes, which must stay behind them).</summary>
    private bool Deferring => _blockIo || _ordered.InFlight;

    private bool OnLane(object message)
    {
        switch (message)
        {
            case OpenLane o:
                var actor = Context.ActorOf(DeviceLane.Props(_options.Mode, _flushes.Completed, _stats, Clock, _options.Dispatcher), $"lane-{++_nextLane}");
                var lane = _lanes[actor] = new Lane(actor);
                if (_handOff) LostBioAnswerer.HandedOff(actor);
                Sender.Tell(o.Reply with { Device = actor });
                if (_released) Release(lane);
                else ReleaseLanes();
                return true;
            case CloseLane c:
                if (_lanes.TryGetValue(c.Lane, out var closing) && !closing.Retiring)
                {
                    closing.Retiring = true;
                    c.Lane.Tell(DeviceLane.Msg.Retire.Instance);
                }
                return true;
            case DeviceLane.Msg.Held h:
                // Behind deferred bios: the lane's hold ends only once what it forwarded before has been run.
                if (Deferring) { Stash.Stash(); _stashed++; return true; }
                if (_lanes.TryGetValue(Sender, out var held))
                {
                    held.Holds = h.Hold;
                    if (_released) Release(held);
                }
                return true;
            case DeviceLane.Msg.Drained d:
                if (!_lanes.TryGetValue(Sender, out var drained)) return true;
                if (d.Retired) { _lanes.Remove(Sender); Context.Stop(Sender); }
                LaneIdle(drained);
                return true;
            case DeviceLane.Msg.Restarted:
                if (_lanes.TryGetValue(Sender, out var restarted))
                {
                    restarted.Holds = 0;
                    LaneIdle(restarted);
                    if (_released && !restarted.Retiring) Release(restarted);
                }
                return true;
            case ReplayDone:
                _replays--;
                ReleaseLanes();
                return true;
            case DeviceLane.Msg.PushedBack p:
                PushedBack(p.Original, p.Seq);
                return true;
            case DeviceLane.Msg.Reissue r:
                Reissue(r.Original);
                return true;
            default: return false;
        }
    }

    private void LaneIdle(Lane lane)
    {
        if (!lane.Busy) return;
        lane.Busy = false;
        _lanesBusy--;
        AfterPendingChange();
        ReleaseLanes();
    }

    /// <summary>
    /// A lane's bio came back with DM_ENDIO_REQUEUE: during a noflush suspend it joins the push-backs (ahead of the
    /// device's own, in the lane's order: they were issued before anything the suspend deferred), else it is EIO.
    /// </summary>
    private void PushedBack(Bio original, long laneSeq)
    {
        if (_noflushSuspending) { _requeued.Add(new DmIo(original, DmIo.Kinds.Normal, long.MinValue / 2 + laneSeq)); return; }
        _flushes.WriteCompleted(original);
        original.Complete(BioStatus.IoError);
    }

    /// <summary>
    /// A lane's read that its target wants mapped here (a mirror leg failed it, or may have lost writes): mapped at
    /// once, never deferred. The lane still counts as busy until it reports drained, which comes after this, so a
    /// barrier or suspend waiting for the lane now waits for this bio as the device's own pending IO.
    /// </summary>
    private void Reissue(Bio bio)
    {
        var io = Track(new DmIo(bio, DmIo.Kinds.Normal, ++_seq));
        io.Started = _stats.Start(bio, out io.Regions);
        MapBio(io, bio.Flags);
        PutRef(io);
    }

    /// <summary>Takes every lane back: each stops mapping and counts as pending until it reports drained.</summary>
    private void QuiesceLanes()
    {
        if (!_released) return;
        _released = false;
        foreach (var lane in _lanes.Values)
        {
            if (lane.Busy) continue;
            lane.Busy = true;
            _lanesBusy++;
            lane.Actor.Tell(DeviceLane.Msg.Quiesce.Instance);
        }
    }

    /// <summary>
    /// Lets the lanes map again once nothing needs them held: a live table they may map (<see cref="Table.OnLanes"/>), no barrier, no suspend, and no
    /// deferred bio still to replay (a barrier among them must take the lanes before they map what came after it).
    /// </summary>
    private void ReleaseLanes()
    {
        if (_released || _lanesBusy != 0 || Deferring || _replays != 0 || _live is not { OnLanes: true } || _lanes.Count == 0) return;
        _released = true;
        foreach (var lane in _lanes.Values) Release(lane);
    }

    private void Release(Lane lane)
    {
        if (!lane.Retiring) lane.Actor.Tell(new DeviceLane.Msg.Release(_live!, _readOnly, lane.Holds));
    }
}
