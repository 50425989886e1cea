-- klua.replay: copy a range of a source topic into a target topic (same or another cluster).
--
--   local r, err = klua.replay{
--     source = "orders", target = "orders.replay",
--     from = { timestamp = klua.time() - 3600000 },   -- "beginning" (default), an offset, {timestamp=ms}
--     to = "end",                                     -- "end" (default: the end offsets taken at start),
--                                                     -- an offset or {timestamp=ms} (both exclusive)
--     partitions = { 0, 3 },                          -- default: all
--     filter = function(msg) return msg.key ~= nil end,
--     transform = function(msg) return { key = msg.key, value = msg.value:upper(), headers = msg.headers } end,
--     rate = 500,                                     -- records per second at most
--   }
--   -- r = { copied =, filtered =, read =, partitions = {{partition=, from=, to=, copied=}}, mode =, ... }
--
-- Options: source_brokers / target_brokers (default: klua's configured cluster for both),
-- keep_timestamps (true), keep_headers (true), keep_partition (false: the target's partitioner
-- places records by key), mode ("exactly_once" | "at_least_once"), group (the source consumer
-- group that carries the progress; default a fresh "klua-replay-..." name), batch (2000 records
-- per transaction or checkpoint), isolation ("read_committed"), progress (true | false; default:
-- when stderr is a terminal), quiet, on_progress(stats), producer (extra producer properties),
-- timeout_ms (bounds each wait of the start: fencing the previous run, reading the group's
-- committed offsets; default those calls' own, 60 s and 30 s).
--
-- Semantics
-- - The range is fixed at start: per partition [from, min(to, end)) where end is the high
--   watermark when the replay starts, so records produced meanwhile are not copied and the replay
--   ends exactly at the range's end. A time bound maps to the first offset whose timestamp is >= it
--   (offsets_for_times). Under read_committed, a transaction still open at start is waited for
--   (its records are in the range once committed; an abort skips them).
-- - The record keeps its key, value, headers and timestamp (keep_* = false to drop them);
--   transform(msg) returns the record to write ({key=, value=, headers=, timestamp=, partition=})
--   or nil to drop it; filter(msg) returning false drops it first.
-- - mode "exactly_once" (the default when source and target are the same cluster): each batch is
--   one transaction that also commits the source offsets for `group`, so every record in the
--   range is written once even when the replay is killed and run again with the same `group`.
--   Readers of the target should use isolation.level=read_committed.
-- - mode "at_least_once" (the default, and the only choice, across clusters, where a transaction
--   cannot cover the source offsets): an idempotent producer; after each batch is flushed, the
--   source offsets are committed for `group` on the source cluster (the checkpoint). A replay run
--   again with the same `group` resumes at the checkpoint and may repeat up to one batch.
-- - With an explicit `group`, partitions start at the group's committed offset when it lies
--   inside the range (a resume); a fresh group starts at `from`. In exactly_once mode the
--   producer's init_transactions runs first: it fences a killed run of the same group and aborts
--   its open transaction, whose pending offsets would keep the lookup failing (read_committed
--   asks for stable offsets). A lookup that fails (or a failed init) ends the run with nil, err
--   naming the group and the cause (a Kafka error: `klua replay` exits 3); it never starts again
--   at `from`, which would copy the group's progress twice.
local M = {}

local KNOWN = {
  source = true, target = true, source_brokers = true, target_brokers = true, from = true, to = true,
  partitions = true, filter = true, transform = true, rate = true, keep_timestamps = true,
  keep_headers = true, keep_partition = true, mode = true, group = true, batch = true,
  isolation = true, progress = true, quiet = true, on_progress = true, producer = true, timeout_ms = true,
}

-- A bad option raises KLUA_INVALID_ARGUMENT at the caller's line (klua.errors.bad_argument).
local function bad(msg) klua.errors.bad_argument("klua.replay.run", 1, msg) end

local function check_bound(name, v)
  if v == nil or v == "beginning" or v == "end" then return end
  if type(v) == "number" then
    if not (v >= 0) or v % 1 ~= 0 or v > 2 ^ 63 then bad(name .. " offset must be a whole number >= 0, got " .. v) end
    return
  end
  if type(v) == "table" and type(v.timestamp) == "number" then
    local ts = v.timestamp  -- epoch ms; NaN compares false with everything and would copy everything
    if not (ts >= 0 and ts < 2 ^ 53) then bad(name .. ".timestamp must be epoch milliseconds >= 0, got " .. ts) end
    return
  end
  bad(name .. ' must be "beginning", "end", an offset or {timestamp = epoch_ms}, got ' .. tostring(v))
end

local function check_opts(o)
  if type(o) ~= "table" then bad("expected an options table, got " .. type(o)) end
  for k in pairs(o) do
    if not KNOWN[k] then bad("unknown option '" .. tostring(k) .. "'") end
  end
  if type(o.source) ~= "string" then bad("'source' (a topic name) is required") end
  if type(o.target) ~= "string" then bad("'target' (a topic name) is required") end
  for _, k in ipairs({ "source_brokers", "target_brokers", "group", "isolation" }) do
    if o[k] ~= nil and type(o[k]) ~= "string" then bad("'" .. k .. "' must be a string") end
  end
  for _, k in ipairs({ "filter", "transform", "on_progress" }) do
    if o[k] ~= nil and type(o[k]) ~= "function" then bad("'" .. k .. "' must be a function") end
  end
  check_bound("from", o.from)
  check_bound("to", o.to)
  if o.from == "end" then bad('from = "end" selects nothing') end
  if o.to == "beginning" then bad('to = "beginning" selects nothing') end
  -- (not (x > 0) refuses NaN too, which passes every `<` test)
  if o.rate ~= nil and (type(o.rate) ~= "number" or not (o.rate > 0) or o.rate == math.huge) then
    bad("'rate' must be a positive number (records/s)")
  end
  if o.batch ~= nil and (type(o.batch) ~= "number" or not (o.batch >= 1) or o.batch % 1 ~= 0 or o.batch > 1e9) then
    bad("'batch' must be a whole number >= 1")
  end
  if o.timeout_ms ~= nil and (type(o.timeout_ms) ~= "number" or not (o.timeout_ms > 0) or o.timeout_ms == math.huge) then
    bad("'timeout_ms' must be a positive number of milliseconds")
  end
  if o.partitions ~= nil then
    if type(o.partitions) ~= "table" then bad("'partitions' must be a list of partition numbers") end
    for _, p in ipairs(o.partitions) do
      if type(p) ~= "number" or not (p >= 0) or p % 1 ~= 0 or p > 2 ^ 31 - 1 then
        bad("'partitions' must hold partition numbers from 0 to 2147483647, got " .. tostring(p))
      end
    end
  end
  local same = o.source_brokers == o.target_brokers
  if o.mode ~= nil and o.mode ~= "exactly_once" and o.mode ~= "at_least_once" then
    bad("'mode' must be \"exactly_once\" or \"at_least_once\"")
  end
  if o.mode == "exactly_once" and not same then
    bad("exactly_once needs source and target in one cluster (a transaction cannot cover offsets of another cluster); use at_least_once")
  end
  if o.source == o.target and same then bad("source and target are the same topic in the same cluster") end
end

local function stderr_is_tty()
  local ok = os.execute("test -t 2")
  return ok == 0 or ok == true
end

local function fmt_duration(ms)
  local s = math.floor(ms / 1000 + 0.5)
  if s >= 3600 then return string.format("%dh%02dm", s / 3600, (s % 3600) / 60) end
  if s >= 60 then return string.format("%dm%02ds", s / 60, s % 60) end
  return s .. "s"
end

-- Resolves per partition {partition, from, stop} for the fixed range. Returns list or nil, err.
local function plan_range(c, o)
  local admin = klua.admin{ brokers = o.source_brokers }
  local topics, err = admin:list_topics()
  admin:close()
  if not topics then return nil, err end
  local count
  for _, t in ipairs(topics) do if t.name == o.source then count = t.partitions end end
  if not count then
    return nil, klua.errors.new{ name = klua.errors.UNKNOWN_TOPIC_OR_PART, kafka = true, topic = o.source,
                                 message = "source topic " .. o.source .. " does not exist" }
  end
  local wanted = {}
  if o.partitions then
    for _, p in ipairs(o.partitions) do
      if p >= count then
        return nil, klua.errors.new{ name = klua.errors._UNKNOWN_PARTITION, kafka = true, topic = o.source, partition = p,
          message = string.format("source topic %s has %d partition(s), no partition %d", o.source, count, p) }
      end
      wanted[#wanted + 1] = p
    end
    table.sort(wanted)
  else
    for p = 0, count - 1 do wanted[#wanted + 1] = p end
  end
  local function by_time(ts)
    local q = {}
    for i, p in ipairs(wanted) do q[i] = { topic = o.source, partition = p, offset = ts } end
    local found, ferr = c:offsets_for_times(q)
    if not found then return nil, ferr end
    local r = {}
    for i, f in ipairs(found) do r[wanted[i]] = f.offset end
    return r
  end
  local from_t, to_t
  if type(o.from) == "table" then
    local e
    from_t, e = by_time(o.from.timestamp)
    if not from_t then return nil, e end
  end
  if type(o.to) == "table" then
    local e
    to_t, e = by_time(o.to.timestamp)
    if not to_t then return nil, e end
  end
  local out = {}
  for _, p in ipairs(wanted) do
    local low, high = c:watermarks(o.source, p)
    if not low then return nil, high end
    local from = low
    if type(o.from) == "number" then from = math.max(low, o.from)
    elseif from_t then from = from_t[p] == "end" and high or math.max(low, tonumber(from_t[p]) or high) end
    local stop = high
    if type(o.to) == "number" then stop = math.min(high, o.to)
    elseif to_t then stop = to_t[p] == "end" and high or math.min(high, tonumber(to_t[p]) or high) end
    out[#out + 1] = { partition = p, from = from, stop = stop, start = from, copied = 0, filtered = 0 }
  end
  return out
end

local function record_for(o, msg)
  local rec
  if o.transform then
    local r = o.transform(msg)
    if r == nil or r == false then return nil end
    if type(r) ~= "table" then error("klua.replay: transform must return a record table or nil, got " .. type(r), 0) end
    rec = { key = r.key, value = r.value, headers = r.headers, timestamp = r.timestamp, partition = r.partition }
  else
    rec = { key = msg.key, value = msg.value }
    if o.keep_headers ~= false and #msg.headers > 0 then rec.headers = msg.headers end
    if o.keep_timestamps ~= false then rec.timestamp = msg.timestamp end
    if o.keep_partition then rec.partition = msg.partition end
  end
  rec.topic = o.target
  return rec
end

-- The error that ends a run whose progress cannot be known: a Kafka error (exit 3 from the CLI)
-- naming the group and the cause, never a silent start at `from`.
local function lookup_error(group, what, cause)
  local e = klua.errors.is(cause) and cause or nil
  return klua.errors.new{
    name = e and e.name or "KLUA_REPLAY_PROGRESS_UNKNOWN", code = e and e.code or nil, kafka = true,
    retriable = e and e.retriable or nil, group = group, op = "klua.replay", cause = cause,
    message = string.format("%s (%s): stopped without copying, since starting again at the range's beginning " ..
      "would copy the group's progress twice", what, e and (e.message or tostring(e)) or tostring(cause)) }
end

function M.run(o)
  check_opts(o)
  local same_cluster = o.source_brokers == o.target_brokers
  local mode = o.mode or (same_cluster and "exactly_once" or "at_least_once")
  local explicit_group = o.group ~= nil
  local group = o.group or ("klua-replay-" .. klua.uuid():gsub("-", ""):sub(1, 12))
  local batch_size = o.batch or 2000 -- 500 took 2.5x as long for 100k records (commit latency per batch)
  if o.rate then batch_size = math.max(1, math.min(batch_size, math.ceil(o.rate))) end
  local show_progress = o.progress
  if show_progress == nil then show_progress = not o.quiet and stderr_is_tty() end

  local c = klua.consumer{ group = group, brokers = o.source_brokers, ["enable.auto.commit"] = false,
                           ["isolation.level"] = o.isolation or "read_committed" }
  local pcfg = {}
  for k, v in pairs(o.producer or {}) do pcfg[k] = v end
  pcfg.brokers = o.target_brokers
  if mode == "exactly_once" then pcfg["transactional.id"] = pcfg["transactional.id"] or group end
  local p = klua.producer(pcfg)

  local function cleanup()
    pcall(c.close, c)
    pcall(p.close, p)
  end

  -- Exactly-once: init_transactions before anything reads the group's offsets. It fences an
  -- older run with this transactional.id (a killed replay of the same group) and aborts its open
  -- transaction, whose pending offsets would otherwise keep the committed-offset lookup below
  -- failing (read_committed asks for stable offsets) until the transaction times out.
  if mode == "exactly_once" then
    local ok, ierr = p:init_transactions(o.timeout_ms and { timeout_ms = o.timeout_ms } or nil)
    if not ok then
      cleanup()
      return nil, lookup_error(group, "could not initialise the transactional producer (transactional.id " ..
        tostring(pcfg["transactional.id"]) .. ") that fences the group's previous run", ierr)
    end
  end

  local parts, err = plan_range(c, o)
  if not parts then cleanup(); return nil, err end
  if explicit_group then
    local q = {}
    for i, pr in ipairs(parts) do q[i] = { topic = o.source, partition = pr.partition } end
    -- A failed lookup ends the run: starting again at `from` would copy the group's progress twice.
    local committed, cerr = c:committed(q, o.timeout_ms and { timeout_ms = o.timeout_ms } or nil)
    if not committed then
      cleanup()
      return nil, lookup_error(group, "could not read the group's committed offsets", cerr)
    end
    for i, pr in ipairs(parts) do
      local cm = committed[i]
      if not cm or cm.error or cm.partition ~= pr.partition then
        cleanup()
        return nil, lookup_error(group, "could not read the group's committed offset of " .. o.source .. " [" .. pr.partition .. "]",
          cm and cm.error or "no answer for this partition")
      end
      local off = tonumber(cm.offset)
      if off and off > pr.from and off <= pr.stop then pr.from = off; pr.resumed = true end
    end
  end

  local by_p, assign, total = {}, {}, 0
  for _, pr in ipairs(parts) do
    by_p[pr.partition] = pr
    if pr.from < pr.stop then
      assign[#assign + 1] = { topic = o.source, partition = pr.partition, offset = pr.from }
      total = total + (pr.stop - pr.from)
    else
      pr.done = true
    end
  end
  local stats = { source = o.source, target = o.target, mode = mode, group = group, copied = 0, filtered = 0,
                  read = 0, total = total, partitions = parts, started = klua.now() }

  local last_progress = 0
  local function progress(final)
    if not (show_progress or o.on_progress) then return end
    local now = klua.now()
    if not final and now - last_progress < 500 then return end
    last_progress = now
    local elapsed = (now - stats.started) / 1000
    local rate = elapsed > 0 and stats.read / elapsed or 0
    stats.rate = rate
    if o.on_progress then o.on_progress(stats) end
    if show_progress then
      local eta = rate > 0 and fmt_duration((total - stats.read) / rate * 1000) or "?"
      io.stderr:write(string.format("\r%s -> %s: %d/%d records (%d%%), %.0f rec/s, ETA %s   ", o.source, o.target,
        stats.read, total, total > 0 and math.floor(stats.read * 100 / total) or 100, rate, final and "0s" or eta))
      if final then io.stderr:write("\n") end
    end
  end

  local batch, batch_parts, offsets = {}, {}, {}
  local function flush_batch()
    if next(offsets) == nil then return true end
    local list = {}
    for part, off in pairs(offsets) do list[#list + 1] = { topic = o.source, partition = part, offset = off } end
    table.sort(list, function(a, b) return a.partition < b.partition end)
    local ok, ferr
    if mode == "exactly_once" then
      ok, ferr = p:transaction(function()
        for _, rec in ipairs(batch) do assert(p:send(rec)) end
        assert(p:send_offsets(c, list))
        return true
      end)
    else
      for _, rec in ipairs(batch) do
        ok, ferr = p:send(rec)
        if not ok then break end
      end
      if ok ~= nil or #batch == 0 then ok, ferr = p:flush() end
      if ok then ok, ferr = c:commit(list) end -- the checkpoint, after the records are confirmed
    end
    if not ok then return nil, ferr end
    for _, pr in ipairs(batch_parts) do pr.copied = pr.copied + 1 end
    stats.copied = stats.copied + #batch
    batch, batch_parts, offsets = {}, {}, {}
    return true
  end

  local ok, rerr = pcall(function()
    if #assign == 0 then return end
    assert(c:assign(assign))
    local remaining = #assign
    local next_at = klua.now()
    local function finish_partition(pr)
      pr.done = true
      remaining = remaining - 1
      c:pause({ { topic = o.source, partition = pr.partition } })
    end
    -- A partition is done at its first record at or past `stop`, or when its position (which
    -- moves past transaction markers and aborted records) reached `stop` with nothing buffered.
    local last_check = klua.now()
    local function check_positions()
      last_check = klua.now()
      local q = {}
      for _, pr in ipairs(parts) do
        if not pr.done then q[#q + 1] = { topic = o.source, partition = pr.partition } end
      end
      local pos = c:position(q)
      for _, pp in ipairs(pos or {}) do
        local pr = by_p[pp.partition]
        local off = tonumber(pp.offset)
        if pr and not pr.done and off and off >= pr.stop then finish_partition(pr) end
      end
    end
    while remaining > 0 do
      local msg, perr = c:poll(200)
      if perr then error(perr, 0) end
      local pr = msg and by_p[msg.partition]
      if pr and not pr.done then
        if msg.offset >= pr.stop then
          finish_partition(pr)
        else
          stats.read = stats.read + 1
          offsets[msg.partition] = msg.offset + 1
          local rec
          if o.filter and not o.filter(msg) then
            pr.filtered = pr.filtered + 1
            stats.filtered = stats.filtered + 1
          else
            rec = record_for(o, msg)
            if not rec then
              pr.filtered = pr.filtered + 1
              stats.filtered = stats.filtered + 1
            end
          end
          if rec then
            if o.rate then
              next_at = math.max(next_at, klua.now() - 1000) + 1000 / o.rate
              local wait = next_at - klua.now()
              if wait > 0 then klua.sleep(wait) end
            end
            batch[#batch + 1] = rec
            batch_parts[#batch] = pr
          end
          if msg.offset + 1 >= pr.stop then finish_partition(pr) end
          if #batch >= batch_size or (#batch == 0 and stats.read % batch_size == 0) then
            local fok, ferr = flush_batch()
            if not fok then error(ferr, 0) end
          end
          progress(false)
        end
      end
      if remaining > 0 and (not msg or klua.now() - last_check > 1000) then check_positions() end
    end
    local fok, ferr = flush_batch()
    if not fok then error(ferr, 0) end
  end)
  for _, pr in ipairs(parts) do pr.to = pr.stop; pr.stop = nil; pr.done = nil end
  stats.elapsed_ms = klua.now() - stats.started
  progress(true)
  cleanup()
  if not ok then
    if type(rerr) == "table" and rerr.name == "KLUA_CANCELLED" then error(rerr, 0) end
    return nil, rerr
  end
  return stats
end

-- A sentence on the delivery guarantee, for the CLI and logs.
function M.describe_mode(stats)
  if stats.mode == "exactly_once" then
    return string.format("exactly-once: each batch is a transaction that also commits the source offsets of group %s; " ..
      "read the target with isolation.level=read_committed", stats.group)
  end
  return string.format("at-least-once: idempotent producer; after each flushed batch the source offsets are committed " ..
    "for group %s on the source cluster (the checkpoint); run again with --group %s to resume (up to one batch may repeat)",
    stats.group, stats.group)
end

setmetatable(M, { __call = function(_, o) return M.run(o) end })

return M
