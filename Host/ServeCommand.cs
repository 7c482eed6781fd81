using System.CommandLine;
using System.Runtime.InteropServices;
using DmActors.Host.CommandLine;
using DmActors.Host.Configuration;

namespace DmActors.Host;

/// <summary>`dmactors serve [--config FILE]`: runs the host until SIGINT or SIGTERM, then stops it cleanly.</summary>
public static class ServeCommand
{
    /// <summary>The command; `--config` has no `-c`, which is dmsetup's `--columns`.</summary>
    public static Command Build()
    {
        var config = ToolOption.Text("--config", "FILE",
            "HOCON layered over the built-in akka.hocon (disks, devices, NBD, control port, journal).");
        var serve = new Command("serve",
            "Runs the host: disks, devices and the NBD server (default nbd://127.0.0.1:10809/demo) until SIGINT or SIGTERM.\n" +
            $"{HostConfig.DataDirVariable} sets the data directory.") { config };
        serve.SetAction(r => RunAsync(r.GetValue(config), r.InvocationConfiguration.Output, r.InvocationConfiguration.Error));
        return serve;
    }

    private static async Task<int> RunAsync(string? file, TextWriter stdout, TextWriter stderr)
    {
        DmHost host;
        try
        {
            var settings = HostConfig.Load(file, Environment.GetEnvironmentVariable(HostConfig.DataDirVariable));
            host = await DmHost.StartAsync(settings, stdout);
        }
        catch (ConfigException e)
        {
            stderr.WriteLine($"dmactors: {e.Message}");
            return CommandRunner.Failure;
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

        // A cluster node the cluster downed (it was paused or cut off) stops serving at once and exits non-zero,
        // so a supervisor starts it again as a new member.
        if (await Task.WhenAny(stop.Task, host.Removed) == host.Removed)
        {
            stdout.WriteLine($"dmactors: {host.Removed.Result}; stopping");
            await host.StopAsync(stdout);
            return CommandRunner.Failure;
        }
        stdout.WriteLine($"dmactors: {stop.Task.Result}, stopping");
        await host.StopAsync(stdout);
        return CommandRunner.Success;
    }
}
