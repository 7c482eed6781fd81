using DmActors.Host.Configuration;

namespace DmActors.Host.Cli;

/// <summary>
/// `dmactors dmsetup ...`: finds the host from the same configuration the host reads (--config FILE, or the
/// built-in default; --control HOST:PORT overrides), connects over Akka.Remote and runs one dmsetup command.
/// Every problem of the connection is one line on stderr and exit status 1.
/// </summary>
public static class DmsetupCommand
{
    /// <summary>Seconds dmsetup waits for the host (each step: connecting, then each answer); --timeout wins.</summary>
    public const string TimeoutVariable = "DMACTORS_TIMEOUT";

    public static async Task<int> RunAsync(string[] argv)
    {
        var a = DmsetupArgs.Parse(argv, out var error);
        if (a == null) { Console.Error.WriteLine(error); return 1; }
        HostSettings settings;
        TimeSpan timeout;
        try
        {
            settings = HostConfig.Load(a.ConfigFile);
            if (a.Control != null)
            {
                if (!TryParseHostPort(a.Control, out var host, out var port))
                    throw new ConfigException($"--control: bad address '{a.Control}' (expected HOST:PORT)");
                settings = settings with { ControlHost = host, ControlPort = port };
            }
            timeout = a.Timeout ?? TimeoutFromEnvironment() ?? settings.AskTimeout;
        }
        catch (ConfigException e) { Console.Error.WriteLine($"dmactors: {e.Message}"); return 1; }

        try
        {
            await using var control = await RemoteControl.ConnectAsync(settings, timeout);
            return await new Dmsetup(control.Channel, Console.In, Console.Out, Console.Error).RunAsync(a);
        }
        catch (ControlUnreachableException e)
        {
            // Like dmsetup without the driver: the library version still prints.
            if (a.Command == "version") Console.Out.WriteLine(DmsetupFormat.Version(false).Single());
            Console.Error.WriteLine($"dmactors: {e.Message}");
            return 1;
        }
        catch (ControlMessageTooLargeException e)
        {
            Console.Error.WriteLine($"dmactors: {a.Command}: {e.Message}");
            return 1;
        }
        catch (ControlException e)
        {
            Console.Error.WriteLine($"dmactors: {e.Message}");
            return 1;
        }
    }

    private static TimeSpan? TimeoutFromEnvironment()
    {
        var text = Environment.GetEnvironmentVariable(TimeoutVariable);
        if (string.IsNullOrWhiteSpace(text)) return null;
        return DmsetupArgs.ParseSeconds(text) ?? throw new ConfigException($"{TimeoutVariable}: '{text}' is not a number of seconds");
    }

    /// <summary>HOST:PORT, where HOST is a name, an IPv4 address or a bracketed IPv6 address ([::1]:10810).</summary>
    public static bool TryParseHostPort(string text, out string host, out int port)
    {
        host = "";
        port = 0;
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), System.Globalization.NumberStyles.None, null, out port) || port is < 1 or > 65535)
            return false;
        host = text[..colon];
        if (host.StartsWith('[') && host.EndsWith(']')) host = host[1..^1];
        else if (host.Contains(':')) return false; // an IPv6 address needs its brackets
        return host.Length > 0 && (System.Net.IPAddress.TryParse(host, out _) || Uri.CheckHostName(host) == UriHostNameType.Dns);
    }
}
