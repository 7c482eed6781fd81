using System.CommandLine;

namespace DmActors.Host.CommandLine;

/// <summary>
/// A command that also names, for its --help, options it takes from its parent: dmsetup's options all belong to the
/// dmsetup command (getopt takes any option anywhere, before or after the command name), hidden there, and each
/// subcommand lists the ones it uses.
/// </summary>
public class ToolCommand(string name, string description) : Command(name, description)
{
    public List<Option> Uses { get; } = [];
}

/// <summary>A command that words its own usage errors and picks their exit status (dmsetup keeps dmsetup's).</summary>
public interface IReportsUsage
{
    int Report(UsageProblem problem, TextWriter stderr);
}
