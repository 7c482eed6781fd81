using DmActors;
using Xunit;
using Phase = DmActors.OrderedBarrier.Phase;

namespace DmActors.Tests.Core;

/// <summary>The founding patch's barrier, phase by phase, against a fake device (no actors).</summary>
public sealed class OrderedBarrierTests
{
    private sealed class FakeDevice : IBarrierDevice
    {
        public readonly List<string> Calls = new();
        public int Pending { get; set; }
        public bool HasRequeued { get; set; }
        public bool NoflushSuspending { get; set; }
        public bool HasLiveTable { get; set; } = true;
        public bool NeedsFlush { get; set; } = true;
        public void IssueFlush(Bio barrier) => Calls.Add("flush");
        public void IssueData(Bio barrier) => Calls.Add("data");
        public void Requeue(Bio barrier, long seq) => Calls.Add($"requeue {seq}");
        public void Completed() => Calls.Add("completed");
        public void StartTimeout(Bio barrier, TimeSpan after) => Calls.Add($"timer {after.TotalSeconds}");
        public void CancelTimeout() => Calls.Add("cancel");
    }

    private readonly FakeDevice _device = new();
    private readonly OrderedBarrier _barrier;
    private readonly List<BioStatus> _answers = new();

    public OrderedBarrierTests() => _barrier = new OrderedBarrier(_device);

    private Bio Write() => Bio.Write(0, new byte[4096], CallbackRef.ForBios(d => _answers.Add(d.Status)), BioFlags.Barrier);
    private Bio EmptyBarrier() => Bio.Flush(CallbackRef.ForBios(d => _answers.Add(d.Status)));

    /// <summary>Runs the data phase: its completion, then the device's pending count dropping to 0.</summary>
    private void DataCompletes(Bio bio, BioStatus status)
    {
        _barrier.DataDone(bio, status);
        _device.Pending = 0;
        Assert.True(_barrier.PendingIsZero());
    }

    [Fact]
    public void A_barrier_drains_flushes_writes_its_data_flushes_again_and_completes()
    {
        var bio = Write();
        _device.Pending = 2;
        _barrier.Start(bio, 7);
        Assert.Equal(Phase.Drain, _barrier.Current);
        Assert.True(_barrier.InFlight);
        Assert.Empty(_device.Calls); // earlier IO is still pending

        _device.Pending = 0;
        Assert.True(_barrier.PendingIsZero());
        Assert.Equal(Phase.PreFlush, _barrier.Current);
        Assert.Equal(["flush"], _device.Calls);
        Assert.False(_barrier.PendingIsZero()); // only drain and data wait for the pending count

        _barrier.FlushDone(bio, BioStatus.Ok);
        Assert.Equal(Phase.Data, _barrier.Current);
        Assert.Equal(["flush", "data"], _device.Calls);

        DataCompletes(bio, BioStatus.Ok);
        Assert.Equal(Phase.PostFlush, _barrier.Current);
        Assert.Equal(["flush", "data", "flush"], _device.Calls);
        Assert.Empty(_answers);

        _barrier.FlushDone(bio, BioStatus.Ok);
        Assert.Equal([BioStatus.Ok], _answers);
        Assert.Equal(["flush", "data", "flush", "cancel", "completed"], _device.Calls);
        Assert.Equal(Phase.Idle, _barrier.Current);
        Assert.False(_barrier.InFlight);
    }

    [Fact]
    public void An_empty_barrier_completes_after_its_pre_flush()
    {
        var bio = EmptyBarrier();
        _barrier.Start(bio, 1);
        _barrier.FlushDone(bio, BioStatus.Ok);
        Assert.Equal([BioStatus.Ok], _answers);
        Assert.Equal(["flush", "cancel", "completed"], _device.Calls);
    }

    [Fact]
    public void Flushes_that_would_reach_no_cache_are_skipped()
    {
        _device.NeedsFlush = false;
        var bio = Write();
        _barrier.Start(bio, 1);
        Assert.Equal(Phase.Data, _barrier.Current);
        DataCompletes(bio, BioStatus.Ok);
        Assert.Equal([BioStatus.Ok], _answers);
        Assert.Equal(["data", "cancel", "completed"], _device.Calls);
    }

    [Fact]
    public void A_failed_pre_flush_completes_the_barrier_without_its_data()
    {
        var bio = Write();
        _barrier.Start(bio, 1);
        _barrier.FlushDone(bio, BioStatus.NoSpace);
        Assert.Equal([BioStatus.NoSpace], _answers);
        Assert.DoesNotContain("data", _device.Calls);
    }

    [Fact]
    public void The_barrier_error_of_the_data_wins_over_a_good_post_flush()
    {
        var bio = Write();
        _barrier.Start(bio, 1);
        _barrier.FlushDone(bio, BioStatus.Ok);
        DataCompletes(bio, BioStatus.IoError);
        Assert.Equal(["flush", "data", "flush"], _device.Calls); // still flushed
        _barrier.FlushDone(bio, BioStatus.Ok);
        Assert.Equal([BioStatus.IoError], _answers);
    }

