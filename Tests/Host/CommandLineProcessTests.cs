using DmActors.Tests.Support;
using Xunit;

namespace DmActors.Tests.Host;

/// <summary>The real program's command line: help below the top level, and usage errors with status 2.</summary>
public sealed class CommandLineProcessTests
{
    [Fact]
    public async Task Dmsetup_command_help_lists_its_options()
    {
        var r = await HostProcess.Run(["dmsetup", "create", "--help"]);
        Assert.True(r.Code == 0 && r.Err == "", r.ToString());
        Assert.StartsWith("Usage: dmactors dmsetup create NAME [FILE] [options]\n", r.Out);
        Assert.Contains("\n  --barrier-mode ordered|flush ", r.Out);
    }

    [Fact]
    public async Task Crashtest_help_lists_all_twelve_options()
    {
        var r = await HostProcess.Run(["crashtest", "--help"]);
        Assert.True(r.Code == 0 && r.Err == "", r.ToString());
        Assert.Equal(13, r.Out.Split('\n').Count(l => l.StartsWith("  --") || l.StartsWith("  -h")));
    }

    [Fact]
    public async Task A_bad_option_is_usage_status_2_and_serve_has_no_dash_c()
    {
        var r = await HostProcess.Run(["serve", "-c", "x.hocon"]);
        Assert.Equal((2, "dmactors serve: unknown option '-c'\n", ""), (r.Code, r.Err, r.Out));
    }
}
