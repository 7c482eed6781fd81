using System.Diagnostics;
using Xunit;

namespace DmActors.Tests.Nbd;

/// <summary>
/// Runs a real NBD client (qemu, libnbd) as a child process. A missing tool fails the test with the Debian package
/// to install; a tool that hangs is killed and fails the test; a non-zero exit fails it with the tool's output.
/// </summary>
internal static class ExternalTool
{
    public static readonly TimeSpan Timeout = TimeSpan.FromMinutes(3);

    /// <summary>Debian packages of the tools used here.</summary>
    public const string LibnbdBin = "libnbd-bin", QemuUtils = "qemu-utils", Fio = "fio";

    public static string Find(string tool, string package)
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/bin:/bin").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var path = Path.Combine(dir, tool);
            if (File.Exists(path)) return path;
        }
        Assert.Fail($"{tool} is not installed: install the Debian package {package} (apt-get install -y {package})");
        return null!;
    }

    public static async Task<string> RunAsync(string tool, string package, params string[] args)
    {
        var result = await TryRunAsync(tool, package, args);
        Assert.True(result.ExitCode == 0, $"{tool} {string.Join(' ', args)} exited with {result.ExitCode}:\n{result.Stderr}\n{result.Stdout}");
        return result.Stdout;
    }

    public static async Task<(int ExitCode, string Stdout, string Stderr)> TryRunAsync(string tool, string package, params string[] args)
    {
        var psi = new ProcessStartInfo(Find(tool, package))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            using var cts = new CancellationTokenSource(Timeout);
            try { await process.WaitForExitAsync(cts.Token); }
            catch (OperationCanceledException) { Assert.Fail($"{tool} {string.Join(' ', args)} did not finish within {Timeout}"); }
            return (process.ExitCode, await stdout, await stderr);
        }
        finally
        {
            if (!process.HasExited) process.Kill(entireProcessTree: true);
        }
    }
}
