using Akka.Actor;
using Akka.Event;

namespace DmActors.Cluster;

/// <summary>
/// A cluster node's device manager (at /user/devices): answers the same <see cref="Dm"/> protocol as
/// <see cref="DeviceManager"/>, so the NBD server and the dmsetup control gate work unchanged, for every volume of
/// the cluster. Names resolve through the volume directory; commands go to the volume entities through the shard
/// region. Every Ask has a timeout and is piped back: the actor never blocks. Open hands out the local device when
/// the volume runs here, else a local proxy device over <see cref="IRemoteVolumes"/>: a device's IActorRef never
/// crosses nodes.
/// </summary>
public sealed class ClusterDeviceManager : UntypedActor
{
    public static Props Props(ClusterNode node, IActorRef region, IActorRef directory) =>
        Akka.Actor.Props.Create(() => new ClusterDeviceManager(node, region, directory));

    /// <summary>A remote volume was opened (off the actor): map it with a proxy and answer the open.</summary>
    private sealed record RemoteOpened(string Name, int Minor, IBlockDevice Device, IActorRef ReplyTo, bool Acknowledge);

    /// <summary>A remote open came to nothing, or found the volume here after all: the caller is answered on the actor.</summary>
    private sealed record OpenFailed(object Reply, IActorRef ReplyTo);
    private sealed record OpenAgain(Dm.Open Open, IActorRef ReplyTo);

    /// <summary>What one Open handed out, undone by a Close of the same name (last opened, first closed).</summary>
    private sealed class Opening(DeviceShared Shared, IActorRef Device, IActorRef? Proxy, bool awaitsAck)
    {
        public DeviceShared Shared { get; } = Shared;
        /// <summary>What the caller sends bios to: the volume's device, or the proxy.</summary>
        public IActorRef Device { get; } = Device;
        public IActorRef? Proxy { get; } = Proxy;
        /// <summary>Handed out with Opened.AwaitsAcknowledgement and not acknowledged yet.</summary>
        public bool AwaitsAck { get; set; } = awaitsAck;
    }

    /// <summary>An open asked to be acknowledged and this is its time: unacknowledged, nobody will close it.</summary>
    private sealed record AckDue(string Name, Opening Opening);

    private static readonly TimeSpan MovePoll = TimeSpan.FromMilliseconds(200);
    private static readonly TimeSpan MovePollAsk = TimeSpan.FromSeconds(2);

    private readonly ClusterNode _node;
    private readonly IActorRef _region;
    private readonly IActorRef _directory;
    private readonly ILoggingAdapter _log = Context.GetLogger();
    private readonly Dictionary<string, List<Opening>> _opens = new(StringComparer.Ordinal);
    /// <summary>Every running proxy device and the remote device under it.</summary>
    private readonly Dictionary<IActorRef, IBlockDevice> _proxies = new();
    /// <summary>Callers waiting for a remote open (watched); true once the caller stopped waiting (its Ask timed out).</summary>
    private readonly Dictionary<IActorRef, bool> _waiting = new();
    /// <summary>The command being handled (named by a failure that has no answer of its own).</summary>
    private object _message = "";

    public ClusterDeviceManager(ClusterNode node, IActorRef region, IActorRef directory)
    {
        _node = node; _region = region; _directory = directory;
    }

    private TimeSpan Timeout => _node.Timeout;

    protected override void PreStart() => LostBioAnswerer.Start(Context.System);

    protected override void OnReceive(object message)
    {
        _message = message;
        switch (message)
        {
            case Dm.Create c: Reply(Create(c)); break;
            case Dm.Load l: Reply(ToVolume(l.Name, l, TableArgs(l.Table))); break;
            case Dm.Remove r: Reply(Remove(r)); break;
            case Dm.Rename r: Reply(Rename(r)); break;
            case Dm.Suspend or Dm.Resume or Dm.Clear or Dm.GetTable or Dm.GetStatus or Dm.GetInfo or Dm.Message or Dm.History or IStatsCommand:
                Reply(ToVolume(VolumeEntity.NameOf(message), message));
                break;
            case Dm.List: Reply(List()); break;
            case Dm.ListExports: Reply(ListExports()); break;
            case Dm.ListTargets:
                Sender.Tell(new Dm.TargetList(TargetTypes.All.Select(t => new Dm.TargetEntry(t.Name, t.Version)).ToArray()));
                break;
            case Dm.Open o: Open(o); break;
            case RemoteOpened r: ServeRemote(r); break;
            case OpenFailed f: StopWaiting(f.ReplyTo); f.ReplyTo.Tell(f.Reply); break;
            case OpenAgain a: StopWaiting(a.ReplyTo); Self.Tell(a.Open, a.ReplyTo); break;
            case Dm.Close c: Close(c); break;
            case Dm.OpenAcknowledged a: Acknowledged(a); break;
            case AckDue d: CloseUnacknowledged(d); break;
            case DeviceManager.Quiesce: Quiesce(); break;
            case ClusterCmd.Status: Reply(Status()); break;
            case ClusterCmd.Move m: Reply(Move(m)); break;
            case Terminated t when _waiting.ContainsKey(t.ActorRef): _waiting[t.ActorRef] = true; break;
            case Terminated t: Forget(t.ActorRef); break;
            // Nothing hangs: what a single host's manager also answers (its journal, configuration devices) is refused here.
            default: Sender.Tell(new Dm.Failed(VolumeEntity.Op(message), VolumeEntity.NameOf(message), Dm.Failed.Invalid,
                $"{message.GetType().Name} is not supported by a cluster node")); break;
        }
    }

