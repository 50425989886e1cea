-- The everyday one-liners (klua topics/groups/lag/produce/consume) against the real broker.
local KLUA = os.getenv("KLUA_BIN") or "./build/klua"
local fresh = klua.testkit.fresh
local q = klua.testkit.quote

-- Runs a shell command line (stdin a string); returns stdout and the exit status.
local sh = klua.testkit.sh

local function lines(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

test("produce lines with keys and headers; consume -e prints exactly them and exits", function()
  local t = fresh("pc")
  local _, rc = sh(KLUA .. " produce " .. t .. " -k : -H src=test", "a:1\nb:2\nc:3\n")
  assert_eq(rc, 0)
  local out, rc2 = sh(KLUA .. " consume " .. t .. " --from beginning -e -f '%k=%v %h\\n'")
  assert_eq(rc2, 0)
  assert_eq(lines(out), { "a=1 src=test", "b=2 src=test", "c=3 src=test" })
  local json = sh(KLUA .. " consume " .. t .. " --from beginning -e --json -n 1")
  local m = assert(klua.json.decode(lines(json)[1]))
  assert_eq({ m.key, m.value, m.offset }, { "a", "1", 0 })
end)

test("consume -e on an empty topic exits at once with nothing", function()
  local t = fresh("empty")
  assert(klua.admin():create_topics({ { name = t, partitions = 3 } }))
  local t0 = klua.now()
  local out, rc = sh(KLUA .. " consume " .. t .. " --from beginning -e")
  assert_eq(rc, 0)
  assert_eq(out, "")
  assert_true(klua.now() - t0 < 15000)
end)

test("consume -e stops at the end of every partition of a multi-partition topic", function()
  local t = fresh("multi")
  assert(klua.admin():create_topics({ { name = t, partitions = 4 } }))
  local p = klua.producer()
  for i = 1, 40 do assert(p:produce{ topic = t, key = tostring(i), value = tostring(i) }) end
  local out, rc = sh(KLUA .. " consume " .. t .. " --from beginning -e")
  assert_eq(rc, 0)
  assert_eq(#lines(out), 40)
end)

test("consume --from a time starts at the first message at or after it", function()
  local t = fresh("time")
  local p = klua.producer()
  local base = klua.time() - 60000
  for i = 0, 9 do assert(p:produce{ topic = t, value = "m" .. i, timestamp = base + i * 1000 }) end
  local out = sh(KLUA .. " consume " .. t .. " --from " .. string.format("%d", base + 6500) .. " -e")
  assert_eq(lines(out), { "m7", "m8", "m9" })
end)

test("lag --max-lag exits 4 when over, 0 when under; topics and groups list what exists", function()
  local t, g = fresh("lag"), fresh("g")
  local p = klua.producer()
  for i = 1, 10 do assert(p:produce{ topic = t, value = tostring(i) }) end
  assert(klua.admin():alter_group_offsets(g, { { topic = t, partition = 0, offset = 4 } }))
  local out, rc = sh(KLUA .. " lag " .. g .. " --max-lag 5")
  assert_eq(rc, 4)
  assert_match(out, "total lag 6")
  local _, rc2 = sh(KLUA .. " lag " .. g .. " --max-lag 6")
  assert_eq(rc2, 0)
  local topics = sh(KLUA .. " topics --json")
  local found = false
  for _, l in ipairs(lines(topics)) do if assert(klua.json.decode(l)).name == t then found = true end end
  assert_true(found, "topic not listed")
  local groups = sh(KLUA .. " groups")
  assert_match(groups, g:gsub("%-", "%%-"))
end)

test("usage errors exit 2; Kafka errors exit 3", function()
  local _, rc = sh(KLUA .. " consume")
  assert_eq(rc, 2)
  local _, rc2 = sh(KLUA .. " lag somegroup --max-lag lots")
  assert_eq(rc2, 2)
  local _, rc3 = sh(KLUA .. " consume no-such-topic-" .. klua.uuid():sub(1, 8) .. " -e")
  assert_eq(rc3, 3)
end)
