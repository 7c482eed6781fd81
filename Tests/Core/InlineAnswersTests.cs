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

        var takenIn = new List<int>();
        var sent = new List<int>();
        var fromOther = true;
        var keptInside = false;
        var keptWhileTakingIn = true;
        answers.Handle("message", _ =>
        {
            keptInside = answers.Keep(2);
            var other = new Thread(() => fromOther = answers.Keep(3));
            other.Start();
            other.Join();
        }, a =>
        {
            takenIn.Add(a);
            keptWhileTakingIn = answers.Keep(4); // the message is handled: what taking the kept ones in issues goes to the mailbox
        }, sent.Add);
        Assert.True(keptInside);
        Assert.False(fromOther); // a disk thread's answer goes to the mailbox
        Assert.False(keptWhileTakingIn);
        Assert.Equal(new[] { 2 }, takenIn);
        Assert.Empty(sent);

        Assert.False(answers.Keep(5)); // after the message
    }

    [Fact]
    public void What_is_still_kept_when_the_message_throws_is_sent()
    {
        var answers = new InlineAnswers<int>();
        var sent = new List<int>();
        var takenIn = new List<int>();
        Assert.Throws<InvalidOperationException>(() => answers.Handle("message", _ =>
        {
            answers.Keep(7);
            answers.Keep(8);
            throw new InvalidOperationException("the target crashed");
        }, takenIn.Add, sent.Add));
        Assert.Equal(new[] { 7, 8 }, sent);
        Assert.Empty(takenIn);
        Assert.False(answers.Keep(9)); // no message being handled any more
    }
}
