using System.Net;
using Akka.Actor;
using DmActors.Host.Nbd;
using DmActors.Tests.Support;
using Xunit;
using static DmActors.Host.Nbd.NbdProtocol;

namespace DmActors.Tests.Nbd;

/// <summary>The server against a byte-level client: handshake, options, transmission, errors and hostile input.</summary>
[Collection(NbdCollection.Name)]
public sealed class NbdProtocolTests(NbdFixture fx)
{
    private const uint MiB = 1 << 20;

    // ---- handshake and options ----------------------------------------------------------------------------------

    [Fact]
    public void Hello_offers_fixed_newstyle_and_no_zeroes()
    {
        using var c = RawNbdClient.Tcp(fx.Port);
        Assert.Equal(FlagFixedNewstyle | FlagNoZeroes, c.ReadHello());
    }

    [Fact]
    public void Unknown_client_flag_closes_the_connection()
    {
        using var c = RawNbdClient.Tcp(fx.Port);
        c.ReadHello();
        c.SendClientFlags(ClientFixedNewstyle | 0x100);
        Assert.True(c.IsClosedByServer());
    }

    [Fact]
    public async Task Go_reports_size_flags_block_sizes_name_and_description()
    {
        var name = await fx.CreateExportAsync(sectors: 4096);
        using var c = RawNbdClient.Tcp(fx.Port).Greet();
        c.NegotiateStructuredReplies();
        var request = RawNbdClient.InfoRequest(name, NbdProtocol.Info.Name, NbdProtocol.Info.Description, NbdProtocol.Info.BlockSize);
        var info = c.Option(Opt.Info, request);
        Assert.Equal(Rep.Ack, info[^1].Type);
        var go = c.Option(Opt.Go, request);
        Assert.Equal(Rep.Ack, go[^1].Type);

        var e = RawNbdClient.ParseInfo(go);
        Assert.Equal(RawNbdClient.ParseInfo(info), e); // INFO then GO with the same parameters: the same data
        Assert.Equal(4096UL * 512, e.Size);
        var expected = TxFlags.HasFlags | TxFlags.SendFlush | TxFlags.SendFua | TxFlags.SendTrim | TxFlags.SendWriteZeroes |
                       TxFlags.SendFastZero | TxFlags.SendCache | TxFlags.CanMultiConn | TxFlags.SendDf;
        Assert.Equal(expected, e.Flags);
        Assert.Equal((512u, 4096u, 64 * MiB), (e.MinBlock, e.PreferredBlock, e.MaxBlock));
        Assert.Equal(name, e.Name);
        Assert.Contains(name, e.Description);
        // Transmission works right after the GO's ACK.
        Assert.Equal(new byte[512], c.Read(0, 512));
    }

    [Fact]
    public async Task Without_structured_replies_df_is_not_advertised()
    {
        var name = await fx.CreateExportAsync();
        using var c = RawNbdClient.Open(fx.Port, name);
        Assert.False(c.Info!.Flags.HasFlag(TxFlags.SendDf));
        Assert.True(c.Info.Flags.HasFlag(TxFlags.HasFlags | TxFlags.SendFlush | TxFlags.SendFua | TxFlags.CanMultiConn));
    }

    [Fact]
    public async Task List_returns_every_export_then_ack()
    {
        var a = await fx.CreateExportAsync();
        var b = await fx.CreateExportAsync();
        using var c = RawNbdClient.Tcp(fx.Port).Greet();
        var replies = c.Option(Opt.List);
        Assert.Equal(Rep.Ack, replies[^1].Type);
        var names = replies.Where(r => r.Type == Rep.Server).Select(r => System.Text.Encoding.UTF8.GetString(r.Data, 4, r.Data.Length - 4)).ToList();
        Assert.Contains(a, names);
        Assert.Contains(b, names);
        // LIST takes no data.
        Assert.Equal(Rep.ErrInvalid, c.Option(Opt.List, [1, 2, 3])[^1].Type);
    }

    [Fact]
    public async Task Unknown_and_unsupported_options_get_err_unsup_and_negotiation_continues()
    {
        var name = await fx.CreateExportAsync();
        using var c = RawNbdClient.Tcp(fx.Port).Greet();
        foreach (var option in new uint[] { 99, Opt.ExtendedHeaders, Opt.StartTls, 0x7fffffff })
        {
            var r = c.Option(option, [1, 2, 3, 4]);
            Assert.Single(r);
            Assert.Equal(option, r[0].Option);
            Assert.Equal(Rep.ErrUnsup, r[0].Type);
        }
        c.Go(name);
        Assert.Equal(0u, c.Write(0, RawNbdClient.Pattern(4096, 1)));
    }

    [Fact]
    public async Task Unknown_export_is_err_unknown_and_a_known_one_still_opens()
    {
        var name = await fx.CreateExportAsync();
        using var c = RawNbdClient.Tcp(fx.Port).Greet();
        var r = c.Option(Opt.Go, RawNbdClient.InfoRequest("no-such-export"));
        Assert.Equal(Rep.ErrUnknown, r[^1].Type);
        Assert.Contains("no-such-export", r[^1].Text);
        Assert.Equal(Rep.ErrInvalid, c.Option(Opt.Go, [0, 0, 0, 9, 1])[^1].Type); // name length beyond the option
        var noDefault = c.Option(Opt.Go, RawNbdClient.InfoRequest(""))[^1]; // several exports: no default one
        Assert.Equal(Rep.ErrUnknown, noDefault.Type);
        Assert.Contains("default", noDefault.Text);
        c.Go(name);
        Assert.Equal(new byte[4096], c.Read(0, 4096));
    }

