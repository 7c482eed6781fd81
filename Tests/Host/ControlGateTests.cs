using Akka.Configuration;
using DmActors.Host.Cli;
using DmActors.Host.Configuration;
using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>
/// Both ends of the control channel in process, with the host's serialization (Hyperion) and a small frame size:
/// dmsetup refuses a request that would not fit, the host's gate a reply, each naming the size and the limit.
/// </summary>
public sealed class ControlGateTests : IDisposable
{
    private const long FrameSize = 40_000;
    private readonly Engine _engine = Engine.Start("control-gate-tests", ConfigurationFactory.ParseString($"""
        akka.actor.provider = local
        {ControlFrame.FrameSizeKey} = {FrameSize}b
        """).WithFallback(HostConfig.Embedded()));
    private readonly IControlChannel _channel;

    public ControlGateTests()
    {
        _engine.Disks.AddMemory("m0", 8192);
        var powerCutter = _engine.System.ActorOf(DmActors.Host.Crash.PowerCutter.Props(_engine.Disks));
        var gate = _engine.System.ActorOf(ControlGate.Props(_engine.Manager, powerCutter, ControlFrame.Limit(_engine.System)), "control");
        _channel = new RemoteControlChannel(_engine.System, gate, Engine.Timeout, "127.0.0.1:1");
    }

    public void Dispose() => _engine.Dispose();

    private static string ZeroLines(int n) => string.Concat(Enumerable.Range(0, n).Select(i => $"{i * 8} 8 zero\n"));

    private async Task<(int Code, string Out, string Err)> Run(params string[] argv)
    {
        var stdout = new StringWriter { NewLine = "\n" };
        var stderr = new StringWriter { NewLine = "\n" };
        var code = await new Dmsetup(_channel, new StringReader(""), stdout, stderr).RunAsync(DmsetupArgs.Parse(argv, out _)!);
        return (code, stdout.ToString(), stderr.ToString());
    }

    [Fact]
    public async Task Replies_that_fit_pass_the_gate()
    {
        Assert.Equal((0, "", ""), await Run("create", "small", "--table", ZeroLines(10)));
        Assert.Equal((0, "small\t(253:0)\n", ""), await Run("ls"));
        Assert.Equal((0, ZeroLines(10).Replace("zero\n", "zero \n"), ""), await Run("table", "small"));
        // A power cut goes to the power cutter beside the manager, through the same gate.
        Assert.Equal((0, "m0: no write-back cache, nothing lost\n", ""), await Run("powercut", "m0"));
    }

    [Fact]
    public async Task A_request_over_the_frame_size_is_refused_before_it_is_sent()
    {
        var table = ZeroLines(4000);
        var e = await Assert.ThrowsAsync<ControlMessageTooLargeException>(() => Run("create", "big", "--table", table));
        var limit = FrameSize - ControlFrame.EnvelopeAllowance;
        Assert.Matches($@"^the request is \d+ bytes, over the control channel's limit of {limit} bytes \(akka\.remote\.dot-netty\.tcp\.maximum-frame-size\)$", e.Message);
        Assert.Equal((0, "No devices found\n", ""), await Run("ls"));
    }

    [Fact]
    public async Task A_reply_over_the_frame_size_becomes_an_error_naming_both_sizes()
    {
        // Created directly (no frame in between), then read through the gate.
        var table = ZeroLines(4000);
        Assert.IsType<Dm.Done>(await _engine.AskAsync(new Dm.Create("big", table)));
        var e = await Assert.ThrowsAsync<ControlMessageTooLargeException>(() => Run("table", "big"));
        var m = System.Text.RegularExpressions.Regex.Match(e.Message, @"^the host's reply is (\d+) bytes, over the control channel's limit of (\d+) bytes");
        Assert.True(m.Success, e.Message);
        Assert.True(long.Parse(m.Groups[1].Value) > table.Length, e.Message);
        Assert.Equal(FrameSize - ControlFrame.EnvelopeAllowance, long.Parse(m.Groups[2].Value));
        // Smaller replies about the same device still pass.
        Assert.Equal(0, (await Run("info", "big")).Code);
    }
}

/// <summary>`--control HOST:PORT`: names, IPv4, bracketed IPv6.</summary>
public sealed class ControlAddressTests
{
    [Theory]
    [InlineData("127.0.0.1:10810", "127.0.0.1", 10810)]
    [InlineData("localhost:1", "localhost", 1)]
    [InlineData("[::1]:10810", "::1", 10810)]
    [InlineData("host.example:65535", "host.example", 65535)]
    public void Control_addresses_parse(string text, string host, int port)
    {
        Assert.True(DmsetupCommand.TryParseHostPort(text, out var h, out var p));
        Assert.Equal((host, port), (h, p));
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("127.0.0.1:0")]
    [InlineData("127.0.0.1:65536")]
    [InlineData(":10810")]
    [InlineData("::1:10810")]
    [InlineData("bad host:1")]
    [InlineData("127.0.0.1:+5")]
    public void Bad_control_addresses_do_not_parse(string text) => Assert.False(DmsetupCommand.TryParseHostPort(text, out _, out _));
}
