-- p:send alone (the FFI fast path), without waiting for delivery: 5 rounds of 200k sends of
-- 100 B on the embedded cluster, best round printed. klua run bench/send_loop.lua
klua.embedded.create_topic("sb", 32)
local n = 0
local p = klua.producer{ on_delivery = function() n = n + 1 end, ["queue.buffering.max.messages"] = 2000000 }
local msg = { topic = "sb", value = string.rep("x", 100) }
for _ = 1, 20000 do p:send(msg) end
p:flush()
local best = math.huge
for r = 1, 5 do
  local t0 = klua.now()
  for _ = 1, 200000 do p:send(msg) end
  local dt = klua.now() - t0
  if dt < best then best = dt end
  p:flush()
end
print(("send: best of 5 x 200k: %.1f ns/send (%.0f sends/s)"):format(best * 1e6 / 200000, 200000 / best * 1000))
