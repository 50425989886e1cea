-- Soak: produce and consume at a fixed rate for a while and sample this
-- process's RSS every second, to show whether memory grows.
--
--   klua -b BROKERS run bench/soak.lua --topic T --partitions P [--seconds 600]
--        [--rate 5000] [--size 100]
--
-- T must be a new, empty topic. A producer task sends --rate messages per second
-- with p:send; a consumer (partitions 0..P-1 assigned from the beginning) polls
-- them and stores each; a sampler reads VmRSS from /proc/self/status every second. At the
-- end it stops producing, waits until everything sent was consumed, and prints
-- one line of JSON:
--   {"seconds":S,"sent":N,"received":N,"samples":[[t_s,rss_kb],...]}

local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { topic = "string", partitions = "positive", seconds = "number", rate = "number",
                                  size = "count" },
                           { seconds = 600, rate = 5000, size = 100 })
local topic, partitions, seconds, rate, size = o.topic, o.partitions, o.seconds, o.rate, o.size
if not topic or not partitions then error("--topic and --partitions are required", 0) end

local rss_kb = bench.rss_kb

local now = klua.now
local c = klua.consumer{ group = "klua-bench-soak-" .. klua.uuid() }
local parts = {}
for p = 0, partitions - 1 do parts[#parts + 1] = { topic = topic, partition = p, offset = "beginning" } end
assert(c:assign(parts))
local p = klua.producer()
local value = string.rep("x", size)

local sent, received, done = 0, 0, false
local consumer = klua.spawn(function()
  while not (done and received >= sent) do
    local msg, err = c:poll(1000)
    if err then error(err, 0) end
    if msg then
      -- touch what a handler would read, and mark it processed
      if #msg.value ~= size or msg.topic ~= topic then error("unexpected message", 0) end
      received = received + 1
      c:store(msg)
    end
  end
end)

local samples = {}
local t0 = now()
local sampler = klua.spawn(function()
  while not done do
    samples[#samples + 1] = ("[%.1f,%d]"):format((now() - t0) / 1000, rss_kb())
    klua.sleep(1000)
  end
end)

t0 = now()
local msg = { topic = topic, value = value, partition = 0 }
while now() - t0 < seconds * 1000 do
  local due = math.floor((now() - t0) * rate / 1000) + 1
  while sent < due do
    msg.partition = sent % partitions
    local ok, err = p:send(msg)
    if not ok then error("send: " .. tostring(err), 0) end
    sent = sent + 1
  end
  klua.sleep(1)
end
assert(p:flush{ timeout_ms = 30000 })
done = true
local deadline = now() + 60000
while received < sent and now() < deadline do klua.sleep(10) end
if received < sent then error(("received %d of %d"):format(received, sent), 0) end
samples[#samples + 1] = ("[%.1f,%d]"):format((now() - t0) / 1000, rss_kb())
for _, t in ipairs({ consumer, sampler }) do
  local _, err = t:join({ timeout_ms = 5000 })
  if err ~= nil then error(err, 0) end
end
print(('{"seconds":%.1f,"sent":%d,"received":%d,"samples":[%s]}'):format(
  seconds, sent, received, table.concat(samples, ",")))
io.stdout:flush()
c:close()
p:close()
