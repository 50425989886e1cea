-- klua.metrics: the registry's rules and the exposition text (format 0.0.4), against texts written
-- out by hand and counts computed here independently; promtool (Debian's prometheus package) checks
-- the output. tests/metrics_serve_test.py drives the endpoints with real HTTP clients.
local kit = klua.testkit
local SRC = debug.getinfo(1, "S").short_src
local BIN = os.getenv("KLUA_BIN")

local function raises(fn, fname, n, pattern)
  local line = debug.getinfo(fn, "S").linedefined
  local ok, err = pcall(fn)
  assert_false(ok, "nothing was raised")
  assert_error(err, "KLUA_INVALID_ARGUMENT")
  assert_match(err.message, "^bad argument #" .. n .. " to '" .. fname:gsub("%.", "%%.") .. "' %(")
  if pattern then assert_match(err.message, pattern) end
  assert_eq(err.where, SRC .. ":" .. line)
  return err
end

-- The exposition's lines without the default registry's (isolated registries have none).
local function lines(text)
  local out = {}
  for l in text:gmatch("([^\n]*)\n") do out[#out + 1] = l end
  return out
end

-- Runs a klua script in a process of its own: stdout, stderr, status.
local function run_script(code)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(code)
  f:close()
  local res = assert(klua.process.run{ cmd = BIN, args = { "run", path }, timeout_ms = 20000 })
  os.remove(path)
  return res.stdout, res.stderr, res.status
end

test("counter, gauge, histogram: the exact text, escaping, families together and sorted by name", function()
  local m = klua.metrics.registry()
  local c = m.counter{ name = "orders", help = "Orders handled\nby \\ the app", labels = { "topic", "outcome" } }
  c:labels("orders", "ok"):inc()
  c:labels("orders", "ok"):inc(2)
  c:labels('we"ird\n\\', "failed"):inc(0.5)
  local g = m.gauge{ name = "queue_depth", help = "Waiting" }
  g:set(7)
  g:dec(2)
  g:inc()
  local h = m.histogram{ name = "handle_seconds", help = "Handler time", buckets = { 0.1, 1 } }
  h:observe(0.05)
  h:observe(0.1)   -- on a bound: counted in that bucket (le is inclusive)
  h:observe(0.5)
  h:observe(3)
  assert_eq(m.expose(), table.concat({
    "# HELP handle_seconds Handler time",
    "# TYPE handle_seconds histogram",
    'handle_seconds_bucket{le="0.1"} 2',
    'handle_seconds_bucket{le="1"} 3',
    'handle_seconds_bucket{le="+Inf"} 4',
    "handle_seconds_sum 3.65",
    "handle_seconds_count 4",
    "# HELP orders_total Orders handled\\nby \\\\ the app",
    "# TYPE orders_total counter",
    'orders_total{topic="orders",outcome="ok"} 3',
    'orders_total{topic="we\\"ird\\n\\\\",outcome="failed"} 0.5',
    "# HELP queue_depth Waiting",
    "# TYPE queue_depth gauge",
    "queue_depth 6",
    "" }, "\n"))
  assert_eq(m.CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
  assert_eq(klua.metrics.CONTENT_TYPE, m.CONTENT_TYPE)
end)

test("histogram buckets are cumulative, +Inf equals _count, _sum the sum (counted here independently)", function()
  local m = klua.metrics.registry()
  local h = m.histogram{ name = "latency_seconds", help = "h", labels = { "topic" } }
  assert_eq(klua.metrics.DEFAULT_BUCKETS, { .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10 })
  local xs, sum = {}, 0
  for i = 1, 500 do
    local x = (i * 7919 % 1000) / 1000 * 12 ^ ((i % 5) - 3)  -- spread from 0 to ~20 s
    if i % 97 == 0 then x = 10 end                          -- exactly on the last bound
    xs[i] = x
    sum = sum + x
    h:labels("t"):observe(x)
  end
  local text = m.expose()
  local bounds = {}
  for i, b in ipairs(klua.metrics.DEFAULT_BUCKETS) do bounds[i] = b end
  for _, b in ipairs(bounds) do
    local want = 0
    for _, x in ipairs(xs) do if x <= b then want = want + 1 end end
    local le = (b == math.floor(b)) and string.format("%d", b) or tostring(b)
    local got = text:match('latency_seconds_bucket{topic="t",le="' .. le:gsub("%.", "%%.") .. '"} (%d+)\n')
    assert_eq(tonumber(got), want, "bucket le=" .. le)
  end
  assert_eq(tonumber(text:match('latency_seconds_bucket{topic="t",le="%+Inf"} (%d+)\n')), 500)
  assert_eq(tonumber(text:match('latency_seconds_count{topic="t"} (%d+)\n')), 500)
  local got_sum = tonumber(text:match('latency_seconds_sum{topic="t"} (%S+)\n'))
  assert_true(math.abs(got_sum - sum) < 1e-9 * sum, "sum " .. got_sum .. " vs " .. sum)
  -- NaN and +Inf go to +Inf only; -Inf to every bucket
  local h2 = m.histogram{ name = "odd_seconds", help = "h", buckets = { 1 } }
  h2:observe(0 / 0)
  h2:observe(math.huge)
  h2:observe(-math.huge)
  text = m.expose()
  assert_match(text, 'odd_seconds_bucket{le="1"} 1\nodd_seconds_bucket{le="%+Inf"} 3\nodd_seconds_sum NaN\nodd_seconds_count 3\n')
end)

test("values are written as Prometheus writes them", function()
  local m = klua.metrics.registry()
  local g = m.gauge{ name = "v", help = "h", labels = { "k" } }
  local cases = {
    { 0, "0" }, { -0.0, "0" }, { 1, "1" }, { -3, "-3" }, { 0.1, "0.1" }, { 1 / 3, "0.3333333333333333" },
    { 2 ^ 53, "9007199254740992" }, { -(2 ^ 53), "-9007199254740992" }, { 2 ^ 53 + 2, "9007199254740994" }, { 2 ^ 60, "1.152921504606847e+18" },
    { 1e21, "1e+21" }, { 1.5e-7, "1.5e-07" }, { 0 / 0, "NaN" }, { math.huge, "+Inf" }, { -math.huge, "-Inf" },
  }
  for i, c in ipairs(cases) do g:labels(i):set(c[1]) end
  local text = m.expose()
  for i, c in ipairs(cases) do
    local got = text:match('\nv{k="' .. i .. '"} (%S+)\n')
    assert_eq(got, c[2], "value " .. tostring(c[1]))
    if c[1] == c[1] then assert_eq(tonumber((got:gsub("^%+", ""))), c[1]) end  -- reads back exactly
  end
end)

test("labels: a cached child per tuple; a number and its string are one series; bad values raise naming the argument", function()
  local m = klua.metrics.registry()
  local c = m.counter{ name = "msgs_total", help = "h", labels = { "topic", "partition" } }
  local a = c:labels("t", 0)
  assert_true(rawequal(a, c:labels("t", 0)))
  assert_true(rawequal(a, c:labels("t", "0")))
  a:inc()
  c:labels("t", "0"):inc()
  assert_eq(m.expose(), '# HELP msgs_total h\n# TYPE msgs_total counter\nmsgs_total{topic="t",partition="0"} 2\n')
  raises(function() c:labels("t") end, "counter:labels", 3, "has 2 label%(s%) %(topic, partition%): got 1 value")
  raises(function() c:labels("t", 1, 2) end, "counter:labels", 4, "got 3 value")
  raises(function() c:labels("t", nil) end, "counter:labels", 3, "label 'partition' of 'msgs_total' must be a string or a number, got nil")
  raises(function() c:labels({}, 1) end, "counter:labels", 2, "label 'topic'.*got table")
  raises(function() c:labels("t", 0 / 0) end, "counter:labels", 3, "got NaN")
  raises(function() c:inc() end, "counter:inc", 1, "has labels %(topic, partition%): use :labels")
  local one = m.gauge{ name = "one_label", help = "h", labels = { "x" } }
  assert_true(rawequal(one:labels("a"), one:labels("a")))
  local three = m.gauge{ name = "three", help = "h", labels = { "a", "b", "c" } }
  assert_true(rawequal(three:labels(1, 2, 3), three:labels("1", "2", "3")))
  local four = m.gauge{ name = "four", help = "h", labels = { "a", "b", "c", "d" } }
  four:labels(1, 2, 3, 4):set(5)
  assert_true(rawequal(four:labels(1, 2, 3, 4), four:labels("1", 2, "3", 4)))
  assert_match(m.expose(), '\nfour{a="1",b="2",c="3",d="4"} 5\n')
end)

test("counters only go up; gauges and histograms take numbers", function()
  local m = klua.metrics.registry()
  local c = m.counter{ name = "c_total", help = "h" }
  raises(function() c:inc(-1) end, "counter:inc", 2, "only goes up")
  raises(function() c:labels():inc(0 / 0) end, "counter:inc", 2, "only goes up")
  raises(function() c:inc("1") end, "counter:inc", 2, "only goes up")
  c:inc(0)
  c:inc(2.5)
  local g = m.gauge{ name = "g", help = "h" }
  raises(function() g:set("1") end, "gauge:set", 2, "expected a number, got string")
  raises(function() g:inc({}) end, "gauge:inc", 2, "expected a number")
  raises(function() g:observe(1) end, "gauge:observe", 1, "only a histogram")
  raises(function() c:set(1) end, "counter:set", 1, "only a gauge")
  local h = m.histogram{ name = "h_seconds", help = "h" }
  raises(function() h:observe() end, "histogram:observe", 2, "expected a number, got nil")
  raises(function() h:labels():observe(true) end, "histogram:observe", 2, "expected a number, got boolean")
  raises(function() h:inc() end, "histogram:inc", 1)
  assert_match(m.expose(), "\nc_total 2.5\n")
end)

test("names: Prometheus's rules, _total appended to counters, reserved prefixes and labels raise naming the option", function()
  local m = klua.metrics.registry()
  raises(function() m.counter() end, "klua.metrics.counter", 1, "options table expected")
  raises(function() m.counter{ name = "1x", help = "h" } end, "klua.metrics.counter", 1, "option 'name' must match")
  raises(function() m.gauge{ name = "a-b", help = "h" } end, "klua.metrics.gauge", 1, "option 'name'")
  raises(function() m.gauge{ name = "", help = "h" } end, "klua.metrics.gauge", 1, "option 'name'")
  raises(function() m.gauge{ help = "h" } end, "klua.metrics.gauge", 1, "option 'name'.*got nil")
  raises(function() m.gauge{ name = "g" } end, "klua.metrics.gauge", 1, "option 'help' must be a string")
  raises(function() m.gauge{ name = "g", help = "h", lables = {} } end, "klua.metrics.gauge", 1, "unknown option 'lables'")
  raises(function() m.gauge{ name = "g", help = "h", buckets = { 1 } } end, "klua.metrics.gauge", 1, "unknown option 'buckets'")
  raises(function() m.counter{ name = "klua_x", help = "h" } end, "klua.metrics.counter", 1, "reserved")
  raises(function() m.gauge{ name = "process_x", help = "h" } end, "klua.metrics.gauge", 1, "reserved")
  raises(function() m.gauge{ name = "g", help = "h", labels = { "__x" } } end, "klua.metrics.gauge", 1, "option 'labels': item 1")
  raises(function() m.gauge{ name = "g", help = "h", labels = { "ok", "a.b" } } end, "klua.metrics.gauge", 1, "item 2")
  raises(function() m.gauge{ name = "g", help = "h", labels = { "a", "a" } } end, "klua.metrics.gauge", 1, "appears twice")
  raises(function() m.gauge{ name = "g", help = "h", labels = { "quantile" } } end, "klua.metrics.gauge", 1, "reserved")
  raises(function() m.histogram{ name = "h", help = "h", labels = { "le" } } end, "klua.metrics.histogram", 1, "reserved")
  raises(function() m.histogram{ name = "h", help = "h", buckets = { 1, 1 } } end, "klua.metrics.histogram", 1, "increasing")
  raises(function() m.histogram{ name = "h", help = "h", buckets = { 2, 1 } } end, "klua.metrics.histogram", 1, "increasing")
  raises(function() m.histogram{ name = "h", help = "h", buckets = {} } end, "klua.metrics.histogram", 1, "at least one")
  raises(function() m.histogram{ name = "h", help = "h", buckets = { 1, "2" } } end, "klua.metrics.histogram", 1, "item 2")
  raises(function() m.gauge{ name = "g", help = "h", labels = { "a" }, collect = function() end } end,
         "klua.metrics.gauge", 1, "without labels")
  -- le on a gauge is allowed (only histograms write it); colons in names are allowed
  m.gauge{ name = "ns:ratio", help = "h", labels = { "le" } }
  -- +Inf as the last bound is implied and accepted
  local h = m.histogram{ name = "inf_seconds", help = "h", buckets = { 1, math.huge } }
  assert_true(rawequal(h, m.histogram{ name = "inf_seconds", help = "h", buckets = { 1 } }))
  -- _total: appended once
  local c = m.counter{ name = "orders", help = "h" }
  assert_true(rawequal(c, m.counter{ name = "orders_total", help = "h" }))
  assert_match(tostring(c), "orders_total")
end)

test("registering again: the same definition returns the family, anything else raises", function()
  local m = klua.metrics.registry()
  local c = m.counter{ name = "jobs_total", help = "Jobs", labels = { "kind" } }
  c:labels("a"):inc()
  local again = m.counter{ name = "jobs_total", help = "Jobs", labels = { "kind" } }
  assert_true(rawequal(c, again))
  assert_match(m.expose(), 'jobs_total{kind="a"} 1\n')
  raises(function() m.counter{ name = "jobs_total", help = "Other", labels = { "kind" } } end, "klua.metrics.counter", 1,
         "already registered as a counter")
  raises(function() m.counter{ name = "jobs", help = "Jobs" } end, "klua.metrics.counter", 1, "already registered")
  raises(function() m.gauge{ name = "jobs_total", help = "Jobs", labels = { "kind" } } end, "klua.metrics.gauge", 1,
         "already registered as a counter")
  local h = m.histogram{ name = "wait_seconds", help = "h", buckets = { 1, 2 } }
  assert_true(rawequal(h, m.histogram{ name = "wait_seconds", help = "h", buckets = { 1, 2 } }))
  raises(function() m.histogram{ name = "wait_seconds", help = "h", buckets = { 1, 3 } } end, "klua.metrics.histogram", 1,
         "buckets")
  -- series names may not collide across families: wait_seconds writes wait_seconds_count
  raises(function() m.gauge{ name = "wait_seconds_count", help = "h" } end, "klua.metrics.gauge", 1,
         "would write the series name wait_seconds_count")
  -- another registry is independent
  local other = klua.metrics.registry()
  other.gauge{ name = "jobs_total", help = "different" }
  assert_eq(other.expose(), "# HELP jobs_total different\n# TYPE jobs_total gauge\njobs_total 0\n")
end)

test("a gauge's collect function is read at each exposition; re-registering takes the new function", function()
  local m = klua.metrics.registry()
  local depth = 3
  m.gauge{ name = "depth", help = "h", collect = function() return depth end }
  assert_match(m.expose(), "\ndepth 3\n")
  depth = 4.5
  assert_match(m.expose(), "\ndepth 4.5\n")
  m.gauge{ name = "depth", help = "h", collect = function() return 9 end }
  assert_match(m.expose(), "\ndepth 9\n")
  local g = m.gauge{ name = "depth", help = "h", collect = function() return 9 end }
  raises(function() g:set(1) end, "gauge:set", 1, "computed by its collect function")
  raises(function() g:labels() end, "gauge:labels", 1, "computed by its collect function")
end)

test("collectors: families merged in sorted order, histograms made cumulative, unregister", function()
  local m = klua.metrics.registry()
  m.counter{ name = "script_total", help = "mine" }:inc(4)
  local lag = 42
  local unregister = m.register_collector(function()
    return {
      { name = "zz_lag", type = "gauge", help = "Lag", samples = {
        { labels = { topic = "t", partition = 1 }, value = lag },
        { labels = { topic = "t", partition = "0" }, value = 0 },
      } },
      { name = "aa_latency_seconds", type = "histogram", help = "Latency", samples = {
        { labels = { client = 'c"1' }, buckets = { 0.5, 1 }, counts = { 2, 3, 1 }, sum = 4.25 },
      } },
    }
  end)
  m.register_collector(function()
    return { { name = "zz_lag", type = "gauge", help = "Lag", samples = { { labels = { topic = "u", partition = "0" }, value = 5 } } } }
  end)
  assert_eq(m.expose(), table.concat({
    "# HELP aa_latency_seconds Latency",
    "# TYPE aa_latency_seconds histogram",
    'aa_latency_seconds_bucket{client="c\\"1",le="0.5"} 2',
    'aa_latency_seconds_bucket{client="c\\"1",le="1"} 5',
    'aa_latency_seconds_bucket{client="c\\"1",le="+Inf"} 6',
    'aa_latency_seconds_sum{client="c\\"1"} 4.25',
    'aa_latency_seconds_count{client="c\\"1"} 6',
    "# HELP script_total mine",
    "# TYPE script_total counter",
    "script_total 4",
    "# HELP zz_lag Lag",
    "# TYPE zz_lag gauge",
    'zz_lag{partition="1",topic="t"} 42',
    'zz_lag{partition="0",topic="t"} 0',
    'zz_lag{partition="0",topic="u"} 5',
    "" }, "\n"))
  lag = 7
  assert_match(m.expose(), 'zz_lag{partition="1",topic="t"} 7\n')
  unregister()
  unregister()
  local text = m.expose()
  assert_nil(text:find("aa_latency", 1, true))
  assert_match(text, 'zz_lag{partition="0",topic="u"} 5\n')
  assert_nil(text:find('topic="t"', 1, true))
  raises(function() m.register_collector("x") end, "klua.metrics.register_collector", 1, "expected a function")
end)

test("a collector's duplicates and mistakes are dropped, said once on stderr; the rest is exposed", function()
  local out, err, status = run_script([[
    local m = klua.metrics.registry()
    m.counter{ name = "orders_total", help = "script's" }:inc()
    m.register_collector(function()
      return {
        { name = "orders_total", type = "counter", help = "again", samples = { { value = 9 } } },
        { name = "lag", type = "gauge", help = "h", samples = {
          { labels = { p = "0" }, value = 1 }, { labels = { p = 0 }, value = 2 }, { labels = { p = "1" }, value = 3 },
          { labels = { p = "2" }, value = "x" } } },
        { name = "lag", type = "histogram", help = "h", samples = {} },
        { name = "bad name", type = "gauge", samples = {} },
        { name = "c", type = "counter", help = "no _total", samples = {} },
        { name = "hist_seconds", type = "histogram", help = "h", samples = {
          { buckets = { 1 }, counts = { 1 }, sum = 1 } } },
      }
    end)
    m.register_collector(function() error("collector broke") end)
    for _ = 1, 3 do io.write(m.expose(), "--\n") end
  ]])
  assert_eq(status, 0, err)
  local one = "# HELP hist_seconds h\n# TYPE hist_seconds histogram\n"
    .. '# HELP lag h\n# TYPE lag gauge\nlag{p="0"} 1\nlag{p="1"} 3\n'
    .. "# HELP orders_total script's\n# TYPE orders_total counter\norders_total 1\n--\n"
  assert_eq(out, one .. one .. one)
  local warned = {}
  for l in err:gmatch("[^\n]+") do warned[#warned + 1] = l end
  table.sort(warned)
  assert_match(table.remove(warned, 1), "^klua.metrics: a collector raised: .*:16: collector broke %(its families are left out%)$")
  assert_eq(warned, {
    "klua.metrics: a collector repeats the family 'orders_total' the script registered; the collector's is dropped",
    "klua.metrics: a collector returned a family with a bad name (bad name); left out",
    "klua.metrics: collected counter 'c' does not end in _total; left out",
    "klua.metrics: collected family 'hist_seconds': 1 bucket bounds need 2 counts, got 1; the sample is left out",
    "klua.metrics: collected family 'lag' repeats the series {p=\"0\"}; the repeat is dropped",
    "klua.metrics: collected family 'lag': value must be a number, got string; the sample is left out",
    "klua.metrics: collectors give family 'lag' as a gauge and as a histogram; the second is dropped",
  })
end)

test("readiness checks: added and removed; arguments checked", function()
  local m = klua.metrics.registry()
  local remove = m.add_readiness_check("db", function() return true end)
  assert_eq(type(remove), "function")
  remove()
  remove()
  raises(function() m.add_readiness_check(nil, print) end, "klua.metrics.add_readiness_check", 1, "non%-empty name")
  raises(function() m.add_readiness_check("x", 5) end, "klua.metrics.add_readiness_check", 2, "expected a function")
  raises(function() m.serve{ prot = 1 } end, "klua.metrics.serve", 1, "unknown option 'prot'")
  raises(function() m.serve{ port = 70000 } end, "klua.metrics.serve", 1, "option 'port'")
  raises(function() m.serve{ ready = 5 } end, "klua.metrics.serve", 1, "option 'ready' must be a function")
  raises(function() m.routes{ ready = 5 } end, "klua.metrics.routes", 1, "option 'ready' must be a function")
  raises(function() m.routes{ host = "x" } end, "klua.metrics.routes", 1, "unknown option 'host'")
  local routes = m.routes()
  local keys = {}
  for k in pairs(routes) do keys[#keys + 1] = k end
  table.sort(keys)
  assert_eq(keys, { "GET /healthz", "GET /metrics", "GET /readyz" })
end)

test("the default registry has the process_ metrics and klua_build_info, read from the process", function()
  local text = klua.metrics.expose()
  assert_match(text, '\nklua_build_info{version="' .. klua.version:gsub("%p", "%%%0") .. '"} 1\n')
  local rss = tonumber(text:match("\nprocess_resident_memory_bytes (%d+)\n"))
  local sf = assert(io.open("/proc/self/status"))
  local status = sf:read("*a")
  sf:close()
  local vmrss_kb = tonumber(status:match("VmRSS:%s+(%d+) kB"))
  assert_true(math.abs(rss - vmrss_kb * 1024) < 64 * 1024 * 1024, "rss " .. rss .. " vs VmRSS " .. vmrss_kb .. " kB")
  local start = tonumber(text:match("\nprocess_start_time_seconds (%S+)\n"))
  local now_s = klua.time() / 1000
  assert_true(start <= now_s + 1 and start > now_s - 3600, "start time " .. start .. " vs now " .. now_s)
  local fds = tonumber(text:match("\nprocess_open_fds (%d+)\n"))
  local f1 = io.open("/dev/null")
  local f2 = io.open("/dev/null")
  local fds2 = tonumber(klua.metrics.expose():match("\nprocess_open_fds (%d+)\n"))
  f1:close()
  f2:close()
  assert_eq(fds2, fds + 2)
  assert_true(tonumber(text:match("\nprocess_cpu_seconds_total (%S+)\n")) > 0)
  assert_true(tonumber(text:match("\nprocess_max_fds (%d+)\n")) >= fds)
  -- the script's own names may not take the prefixes
  raises(function() klua.metrics.gauge{ name = "process_open_fds", help = "h" } end, "klua.metrics.gauge", 1, "reserved")
end)

-- promtool check metrics: exit 0 with no lint problem; it fails on a broken text (the check can fail).
local function promtool(text)
  local out, status = kit.sh("promtool check metrics 2>&1", text)
  return status, out
end

test("promtool check metrics accepts every type with tricky label values, and the default registry", function()
  local st, out = promtool("# HELP x_total h\n# TYPE x_total counter\nx_total{a=\"b} 1\n")
  assert_ne(st, 0, "promtool refuses a broken text")
  assert_match(out, "parsing error")
  st = promtool("# TYPE y_total counter\ny_total 1\n")
  assert_ne(st, 0, "promtool's lint complains about a counter without help")

  local m = klua.metrics.registry()
  local c = m.counter{ name = "app_orders", help = 'Orders "handled"\nwith \\ backslash', labels = { "topic", "outcome" } }
  c:labels("orders", "ok"):inc(3)
  c:labels('quote " backslash \\ newline \n tab \t unicode é', "failed"):inc()
  c:labels("", 0):inc()
  local g = m.gauge{ name = "app_queue_depth", help = "Depth", labels = { "worker" } }
  g:labels("w1"):set(-5.5)
  g:labels("w2"):set(math.huge)
  g:labels("w3"):set(0 / 0)
  m.gauge{ name = "app_temperature_celsius", help = "Temp", collect = function() return 21.5 end }
  local h = m.histogram{ name = "app_handle_seconds", help = "Handler", labels = { "topic" } }
  for i = 1, 100 do h:labels("orders"):observe(i / 37) end
  h:labels("x\"y"):observe(0.001)
  m.histogram{ name = "app_size_bytes", help = "Sizes", buckets = { 100, 1000, 1e6 } }:observe(512)
  m.register_collector(function()
    return { { name = "app_lag", type = "gauge", help = "Lag", samples = { { labels = { topic = "a\nb", partition = 0 }, value = 3 } } },
             { name = "app_rtt_seconds", type = "histogram", help = "RTT", samples = {
               { labels = { broker = "1" }, buckets = { 0.001, 0.01 }, counts = { 1, 2, 3 }, sum = 0.5 } } } }
  end)
  local text = m.expose()
  st, out = promtool(text)
  assert_eq(st, 0, out .. "\n" .. text)
  st, out = promtool(klua.metrics.expose())
  assert_eq(st, 0, out)
end)

test("one registry served twice (two ports); serving the default registry calls the built-in metrics' hook and warns once", function()
  local m = klua.metrics.registry()
  m.counter{ name = "twice", help = "h" }:inc()
  local a = assert(m.serve{ port = 0 })
  local b = assert(m.serve{ port = 0 })
  assert_ne(a.port, b.port)
  for _, srv in ipairs({ a, b }) do
    local res = assert(klua.http.get(srv.url .. "/metrics"))
    assert_eq(res.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
    assert_match(res.body, "\ntwice_total 1\n")
  end
  a:close()
  b:close()
  -- The hook's contract (debug.getregistry()["klua.private"].client_metrics.enable), with a stand-in:
  -- called by serve and routes of the default registry only; the clients it names are warned about once.
  local out, err, status = run_script([[
    local priv = debug.getregistry()["klua.private"]
    local calls = 0
    priv.client_metrics = { enable = function() calls = calls + 1 return { "rdkafka#producer-1", "rdkafka#consumer-2" } end }
    local iso = klua.metrics.registry()
    iso.routes()
    assert(calls == 0, "an isolated registry does not turn the built-in metrics on")
    local srv = assert(klua.metrics.serve{ port = 0 })
    klua.metrics.routes()
    local srv2 = assert(klua.metrics.serve{ port = 0 })
    print("calls " .. calls)
    srv:close() srv2:close()
  ]])
  assert_eq(status, 0, err)
  assert_eq(out, "calls 3\n")
  assert_eq(err, "klua.metrics: no statistics from rdkafka#producer-1, rdkafka#consumer-2: broker round-trip time "
    .. "and state need --metrics or statistics.interval.ms set before the client is created\n")
end)
