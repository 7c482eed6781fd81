namespace DmActors.Tests.Support;

/// <summary>A fresh directory under the system's temp directory, deleted with everything in it on Dispose.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir(string prefix = "dmactors-") => Path = Directory.CreateTempSubdirectory(prefix).FullName;

    public string Path { get; }

    /// <summary>A path inside the directory.</summary>
    public string this[string name] => System.IO.Path.Combine(Path, name);

    public override string ToString() => Path;

    public void Dispose()
    {
        // A process that still closes its files must not fail the test that is cleaning up after it.
        try { Directory.Delete(Path, recursive: true); } catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}
