using DmActors;
using Xunit;

namespace DmActors.Tests.Core;

/// <summary>
/// What an actor keeps of the answers to its IO: only those that come on its own thread while it handles a
/// message; the rest are sent. What is still kept when the message ends (it threw) is sent, not lost.
/// </summary>
public sealed class InlineAnswersTests
{
    [Fact]
    public void An_answer_on_the_actors_thread_inside_a_message_is_kept_and_any_other_is_not()
    {
        var answers = new InlineAnswers<int>();
        Assert.False(answers.Keep(1)); // no message being handled

        answers.Enter();
        Assert.True(answers.Keep(2));
        var fromOther = true;
        var other = new Thread(() => fromOther = answers.Keep(3));
        other.Start();
        other.Join();
        Assert.False(fromOther); // a disk thread's answer goes to the mailbox
        answers.StopKeeping(); // the message is handled: what taking the kept ones in issues goes to the mailbox
        Assert.False(answers.Keep(4));
        Assert.True(answers.TryNext(out var kept));
        Assert.Equal(2, kept);
        Assert.False(answers.TryNext(out _));
        var sent = new List<int>();
        answers.Leave(sent.Add);
        Assert.Empty(sent);

        Assert.False(answers.Keep(5)); // after the message
    }

    [Fact]
    public void What_is_still_kept_when_the_message_throws_is_sent()
    {
        var answers = new InlineAnswers<int>();
        var sent = new List<int>();
        Action crashing = () =>
        {
            answers.Enter();
            try
            {
                answers.Keep(7);
                answers.Keep(8);
                throw new InvalidOperationException("the target crashed");
            }
            finally { answers.Leave(sent.Add); }
        };
        Assert.Throws<InvalidOperationException>(crashing);
        Assert.Equal(new[] { 7, 8 }, sent);
        Assert.False(answers.TryNext(out _));
    }
}