    /// <summary>Answers the sender with what <paramref name="work"/> comes to; a failure becomes Dm.Failed, never silence.</summary>
    private void Reply(Task<object> work)
    {
        var (op, name) = (VolumeEntity.Op(_message), VolumeEntity.NameOf(_message));
        work.ContinueWith(t => t.IsCompletedSuccessfully ? t.Result
                : new Dm.Failed(op, name, "Connection timed out", t.Exception?.GetBaseException().Message ?? "cancelled"),
            TaskContinuationOptions.ExecuteSynchronously).PipeTo(Sender);
    }

    private Task<object> Ask(IActorRef to, object message) => to.Ask<object>(message, Timeout);

    /// <summary>A wait's ask allows for its patience (it is answered at an event or when that runs out).</summary>
    private Task<object> AskVolume(string entityId, object command) =>
        _region.Ask<object>(new VolumeEnvelope(entityId, command), Timeout + (command is Dm.GetInfo { Patience: { } p } ? p : TimeSpan.Zero));

    private async Task<object> ToVolume(string name, object command, IReadOnlyList<string>? uses = null)
    {
        var op = VolumeEntity.Op(command);
        if (uses == null && command is Dm.Load) return new Dm.Failed("reload", name, Dm.Failed.Invalid, "Invalid format of table");
        var resolved = await Ask(_directory, new DirectoryCmd.Resolve(op, name, uses));
        if (resolved is not DirectoryCmd.Resolved v) return resolved;
        return await AskVolume(v.EntityId, command);
    }

    /// <summary>A table's arguments (which decide its stack group); null when it does not parse (the volume says why).</summary>
    private static IReadOnlyList<string>? TableArgs(string? table)
    {
        if (string.IsNullOrWhiteSpace(table)) return [];
        try { return Table.Parse(table).SelectMany(l => l.Args).Distinct().ToList(); }
        catch (TableException) { return null; }
    }

    private async Task<object> Create(Dm.Create c)
    {
        // dm's checks of the name and uuid first (nothing is reserved for a create dm would refuse).
        var check = DeviceCommands.Decide(HostState.Empty, _ => null, c with { Table = null }, DateTime.UtcNow);
        if (check.Refused) return check.Refusal!;
        List<string> uses;
        try { uses = string.IsNullOrWhiteSpace(c.Table) ? [] : Table.Parse(c.Table).SelectMany(l => l.Args).Distinct().ToList(); }
        catch (TableException e) { return new Dm.Failed("create", c.Name, Dm.Failed.Invalid, e.Message); }
        var reply = await Ask(_directory, new DirectoryCmd.Reserve(c.Name, c.Uuid, uses, c.Node, _node.Self));
        if (reply is not DirectoryCmd.Reserved r) return reply;
        object created;
        try { created = await AskVolume(r.EntityId, new VolumeEntity.CreateVolume(c with { Node = r.Node }, r.Minor, r.Node)); }
        catch (Exception e) { created = new Dm.Failed("create", c.Name, "Connection timed out", e.GetBaseException().Message); }
        // A create that failed leaves nothing behind: the name is free again (dmsetup's _revert_create).
        if (created is not Dm.Done) _directory.Tell(new DirectoryCmd.Release(c.Name, r.EntityId));
        return created;
    }

    private async Task<object> Remove(Dm.Remove rm)
    {
        var resolved = await Ask(_directory, new DirectoryCmd.Resolve("remove", rm.Name));
        if (resolved is not DirectoryCmd.Resolved v) return resolved;
        var reply = await AskVolume(v.EntityId, rm);
        if (reply is Dm.Done) await Ask(_directory, new DirectoryCmd.Release(rm.Name, v.EntityId));
        return reply;
    }

