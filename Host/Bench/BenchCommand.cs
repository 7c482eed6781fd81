namespace DmActors.Host.Bench;

/// <summary>`dmactors bench`: STUB, replaced by the benchmark work.</summary>
public static class BenchCommand
{
    public static Task<int> RunAsync(string[] args) => throw new NotImplementedException();
}
