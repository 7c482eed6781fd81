namespace DmActors.Host.Nbd;

/// <summary>
/// Bounds the bytes a connection holds for requests in flight (rented buffers, queued replies). The one reader
/// (the connection's read loop) waits in <see cref="AcquireAsync"/> until replies drain; completions release.
/// A request larger than the whole budget is let through alone, so it can never wait forever.
/// </summary>
internal sealed class InFlightBudget(long capacity)
{
    private readonly object _gate = new();
    private long _used;
    private int _requests;
    private long _waitingFor;
    private TaskCompletionSource? _waiter;
    private TaskCompletionSource? _idle;
    private bool _cancelled;

    public long Used { get { lock (_gate) return _used; } }
    public int Requests { get { lock (_gate) return _requests; } }

    public ValueTask AcquireAsync(long cost)
    {
        lock (_gate)
        {
            if (_cancelled) return ValueTask.FromException(new OperationCanceledException("connection closed"));
            if (Fits(cost))
            {
                Take(cost);
                return ValueTask.CompletedTask;
            }
            _waitingFor = cost;
            _waiter = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            return new ValueTask(_waiter.Task);
        }
    }

    public void Release(long cost)
    {
        TaskCompletionSource? wake = null, idle = null;
        lock (_gate)
        {
            _used -= cost;
            _requests--;
            if (_waiter != null && Fits(_waitingFor))
            {
                Take(_waitingFor);
                wake = _waiter;
                _waiter = null;
            }
            if (_requests == 0 && _idle != null)
            {
                idle = _idle;
                _idle = null;
            }
        }
        wake?.TrySetResult();
        idle?.TrySetResult();
    }

    /// <summary>Completes when no request is in flight.</summary>
    public Task WhenIdle()
    {
        lock (_gate)
        {
            if (_requests == 0) return Task.CompletedTask;
            return (_idle ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
    }

    /// <summary>Wakes a waiting reader with an error and refuses later acquires: the connection is going away.</summary>
    public void Cancel()
    {
        TaskCompletionSource? wake;
        lock (_gate) { _cancelled = true; wake = _waiter; _waiter = null; }
        wake?.TrySetException(new OperationCanceledException("connection closed"));
    }

    private bool Fits(long cost) => _requests == 0 || _used + cost <= capacity;

    private void Take(long cost)
    {
        _used += cost;
        _requests++;
    }
}
