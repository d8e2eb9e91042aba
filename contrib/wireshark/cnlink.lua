-- cnlink.lua: a Wireshark/tshark dissector for the Linux kernel connector (NETLINK_CONNECTOR, netlink family 11):
-- cn_msg, every proc connector event, the PROC_CN_MCAST_LISTEN/IGNORE requests, and cnlink's own records in
-- pcapng Custom Blocks.
--
--   tshark -X lua_script:contrib/wireshark/cnlink.lua -r capture.pcapng -V
--   tshark -X lua_script:contrib/wireshark/cnlink.lua -r capture.pcapng -T fields -e cnlink.proc.what_name
--   wireshark: copy it to ~/.local/lib/wireshark/plugins/ (or open with -X lua_script:...)
--
-- How it is called: Wireshark's netlink dissector hands a message to the "netlink.protocol" table only when its
-- type is >= NLMSG_MIN_TYPE (0x10), and every connector message has type NLMSG_DONE (3), so the table never sees
-- them (Wireshark 4.0 through 4.4; netlink has no heuristic list either). This script therefore takes the
-- LINKTYPE_NETLINK encapsulation itself: it calls Wireshark's own "netlink" dissector for every packet (cooked
-- header, nlmsghdr, other families untouched), then, for family 11, adds a "Linux kernel connector" tree for each
-- cn_msg. cnlink's records (pcapng Custom Blocks, PEN 32473, magic "CNLK") are decoded by a postdissector, since
-- Wireshark shows Custom Blocks as frames of their own. Field names are the kernel's. Byte order is guessed per
-- datagram the way Wireshark's netlink dissector does (from nlmsg_len); records are always little-endian.
--
-- The file format is in docs/capture-format.md.

local cnlink = Proto("cnlink", "Linux kernel connector")
local cnrec = Proto("cnlink_record", "cnlink capture record")

local NETLINK_CONNECTOR = 11
local CNLINK_PEN = 32473

local idx_names = {
    [1] = "CN_IDX_PROC", [2] = "CN_IDX_CIFS", [3] = "CN_W1_IDX", [4] = "CN_IDX_V86D", [5] = "CN_IDX_BB",
    [6] = "CN_DST_IDX", [7] = "CN_IDX_DM", [8] = "CN_IDX_DRBD", [9] = "CN_KVP_IDX", [10] = "CN_VSS_IDX",
    [0xffffffff] = "CN_IDX_CONNECTOR",
}
local id_names = {
    ["1.1"] = "cn_proc", ["2.1"] = "cifs", ["3.1"] = "w1", ["4.1"] = "uvesafb", ["6.1"] = "dst", ["7.1"] = "dmlogusr",
    ["8.1"] = "drbd", ["9.1"] = "vmbus/hv_kvp", ["10.1"] = "vmbus/hv_vss", ["4294967295.4294967295"] = "connector",
}

local PROC_EVENT = {
    NONE = 0x00000000, FORK = 0x00000001, EXEC = 0x00000002, UID = 0x00000004, GID = 0x00000040,
    SID = 0x00000080, PTRACE = 0x00000100, COMM = 0x00000200, COREDUMP = 0x40000000, EXIT = 0x80000000,
}
local what_names = {
    [PROC_EVENT.NONE] = "PROC_EVENT_NONE", [PROC_EVENT.FORK] = "PROC_EVENT_FORK", [PROC_EVENT.EXEC] = "PROC_EVENT_EXEC",
    [PROC_EVENT.UID] = "PROC_EVENT_UID", [PROC_EVENT.GID] = "PROC_EVENT_GID", [PROC_EVENT.SID] = "PROC_EVENT_SID",
    [PROC_EVENT.PTRACE] = "PROC_EVENT_PTRACE", [PROC_EVENT.COMM] = "PROC_EVENT_COMM",
    [PROC_EVENT.COREDUMP] = "PROC_EVENT_COREDUMP", [PROC_EVENT.EXIT] = "PROC_EVENT_EXIT",
}
local what_short = {
    [PROC_EVENT.NONE] = "ack", [PROC_EVENT.FORK] = "fork", [PROC_EVENT.EXEC] = "exec", [PROC_EVENT.UID] = "uid",
    [PROC_EVENT.GID] = "gid", [PROC_EVENT.SID] = "sid", [PROC_EVENT.PTRACE] = "ptrace", [PROC_EVENT.COMM] = "comm",
    [PROC_EVENT.COREDUMP] = "coredump", [PROC_EVENT.EXIT] = "exit",
}
local mcast_op_names = { [1] = "PROC_CN_MCAST_LISTEN", [2] = "PROC_CN_MCAST_IGNORE" }

