using DmActors.Host.Cli;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>A mirror through the dmsetup commands (in-process, as <see cref="DmsetupCliTests"/>): table, status and messages as printed.</summary>
public sealed class MirrorCliTests : IDisposable
{
    private readonly Engine _engine = Engine.Start("mirror-cli-tests");
    private readonly IControlChannel _channel;

    public MirrorCliTests()
    {
        _engine.Disks.AddMemory("m0", 2048);
        _engine.Disks.AddMemory("m1", 2048);
        var powerCutter = _engine.System.ActorOf(DmActors.Host.Crash.PowerCutter.Props(_engine.Disks));
        _channel = new ActorControlChannel(_engine.System.ActorOf(ControlGate.Props(_engine.Manager, powerCutter, long.MaxValue)), TimeSpan.FromSeconds(30));
    }

    public void Dispose() => _engine.Dispose();

    private async Task<(int Code, string Out, string Err)> Run(params string[] argv)
    {
        var args = DmsetupArgs.Parse(argv, out var error);
        Assert.True(args != null, error);
        var (stdout, stderr) = (new StringWriter { NewLine = "\n" }, new StringWriter { NewLine = "\n" });
        var code = await new Dmsetup(_channel, new StringReader(""), stdout, stderr).RunAsync(args!);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Create_status_and_messages_of_a_mirror()
    {
        var (m0, m1) = (_engine.Disks.Find("m0")!.DevNo, _engine.Disks.Find("m1")!.DevNo);
        Assert.Equal((0, "", ""), await Run("create", "mv", "--table", "0 2048 mirror core 2 1024 nosync 2 m0 0 m1 0 1 handle_errors"));
        Assert.Equal((0, $"0 2048 mirror core 2 1024 nosync 2 {m0} 0 {m1} 0 1 handle_errors\n", ""), await Run("table", "mv"));
        Assert.Equal((0, $"0 2048 mirror 2 {m0} {m1} 2/2 1 AA 1 core\n", ""), await Run("status", "mv"));
        Assert.Equal((0, "", ""), await Run("message", "mv", "0", "fail_leg", "m1"));
        Assert.Equal((0, $"0 2048 mirror 2 {m0} {m1} 2/2 1 AD 1 core\n", ""), await Run("status", "mv"));
        Assert.Equal((0, "", ""), await Run("message", "mv", "0", "return_leg", "m1"));
        var bad = await Run("message", "mv", "0", "resync_rate", "fast");
        Assert.Equal(1, bad.Code);
        Assert.Contains("Invalid resync_rate fast", bad.Err);
        var table = await Run("create", "bad", "--table", "0 2048 mirror core 1 1000 2 m0 0 m1 0");
        Assert.Equal(1, table.Code);
        Assert.Contains("mirror: Error creating mirror dirty log: invalid region size 1000", table.Err);
    }
}
