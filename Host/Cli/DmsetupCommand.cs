using Akka.Actor;
using DmActors.Host.Configuration;

namespace DmActors.Host.Cli;

/// <summary>
/// `dmactors dmsetup ...`: finds the host from the same configuration the host reads (--config FILE, or the
/// built-in default; --control HOST:PORT overrides), connects over Akka.Remote and runs one dmsetup command.
/// </summary>
public static class DmsetupCommand
{
    public static async Task<int> RunAsync(string[] argv)
    {
        var a = DmsetupArgs.Parse(argv, out var error);
        if (a == null) { Console.Error.WriteLine(error); return 1; }
        HostSettings settings;
        try
        {
            settings = HostConfig.Load(a.ConfigFile);
            if (a.Control != null)
            {
                if (!System.Net.IPEndPoint.TryParse(a.Control, out var ep) || ep.Port == 0)
                    throw new ConfigException($"--control: bad address '{a.Control}' (expected HOST:PORT)");
                settings = settings with { ControlHost = ep.Address.ToString(), ControlPort = ep.Port };
            }
        }
        catch (ConfigException e) { Console.Error.WriteLine($"dmactors: {e.Message}"); return 1; }

        try
        {
            await using var control = await RemoteControl.ConnectAsync(settings);
            return await new Dmsetup(control.Channel, Console.In, Console.Out, Console.Error).RunAsync(a);
        }
        catch (ControlUnreachableException e)
        {
            // Like dmsetup without the driver: the library version still prints.
            if (a.Command == "version") Console.Out.WriteLine(DmsetupFormat.Version(false).Single());
            Console.Error.WriteLine($"dmactors: {e.Message}");
            return 1;
        }
        catch (AskTimeoutException)
        {
            Console.Error.WriteLine($"dmactors: no reply from the dmactors host at {settings.ManagerPath} within {settings.AskTimeout.TotalSeconds:0}s");
            return 1;
        }
    }
}