    [Fact]
    public void A_failed_post_flush_is_the_barrier_error()
    {
        var bio = Write();
        _barrier.Start(bio, 1);
        _barrier.FlushDone(bio, BioStatus.Ok);
        DataCompletes(bio, BioStatus.Ok);
        _barrier.FlushDone(bio, BioStatus.IoError);
        Assert.Equal([BioStatus.IoError], _answers);
    }

    [Fact]
    public void Without_a_live_table_the_barrier_reports_EIO()
    {
        _device.HasLiveTable = false;
        var bio = Write();
        _barrier.Start(bio, 1);
        _barrier.FlushDone(bio, BioStatus.Ok);
        Assert.Equal([BioStatus.IoError], _answers);
        Assert.DoesNotContain("data", _device.Calls);
    }

    [Fact]
    public void Without_a_live_table_an_empty_barrier_reports_EIO_after_its_drain()
    {
        _device.HasLiveTable = false;
        _device.NeedsFlush = false; // no table: nothing to flush
        var bio = EmptyBarrier();
        _barrier.Start(bio, 1);
        Assert.Equal([BioStatus.IoError], _answers);
    }

    [Fact]
    public void A_barrier_that_times_out_fails_and_its_late_completions_are_ignored()
    {
        var barrier = new OrderedBarrier(_device, TimeSpan.FromSeconds(5));
        var bio = Write();
        barrier.Start(bio, 1);
        Assert.Equal(["timer 5", "flush"], _device.Calls);
        barrier.TimedOut(Write()); // another barrier's timer
        Assert.Empty(_answers);
        barrier.TimedOut(bio);
        Assert.Equal([BioStatus.TimedOut], _answers);
        Assert.Equal(["timer 5", "flush", "cancel", "completed"], _device.Calls);

        barrier.FlushDone(bio, BioStatus.Ok);
        barrier.DataDone(bio, BioStatus.IoError);
        barrier.TimedOut(bio);
        Assert.False(barrier.PendingIsZero());
        Assert.Equal([BioStatus.TimedOut], _answers);
        Assert.Equal(4, _device.Calls.Count);
    }

    [Fact]
    public void Earlier_io_pushed_back_by_a_noflush_suspend_pushes_the_barrier_back_at_its_arrival_order()
    {
        _device.HasRequeued = true;
        _barrier.Start(Write(), 9);
        Assert.Equal(["cancel", "requeue 9"], _device.Calls);
        Assert.False(_barrier.InFlight);
        Assert.Empty(_answers);
    }

    [Fact]
    public void Data_pushed_back_during_a_noflush_suspend_requeues_the_barrier_else_it_is_EIO()
    {
        _device.NoflushSuspending = true;
        var bio = Write();
        _barrier.Start(bio, 3);
        _barrier.FlushDone(bio, BioStatus.Ok);
        DataCompletes(bio, BioStatus.Requeue);
        Assert.Equal(["flush", "data", "cancel", "requeue 3"], _device.Calls);
        Assert.Empty(_answers);

        _device.NoflushSuspending = false;
        _device.Calls.Clear();
        bio = Write();
        _barrier.Start(bio, 4);
        _barrier.FlushDone(bio, BioStatus.Ok);
        DataCompletes(bio, BioStatus.Requeue);
        _barrier.FlushDone(bio, BioStatus.Ok);
        Assert.Equal([BioStatus.IoError], _answers);
    }

    [Fact]
    public void Stopping_answers_the_barrier_in_flight_with_EIO()
    {
        _barrier.Abort(); // none in flight: nothing to answer
        Assert.Empty(_answers);
        var bio = Write();
        _barrier.Start(bio, 1);
        _barrier.Abort();
        Assert.Equal([BioStatus.IoError], _answers);
        Assert.False(_barrier.InFlight);
        _barrier.FlushDone(bio, BioStatus.Ok);
        Assert.Single(_answers);
    }

    [Fact]
    public void Ordered_mode_treats_barriers_empty_flushes_and_preflush_bios_as_barriers()
    {
        var nobody = Akka.Actor.ActorRefs.Nobody;
        Assert.True(OrderedBarrier.IsBarrier(Bio.Flush(nobody)));
        Assert.True(OrderedBarrier.IsBarrier(Bio.Write(0, new byte[512], nobody, BioFlags.Barrier)));
        Assert.True(OrderedBarrier.IsBarrier(Bio.Write(0, new byte[512], nobody, BioFlags.Preflush)));
        Assert.False(OrderedBarrier.IsBarrier(Bio.Write(0, new byte[512], nobody, BioFlags.Fua)));
    }
}
