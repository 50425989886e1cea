-- klua.worker.dedupe_store on the embedded cluster: refused there (no log compaction), by the store
-- and by a worker given dedupe.topic; its options are checked; the in-memory part expires ids by
-- time (driven by a fake clock). The Kafka side is tested in tests/integration/dedupe_store_test.lua.
local store_mod = require("klua.worker.dedupe_store")
local mem_new = debug.getregistry()["klua.private"].dedupe_memory

test("the embedded cluster has no compaction: open returns KLUA_EMBEDDED_UNSUPPORTED naming the in-memory store", function()
  local s, err = store_mod.open{ topic = "dd-embedded", window_ms = 60000 }
  assert_nil(s)
  assert_error(err, "KLUA_EMBEDDED_UNSUPPORTED")
  assert_eq(err.topic, "dd-embedded")
  assert_match(err.message, "^dedupe store dd%-embedded: ")
  assert_match(err.message, "in%-memory store")
end)

test("a worker with dedupe.topic on the embedded cluster: run returns the store's error", function()
  local w = klua.worker{ group = klua.testkit.fresh("g"), topics = { "dd-embedded-in" }, quiet = true,
                         dedupe = { topic = "dd-embedded", window_ms = 60000 }, handlers = function() end }
  local c, err = w:run()
  assert_nil(c)
  assert_error(err, "KLUA_EMBEDDED_UNSUPPORTED")
end)

test("options are checked", function()
  assert_raises(function() store_mod.open() end, "expected an options table")
  assert_raises(function() store_mod.open{ window_ms = 1000 } end, "'topic'")
  assert_raises(function() store_mod.open{ topic = "t" } end, "'window_ms'")
  assert_raises(function() store_mod.open{ topic = "t", window_ms = 0 } end, "'window_ms'")
  assert_raises(function() store_mod.open{ topic = "t", window_ms = 1000, bogus = 1 } end, "unknown option 'bogus'")
  assert_raises(function() store_mod.open{ topic = "t", window_ms = 1000, partitions = 0 } end, "'partitions'")
  local function w(dedupe)
    return klua.worker{ group = "g", topics = { "t" }, handlers = function() end, dedupe = dedupe }
  end
  assert_raises(function() w{ topic = "s" } end, "dedupe.window_ms")
  assert_raises(function() w{ topic = 5, window_ms = 1000 } end, "dedupe.topic must be a topic name")
  assert_not_nil(w{ topic = "s", window_ms = 1000 })
  assert_not_nil(w{ window = 10 })                     -- the in-memory store, unchanged
end)

test("memory: ids expire after the window, by whole time buckets, without a scan per add", function()
  local m = mem_new(6400)                              -- buckets of 100 ms
  assert_eq(m.bucket_ms, 100)
  local t0 = 1000000
  assert_true(m:insert("a", t0))
  assert_true(m:insert("b", t0 + 150))
  assert_false(m:insert("a", t0 + 10))                 -- same id, same bucket: not appended twice
  assert_eq(#m.buckets[t0 / 100], 1)
  assert_eq(m.size, 2)
  assert_true(m:has("a", t0 + 6409))                   -- refreshed at t0 + 10
  assert_false(m:has("a", t0 + 6410))                  -- has() checks the time itself
  m:expire(t0 + 6410)                                  -- a's bucket [t0, t0+100) ends after the cutoff - 100
  assert_eq(m.size, 2)
  m:expire(t0 + 6500)                                  -- a's bucket is wholly older than the window now
  assert_eq(m.size, 1)
  assert_nil(m.ts.a)
  assert_true(m:has("b", t0 + 6500))
  -- an id refreshed into a later bucket is not dropped with its old bucket
  assert_false(m:insert("b", t0 + 1000))
  m:expire(t0 + 6700)
  assert_true(m:has("b", t0 + 6700))
  assert_eq(m.size, 1)
  -- an older time of a held id changes nothing; a long idle period ends in an empty, reset memory
  assert_false(m:insert("b", t0))
  m:expire(t0 + 10 ^ 9)
  assert_eq({ m.size, m.bmin, m.nbuckets }, { 0, nil, 0 })
  -- many ids: expiry drops exactly those older than the window
  for i = 1, 10000 do m:insert("id" .. i, t0 + i) end
  m:expire(t0 + 5000 + 6400)
  local held = 0
  for i = 1, 10000 do if m.ts["id" .. i] then held = held + 1 end end
  assert_eq(held, m.size)
  assert_true(held >= 10000 - 5000 and held <= 10000 - 5000 + 100, tostring(held)) -- within one bucket
end)