    [Fact]
    public async Task Export_name_with_no_zeroes_replies_size_and_flags_only()
    {
        var name = await fx.CreateExportAsync(sectors: 1000);
        using var c = RawNbdClient.Tcp(fx.Port).Greet();
        c.SendOption(Opt.ExportName, System.Text.Encoding.UTF8.GetBytes(name));
        var reply = c.ReadExactly(10);
        Assert.Equal(1000UL * 512, System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(reply));
        Assert.True(((TxFlags)System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(reply.AsSpan(8))).HasFlag(TxFlags.HasFlags | TxFlags.SendFlush));
        // If 124 zero bytes had followed, this reply would be misparsed.
        var data = RawNbdClient.Pattern(1024, 7);
        Assert.Equal(0u, c.Write(512, data));
        Assert.Equal(data, c.Read(512, 1024));
    }

    [Theory]
    [InlineData(ClientFixedNewstyle)]
    [InlineData(0u)] // non-fixed newstyle, as very old clients send
    public async Task Export_name_without_no_zeroes_pads_with_124_zero_bytes(uint clientFlags)
    {
        var name = await fx.CreateExportAsync();
        using var c = RawNbdClient.Tcp(fx.Port).Greet(clientFlags);
        c.SendOption(Opt.ExportName, System.Text.Encoding.UTF8.GetBytes(name));
        var reply = c.ReadExactly(134);
        Assert.All(reply[10..], b => Assert.Equal(0, b));
        Assert.Equal(new byte[512], c.Read(0, 512));
    }

    [Fact]
    public async Task Export_name_of_an_unknown_export_closes()
    {
        await fx.CreateExportAsync();
        using var c = RawNbdClient.Tcp(fx.Port).Greet();
        c.SendOption(Opt.ExportName, "nothing-here"u8.ToArray());
        Assert.True(c.IsClosedByServer());
    }

    [Fact]
    public async Task Abort_is_acknowledged()
    {
        await fx.CreateExportAsync();
        using var c = RawNbdClient.Tcp(fx.Port).Greet();
        var r = c.Option(Opt.Abort);
        Assert.Equal(Rep.Ack, r.Single().Type);
        Assert.True(c.IsClosedByServer());
    }

    [Fact]
    public async Task Meta_contexts_offer_base_allocation()
    {
        var name = await fx.CreateExportAsync();
        using var c = RawNbdClient.Tcp(fx.Port).Greet();
        // SET before structured replies is invalid.
        Assert.Equal(Rep.ErrInvalid, c.Option(Opt.SetMetaContext, RawNbdClient.MetaRequest(name, BaseAllocation))[^1].Type);
        var all = c.Option(Opt.ListMetaContext, RawNbdClient.MetaRequest(name));
        Assert.Equal(Rep.MetaContext, all[0].Type);
        Assert.EndsWith(BaseAllocation, all[0].Text);
        Assert.Single(c.Option(Opt.ListMetaContext, RawNbdClient.MetaRequest(name, "qemu:dirty-bitmap:x"))); // only the ACK
        Assert.Equal(Rep.ErrInvalid, c.Option(Opt.ListMetaContext, [0, 0])[^1].Type);
        c.NegotiateStructuredReplies();
        var set = c.Option(Opt.SetMetaContext, RawNbdClient.MetaRequest(name, BaseAllocation));
        Assert.Equal((Rep.MetaContext, Rep.Ack), (set[0].Type, set[1].Type));
        Assert.Equal(BaseAllocationId, System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(set[0].Data));
    }

    [Fact]
    public void Oversized_option_drops_the_client()
    {
        using var c = RawNbdClient.Tcp(fx.Port).Greet();
        c.SendOption(Opt.Go, [], length: 1 << 20);
        Assert.True(c.IsClosedByServer());
    }

    [Fact]
    public void Bad_option_magic_drops_the_client()
    {
        using var c = RawNbdClient.Tcp(fx.Port).Greet();
        c.SendOption(Opt.List, magic: 0x1234);
        Assert.True(c.IsClosedByServer());
    }

    // ---- transmission --------------------------------------------------------------------------------------------

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Write_then_read_back(bool structured)
    {
        var name = await fx.CreateExportAsync(sectors: 8192);
        using var c = RawNbdClient.Open(fx.Port, name, structured);
        var data = RawNbdClient.Pattern(256 << 10, 42);
        Assert.Equal(0u, c.Write(4096, data));
        Assert.Equal(0u, c.Write(1 << 20, data, CmdFlags.Fua));
        var r = c.Request(Cmd.Read, 4096, (uint)data.Length);
        Assert.Equal(0u, r.Error);
        Assert.Equal(data, r.Data);
        Assert.Equal(structured, r.IsChunk);
        if (structured)
        {
            Assert.Equal(Chunk.OffsetData, r.ChunkType);
            Assert.Equal(Chunk.FlagDone, r.ChunkFlags);
            Assert.Equal(4096UL, r.DataOffset);
        }
        Assert.Equal(data, c.Read(1 << 20, (uint)data.Length));
        Assert.Equal(new byte[4096], c.Read(0, 4096)); // untouched
    }

