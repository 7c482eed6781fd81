using DmActors.Host;
using DmActors.Host.Bench;
using DmActors.Host.Cli;

// dmactors: serve (the host), dmsetup (control client), bench.
return args switch
{
    [] or ["--help" or "-h" or "help"] => Usage(Console.Out, 0),
    ["serve", .. var rest] => await ServeCommand.RunAsync(rest),
    ["dmsetup", .. var rest] => await DmsetupCommand.RunAsync(rest),
    ["bench", .. var rest] => await BenchCommand.RunAsync(rest),
    ["bench-scale", .. var rest] => await ScaleBench.RunAsync(rest),
    ["crashtest", .. var rest] => await DmActors.Host.Crash.CrashTestCommand.RunAsync(rest),
    ["powercut", .. var rest] => await DmsetupCommand.RunAsync(["powercut", .. rest]),
    ["replay-log", .. var rest] => ReplayLogCommand.Run(rest, Console.Out, Console.Error),
    _ => Usage(Console.Error, 1, $"dmactors: unknown command '{args[0]}'"),
};

static int Usage(TextWriter w, int code, string? error = null)
{
    if (error != null) w.WriteLine(error);
    w.WriteLine("""
        Usage: dmactors <command> [options]

          serve [--config FILE]       Run the host: disks, devices and the NBD server (default nbd://127.0.0.1:10809/demo).
                                      FILE (HOCON) is layered over the built-in akka.hocon; DMACTORS_DATA sets the data directory.
          dmsetup [--config FILE] [--control HOST:PORT] [--timeout SECONDS] <command> ...
                                      Control the running host, like dmsetup(8) (SECONDS: how long to wait for it;
                                      default DMACTORS_TIMEOUT, else dmactors.control.ask-timeout):
                                        create NAME [--table TEXT | FILE] [--notable] [-r] [-u UUID] [--barrier-mode ordered|flush]
                                        remove [-f] NAME...   suspend [--noflush] NAME...   resume NAME...
                                        load|reload NAME [--table TEXT | FILE] [-r]   clear NAME
                                        table [NAME...] [--inactive]   status [NAME...]   info [-c] [NAME...]   ls
                                        message NAME SECTOR MSG...   rename OLD NEW   rename OLD --setuuid UUID
                                        targets   version   history NAME (the device's recorded events)
                                      Without --table or FILE the table is read from stdin.
          powercut [--config FILE] [--tear] [DISK...]
                                      Power loss on the running host's write-back-cache disks: unflushed writes are lost
                                      (--tear: a random part of them lands first).
          replay-log --log FILE [--replay DEV] [--end-mark NAME] [--limit N] [--find fua|flush|mark] [--no-discard]
                     [--check fua|flush|mark [--fsck CMD]]
                                      Replays a log-writes log onto a disk file up to a mark or entry (like xfstests'
                                      replay-log), or lists its FUA / flush / mark points as entry@offset, or replays to
                                      each such point in turn and runs CMD ($REPLAY_DEV = the device) after each.
          crashtest [--seed N] [--trials N] [--cuts-per-trial N] [--mode ordered|flush|both] [--tear] [--lying-flush]
                                      Crash-consistency checker: seeded workloads on write-back-cache disks, power cuts,
                                      restart, and a check that every write promised durable reads back.
          bench ...                   Benchmarks (see dmactors bench --help).
          bench-scale [--devices N] [--busy N] [--seconds S]
                                      Many devices on one host: memory per idle device, N busy at once.
          --help                      This text.
        """);
    return code;
}
