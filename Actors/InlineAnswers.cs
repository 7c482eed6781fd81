namespace DmActors;

/// <summary>
/// Answers to IO an actor issued, taken in inside the actor. An answer that comes on the actor's own thread while
/// it handles a message (the device below answered inside Submit: a read the page cache had, a write that fit in
/// it, a memory disk) is kept and taken in once that message is done, as submit_bio keeps the bios a map issues
/// rather than recurse; any other answer (a disk thread's, a socket's) the caller sends to the actor as a message.
/// So a cached IO costs no message and no second pass through the mailbox, and the actor still takes in one thing
/// at a time. Only the actor calls <see cref="Handle"/>; <see cref="Keep"/> may be called from any thread.
/// </summary>
public sealed class InlineAnswers<T>
{
    private readonly Queue<T> _kept = new();
    private int _thread; // the thread handling a message now, else 0 (only that thread can find its own id here)

    /// <summary>
    /// Handles one message of the actor: <paramref name="handle"/>, keeping the answers that come meanwhile; then
    /// <paramref name="takeIn"/> for each kept answer. Answers to IO issued while they are taken in (a resync's next
    /// step) are sent, so a chain of IO answered inline goes through the mailbox one step at a time and other
    /// messages get their turn. Answers still kept when something throws (the actor restarts) go to
    /// <paramref name="send"/>, so the next incarnation takes them in.
    /// </summary>
    public void Handle(object message, Action<object> handle, Action<T> takeIn, Action<T> send)
    {
        _thread = Environment.CurrentManagedThreadId;
        try
        {
            try { handle(message); }
            finally { _thread = 0; }
            while (_kept.TryDequeue(out var answer)) takeIn(answer);
        }
        finally
        {
            while (_kept.TryDequeue(out var answer)) send(answer);
        }
    }

    /// <summary>Keeps <paramref name="answer"/> if it comes inside the actor's message on its thread; false: send it.</summary>
    public bool Keep(T answer)
    {
        if (_thread != Environment.CurrentManagedThreadId) return false;
        _kept.Enqueue(answer);
        return true;
    }
}
