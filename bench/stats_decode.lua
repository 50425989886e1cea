-- The cost of reading librdkafka's statistics for the built-in metrics (broker rtt and state, issue
-- 19) at 1,000 partitions: one topic of P partitions on the embedded cluster (a message in each), a
-- consumer assigned all of them, reading for 5 s; then statistics every second.
--
--   klua run bench/stats_decode.lua [--partitions 1000] [--iterations 200] [--runs 7] [--json 1]
--
-- Prints, per STATS event:
--   in_situ   the time the client's own decoder took on the events it received (C++, nlohmann SAX,
--             stopping after the "brokers" object), from its own clock reads;
--   sax       the same decoder on one event's text (re-encoded from what on_stats received:
--             same content and key order of brokers and topics), median of the runs;
--   full      klua.json.decode of that text (what an on_stats hook pays, and what decoding the
--             whole document costs), median of the runs; and full/sax, the ratio.
local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { partitions = "positive", iterations = "positive", runs = "positive", json = "count" },
                           { partitions = 1000, iterations = 200, runs = 7, json = 0 })
local cm = debug.getregistry()["klua.private"].client_metrics
local P = o.partitions
local now = klua.now

local topic = "stats-decode-" .. klua.uuid():sub(1, 8)
assert(klua.embedded.create_topic(topic, P, 1))
local p = klua.producer()
for i = 0, P - 1 do assert(p:send{ topic = topic, partition = i, value = "x" }) end
assert(p:flush())
p:close()

local last, events = nil, 0
local waiting
local c = klua.consumer{ group = "stats-decode-" .. klua.uuid(), ["statistics.interval.ms"] = 1000,
  on_stats = function(stats)
    last, events = stats, events + 1
    if waiting then waiting:cancel() end
  end }
local parts = {}
for i = 0, P - 1 do parts[#parts + 1] = { topic = topic, partition = i, offset = "beginning" } end
assert(c:assign(parts))
-- Read what comes within 5 s (the mock serves 1,000 partitions' first fetches slowly; the
-- statistics list every assigned partition either way).
local read, until_t = 0, now() + 5000
while read < P and now() < until_t do
  local m, err = c:poll(math.max(1, until_t - now()))
  if err then error(tostring(err), 0) end
  if m then read = read + 1 end
end
-- Two more statistics after every partition was fetched (the first may predate the last fetch).
local function next_stats()
  waiting = klua.spawn(function() klua.sleep(10000) end)
  pcall(waiting.join, waiting)
  waiting = nil
end
local seen = events
repeat next_stats() until events >= seen + 2
local text = klua.json.encode(last)
local parts_in_text = 0
for _, t in pairs(last.topics or {}) do
  for _ in pairs(t.partitions or {}) do parts_in_text = parts_in_text + 1 end
end

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) / 2] or (t[n / 2] + t[n / 2 + 1]) / 2
end

local function time(fn)
  local runs = {}
  for r = 1, o.runs do
    local t0 = now()
    for _ = 1, o.iterations do fn(text) end
    runs[r] = (now() - t0) * 1000 / o.iterations  -- µs per decode
  end
  return median(runs)
end

local n, brokers = cm.decode_stats(text)
assert(n and n >= 1, "the decoder found no broker")
local sax_us = time(cm.decode_stats)
local full_us = time(klua.json.decode)

local snap
for _, s in ipairs(cm.snapshot()) do
  if s.kind == "consumer" then snap = s end
end
local in_situ_us = snap.stats_events > 0 and snap.stats_decode_seconds * 1e6 / snap.stats_events or 0
c:close()

if o.json > 0 then
  print(klua.json.encode{ partitions = P, read = read, text_bytes = #text, brokers = n, events = snap.stats_events,
                          in_situ_us = in_situ_us, sax_us = sax_us, full_us = full_us, ratio = full_us / sax_us })
else
  print(("%d partitions (%d in the statistics, %d read), %d bytes of JSON, %d brokers read, %d events"):format(
    P, parts_in_text, read, #text, n, snap.stats_events))
  print(("  in_situ  %8.1f us per event (the client's own decodes, all events)"):format(in_situ_us))
  print(("  sax      %8.1f us per decode (median of %d runs x %d)"):format(sax_us, o.runs, o.iterations))
  print(("  full     %8.1f us per klua.json.decode"):format(full_us))
  print(("  full/sax %8.1f"):format(full_us / sax_us))
end
