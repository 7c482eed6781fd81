namespace DmActors.Tests.Support;

/// <summary>Waiting for a condition that other threads or processes make true: polled, with a timeout that fails the test.</summary>
public static class Poll
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(10);

    public static void Until(Func<bool> condition, string what, TimeSpan? timeout = null)
    {
        var until = DateTime.UtcNow + (timeout ?? Engine.Timeout);
        while (!condition())
        {
            if (DateTime.UtcNow > until) throw new Xunit.Sdk.XunitException($"timed out waiting for {what}");
            Thread.Sleep(Interval);
        }
    }

    public static async Task UntilAsync(Func<Task<bool>> condition, string what, TimeSpan? timeout = null)
    {
        var until = DateTime.UtcNow + (timeout ?? Engine.Timeout);
        while (!await condition())
        {
            if (DateTime.UtcNow > until) throw new Xunit.Sdk.XunitException($"timed out waiting for {what}");
            await Task.Delay(Interval);
        }
    }

    /// <summary>Retries <paramref name="check"/> until its assertions pass; past the timeout its last failure fails the test.</summary>
    public static async Task UntilPassesAsync(Func<Task> check, TimeSpan? timeout = null)
    {
        var until = DateTime.UtcNow + (timeout ?? Engine.Timeout);
        while (true)
        {
            try { await check(); return; }
            catch (Xunit.Sdk.XunitException) when (DateTime.UtcNow < until) { await Task.Delay(Interval); }
        }
    }
}