    private async Task<object> Rename(Dm.Rename r)
    {
        var bad = r.SetUuid
            ? (r.NewName.Length == 0 ? "Invalid new mapped device name or uuid string supplied." : DeviceCommands.CheckUuid(r.NewName))
            : DeviceCommands.CheckName(r.NewName);
        if (bad != null) return new Dm.Failed("rename", r.Name, Dm.Failed.Invalid, bad);
        var renamed = await Ask(_directory, new DirectoryCmd.Rename(r.Name, r.NewName, r.SetUuid));
        if (renamed is not DirectoryCmd.Resolved v) return renamed;
        var reply = await AskVolume(v.EntityId, r);
        // The volume refused (it should not, after the directory's checks): the directory takes the old name back.
        if (reply is not Dm.Done && !r.SetUuid) await Ask(_directory, new DirectoryCmd.Rename(r.NewName, r.Name, false));
        return reply;
    }

    private async Task<object> List()
    {
        var listing = await Ask(_directory, DirectoryCmd.List.Instance);
        if (listing is not DirectoryCmd.Listing l) return listing;
        return new Dm.DeviceList(l.Volumes.Select(v => new Dm.DeviceEntry(v.Name, MappedDevice.Major, v.Minor)).ToArray());
    }

    /// <summary>The volumes with a live table, in the whole cluster (every node exports every volume).</summary>
    private async Task<object> ListExports()
    {
        var listing = await Ask(_directory, DirectoryCmd.List.Instance);
        if (listing is not DirectoryCmd.Listing l) return listing;
        var infos = await Task.WhenAll(l.Volumes.Select(async v =>
        {
            try { return await AskVolume(v.EntityId, new Dm.GetInfo(v.Name)) as Dm.DeviceInfo; }
            catch (Exception) { return null; }
        }));
        return new Dm.ExportList(infos.Where(i => i is { LiveTable: true }).Select(i => i!.Name).OrderBy(n => n, StringComparer.Ordinal).ToArray());
    }

    private async Task<object> Status()
    {
        var state = Akka.Cluster.Cluster.Get(Context.System).State; // read on the actor's thread, before any await
        var clusterName = Context.System.Name;
        var listing = await Ask(_directory, DirectoryCmd.List.Instance);
        var volumes = (listing as DirectoryCmd.Listing)?.Volumes ?? [];
        var members = state.Members.OrderBy(m => m.Address.ToString(), StringComparer.Ordinal).Select(m =>
        {
            var name = ClusterDefaults.NodeOf(m.Roles) ?? m.Address.ToString();
            var status = state.Unreachable.Contains(m) ? "Unreachable" : m.Status.ToString();
            return new ClusterCmd.MemberEntry(name, m.Address.ToString(), status, m.Roles.OrderBy(r => r).ToList(),
                volumes.Where(v => v.Node == name).Select(v => v.Name).OrderBy(n => n, StringComparer.Ordinal).ToList());
        }).ToList();
        var leader = state.Leader is { } a ? state.Members.FirstOrDefault(m => m.Address.Equals(a)) : null;
        return new ClusterCmd.StatusReply(clusterName, _node.Self, leader == null ? null : ClusterDefaults.NodeOf(leader.Roles) ?? leader.Address.ToString(), members);
    }

    /// <summary>
    /// Move: the directory places the group; done once every volume of it answers from the new node, within the
    /// move's own bound (the CLI's timeout, which waits a little longer for this answer; else twice the ask
    /// timeout). Each poll asks briefly: a question lost in the shard's handoff is asked again, not waited out.
    /// </summary>
    private async Task<object> Move(ClusterCmd.Move m)
    {
        var within = m.Within ?? Timeout + Timeout;
        var deadline = DateTime.UtcNow + within;
        var reply = await Ask(_directory, new DirectoryCmd.Move(m.Name, m.Node));
        if (reply is not DirectoryCmd.Moving moving) return reply;
        foreach (var v in moving.Group)
        {
            while (true)
            {
                object info;
                try { info = await _region.Ask<object>(new VolumeEnvelope(v.EntityId, new Dm.GetInfo(v.Name)), MovePollAsk < Timeout ? MovePollAsk : Timeout); }
                catch (AskTimeoutException) { info = "timeout"; }
                if (info is Dm.DeviceInfo i && i.Node == m.Node) break;
                if (info is Dm.Failed) return info;
                if (DateTime.UtcNow > deadline)
                    return new Dm.Failed("move", m.Name, "Connection timed out",
                        $"volume {v.Name} does not serve on node {m.Node} after {within.TotalSeconds:0.###} s; it is placed there and may still come up (see dmactors cluster status)");
                await Task.Delay(MovePoll);
            }
        }
        return Dm.Done.Empty;
    }