    [Fact]
    public async Task Data_written_over_tcp_is_read_over_the_unix_socket()
    {
        var name = await fx.CreateExportAsync();
        var data = RawNbdClient.Pattern(8192, 3);
        using (var tcp = RawNbdClient.Open(fx.Port, name)) Assert.Equal(0u, tcp.Write(0, data));
        using var unix = RawNbdClient.Unix(fx.UnixSocket).Greet().Go(name, structured: true);
        Assert.Equal(data, unix.Read(0, 8192));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Many_requests_in_flight_are_answered_by_cookie(bool file)
    {
        const int n = 64, size = 64 << 10;
        var name = await fx.CreateExportAsync(sectors: n * size / 512, file: file);
        using var c = RawNbdClient.Open(fx.Port, name, structured: true);
        for (var i = 0; i < n; i++) c.SendRequest(Cmd.Write, 1000 + (ulong)i, (ulong)(i * size), size, RawNbdClient.Pattern(size, i), i % 3 == 0 ? CmdFlags.Fua : 0);
        var written = new HashSet<ulong>();
        for (var i = 0; i < n; i++)
        {
            var r = c.ReadReply();
            Assert.Equal(0u, r.Error);
            Assert.True(written.Add(r.Cookie));
        }
        Assert.Equal(Enumerable.Range(1000, n).Select(i => (ulong)i).ToHashSet(), written);

        // Reads in flight together, in reverse order, with a flush among them.
        for (var i = n - 1; i >= 0; i--) c.SendRequest(Cmd.Read, 5000 + (ulong)i, (ulong)(i * size), size);
        c.SendRequest(Cmd.Flush, 9999, 0, 0);
        var seen = new HashSet<ulong>();
        for (var i = 0; i <= n; i++)
        {
            var r = c.ReadReply();
            Assert.Equal(0u, r.Error);
            Assert.True(seen.Add(r.Cookie));
            if (r.Cookie == 9999) continue;
            var index = (int)(r.Cookie - 5000);
            Assert.Equal((ulong)(index * size), r.DataOffset);
            Assert.Equal(RawNbdClient.Pattern(size, index), r.Data);
        }
        Assert.Equal(n + 1, seen.Count);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Out_of_range_requests_get_einval_or_enospc(bool structured)
    {
        var name = await fx.CreateExportAsync(sectors: 2048); // 1 MiB
        using var c = RawNbdClient.Open(fx.Port, name, structured);
        var read = c.Request(Cmd.Read, MiB - 512, 1024);
        Assert.Equal(Errno.Inval, read.Error);
        Assert.Equal(structured, read.IsChunk); // never a simple reply for a READ once structured replies are on
        if (structured) Assert.Equal(Chunk.Error, read.ChunkType);
        Assert.Equal(Errno.NoSpc, c.Write(MiB, new byte[512]));
        Assert.Equal(Errno.NoSpc, c.Request(Cmd.WriteZeroes, MiB - 512, 4096).Error);
        Assert.Equal(Errno.Inval, c.Request(Cmd.Trim, ulong.MaxValue - 511, 512).Error);
        // offset + length wraps around 2^64: still past the end, never taken as in range.
        Assert.Equal(Errno.Inval, c.Request(Cmd.Read, ulong.MaxValue - 511, 1024).Error);
        Assert.Equal(Errno.NoSpc, c.Write(ulong.MaxValue - 511, new byte[1024]));
        Assert.Equal(Errno.Inval, c.Request(Cmd.Cache, 2 * MiB, 512).Error);
        // The connection is still in sync: the last sector works.
        var last = RawNbdClient.Pattern(512, 9);
        Assert.Equal(0u, c.Write(MiB - 512, last));
        Assert.Equal(last, c.Read(MiB - 512, 512));
    }

    /// <summary>A manager whose one device claims more sectors than a 64-bit byte count can hold.</summary>
    private sealed class OversizedDeviceManager : ReceiveActor
    {
        public sealed class Counts { public int Opens, Closes; }

        public OversizedDeviceManager(long sectors, Counts counts)
        {
            Receive<Dm.ListExports>(_ => Sender.Tell(new Dm.ExportList(["huge"])));
            Receive<Dm.Open>(o => { Interlocked.Increment(ref counts.Opens); Sender.Tell(new Dm.Opened(o.Name, Self, sectors, false, false, 4096, true, true)); });
            Receive<Dm.Close>(_ => { Interlocked.Increment(ref counts.Closes); Sender.Tell(Dm.Done.Empty); });
        }
    }

    [Theory]
    [InlineData(1L << 54)]       // 2^63 bytes: a negative size as a signed 64-bit count
    [InlineData(long.MaxValue)]  // the byte count would wrap
    public async Task An_export_too_large_for_a_64_bit_byte_count_is_refused_not_advertised(long sectors)
    {
        var counts = new OversizedDeviceManager.Counts();
        var manager = fx.System.ActorOf(Props.Create(() => new OversizedDeviceManager(sectors, counts)));
        await using var server = new NbdServer(fx.System, manager, new NbdServerOptions { Tcp = new IPEndPoint(IPAddress.Loopback, 0) });
        await server.StartAsync();
        using var c = RawNbdClient.Tcp(server.TcpEndpoint!.Port).Greet();
        foreach (var option in new[] { Opt.Info, Opt.Go })
        {
            var replies = c.Option(option, RawNbdClient.InfoRequest("huge"));
            Assert.DoesNotContain(replies, r => r.Type == Rep.Info); // no size went out
            Assert.Equal(Rep.ErrUnknown, replies[^1].Type);
            Assert.Equal($"export 'huge': size of {sectors} sectors does not fit in a 64-bit byte count", replies[^1].Text);
        }
        // Every open was closed again: the handshake waits for the close before it answers.
        Assert.Equal((2, 2), (Volatile.Read(ref counts.Opens), Volatile.Read(ref counts.Closes)));
        Assert.Equal(Rep.Ack, c.Option(Opt.List)[^1].Type); // and the handshake goes on
        fx.System.Stop(manager);
    }

    [Fact]
    public async Task Misaligned_requests_get_einval_and_their_payload_is_consumed()
    {
        var name = await fx.CreateExportAsync();
        using var c = RawNbdClient.Open(fx.Port, name);
        Assert.Equal(Errno.Inval, c.Request(Cmd.Read, 100, 512).Error);
        Assert.Equal(Errno.Inval, c.Request(Cmd.Read, 0, 100).Error);
        Assert.Equal(Errno.Inval, c.Write(512, new byte[100]));
        Assert.Equal(Errno.Inval, c.Request(Cmd.Read, 0, 0).Error);
        Assert.Equal(new byte[1024], c.Read(0, 1024));
    }

    [Fact]
    public async Task Read_only_export_refuses_writes_with_eperm_and_stays_in_sync()
    {
        var name = await fx.CreateExportAsync(readOnly: true);
        using var c = RawNbdClient.Open(fx.Port, name);
        Assert.True(c.Info!.Flags.HasFlag(TxFlags.ReadOnly));
        Assert.False(c.Info.Flags.HasFlag(TxFlags.SendTrim));
        Assert.Equal(Errno.Perm, c.Write(0, RawNbdClient.Pattern(64 << 10, 5)));
        Assert.Equal(Errno.Perm, c.Request(Cmd.WriteZeroes, 0, 4096).Error);
        Assert.Equal(Errno.Perm, c.Request(Cmd.Trim, 0, 4096).Error);
        Assert.Equal(new byte[64 << 10], c.Read(0, 64 << 10));
        Assert.Equal(0u, c.Request(Cmd.Flush, 0, 0).Error);
    }

    [Fact]
    public async Task Flush_fua_trim_zeroes_and_cache_on_a_file_disk()
    {
        var name = await fx.CreateExportAsync(sectors: 4096, file: true);
        using var c = RawNbdClient.Open(fx.Port, name, structured: true);
        var data = RawNbdClient.Pattern(128 << 10, 11);
        Assert.Equal(0u, c.Write(0, data));
        Assert.Equal(0u, c.Write(128 << 10, data, CmdFlags.Fua));
        Assert.Equal(0u, c.Request(Cmd.Flush, 0, 0).Error);
        Assert.Equal(0u, c.Request(Cmd.WriteZeroes, 4096, 8192, flags: CmdFlags.NoHole).Error);
        var expected = (byte[])data.Clone();
        Array.Clear(expected, 4096, 8192);
        Assert.Equal(expected, c.Read(0, (uint)data.Length));
        Assert.Equal(0u, c.Request(Cmd.Trim, 128 << 10, 64 << 10).Error);
        Assert.Equal(0u, c.Request(Cmd.Cache, 0, 64 << 10).Error);
        Assert.Equal(Errno.Inval, c.Request(Cmd.Flush, 0, 0, flags: CmdFlags.ReqOne).Error); // a flag that does not apply
        Assert.Equal(Errno.Inval, c.Request(Cmd.Write, 0, 512, new byte[512], CmdFlags.NoHole).Error);
        Assert.Equal(0u, c.Request(Cmd.Flush, 0, 0, flags: CmdFlags.Fua).Error); // FUA is accepted on every command
        Assert.Equal(data[..4096], c.Request(Cmd.Read, 0, 4096, flags: CmdFlags.Fua).Data);
        Assert.Equal(Errno.Inval, c.Request(42, 0, 512).Error); // unknown command
        Assert.Equal(0u, c.Request(Cmd.Flush, 0, 0).Error);
    }

    [Fact]
    public async Task Flush_on_one_connection_makes_writes_of_another_durable_and_fua_writes_are_durable()
    {
        var (name, disk) = await fx.CreateCachedExportAsync();
        using var a = RawNbdClient.Open(fx.Port, name);
        using var b = RawNbdClient.Open(fx.Port, name, structured: true);
        Assert.True(a.Info!.Flags.HasFlag(TxFlags.CanMultiConn));
        byte[] flushed = RawNbdClient.Pattern(4096, 1), fua = RawNbdClient.Pattern(4096, 2), lost = RawNbdClient.Pattern(4096, 3);
        Assert.Equal(0u, a.Write(0, flushed));
        Assert.Equal(0u, b.Request(Cmd.Flush, 0, 0).Error); // CAN_MULTI_CONN: b's flush covers a's completed write
        Assert.Equal(0u, a.Write(8192, fua, CmdFlags.Fua));
        Assert.Equal(0u, a.Write(16384, lost));
        Assert.Equal(lost, b.Read(16384, 4096)); // visible to the other connection before the power cut
        disk.PowerCut();
        Assert.Equal(flushed, b.Read(0, 4096));
        Assert.Equal(fua, b.Read(8192, 4096));
        Assert.Equal(new byte[4096], a.Read(16384, 4096)); // never flushed: the cache is really volatile
    }

    [Fact]
    public async Task Block_status_needs_base_allocation_and_a_range_inside_the_export()
    {
        var name = await fx.CreateExportAsync(sectors: 2048);
        using (var plain = RawNbdClient.Open(fx.Port, name, structured: true))
            Assert.Equal(Errno.Inval, plain.Request(Cmd.BlockStatus, 0, 4096).Error); // no context selected
        using var c = RawNbdClient.Open(fx.Port, name, structured: true, meta: true);
        Assert.Equal(0u, c.Write(8192, RawNbdClient.Pattern(65536, 3)));
        foreach (var flags in new[] { CmdFlags.ReqOne, CmdFlags.None })
        {
            var r = c.Request(Cmd.BlockStatus, 8192, 65536, flags: flags);
            Assert.Equal(Chunk.BlockStatus, r.ChunkType);
            Assert.Equal(Chunk.FlagDone, r.ChunkFlags);
            Assert.Equal(BaseAllocationId, r.ContextId);
            Assert.Equal([(65536u, 0u)], r.Extents!);
        }
        Assert.Equal(Errno.Inval, c.Request(Cmd.BlockStatus, MiB, 512).Error);
    }

    [Fact]
    public async Task Disconnect_answers_what_is_in_flight_then_closes_and_releases_the_open()
    {
        var name = await fx.CreateExportAsync(sectors: 4096, file: true);
        using (var c = RawNbdClient.Open(fx.Port, name))
        {
            for (var i = 0; i < 8; i++) c.SendRequest(Cmd.Write, (ulong)i, (ulong)i * 65536, 65536, RawNbdClient.Pattern(65536, i), CmdFlags.Fua);
            c.SendRequest(Cmd.Disc, 99, 0, 0);
            for (var i = 0; i < 8; i++) Assert.Equal(0u, c.ReadReply().Error);
            Assert.True(c.IsClosedByServer());
        }
        using (var c = RawNbdClient.Open(fx.Port, name))
            for (var i = 0; i < 8; i++) Assert.Equal(RawNbdClient.Pattern(65536, i), c.Read((ulong)i * 65536, 65536));
        await fx.RemoveWhenClosedAsync(name);
    }

    [Fact]
    public async Task An_open_connection_keeps_the_device_from_being_removed()
    {
        var name = await fx.CreateExportAsync();
        using (var c = RawNbdClient.Open(fx.Port, name))
        {
            Assert.Equal(new byte[512], c.Read(0, 512));
            var refused = Assert.IsType<Dm.Failed>(await fx.RemoveAsync(name));
            Assert.Equal(Dm.Failed.Busy, refused.Error);
        }
        await fx.RemoveWhenClosedAsync(name);
    }

    // ---- hostile clients -----------------------------------------------------------------------------------------

    [Fact]
    public async Task Bad_request_magic_closes_that_connection_only()
    {
        var name = await fx.CreateExportAsync();
        using var good = RawNbdClient.Open(fx.Port, name);
        using var bad = RawNbdClient.Open(fx.Port, name);
        Assert.Equal(0u, bad.Write(0, new byte[512]));
        bad.Send(RawNbdClient.Pattern(28, 1));
        Assert.True(bad.IsClosedByServer());
        var data = RawNbdClient.Pattern(4096, 2);
        Assert.Equal(0u, good.Write(4096, data));
        Assert.Equal(data, good.Read(4096, 4096));
    }

    [Fact]
    public async Task Garbage_at_every_stage_never_disturbs_clients_doing_io()
    {
        var name = await fx.CreateExportAsync(sectors: 8 * 2048);
        // Blocking clients on their own threads: the server's async work must not wait for thread-pool growth.
        var good = Enumerable.Range(0, 4).Select(id => Task.Factory.StartNew(() =>
        {
            using var c = RawNbdClient.Open(fx.Port, name, structured: id % 2 == 0);
            for (var i = 0; i < 50; i++)
            {
                var offset = (ulong)(id * (2 << 20) + i * 4096);
                var data = RawNbdClient.Pattern(4096, id * 1000 + i);
                Assert.Equal(0u, c.Write(offset, data));
                Assert.Equal(data, c.Read(offset, 4096));
            }
        }, TaskCreationOptions.LongRunning)).ToList();
        // Each sends at least a whole header of the stage it corrupts (a partial one is just a slow client).
        var garbage = Enumerable.Range(0, 30).Select(seed => Task.Factory.StartNew(() =>
        {
            var random = new Random(seed);
            using var c = RawNbdClient.Tcp(fx.Port);
            switch (seed % 3)
            {
                case 0: c.Send(RawNbdClient.Pattern(random.Next(20, 5000), seed)); break;             // instead of client flags
                case 1: c.Greet().Send(RawNbdClient.Pattern(random.Next(16, 5000), seed)); break;     // instead of options
                case 2: c.Greet().Go(name).Send(RawNbdClient.Pattern(random.Next(28, 5000), seed)); break; // instead of requests
            }
            Assert.True(c.IsClosedByServer(), $"garbage client {seed} was not dropped");
        }, TaskCreationOptions.LongRunning)).ToList();
        await Task.WhenAll(good.Concat(garbage)).WaitAsync(TimeSpan.FromMinutes(2));
    }

    // ---- payload sizes ------------------------------------------------------------------------------------------

    /// <summary>Opens <paramref name="name"/> with GO, or with EXPORT_NAME as old clients do (no block sizes told).</summary>
    private static RawNbdClient OpenWith(int port, string name, bool go, bool structured = false)
    {
        if (go) return RawNbdClient.Open(port, name, structured);
        var c = RawNbdClient.Tcp(port).Greet();
        c.SendOption(Opt.ExportName, System.Text.Encoding.UTF8.GetBytes(name));
        c.ReadExactly(10); // size and flags (NO_ZEROES)
        return c;
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task A_48_MiB_write_and_read_are_served_with_go_and_with_export_name(bool go, bool structured)
    {
        var name = await fx.CreateExportAsync(sectors: 128 * 2048);
        using var c = OpenWith(fx.Port, name, go, structured);
        var data = RawNbdClient.Pattern((int)(48 * MiB), go ? 48 : 49);
        Assert.Equal(0u, c.Write(16 * MiB, data));
        Assert.Equal(data, c.Read(16 * MiB, 48 * MiB));
        Assert.Equal(data[..4096], c.Read(16 * MiB, 4096)); // and the connection is in sync afterwards
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_write_or_read_over_the_max_payload_gets_einval_and_the_connection_keeps_serving(bool go)
    {
        var name = await fx.CreateExportAsync(sectors: 128 * 2048); // large enough: the length is refused, not the range
        using var c = OpenWith(fx.Port, name, go);
        Assert.Equal(Errno.Inval, c.Write(0, RawNbdClient.Pattern((int)(65 * MiB), 65)));
        Assert.Equal(Errno.Inval, c.Request(Cmd.Read, 0, 65 * MiB).Error);
        // The refused payload was read and discarded, and nothing of it was written.
        Assert.Equal(new byte[4096], c.Read(0, 4096));
        var data = RawNbdClient.Pattern(4096, 66);
        Assert.Equal(0u, c.Write(4096, data));
        Assert.Equal(data, c.Read(4096, 4096));
    }

    [Fact]
    public async Task A_write_length_past_the_abuse_limit_ends_that_connection_only()
    {
        var name = await fx.CreateExportAsync(sectors: 8 * 2048);
        using var good = RawNbdClient.Open(fx.Port, name);
        using var bad = RawNbdClient.Open(fx.Port, name);
        bad.SendRequest(Cmd.Write, 1, 0, 300 * MiB);
        Assert.True(bad.IsClosedByServer());
        var data = RawNbdClient.Pattern(4096, 300);
        Assert.Equal(0u, good.Write(MiB, data));
        Assert.Equal(data, good.Read(MiB, 4096));
    }

    [Fact]
    public async Task A_max_payload_write_goes_through_a_smaller_in_flight_budget_behind_other_requests()
    {
        var name = await fx.CreateExportAsync(sectors: 128 * 2048);
        await using var server = await fx.StartServerAsync(new NbdServerOptions
        {
            Tcp = new IPEndPoint(IPAddress.Loopback, 0),
            MaxInFlightBytesPerConnection = (int)MiB,
        });
        using var c = RawNbdClient.Open(server.TcpEndpoint!.Port, name, structured: true);
        var big = RawNbdClient.Pattern((int)(64 * MiB), 64);
        for (var i = 0; i < 4; i++) c.SendRequest(Cmd.Write, (ulong)i, 64 * MiB + (ulong)i * MiB, MiB, RawNbdClient.Pattern((int)MiB, i));
        c.SendRequest(Cmd.Write, 10, 0, 64 * MiB, big);
        c.SendRequest(Cmd.Read, 11, 0, 64 * MiB);
        c.SendRequest(Cmd.Read, 12, 64 * MiB, MiB);
        var replies = Enumerable.Range(0, 7).Select(_ => c.ReadReply()).ToDictionary(r => r.Cookie);
        Assert.All(replies.Values, r => Assert.Equal(0u, r.Error));
        Assert.Equal(big, replies[11].Data);
        Assert.Equal(RawNbdClient.Pattern((int)MiB, 0), replies[12].Data);
    }

    [Fact]
    public async Task A_configured_max_payload_is_advertised_and_enforced()
    {
        var name = await fx.CreateExportAsync(sectors: 32 * 2048);
        await using var server = await fx.StartServerAsync(new NbdServerOptions { Tcp = new IPEndPoint(IPAddress.Loopback, 0), MaxPayload = (int)(8 * MiB) });
        using var c = RawNbdClient.Open(server.TcpEndpoint!.Port, name);
        Assert.Equal(8 * MiB, c.Info!.MaxBlock);
        var data = RawNbdClient.Pattern((int)(8 * MiB), 8);
        Assert.Equal(0u, c.Write(0, data));
        Assert.Equal(Errno.Inval, c.Write(0, new byte[8 * MiB + 512]));
        Assert.Equal(data, c.Read(0, 8 * MiB));
    }

    [Fact]
    public async Task Client_vanishing_with_requests_in_flight_does_not_disturb_the_server()
    {
        var name = await fx.CreateExportAsync(sectors: 64 * 2048, file: true);
        for (var round = 0; round < 3; round++)
        {
            var c = RawNbdClient.Open(fx.Port, name, structured: round % 2 == 0);
            var data = RawNbdClient.Pattern((int)MiB, round);
            for (var i = 0; i < 16; i++) c.SendRequest(Cmd.Write, (ulong)i, (ulong)i * MiB, MiB, data, CmdFlags.Fua);
            for (var i = 0; i < 16; i++) c.SendRequest(Cmd.Read, 100 + (ulong)i, (ulong)i * MiB, MiB);
            c.SendRequest(Cmd.Write, 7, 0, 4096, new byte[100]); // and a truncated payload
            c.Abort();
        }
        using (var c = RawNbdClient.Open(fx.Port, name))
        {
            var data = RawNbdClient.Pattern(4096, 77);
            Assert.Equal(0u, c.Write(40 * MiB, data));
            Assert.Equal(data, c.Read(40 * MiB, 4096));
        }
        // Every connection closed its open, whatever it left in flight.
        await fx.RemoveWhenClosedAsync(name);
    }

    [Fact]
    public async Task A_client_that_stops_reading_replies_holds_up_nobody_and_gets_every_reply_when_it_reads_again()
    {
        var name = await fx.CreateExportAsync(sectors: 8 * 2048);
        using var other = RawNbdClient.Open(fx.Port, name);
        for (var i = 0; i < 8; i++) Assert.Equal(0u, other.Write((ulong)i * MiB, RawNbdClient.Pattern((int)MiB, i)));

        // 48 MiB of READ replies: far more than the two socket buffers hold, so the server's sends fill the socket
        // and the rest waits on the connection's overflow thread, not on a thread that completes bios.
        using var slow = RawNbdClient.Open(fx.Port, name);
        const int Reads = 48;
        for (var i = 0; i < Reads; i++) slow.SendRequest(Cmd.Read, (ulong)i, (ulong)(i % 8) * MiB, MiB);
        // The socket is full when what the slow client has received stops growing.
        await Poll.UntilAsync(async () =>
        {
            var received = slow.Available;
            await Task.Delay(50);
            return received > 0 && slow.Available == received;
        }, "the slow client's socket to fill up");

        // Meanwhile the same device keeps answering another client.
        for (var i = 0; i < 20; i++)
            Assert.Equal(RawNbdClient.Pattern((int)MiB, i % 8)[..4096], other.Read((ulong)(i % 8) * MiB, 4096));

        var seen = new HashSet<ulong>();
        for (var i = 0; i < Reads; i++)
        {
            var r = slow.ReadReply();
            Assert.True(seen.Add(r.Cookie), $"cookie {r.Cookie} answered twice");
            Assert.Equal(0u, r.Error);
            Assert.Equal(RawNbdClient.Pattern((int)MiB, (int)(r.Cookie % 8)), r.Data);
        }
        // The connection is still in sync.
        Assert.Equal(RawNbdClient.Pattern((int)MiB, 5)[..512], slow.Read(5 * MiB, 512));
    }

    [Fact]
    public async Task A_client_with_a_small_receive_buffer_that_reads_at_full_speed_gets_every_reply_intact()
    {
        // A client with a small receive buffer that reads as fast as it can, from a server with small socket
        // buffers: the socket fills again and again, so the send keeps passing to the overflow thread and back. (The thread that
        // handed over used to free its pins after the overflow thread could have taken the same slots for the next
        // batch: nbdcopy once saw the connection close after a few GB, "reply failed: Handle is not initialized".
        // That window is too narrow to hit reliably here; this checks the hand-overs lose and corrupt nothing.)
        var name = await fx.CreateExportAsync(sectors: 8 * 2048);
        using (var w = RawNbdClient.Open(fx.Port, name))
            for (var i = 0; i < 8; i++) Assert.Equal(0u, w.Write((ulong)i * MiB, RawNbdClient.Pattern((int)MiB, i)));
        var expect = Enumerable.Range(0, 8).SelectMany(i => RawNbdClient.Pattern((int)MiB, i)).ToArray();

        // Small socket buffers on both sides (the server's own default is 4 MiB, more than this test keeps in flight).
        await using var server = await fx.StartServerAsync(new NbdServerOptions
        {
            Tcp = new IPEndPoint(IPAddress.Loopback, 0),
            SocketBufferBytes = 16 << 10,
        });
        using var c = RawNbdClient.Tcp(server.TcpEndpoint!.Port, receiveBuffer: 4 << 10).Greet().Go(name);
        const int Depth = 128, Total = 12_000;
        const uint Length = 16 << 10;
        ulong OffsetOf(ulong cookie) => cookie * 7919 % (8 * MiB / Length) * Length;
        ulong sent = 0;
        for (; sent < Depth; sent++) c.SendRequest(Cmd.Read, sent, OffsetOf(sent), Length);
        for (var answered = 0; answered < Total; answered++)
        {
            var r = c.ReadReply();
            Assert.Equal(0u, r.Error);
            var at = (int)OffsetOf(r.Cookie);
            Assert.True(expect.AsSpan(at, (int)Length).SequenceEqual(r.Data), $"read {r.Cookie} at {at}: wrong data");
            if (sent < Total) c.SendRequest(Cmd.Read, sent, OffsetOf(sent++), Length);
        }
        Assert.Equal(expect.AsSpan(5 * (int)MiB, 512).ToArray(), c.Read(5 * MiB, 512));
    }

    [Fact]
    public async Task Small_in_flight_budget_still_answers_everything()
    {
        var name = await fx.CreateExportAsync(sectors: 32 * 2048);
        await using var server = await fx.StartServerAsync(new NbdServerOptions
        {
            Tcp = new IPEndPoint(IPAddress.Loopback, 0),
            MaxInFlightBytesPerConnection = (int)MiB,
        });
        using var c = RawNbdClient.Open(server.TcpEndpoint!.Port, name, structured: true);
        for (var i = 0; i < 32; i++) c.SendRequest(Cmd.Write, (ulong)i, (ulong)i * MiB, MiB, RawNbdClient.Pattern((int)MiB, i));
        for (var i = 0; i < 32; i++) Assert.Equal(0u, c.ReadReply().Error);
        for (var i = 0; i < 32; i++) c.SendRequest(Cmd.Read, 100 + (ulong)i, (ulong)i * MiB, 256 << 10);
        for (var i = 0; i < 32; i++)
        {
            var r = c.ReadReply();
            Assert.Equal(RawNbdClient.Pattern((int)MiB, (int)r.Cookie - 100)[..(256 << 10)], r.Data);
        }
    }

    [Fact]
    public async Task Stop_answers_new_requests_with_eshutdown_and_waits_for_those_in_flight()
    {
        var name = await fx.CreateExportAsync();
        var server = await fx.StartServerAsync(new NbdServerOptions { Tcp = new IPEndPoint(IPAddress.Loopback, 0) });
        using var c = RawNbdClient.Open(server.TcpEndpoint!.Port, name, structured: true);
        var data = RawNbdClient.Pattern(4096, 8);
        Assert.Equal(0u, c.Write(0, data));
        // A suspended device defers bios: this read stays in flight until the resume.
        Assert.IsType<Dm.Done>(await fx.AskAsync(new Dm.Suspend(name)));
        c.SendRequest(Cmd.Read, 1, 0, 4096);
        // Requests are parsed in order and CACHE needs no IO: its answer proves the read reached the device.
        c.SendRequest(Cmd.Cache, 3, 0, 4096);
        var cached = c.ReadReply();
        Assert.Equal((3UL, 0u), (cached.Cookie, cached.Error));
        var stopping = server.StopAsync();
        c.SendRequest(Cmd.Read, 2, 0, 4096);
        var refused = c.ReadReply();
        Assert.Equal((2UL, Errno.Shutdown, Chunk.Error), (refused.Cookie, refused.Error, refused.ChunkType));
        Assert.False(stopping.IsCompleted);
        Assert.IsType<Dm.Done>(await fx.AskAsync(new Dm.Resume(name)));
        var answered = c.ReadReply();
        Assert.Equal((1UL, 0u), (answered.Cookie, answered.Error));
        Assert.Equal(data, answered.Data);
        await stopping.WaitAsync(NbdFixture.Timeout);
        Assert.True(c.IsClosedByServer());
        await fx.RemoveWhenClosedAsync(name);
    }

    [Fact]
    public async Task A_device_actor_that_stops_closes_its_connections()
    {
        var name = await fx.CreateExportAsync();
        var opened = Assert.IsType<Dm.Opened>(await fx.AskAsync(new Dm.Open(name)));
        // An open is a lane of the device (a child): its parent is the device actor.
        var device = await fx.System.ActorSelection(opened.Device.Path.Parent).ResolveOne(NbdFixture.Timeout);
        await fx.AskAsync(new Dm.Close(name, opened.Device));
        using var c = RawNbdClient.Open(fx.Port, name);
        Assert.Equal(new byte[512], c.Read(0, 512));
        device.Tell(Akka.Actor.PoisonPill.Instance);
        Assert.True(c.IsClosedByServer());
        // The manager forgets the device on its own Terminated, which may come a little later.
        var deadline = DateTime.UtcNow + NbdFixture.Timeout;
        while (((Dm.ExportList)await fx.AskAsync(Dm.ListExports.Instance)).Names.Contains(name) && DateTime.UtcNow < deadline) await Task.Delay(20);
        using var other = RawNbdClient.Tcp(fx.Port).Greet();
        Assert.Equal(Rep.ErrUnknown, other.Option(Opt.Go, RawNbdClient.InfoRequest(name))[^1].Type);
    }

    [Fact]
    public async Task Unix_socket_replaces_a_stale_socket_file_but_not_a_live_one_or_a_regular_file()
    {
        var name = await fx.CreateExportAsync();
        var path = Path.Combine(fx.TempDir, $"{name}.sock");
        StaleSocket.Create(path);
        Assert.True(File.Exists(path));

        await using (var server = await fx.StartServerAsync(new NbdServerOptions { Tcp = null, UnixSocket = path }))
        {
            using (var c = RawNbdClient.Unix(path).Greet().Go(name)) Assert.Equal(new byte[512], c.Read(0, 512));
            var second = new NbdServer(fx.System, fx.Manager, new NbdServerOptions { Tcp = null, UnixSocket = path });
            Assert.Contains("in use", (await Assert.ThrowsAsync<IOException>(second.StartAsync)).Message);
        }
        Assert.False(File.Exists(path)); // a clean stop removes it

        var regular = Path.Combine(fx.TempDir, $"{name}.txt");
        await File.WriteAllTextAsync(regular, "precious");
        var refused = new NbdServer(fx.System, fx.Manager, new NbdServerOptions { Tcp = null, UnixSocket = regular });
        Assert.Contains("not a unix socket", (await Assert.ThrowsAsync<IOException>(refused.StartAsync)).Message);
        Assert.Equal("precious", await File.ReadAllTextAsync(regular));
    }

    [Fact]
    public async Task Stop_closes_connections_and_releases_their_opens()
    {
        var name = await fx.CreateExportAsync();
        var server = await fx.StartServerAsync(new NbdServerOptions { Tcp = new IPEndPoint(IPAddress.Loopback, 0) });
        var port = server.TcpEndpoint!.Port;
        using var c = RawNbdClient.Open(port, name);
        Assert.Equal(0u, c.Write(0, new byte[4096]));
        await server.StopAsync();
        Assert.True(c.IsClosedByServer());
        Assert.Throws<System.Net.Sockets.SocketException>(() => RawNbdClient.Tcp(port).Dispose());
        await fx.RemoveWhenClosedAsync(name);
        await server.StopAsync(); // idempotent
    }
}
