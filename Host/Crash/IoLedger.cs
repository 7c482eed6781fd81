namespace DmActors.Host.Crash;

/// <summary>
/// What the workload saw before the cut, on one logical clock: when each bio was sent and when its one completion
/// arrived, with its status. Completions arriving after the cut are ignored: a dead host acknowledges nothing.
/// </summary>
public sealed class IoLedger
{
    public const long Never = long.MaxValue;
    private readonly object _gate = new();
    private readonly long[] _sent;
    private readonly long[] _done;
    private readonly BioStatus[] _status;
    private long _clock;
    private int _outstanding;
    private bool _cut;
    private long _answered;
    private TaskCompletionSource? _idle;
    private (long Count, TaskCompletionSource Done)? _answers;

    public IoLedger(int ops)
    {
        _sent = Enumerable.Repeat(Never, ops).ToArray();
        _done = Enumerable.Repeat(Never, ops).ToArray();
        _status = new BioStatus[ops];
    }

    /// <summary>Set when a bio is answered twice (a core bug: every bio is answered exactly once).</summary>
    public string? Anomaly { get; private set; }
    public int Outstanding { get { lock (_gate) return _outstanding; } }

    /// <summary>Call before the bio is sent, so its completion is always later on the clock.</summary>
    public void Sent(int op)
    {
        lock (_gate) { _sent[op] = ++_clock; _outstanding++; }
    }

    public void Answered(int op, BioStatus status)
    {
        lock (_gate)
        {
            if (_cut) return;
            if (_done[op] != Never) { Anomaly ??= $"op {op} answered twice ({_status[op]}, then {status})"; return; }
            _done[op] = ++_clock;
            _status[op] = status;
            _answered++;
            if (--_outstanding == 0) _idle?.TrySetResult();
            if (_answers is { } w && _answered >= w.Count) w.Done.TrySetResult();
        }
    }

    /// <summary>Completes once <paramref name="more"/> further bios (at most all outstanding) have been answered.</summary>
    public Task MoreAnswers(int more)
    {
        lock (_gate)
        {
            if (Math.Min(more, _outstanding) == 0) return Task.CompletedTask;
            _answers = (_answered + Math.Min(more, _outstanding), new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            return _answers.Value.Done.Task;
        }
    }

    /// <summary>Completes when nothing sent is still unanswered.</summary>
    public Task Idle()
    {
        lock (_gate)
        {
            if (_outstanding == 0) return Task.CompletedTask;
            _idle = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return _idle.Task;
        }
    }

    private readonly List<long> _suspendedAt = new();

    /// <summary>A device finished suspending: IO sent from now on is held until a resume is sent.</summary>
    public void Suspended()
    {
        lock (_gate) _suspendedAt.Add(++_clock);
    }

    /// <summary>A resume is being sent: IO held so far may go on.</summary>
    public void Resuming()
    {
        lock (_gate) _suspendedAt.Clear();
    }

    /// <summary>True when the op was sent while a device was suspended and no resume was sent before the cut.</summary>
    public bool HeldBySuspend(int op)
    {
        lock (_gate) return _sent[op] != Never && _suspendedAt.Any(at => at < _sent[op]);
    }

    /// <summary>The power starts failing: answers from now on may be errors the cut itself caused.</summary>
    public void PowerFailing()
    {
        lock (_gate) PowerFailedAt = ++_clock;
    }

    public long PowerFailedAt { get; private set; } = Never;

    public void Cut()
    {
        lock (_gate) _cut = true;
    }

    public bool WasSent(int op) { lock (_gate) return _sent[op] != Never; }
    public long SentAt(int op) { lock (_gate) return _sent[op]; }
    public long DoneAt(int op) { lock (_gate) return _done[op]; }
    /// <summary>The status answered before the cut, or null if none was.</summary>
    public BioStatus? Status(int op) { lock (_gate) return _done[op] == Never ? null : _status[op]; }
}
