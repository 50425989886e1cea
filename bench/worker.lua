-- klua side of the worker benchmark; bench/worker runs it (see bench/README.md).
--
--   klua -b B run bench/worker.lua --phase produce --topic T [--messages N] [--keys K]
--   klua -b B run bench/worker.lua --phase work --topic T --mode MODE --dead-letter D [--retry-topic R]
--
-- produce: sends N messages (key "key-%05d" of 10,000 keys, a 101-byte value: ~110 B a message)
--   to T (an existing topic), timed from the first send to the last delivery report; then reads
--   T's watermarks and counts the failing messages (see `class` below). Prints one JSON line:
--   {"produced","seconds","msgs_per_s","partitions","transient","poison","floor_ms"} (floor_ms:
--   the slowest partition's back-offs, which per-partition order must wait through one by one;
--   last_poison: where the last poison message sits in its partition, a fraction of it: no mode
--   finishes before ~that fraction of the run plus its 700 ms of back-offs).
-- work: runs klua.worker over T with a fresh group in one MODE:
--   baseline     no failures (the worker's defaults: per-partition order)
--   partition    order = "partition", failures on
--   key          order = "key", failures on
--   retry_topic  retry.topic = R, failures on
--   key_nofail, retry_topic_nofail: those options without failures (what the mode itself costs)
--   Failures: a message is chosen by a hash of its partition and offset (so every mode fails the
--   same ones): 0.1% transient (the handler fails the first time it sees the message and succeeds
--   the next), 0.01% poison (it always fails: dead-lettered to D after retry.max = 3 retries,
--   base_ms 100). Timed from the first handler call (the group joined) until every message is
--   handled or dead-lettered; then the worker stops and the outcome is checked against
--   arithmetic: handled + dead-lettered (D's watermarks) = produced, dead-lettered = poison,
--   transient failures = transient, and the group's committed lag on T (and R) is 0. Prints one
--   JSON line: {"mode","msgs_per_s","seconds","join_ms","clean_seconds" (until the last message
--   that never fails was handled: the rest is the failing ones' back-off tail), "steady_msgs_per_s"
--   (from the 10% to the 90% handled mark),"handled","duplicates","dead_lettered",
--   "poison","transient","transient_failures","poison_calls","lag","problems":[...],
--   "unsupported" (the worker refused the mode's option: its error), "note"}.
local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, {
  phase = { "produce", "work" }, topic = "string", messages = "positive", keys = "positive",
  mode = { "baseline", "partition", "key", "retry_topic", "key_nofail", "retry_topic_nofail" },
  ["dead-letter"] = "string",
  ["retry-topic"] = "string", ["stall-ms"] = "positive",
}, { messages = 1000000, keys = 10000, ["stall-ms"] = 60000 })
if not o.topic then error("--topic is required", 0) end

local json = klua.json

-- The failing messages: fmix32 (MurmurHash3's finaliser) of partition * golden + offset, exact in
-- doubles (products split into 16-bit halves), then 0.1% transient and 0.01% poison.
local TWO32 = 4294967296
local function mul32(a, b)
  local alo, ahi = a % 65536, (a - a % 65536) / 65536
  local blo, bhi = b % 65536, (b - b % 65536) / 65536
  return ((ahi * blo + alo * bhi) % 65536 * 65536 + alo * blo) % TWO32
end
local function fmix32(h)
  h = bit.bxor(h, bit.rshift(h, 16)) % TWO32
  h = mul32(h, 0x85ebca6b)
  h = bit.bxor(h, bit.rshift(h, 13)) % TWO32
  h = mul32(h, 0xc2b2ae35)
  return bit.bxor(h, bit.rshift(h, 16)) % TWO32
end
local OK, TRANSIENT, POISON = 0, 1, 2
local BASE_MS, RETRIES = 100, 3
local function class(partition, offset)
  local r = fmix32((mul32(partition, 0x9e3779b1) + offset) % TWO32) % 100000
  if r < 100 then return TRANSIENT elseif r < 110 then return POISON end
  return OK
end

-- low, high (tables by partition), partition count; or nil, err
local function watermarks(topic)
  local meta, err = klua.admin():describe_topics({ topic }, { configs = false })
  if meta and meta[1].error then meta, err = nil, meta[1].error end
  if not meta then return nil, string.format("describe %s: %s", topic, tostring(err)) end
  local n = #meta[1].partitions
  local c = klua.consumer{ group = "klua-bench-wm-" .. klua.uuid() }
  local low, high = {}, {}
  for p = 0, n - 1 do
    low[p], high[p] = c:watermarks(topic, p)
    if not low[p] then
      c:close()
      return nil, string.format("watermarks of %s [%d]: %s", topic, p, tostring(high[p]))
    end
  end
  c:close()
  return low, high, n
end

-- Counts each class over every offset of the topic.
local function classes(topic)
  local low, high, n = watermarks(topic)
  if not low then error(high, 0) end
  local total, transient, poison, floor_ms, last_poison = 0, 0, 0, 0, 0
  for p = 0, n - 1 do
    local t0, p0 = transient, poison
    for off = low[p], high[p] - 1 do
      local k = class(p, off)
      if k == TRANSIENT then transient = transient + 1
      elseif k == POISON then
        poison = poison + 1
        last_poison = math.max(last_poison, (off - low[p] + 1) / (high[p] - low[p]))
      end
    end
    total = total + high[p] - low[p]
    -- this partition's back-offs without jitter (one of base_ms per transient message, base_ms *
    -- (1 + 2 + 4) per poison one): per-partition order cannot finish it sooner
    floor_ms = math.max(floor_ms, (transient - t0) * BASE_MS + (poison - p0) * BASE_MS * 7)
  end
  return { total = total, transient = transient, poison = poison, partitions = n, floor_ms = floor_ms,
           last_poison = last_poison }
end

local function emit(t)
  print(json.encode(t))
  io.stdout:flush()
end

---------------------------------------------------------------------------------------------
if o.phase == "produce" then
  local delivered, errors, first_error = 0, 0, nil
  local t_last
  local n = o.messages
  local p = klua.producer{
    on_delivery = function(_, err)
      if err == nil then delivered = delivered + 1
      else
        errors = errors + 1
        first_error = first_error or tostring(err)
      end
      if delivered + errors == n then t_last = klua.now() end
    end,
  }
  local pad = string.rep("v", 91)
  local msg = { topic = o.topic }
  local t0 = klua.now()
  for i = 1, n do
    msg.key = string.format("key-%05d", i % o.keys)
    msg.value = string.format("%010d", i) .. pad
    local _, err = p:send(msg)
    if err ~= nil then error("send: " .. tostring(err), 0) end
  end
  assert(p:flush{ timeout_ms = 120000 })
  local deadline = klua.now() + 10000
  while delivered + errors < n and klua.now() < deadline do klua.sleep(1) end
  local secs = ((t_last or klua.now()) - t0) / 1000
  p:close()
  if errors > 0 or delivered ~= n then
    error(string.format("produce: %d delivered, %d failed of %d (first error: %s)", delivered, errors, n,
                        tostring(first_error)), 0)
  end
  local k = classes(o.topic)
  if k.total ~= n then error(string.format("produce: the topic holds %d messages, not %d", k.total, n), 0) end
  emit{ produced = n, seconds = secs, msgs_per_s = n / secs, partitions = k.partitions,
        transient = k.transient, poison = k.poison, floor_ms = k.floor_ms, last_poison = k.last_poison }
  return
end

---------------------------------------------------------------------------------------------
-- phase work
local mode = o.mode or error("--mode is required", 0)
local dlq = o.dead_letter or error("--dead-letter is required", 0)
-- *_nofail: the mode's options without failures, to tell the mode's own cost from the failures
local failures = not (mode == "baseline" or mode:find("_nofail$"))
local kind = mode:gsub("_nofail$", "")
local expect = classes(o.topic)
local N = expect.total
local group = "klua-bench-worker-" .. mode .. "-" .. klua.uuid()

-- A message's original coordinates: its own, or, when it comes back from a retry topic, the
-- ones the worker recorded in its headers.
local function origin(msg)
  if msg.topic == o.topic then return msg.partition, msg.offset end
  local p = tonumber(msg:header("x-original-partition") or "")
  local off = tonumber(msg:header("x-original-offset") or "")
  if not (p and off) then error("a message from " .. msg.topic .. " without x-original-partition/offset", 0) end
  return p, off
end

local done, failed_once = {}, {}  -- [partition][offset + 1] = true
for p = 0, expect.partitions - 1 do done[p], failed_once[p] = {}, {} end
local handled, duplicates, transient_failures, poison_calls = 0, 0, 0, 0
local attempt_mismatch = 0
local t_first, t_clean, t10, t90
-- the steady rate: from the 10% to the 90% handled mark (no start-up, no back-off tail)
local n10, n90 = math.ceil(N * 0.1), math.floor(N * 0.9)
-- messages that never fail, not yet handled: when none is left, only failing ones remain
local clean_left = failures and N - expect.transient - expect.poison or N

local function handler(msg, info)
  t_first = t_first or klua.now()
  local p, off = origin(msg)
  local k = class(p, off)  -- in every mode, so that the handler costs the same
  if not failures then k = OK
  else
    if k == POISON then
      poison_calls = poison_calls + 1
      error({ name = "BenchPoison", message = "poison message " .. p .. ":" .. off }, 0)
    elseif k == TRANSIENT and not failed_once[p][off + 1] then
      failed_once[p][off + 1] = true
      transient_failures = transient_failures + 1
      if info.attempt ~= 1 then attempt_mismatch = attempt_mismatch + 1 end
      return nil, "transient failure"
    elseif k == TRANSIENT and info.attempt ~= 2 then
      attempt_mismatch = attempt_mismatch + 1
    end
  end
  local d = done[p]
  if d[off + 1] then duplicates = duplicates + 1
  else
    d[off + 1] = true
    handled = handled + 1
    if handled == n10 then t10 = klua.now() elseif handled == n90 then t90 = klua.now() end
    if k == OK then
      clean_left = clean_left - 1
      if clean_left == 0 then t_clean = klua.now() end
    end
  end
  return true
end

local opts = {
  group = group, topics = { o.topic }, handlers = handler, quiet = true, dead_letter = dlq,
  retry = { max = RETRIES, base_ms = BASE_MS },
}
local note
if kind == "partition" then opts.order = "partition"
elseif kind == "key" then opts.order = "key"
elseif kind == "retry_topic" then
  opts.retry.topic = o.retry_topic or error("--retry-topic is required in mode retry_topic", 0)
end
local okw, w = pcall(klua.worker, opts)
if not okw and mode == "partition" then
  -- A worker without `order` orders per partition anyway: measure that, and say so.
  opts.order = nil
  okw, w = pcall(klua.worker, opts)
  note = "the worker has no `order` option; its only order is per partition"
end
if not okw then
  emit{ mode = mode, unsupported = type(w) == "table" and w.message or tostring(w) }
  return
end

local t_start = klua.now()
local t_end, stalled
klua.spawn(function()
  local last, last_change = -1, klua.now()
  while true do
    klua.sleep(10)
    local c = w:counters()
    local finished = handled + (c.dead_lettered or 0)
    if finished >= N then t_end = klua.now(); break end
    local now = klua.now()
    if finished ~= last then last, last_change = finished, now
    elseif now - last_change > o.stall_ms then
      stalled = string.format("no progress for %d ms at %d of %d messages finished", o.stall_ms, finished, N)
      break
    end
  end
  w:stop()
end)
local counters, err = w:run()

local problems = {}
local function problem(fmt, ...) problems[#problems + 1] = string.format(fmt, ...) end
if not counters then problem("run: %s", tostring(err)) end
if stalled then problem("%s", stalled) end
local dlow, dhigh, dn = watermarks(dlq)
local dead = 0
if not dlow then problem("dead-letter topic: %s", dhigh)
else
  for p = 0, dn - 1 do dead = dead + dhigh[p] - dlow[p] end
end
local poison = failures and expect.poison or 0
local transient = failures and expect.transient or 0
if handled + dead ~= N then problem("handled %d + dead-lettered %d ~= produced %d", handled, dead, N) end
if dead ~= poison then problem("dead-lettered %d ~= poison %d", dead, poison) end
if transient_failures ~= transient then problem("transient failures %d ~= transient %d", transient_failures, transient) end
local lag, lerr = klua.lag(group, { o.topic, kind == "retry_topic" and o.retry_topic or nil })
if not lag then problem("lag: %s", tostring(lerr))
elseif lag.lag ~= 0 then problem("committed lag %d after the drain (expected 0)", lag.lag) end
local secs = t_end and t_first and (t_end - t_first) / 1000
emit{
  mode = mode, messages = N, seconds = secs, msgs_per_s = secs and N / secs,
  join_ms = t_first and t_first - t_start,
  steady_msgs_per_s = t10 and t90 and t90 > t10 and (n90 - n10) / ((t90 - t10) / 1000) or nil,
  clean_seconds = t_clean and t_first and (t_clean - t_first) / 1000,
  handled = handled, duplicates = duplicates,
  dead_lettered = dead, poison = poison, transient = transient, transient_failures = transient_failures,
  poison_calls = poison_calls, attempt_mismatch = attempt_mismatch, lag = lag and lag.lag,
  problems = json.array(problems), note = note,
}
