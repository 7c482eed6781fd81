namespace DmActors.Host.Nbd;

/// <summary>
/// Bounds the bytes a connection holds for requests in flight (rented buffers, queued replies). The one reader
/// (the connection's reader thread) waits in <see cref="Acquire"/> until replies drain; completions release.
/// A request larger than the whole budget is let through alone, so it can never wait forever.
/// </summary>
internal sealed class InFlightBudget(long capacity)
{
    private readonly object _gate = new();
    private long _used;
    private int _requests;
    private int _waiters;
    private TaskCompletionSource? _idle;
    private bool _cancelled;

    /// <summary>
    /// Takes <paramref name="cost"/>, blocking the caller (the connection's reader thread) until replies drain
    /// enough; <paramref name="beforeWait"/> runs first if it has to wait. Throws once the connection is closing.
    /// </summary>
    public void Acquire(long cost, Action beforeWait)
    {
        lock (_gate)
        {
            if (_cancelled) throw new OperationCanceledException("connection closed");
            if (Fits(cost)) { Take(cost); return; }
        }
        beforeWait();
        lock (_gate)
        {
            _waiters++;
            try
            {
                while (!_cancelled && !Fits(cost)) Monitor.Wait(_gate);
            }
            finally { _waiters--; }
            if (_cancelled) throw new OperationCanceledException("connection closed");
            Take(cost);
        }
    }

    public void Release(long cost)
    {
        TaskCompletionSource? idle = null;
        lock (_gate)
        {
            _used -= cost;
            _requests--;
            if (_waiters > 0) Monitor.PulseAll(_gate);
            if (_requests == 0 && _idle != null)
            {
                idle = _idle;
                _idle = null;
            }
        }
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
        lock (_gate)
        {
            _cancelled = true;
            Monitor.PulseAll(_gate);
        }
    }

    private bool Fits(long cost) => _requests == 0 || _used + cost <= capacity;

    private void Take(long cost)
    {
        _used += cost;
        _requests++;
    }
}
