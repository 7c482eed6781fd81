using Xunit;

namespace DmActors.Tests.Targets;

/// <summary>IoPlug: sends deferred by a plugged thread run at its unplug (or a flush), on that thread, once each.</summary>
public sealed class IoPlugTests
{
    private sealed class Counter : IPlugged
    {
        public int Unplugs;
        public bool SawPlugged;
        public void Unplug()
        {
            Unplugs++;
            SawPlugged |= IoPlug.Active;
            Assert.False(IoPlug.Defer(this)); // what an unplug sends goes at once
        }
    }

    [Fact]
    public void Not_plugged_nothing_is_deferred()
    {
        var c = new Counter();
        Assert.False(IoPlug.Active);
        Assert.False(IoPlug.Defer(c));
        Assert.Equal(0, c.Unplugs);
    }

    [Fact]
    public void The_outermost_end_runs_each_deferred_send_once()
    {
        var a = new Counter();
        var b = new Counter();
        IoPlug.Begin();
        IoPlug.Begin();
        Assert.True(IoPlug.Defer(a));
        IoPlug.End();
        Assert.Equal(0, a.Unplugs); // still plugged
        Assert.True(IoPlug.Defer(b));
        IoPlug.End();
        Assert.False(IoPlug.Active);
        Assert.Equal(1, a.Unplugs);
        Assert.Equal(1, b.Unplugs);
        Assert.False(a.SawPlugged || b.SawPlugged);
        IoPlug.Begin();
        IoPlug.End();
        Assert.Equal(1, a.Unplugs); // not run again
    }

    [Fact]
    public void Flush_sends_what_is_deferred_and_stays_plugged()
    {
        var a = new Counter();
        IoPlug.Begin();
        try
        {
            IoPlug.Defer(a);
            IoPlug.Flush();
            Assert.Equal(1, a.Unplugs);
            Assert.True(IoPlug.Active);
        }
        finally { IoPlug.End(); }
        Assert.Equal(1, a.Unplugs);
    }

    [Fact]
    public void A_plug_belongs_to_its_thread()
    {
        IoPlug.Begin();
        try
        {
            var other = Task.Factory.StartNew(() => IoPlug.Active, TaskCreationOptions.LongRunning).Result;
            Assert.False(other);
        }
        finally { IoPlug.End(); }
    }

    private sealed class Throws : IPlugged
    {
        public void Unplug() => throw new InvalidOperationException("send failed");
    }

    [Fact]
    public void A_deferred_send_that_throws_does_not_hold_back_the_others()
    {
        var before = new Counter();
        var after = new Counter();
        IoPlug.Begin();
        Assert.True(IoPlug.Defer(before));
        Assert.True(IoPlug.Defer(new Throws()));
        Assert.True(IoPlug.Defer(after));
        var e = Assert.Throws<InvalidOperationException>(IoPlug.End);
        Assert.Equal("send failed", e.Message);
        Assert.Equal((1, 1), (before.Unplugs, after.Unplugs));
        Assert.False(IoPlug.Active);
        IoPlug.Begin(); // nothing left over from the failed flush
        IoPlug.End();
        Assert.Equal((1, 1), (before.Unplugs, after.Unplugs));
    }
}