    // ---- Open and close ---------------------------------------------------------------------------------------

    private void Open(Dm.Open o)
    {
        if (_node.Volumes.Find(o.Name) is { } local && local.Device.Shared.Name == o.Name)
        {
            var shared = local.Device.Shared;
            if (shared.Sectors == 0) { Sender.Tell(new Dm.Failed("open", o.Name, Dm.Failed.NoDevice, "device has no live table")); return; }
            shared.Open();
            Remember(o.Name, new Opening(shared, local.Device.Actor, null, o.Acknowledge));
            Sender.Tell(new Dm.Opened(o.Name, local.Device.Actor, shared.Sectors, shared.ReadOnly, shared.HasVolatileCache, 4096, true, true, o.Acknowledge));
            return;
        }
        var replyTo = Sender;
        var self = Self;
        // The caller (an NBD open) may give up before the remote open is done: then nothing may be left open for it.
        if (_waiting.TryAdd(replyTo, false)) Context.Watch(replyTo);
        OpenElsewhere(o, replyTo).ContinueWith(t =>
        {
            switch (t.IsCompletedSuccessfully ? t.Result : new Dm.Failed("open", o.Name, "Connection timed out", t.Exception?.GetBaseException().Message ?? ""))
            {
                case RemoteOpened r: self.Tell(r); break;
                case Dm.Open retry: self.Tell(new OpenAgain(retry, replyTo)); break;
                case var failure: self.Tell(new OpenFailed(failure, replyTo)); break;
            }
        }, TaskContinuationOptions.ExecuteSynchronously);
    }

    /// <summary>Finds the owner; the volume runs here after all (just woken): open again; else open it remotely.</summary>
    private async Task<object> OpenElsewhere(Dm.Open open, IActorRef replyTo)
    {
        var name = open.Name;
        var resolved = await Ask(_directory, new DirectoryCmd.Resolve("open", name));
        if (resolved is not DirectoryCmd.Resolved v) return resolved;
        var info = await AskVolume(v.EntityId, new Dm.GetInfo(name)); // wakes it, and says where it runs
        if (info is not Dm.DeviceInfo i) return info;
        if (!i.LiveTable) return new Dm.Failed("open", name, Dm.Failed.NoDevice, "device has no live table");
        if (i.Node == _node.Self) return _node.Volumes.Find(name) != null ? open : new Dm.Failed("open", name, Dm.Failed.NoDevice, "device is moving");
        var owner = i.Node!;
        // The data channel connects synchronously (bounded by its connect timeout): off the actor.
        return await Task.Run(() =>
        {
            try { return (object)new RemoteOpened(name, v.Minor, _node.Remote.Open(name, owner), replyTo, open.Acknowledge); }
            catch (TargetException e) { return new Dm.Failed("open", name, Dm.Failed.NoDevice, $"cannot reach {name} on {owner}: {e.Message}"); }
        });
    }

    /// <summary>A proxy device over the remote volume (<c>0 N linear DEVICE 0</c>), opened for the caller.</summary>
    private void ServeRemote(RemoteOpened r)
    {
        if (StopWaiting(r.ReplyTo))
        {
            // Nobody would ever close it: the connection to the owner (an open of its volume there) goes now.
            _log.Info("open of {0}: the caller stopped waiting before the remote volume was reached; closing it", r.Name);
            (r.Device as IDisposable)?.Dispose();
            return;
        }
        Table table;
        try { table = Table.Build(Table.Parse($"0 {r.Device.Sectors} linear remote 0"), new OneDevice(r.Device), false, _node.Options.Clock); }
        catch (TableException e)
        {
            (r.Device as IDisposable)?.Dispose();
            r.ReplyTo.Tell(new Dm.Failed("open", r.Name, Dm.Failed.NoDevice, e.Message));
            return;
        }
        var o = _node.Options;
        var shared = new DeviceShared(r.Name, r.Minor);
        var proxy = Context.ActorOf(MappedDevice.Props(shared, new MappedDevice.Options(BarrierMode.Flush, o.MaxDeferred, o.Clock, o.ShutdownTimeout,
            false, null, o.BarrierTimeout, o.InlineIo ? IoDispatcher.DispatcherId : Akka.Dispatch.Dispatchers.DefaultDispatcherId)));
        Context.Watch(proxy);
        _proxies[proxy] = r.Device;
        proxy.Tell(new MappedDevice.LoadTable(table, Reply: false));
        proxy.Tell(new Dm.Resume(r.Name), ActorRefs.Nobody);
        // The proxy's size is known before its resume runs: the table's.
        shared.Open();
        Remember(r.Name, new Opening(shared, proxy, proxy, r.Acknowledge));
        r.ReplyTo.Tell(new Dm.Opened(r.Name, proxy, table.Sectors, table.ReadOnly, table.HasVolatileCache, 4096, true, true, r.Acknowledge));
    }

