-- A standalone embedded (mock) cluster for bench/run, so that every contender
-- (raw C++, klua, kcat, Python) reaches the same cluster over TCP.
--
--   klua run bench/mock_cluster.lua
--
-- Prints the cluster's bootstrap address as its first stdout line, then serves
-- commands read from stdin, one per line, answering "ok" or "error: ..." each:
--   create TOPIC PARTITIONS        create a topic (the mock serves no admin requests)
--   fill TOPIC PARTITIONS COUNT SIZE
--                                  produce COUNT messages of SIZE bytes, message i to
--                                  partition i % PARTITIONS (the mock keeps only about
--                                  5 MiB per partition: spread evenly, nothing is dropped)
-- It exits at the end of stdin (the driver closes it) or on SIGTERM.

local function fail(msg)
  print("error: " .. msg)
  io.stdout:flush()
end

local function fill(topic, partitions, count, size)
  local p = klua.producer()
  local msg = { topic = topic, value = string.rep("x", size), partition = 0 }
  for i = 0, count - 1 do
    msg.partition = i % partitions
    local ok, err = p:send(msg)
    if not ok then p:close(); return nil, "send: " .. tostring(err) end
  end
  local ok, err = p:flush{ timeout_ms = 300000 }
  p:close()
  if not ok then return nil, "flush: " .. tostring(err) end
  return true
end

local function positive(s)
  local n = tonumber(s)
  if n and n >= 1 and n == math.floor(n) then return n end
end

print(klua.embedded.bootstrap())
io.stdout:flush()

while true do
  local line = klua.read_line()
  if line == nil then break end
  local words = {}
  for w in line:gmatch("%S+") do words[#words + 1] = w end
  local cmd = words[1]
  if cmd == "create" and #words == 3 and positive(words[3]) then
    klua.embedded.create_topic(words[2], positive(words[3]), 1)
    print("ok")
  elseif cmd == "fill" and #words == 5 and positive(words[3]) and positive(words[4]) and positive(words[5]) then
    local ok, err = fill(words[2], positive(words[3]), positive(words[4]), positive(words[5]))
    if ok then print("ok") else fail(err) end
  elseif cmd ~= nil then
    fail("unknown command or bad arguments: " .. line)
  end
  io.stdout:flush()
end
