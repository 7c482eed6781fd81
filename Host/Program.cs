using System.CommandLine;
using DmActors.Host.Bench;
using DmActors.Host.Cli;
using DmActors.Host.CommandLine;
using DmActors.Host.Crash;

namespace DmActors.Host;

/// <summary>`dmactors`: each tool's folder defines its command; this composes them. Exit status: 0 success, 1 failure, 2 usage.</summary>
public static class Program
{
    public static Task<int> Main(string[] args) => CommandRunner.RunAsync(Root(), args, Console.Out, Console.Error);

    public static Command Root()
    {
        var root = CommandRunner.WithHelp(new Command("dmactors", "DmActors: Linux device-mapper in C# on Akka.NET, served over NBD.")
        {
            ServeCommand.Build(),
            DmsetupCommand.Build(),
            DmsetupCommand.BuildPowercut(),
            DmsetupCommand.BuildCluster(),
            ReplayLogCommand.Build(),
            CrashTestCommand.Build(),
            ClusterTest.ClusterTestCommand.Build(),
            BenchCommand.Build(),
            ScaleBench.Build(),
        });
        // `dmactors` and `dmactors help` print the help too.
        var help = new Command("help", "This text.") { Hidden = true };
        root.Subcommands.Add(help);
        root.SetAction(PrintHelp);
        help.SetAction(PrintHelp);
        return root;
    }

    private static int PrintHelp(ParseResult r)
    {
        HelpText.Write(r.RootCommandResult, r.InvocationConfiguration.Output);
        return CommandRunner.Success;
    }
}
