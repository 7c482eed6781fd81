using System.Runtime.InteropServices;
using DmActors.Host.Configuration;

namespace DmActors.Host;

/// <summary>`dmactors serve [--config FILE]`: runs the host until SIGINT or SIGTERM, then stops it cleanly.</summary>
public static class ServeCommand
{
    public static async Task<int> RunAsync(string[] args)
    {
        string? file = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--config" or "-c" when i + 1 < args.Length: file = args[++i]; break;
                case var a when a.StartsWith("--config="): file = a["--config=".Length..]; break;
                default:
                    Console.Error.WriteLine($"dmactors serve: unknown argument '{args[i]}' (usage: dmactors serve [--config FILE])");
                    return 1;
            }
        }

        DmHost host;
        try
        {
            var settings = HostConfig.Load(file, Environment.GetEnvironmentVariable(HostConfig.DataDirVariable));
            host = await DmHost.StartAsync(settings, Console.Out);
        }
        catch (ConfigException e)
        {
            Console.Error.WriteLine($"dmactors: {e.Message}");
            return 1;
        }

        var stop = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnSignal(PosixSignalContext ctx)
        {
            // The first signal asks for a clean stop; a second one while stopping falls through and kills the process.
            if (stop.TrySetResult(ctx.Signal.ToString())) ctx.Cancel = true;
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var sigquit = PosixSignalRegistration.Create(PosixSignal.SIGQUIT, OnSignal);
        using var sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, OnSignal);

        var signal = await stop.Task;
        Console.Out.WriteLine($"dmactors: {signal}, stopping");
        await host.StopAsync(Console.Out);
        return 0;
    }
}