local f = {
    idx = ProtoField.uint32("cnlink.idx", "id.idx", base.DEC, idx_names),
    val = ProtoField.uint32("cnlink.val", "id.val", base.DEC),
    id_name = ProtoField.string("cnlink.id_name", "Id name"),
    seq = ProtoField.uint32("cnlink.seq", "seq", base.DEC),
    ack = ProtoField.uint32("cnlink.ack", "ack", base.DEC),
    len = ProtoField.uint16("cnlink.len", "len", base.DEC),
    flags = ProtoField.uint16("cnlink.flags", "flags", base.HEX),
    data = ProtoField.bytes("cnlink.data", "data"),

    what = ProtoField.uint32("cnlink.proc.what", "what", base.HEX, what_names),
    what_name = ProtoField.string("cnlink.proc.what_name", "Event"),
    cpu = ProtoField.uint32("cnlink.proc.cpu", "cpu", base.DEC),
    timestamp_ns = ProtoField.uint64("cnlink.proc.timestamp_ns", "timestamp_ns", base.DEC),
    err = ProtoField.uint32("cnlink.proc.err", "err", base.DEC),
    parent_pid = ProtoField.int32("cnlink.proc.parent_pid", "parent_pid", base.DEC),
    parent_tgid = ProtoField.int32("cnlink.proc.parent_tgid", "parent_tgid", base.DEC),
    child_pid = ProtoField.int32("cnlink.proc.child_pid", "child_pid", base.DEC),
    child_tgid = ProtoField.int32("cnlink.proc.child_tgid", "child_tgid", base.DEC),
    process_pid = ProtoField.int32("cnlink.proc.process_pid", "process_pid", base.DEC),
    process_tgid = ProtoField.int32("cnlink.proc.process_tgid", "process_tgid", base.DEC),
    ruid = ProtoField.uint32("cnlink.proc.ruid", "ruid", base.DEC),
    euid = ProtoField.uint32("cnlink.proc.euid", "euid", base.DEC),
    rgid = ProtoField.uint32("cnlink.proc.rgid", "rgid", base.DEC),
    egid = ProtoField.uint32("cnlink.proc.egid", "egid", base.DEC),
    tracer_pid = ProtoField.int32("cnlink.proc.tracer_pid", "tracer_pid", base.DEC),
    tracer_tgid = ProtoField.int32("cnlink.proc.tracer_tgid", "tracer_tgid", base.DEC),
    comm = ProtoField.string("cnlink.proc.comm", "comm"),
    exit_code = ProtoField.uint32("cnlink.proc.exit_code", "exit_code", base.DEC),
    exit_status = ProtoField.string("cnlink.proc.exit_status", "Exit status"),
    exit_signal = ProtoField.int32("cnlink.proc.exit_signal", "exit_signal", base.DEC),
    event_data = ProtoField.bytes("cnlink.proc.event_data", "event_data"),

    mcast_op = ProtoField.uint32("cnlink.proc.mcast_op", "mcast_op", base.DEC, mcast_op_names),
    event_type = ProtoField.uint32("cnlink.proc.event_type", "event_type", base.HEX),
}
local f_list = {}
for _, v in pairs(f) do f_list[#f_list + 1] = v end
cnlink.fields = f_list

-- Records (docs/capture-format.md, "cnlink records").
local record_kinds = {
    [1] = "host", [2] = "snapshot", [3] = "loss", [4] = "exec observation", [5] = "note", [6] = "session",
    [7] = "clock",
}
local loss_kinds = { [0] = "unknown", [1] = "seq gap", [2] = "overrun", [3] = "queue", [4] = "socket drops", [5] = "recording" }
local snapshot_reasons = { [1] = "start", [2] = "rotation" }
local r = {
    magic = ProtoField.string("cnlink_record.magic", "Magic"),
    kind = ProtoField.uint16("cnlink_record.kind", "Kind", base.DEC, record_kinds),
    version = ProtoField.uint16("cnlink_record.version", "Version", base.DEC),
    length = ProtoField.uint32("cnlink_record.length", "Length", base.DEC),
    realtime_ns = ProtoField.int64("cnlink_record.host.realtime_ns", "realtime_ns", base.DEC),
    monotonic_ns = ProtoField.uint64("cnlink_record.host.monotonic_ns", "monotonic_ns", base.DEC),
    boottime_ns = ProtoField.uint64("cnlink_record.host.boottime_ns", "boottime_ns", base.DEC),
    cpu_count = ProtoField.uint32("cnlink_record.host.cpu_count", "cpu_count", base.DEC),
    byte_order = ProtoField.uint8("cnlink_record.host.byte_order", "Datagram byte order", base.DEC,
        { [1] = "little-endian", [2] = "big-endian" }),
    host_id = ProtoField.string("cnlink_record.host.host_id", "host_id"),
    boot_id = ProtoField.string("cnlink_record.host.boot_id", "boot_id"),
    kernel_release = ProtoField.string("cnlink_record.host.kernel_release", "kernel_release"),
    online_cpus = ProtoField.string("cnlink_record.host.online_cpus", "online_cpus"),
    hostname = ProtoField.string("cnlink_record.host.hostname", "hostname"),
    machine = ProtoField.string("cnlink_record.host.machine", "machine"),
    reason = ProtoField.uint8("cnlink_record.snapshot.reason", "Reason", base.DEC, snapshot_reasons),
    encoding = ProtoField.uint32("cnlink_record.encoding", "Encoding", base.DEC),
    timestamp_ns = ProtoField.uint64("cnlink_record.timestamp_ns", "timestamp_ns", base.DEC),
    data = ProtoField.bytes("cnlink_record.data", "Data"),
    loss_kind = ProtoField.uint8("cnlink_record.loss.kind", "Loss kind", base.DEC, loss_kinds),
    loss_flags = ProtoField.uint8("cnlink_record.loss.flags", "Flags", base.HEX),
    loss_cpu = ProtoField.uint32("cnlink_record.loss.cpu", "cpu", base.DEC),
    loss_count = ProtoField.uint64("cnlink_record.loss.count", "count", base.DEC),
    pid = ProtoField.int32("cnlink_record.exec.pid", "pid", base.DEC),
    text = ProtoField.string("cnlink_record.note.text", "Text"),
    loss_before_cpu = ProtoField.uint32("cnlink_record.loss.before_cpu", "Before the message of cpu", base.DEC),
    loss_before_seq = ProtoField.uint32("cnlink_record.loss.before_seq", "Before the message of seq", base.DEC),
    session = ProtoField.string("cnlink_record.session.text", "Settings"),
    clock_from = ProtoField.uint64("cnlink_record.clock.from_monotonic_ns", "from_monotonic_ns", base.DEC),
    clock_offset = ProtoField.int64("cnlink_record.clock.realtime_minus_monotonic_ns", "realtime_minus_monotonic_ns",
        base.DEC),
    clock_utc = ProtoField.int32("cnlink_record.clock.utc_offset_s", "utc_offset_s", base.DEC),
}
local r_list = {}
for _, v in pairs(r) do r_list[#r_list + 1] = v end
cnrec.fields = r_list

local netlink_dissector = Dissector.get("netlink")
local f_cb_pen = Field.new("frame.cb_pen")

-- Reads an unsigned integer of `len` bytes at `off` in the datagram's byte order.
local function uint(tvb, off, len, le)
    if le then return tvb(off, len):le_uint() else return tvb(off, len):uint() end
end

local function add(tree, field, range, le)
    if le then return tree:add_le(field, range) else return tree:add(field, range) end
end

local function exit_status_text(code)
    -- The wait(2) status: low 7 bits the signal, 0x80 the core flag, bits 8-15 the exit code.
    local sig = code % 128
    if sig == 0 then
        return string.format("exited %d", math.floor(code / 256) % 256)
    elseif sig ~= 0x7f then
        local core = (math.floor(code / 128) % 2 == 1) and " (core dumped)" or ""
        return string.format("killed by signal %d%s", sig, core)
    end
    return string.format("status %#x", code)
end

-- struct proc_event at `off`, `len` bytes.
local function dissect_proc_event(tvb, pinfo, tree, off, len, le)
    local what = uint(tvb, off, 4, le)
    local name = what_short[what] or string.format("unknown(%#x)", what)
    local t = tree:add(cnlink, tvb(off, len), "proc_event: " .. name)
    add(t, f.what, tvb(off, 4), le)
    t:add(f.what_name, tvb(off, 4), name)
    add(t, f.cpu, tvb(off + 4, 4), le)
    add(t, f.timestamp_ns, tvb(off + 8, 8), le)
    local d = off + 16
    local avail = len - 16
    local function w(i, field)
        if avail >= 4 * i + 4 then add(t, field, tvb(d + 4 * i, 4), le) end
    end
    local function pidv(i)
        if avail >= 4 * i + 4 then
            if le then return tvb(d + 4 * i, 4):le_int() else return tvb(d + 4 * i, 4):int() end
        end
        return nil
    end
    local info = name
    if what == PROC_EVENT.NONE then
        w(0, f.err)
        info = string.format("ack err=%d", avail >= 4 and uint(tvb, d, 4, le) or 0)
    elseif what == PROC_EVENT.FORK then
        w(0, f.parent_pid); w(1, f.parent_tgid); w(2, f.child_pid); w(3, f.child_tgid)
        info = string.format("fork parent_tgid=%s child_pid=%s", tostring(pidv(1)), tostring(pidv(2)))
    elseif what == PROC_EVENT.EXEC or what == PROC_EVENT.SID then
        w(0, f.process_pid); w(1, f.process_tgid)
        info = string.format("%s process_pid=%s", name, tostring(pidv(0)))
    elseif what == PROC_EVENT.UID then
        w(0, f.process_pid); w(1, f.process_tgid); w(2, f.ruid); w(3, f.euid)
        info = string.format("uid process_pid=%s", tostring(pidv(0)))
    elseif what == PROC_EVENT.GID then
        w(0, f.process_pid); w(1, f.process_tgid); w(2, f.rgid); w(3, f.egid)
        info = string.format("gid process_pid=%s", tostring(pidv(0)))
    elseif what == PROC_EVENT.PTRACE then
        w(0, f.process_pid); w(1, f.process_tgid); w(2, f.tracer_pid); w(3, f.tracer_tgid)
        info = string.format("ptrace process_pid=%s tracer_pid=%s", tostring(pidv(0)), tostring(pidv(2)))
    elseif what == PROC_EVENT.COMM then
        w(0, f.process_pid); w(1, f.process_tgid)
        local comm = ""
        if avail >= 24 then
            comm = tvb(d + 8, 16):stringz()
            t:add(f.comm, tvb(d + 8, 16), comm)
        end
        info = string.format("comm process_pid=%s comm=%s", tostring(pidv(0)), comm)
    elseif what == PROC_EVENT.COREDUMP then
        w(0, f.process_pid); w(1, f.process_tgid); w(2, f.parent_pid); w(3, f.parent_tgid)
        info = string.format("coredump process_pid=%s", tostring(pidv(0)))
    elseif what == PROC_EVENT.EXIT then
        w(0, f.process_pid); w(1, f.process_tgid); w(2, f.exit_code)
        local status = ""
        if avail >= 12 then
            status = exit_status_text(uint(tvb, d + 8, 4, le))
            t:add(f.exit_status, tvb(d + 8, 4), status)
        end
        w(3, f.exit_signal); w(4, f.parent_pid); w(5, f.parent_tgid)
        info = string.format("exit process_pid=%s %s", tostring(pidv(0)), status)
    elseif avail > 0 then
        t:add(f.event_data, tvb(d, avail))
    end
    t:append_text(" " .. info:sub(#name + 2))
    return info
end

-- One cn_msg at `off`; returns its total length (20 + len) or nil when it does not fit in `avail` bytes.
local function dissect_cn_msg(tvb, pinfo, tree, off, avail, le)
    if avail < 20 then return nil end
    local idx = uint(tvb, off, 4, le)
    local val = uint(tvb, off + 4, 4, le)
    local dlen = uint(tvb, off + 16, 2, le)
    local total = 20 + dlen
    local shown = math.min(total, avail)
    local id = string.format("%d.%d", idx, val)
    local idname = id_names[id]
    local t = tree:add(cnlink, tvb(off, shown), "Linux kernel connector, id " .. id .. (idname and (" (" .. idname .. ")") or ""))
    add(t, f.idx, tvb(off, 4), le)
    add(t, f.val, tvb(off + 4, 4), le)
    if idname then t:add(f.id_name, tvb(off, 8), idname) end
    add(t, f.seq, tvb(off + 8, 4), le)
    add(t, f.ack, tvb(off + 12, 4), le)
    add(t, f.len, tvb(off + 16, 2), le)
    add(t, f.flags, tvb(off + 18, 2), le)
    if total > avail then
        t:add_expert_info(PI_MALFORMED, PI_ERROR, string.format("len %d runs past the message (%d bytes left)", dlen, avail - 20))
        return nil
    end
    local info = "cn_msg " .. id
    local d = off + 20
    if idx == 1 and val == 1 then
        if dlen >= 16 then
            info = dissect_proc_event(tvb, pinfo, t, d, dlen, le)
        elseif dlen == 4 or dlen == 8 then
            local op = uint(tvb, d, 4, le)
            add(t, f.mcast_op, tvb(d, 4), le)
            info = (mcast_op_names[op] or string.format("mcast_op %d", op))
            if dlen == 8 then
                add(t, f.event_type, tvb(d + 4, 4), le)
                info = info .. string.format(" event_type=%#x", uint(tvb, d + 4, 4, le))
            end
        elseif dlen > 0 then
            t:add(f.data, tvb(d, dlen))
        end
    elseif dlen > 0 then
        t:add(f.data, tvb(d, dlen))
    end
    return total, info
end

function cnlink.dissector(tvb, pinfo, tree)
    local consumed = netlink_dissector:call(tvb, pinfo, tree)
    if tvb:len() < 32 or tvb(14, 2):uint() ~= NETLINK_CONNECTOR then
        return consumed
    end
    pinfo.cols.protocol = "CONNECTOR"
    local infos = {}
    local off = 16
    -- Byte order: the one in which nlmsg_len is closer to what is left (Wireshark's netlink rule).
    local rem = tvb:len() - off
    local le_len, be_len = tvb(off, 4):le_uint(), tvb(off, 4):uint()
    local le = math.abs(le_len - rem) <= math.abs(be_len - rem)
    while tvb:len() - off >= 16 do
        local nlen = uint(tvb, off, 4, le)
        local ntype = uint(tvb, off + 4, 2, le)
        if nlen < 16 then break end
        local mlen = math.min(nlen, tvb:len() - off)
        -- NLMSG_NOOP, NLMSG_ERROR, NLMSG_OVERRUN carry no cn_msg.
        if ntype ~= 1 and ntype ~= 2 and ntype ~= 4 then
            local p = off + 16
            local left = mlen - 16
            while left >= 20 do
                local used, info = dissect_cn_msg(tvb, pinfo, tree, p, left, le)
                if not used then break end
                infos[#infos + 1] = info
                -- Up to 3 bytes of padding after the last cn_msg.
                p = p + used
                left = left - used
            end
        end
        off = off + 4 * math.ceil(nlen / 4)
    end
    if #infos > 0 then pinfo.cols.info = table.concat(infos, "; ") end
    return tvb:len()
end

DissectorTable.get("wtap_encap"):add(wtap_encaps.NETLINK, cnlink)

-- cnlink's records. Wireshark shows a pcapng Custom Block as a frame whose bytes are its custom data.
local function rec_string(tvb, t, field, at, limit)
    if at + 2 > limit then return nil end
    local n = tvb(at, 2):le_uint()
    if at + 2 + n > limit then return nil end
    if n > 0 then t:add(field, tvb(at, 2 + n), tvb(at + 2, n):string(ENC_UTF_8)) else t:add(field, tvb(at, 2), "") end
    return at + 2 + n
end

function cnrec.dissector(tvb, pinfo, tree)
    local pen = f_cb_pen()
    if pen == nil or pen.value ~= CNLINK_PEN or tvb:len() < 12 or tvb(0, 4):string() ~= "CNLK" then
        return
    end
    local kind = tvb(4, 2):le_uint()
    local blen = tvb(8, 4):le_uint()
    local limit = math.min(tvb:len(), 12 + blen)
    local kname = record_kinds[kind] or string.format("kind %d", kind)
    local t = tree:add(cnrec, tvb(0, limit), "cnlink record: " .. kname)
    t:add(r.magic, tvb(0, 4))
    t:add_le(r.kind, tvb(4, 2))
    t:add_le(r.version, tvb(6, 2))
    t:add_le(r.length, tvb(8, 4))
    local b = 12
    local n = limit - b
    local info = "cnlink " .. kname
    if kind == 1 and n >= 32 then
        t:add_le(r.realtime_ns, tvb(b, 8))
        t:add_le(r.monotonic_ns, tvb(b + 8, 8))
        t:add_le(r.boottime_ns, tvb(b + 16, 8))
        t:add_le(r.cpu_count, tvb(b + 24, 4))
        t:add(r.byte_order, tvb(b + 28, 1))
        local at = b + 32
        for _, field in ipairs({ r.host_id, r.boot_id, r.kernel_release, r.online_cpus, r.hostname, r.machine }) do
            at = at and rec_string(tvb, t, field, at, limit)
        end
    elseif kind == 2 and n >= 16 then
        t:add(r.reason, tvb(b, 1))
        t:add_le(r.encoding, tvb(b + 4, 4))
        t:add_le(r.timestamp_ns, tvb(b + 8, 8))
        if n > 16 then t:add(r.data, tvb(b + 16, n - 16)) end
        info = string.format("cnlink snapshot (%s), %d bytes", snapshot_reasons[tvb(b, 1):uint()] or "?", n - 16)
    elseif kind == 3 and n >= 24 then
        local flags = tvb(b + 1, 1):uint()
        t:add(r.loss_kind, tvb(b, 1))
        t:add(r.loss_flags, tvb(b + 1, 1))
        if flags % 8 >= 4 then t:add_le(r.loss_cpu, tvb(b + 4, 4)) end
        if flags % 2 == 1 then t:add_le(r.loss_count, tvb(b + 8, 8)) end
        t:add_le(r.timestamp_ns, tvb(b + 16, 8))
        if flags % 16 >= 8 and n >= 32 then
            t:add_le(r.loss_before_cpu, tvb(b + 24, 4))
            t:add_le(r.loss_before_seq, tvb(b + 28, 4))
        end
        local count = (flags % 2 == 1) and tostring(tvb(b + 8, 8):le_uint64()) or "unknown"
        if flags % 4 >= 2 then count = ">= " .. count end
        info = string.format("cnlink loss: %s, count %s", loss_kinds[tvb(b, 1):uint()] or "?", count)
    elseif kind == 4 and n >= 16 then
        t:add_le(r.encoding, tvb(b, 4))
        t:add_le(r.pid, tvb(b + 4, 4))
        t:add_le(r.timestamp_ns, tvb(b + 8, 8))
        if n > 16 then t:add(r.data, tvb(b + 16, n - 16)) end
        info = string.format("cnlink exec observation pid %d", tvb(b + 4, 4):le_int())
    elseif kind == 5 and n >= 8 then
        t:add_le(r.timestamp_ns, tvb(b, 8))
        local text = n > 8 and tvb(b + 8, n - 8):string(ENC_UTF_8) or ""
        t:add(r.text, n > 8 and tvb(b + 8, n - 8) or tvb(b, 8), text)
        info = "cnlink note: " .. text
    elseif kind == 6 and n >= 16 then
        t:add_le(r.encoding, tvb(b, 4))
        t:add_le(r.timestamp_ns, tvb(b + 8, 8))
        if n > 16 then
            -- Encoding 1 (cnlink's own) is JSON text.
            local text = tvb(b + 16, n - 16):string(ENC_UTF_8)
            t:add(r.session, tvb(b + 16, n - 16), text)
            info = "cnlink session: " .. text
        end
    elseif kind == 7 and n >= 20 then
        t:add_le(r.clock_from, tvb(b, 8))
        t:add_le(r.clock_offset, tvb(b + 8, 8))
        t:add_le(r.clock_utc, tvb(b + 16, 4))
        info = string.format("cnlink clock from %s: UTC%+d s", tostring(tvb(b, 8):le_uint64()), tvb(b + 16, 4):le_int())
    end
    pinfo.cols.protocol = "CNLINK"
    pinfo.cols.info = info
end

register_postdissector(cnrec)