    /// <summary>The caller of a remote open is answered now; true when it had stopped waiting.</summary>
    private bool StopWaiting(IActorRef replyTo)
    {
        if (!_waiting.Remove(replyTo, out var gone)) return false;
        Context.Unwatch(replyTo);
#pragma warning disable CS0618 // a temporary Ask actor is terminated once its Ask timed out; its Terminated may not have arrived yet
        return gone || replyTo is IInternalActorRef { IsTerminated: true };
#pragma warning restore CS0618
    }

    private void Remember(string name, Opening o)
    {
        if (!_opens.TryGetValue(name, out var list)) _opens[name] = list = new();
        list.Add(o);
        if (o.AwaitsAck) Context.System.Scheduler.ScheduleTellOnce(_node.AckTimeout, Self, new AckDue(name, o), Self);
    }

    /// <summary>The caller has the device: its open stays until its close.</summary>
    private void Acknowledged(Dm.OpenAcknowledged a)
    {
        if (_opens.TryGetValue(a.Name, out var list) && list.FirstOrDefault(o => o.AwaitsAck && o.Device.Equals(a.Device)) is { } o)
            o.AwaitsAck = false;
    }

    /// <summary>
    /// The caller never acknowledged (its Ask timed out before the reply, which reached nobody): nobody will close
    /// this open, so it is closed here, releasing the proxy and its connection to the owner.
    /// </summary>
    private void CloseUnacknowledged(AckDue d)
    {
        if (!d.Opening.AwaitsAck || !_opens.TryGetValue(d.Name, out var list) || !list.Remove(d.Opening)) return;
        if (list.Count == 0) _opens.Remove(d.Name);
        _log.Info("open of {0} was not acknowledged within {1}: its caller gave up; closing it", d.Name, _node.AckTimeout);
        Release(d.Opening);
    }

    private static void Release(Opening o)
    {
        o.Shared.Close();
        // A proxy serves one open: it goes (releasing the remote device) with its close.
        o.Proxy?.Tell(new MappedDevice.Shutdown(), ActorRefs.Nobody);
    }

    private void Close(Dm.Close c)
    {
        if (_opens.TryGetValue(c.Name, out var list) && list.Count > 0)
        {
            // The open this close belongs to: its proxy, else a local open; several clients may have the name open.
            var i = c.Device != null ? list.FindIndex(o => c.Device.Equals(o.Proxy)) : -1;
            if (i < 0) i = list.FindLastIndex(o => o.Proxy == null);
            if (i < 0) i = list.Count - 1;
            var o = list[i];
            list.RemoveAt(i);
            if (list.Count == 0) _opens.Remove(c.Name);
            Release(o);
        }
        else if (_node.Volumes.Find(c.Name) is { } local) local.Device.Shared.Close();
        Sender.Tell(Dm.Done.Empty);
    }

    /// <summary>A proxy stopped (its close, or it failed): its remote device's connection goes with it.</summary>
    private void Forget(IActorRef proxy)
    {
        if (_proxies.Remove(proxy, out var remote)) (remote as IDisposable)?.Dispose();
        foreach (var (name, list) in _opens.ToList())
        {
            list.RemoveAll(o => proxy.Equals(o.Proxy));
            if (list.Count == 0) _opens.Remove(name);
        }
    }

    /// <summary>Host shutdown: suspend every volume running here with flush, not recorded (they come back running).</summary>
    private void Quiesce()
    {
        var local = _node.Volumes.All;
        var gather = Context.ActorOf(Akka.Actor.Props.Create(() => new ReplyGather(local.Count, Sender)));
        foreach (var v in local) v.Device.Actor.Tell(new Dm.Suspend(v.Device.Shared.Name), gather);
    }

    private sealed class OneDevice(IBlockDevice device) : IDeviceLookup
    {
        public IBlockDevice? Find(string name) => name == "remote" ? device : null;
    }
}
