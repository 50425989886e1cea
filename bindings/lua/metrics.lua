-- klua.metrics: counters, gauges and histograms with labels bound in advance, and their text
-- exposition (format 0.0.4). Pure Lua so that a child's inc/observe compiles into the caller's
-- trace: a child is a small table whose fields the JIT keeps in registers. bindings/metrics.cpp
-- opens it (P: its C primitives); bindings/lua/metrics_serve.lua adds serve/routes/readiness.
local klua, P = ...
local E = klua.errors
local type, pairs, ipairs, tostring, tonumber, select, error = type, pairs, ipairs, tostring, tonumber, select, error
local setmetatable, pcall, rawget, load, assert = setmetatable, pcall, rawget, load, assert
local format, gsub, find, sub = string.format, string.gsub, string.find, string.sub
local concat, sort = table.concat, table.sort
local floor, huge = math.floor, math.huge

local CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
local DEFAULT_BUCKETS = { .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10 }
local TYPES = { counter = true, gauge = true, histogram = true }

local function argerr(fn, n, fmt, ...)
  E.bad_argument(fn, n, fmt:format(...))
end

-- A warning on stderr, once per distinct text and registry: through klua's log when it is there
-- (["klua.private"].log.diagnostic: the same line in the text format, one JSON object with
-- --log-format json), else written as is.
local function warn_once(reg, text)
  if reg.warned[text] then return end
  reg.warned[text] = true
  local line = "klua.metrics: " .. text
  local priv = debug.getregistry()["klua.private"]
  local log = type(priv) == "table" and priv.log or nil
  if type(log) == "table" and type(log.diagnostic) == "function" then
    log.diagnostic("warn", line, { logger = "klua.metrics" }, line)
  else
    io.stderr:write(line, "\n")
  end
end

-- ---- values and escaping -------------------------------------------------------------------

-- Numbers as Prometheus writes them: +Inf, -Inf, NaN; whole numbers up to 2^53 without an
-- exponent; otherwise the shortest of %.15g/%.16g/%.17g that reads back as the same double.
local function fmt_number(v)
  if v ~= v then return "NaN" end
  if v == huge then return "+Inf" end
  if v == -huge then return "-Inf" end
  if v == floor(v) and v >= -9007199254740992 and v <= 9007199254740992 then
    return format("%.0f", v == 0 and 0 or v)  -- -0 is written 0
  end
  local s = format("%.15g", v)
  if tonumber(s) == v then return s end
  s = format("%.16g", v)
  if tonumber(s) == v then return s end
  return format("%.17g", v)
end

local LABEL_ESC = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n" }
local HELP_ESC = { ["\\"] = "\\\\", ["\n"] = "\\n" }
local function esc_label(s) return (gsub(s, '[\\"\n]', LABEL_ESC)) end
local function esc_help(s) return (gsub(s, "[\\\n]", HELP_ESC)) end

-- A label value as exposed: strings as they are, numbers formatted like values.
local function label_string(v)
  if type(v) == "string" then return v end
  return fmt_number(v)
end

-- ---- names ---------------------------------------------------------------------------------

local function valid_metric_name(s) return type(s) == "string" and find(s, "^[a-zA-Z_:][a-zA-Z0-9_:]*$") ~= nil end
local function valid_label_name(s)
  return type(s) == "string" and find(s, "^[a-zA-Z_][a-zA-Z0-9_]*$") ~= nil and sub(s, 1, 2) ~= "__"
end

-- The sample names a family writes (to refuse two families that would write the same series name).
local function produced_names(name, kind)
  if kind == "histogram" then return { name .. "_bucket", name .. "_sum", name .. "_count" } end
  return { name }
end

-- ---- children: the hot path ----------------------------------------------------------------

local Counter = {}
Counter.__index = Counter
function Counter:inc(n)
  if n == nil then
    self.v = self.v + 1
    return
  end
  if type(n) ~= "number" or not (n >= 0) then
    argerr("counter:inc", 2, "a counter only goes up: expected a number >= 0, got %s", tostring(n))
  end
  self.v = self.v + n
end

local Gauge = {}
Gauge.__index = Gauge
function Gauge:set(v)
  if type(v) ~= "number" then argerr("gauge:set", 2, "expected a number, got %s", type(v)) end
  self.v = v
end
function Gauge:inc(n)
  if n == nil then
    self.v = self.v + 1
    return
  end
  if type(n) ~= "number" then argerr("gauge:inc", 2, "expected a number, got %s", type(n)) end
  self.v = self.v + n
end
function Gauge:dec(n)
  if n == nil then
    self.v = self.v - 1
    return
  end
  if type(n) ~= "number" then argerr("gauge:dec", 2, "expected a number, got %s", type(n)) end
  self.v = self.v - n
end

-- counts[i] counts the observations x with bounds[i-1] < x <= bounds[i]; counts[nb+1] those above
-- the last bound (and NaN, as Prometheus's Go client does). Not cumulative: one increment per
-- observation; the exposition sums them. observe() is generated per list of bounds: a binary
-- search of if-statements with the bounds as constants, which LuaJIT compiles into the caller's
-- trace (a search loop over the bounds became a trace of its own, entered and left at every call:
-- 66 ns for inc + observe in bench/metrics.lua, against ~10 ns now).
local observers = {}  -- "b1,b2,...": the generated metatable for children with those bounds

local function search_code(out, lo, hi, bounds, indent)
  if lo == hi then
    out[#out + 1] = indent .. "c[" .. lo .. "] = c[" .. lo .. "] + 1"
    return
  end
  local mid = floor((lo + hi) / 2)
  out[#out + 1] = indent .. "if x <= " .. format("%.17g", bounds[mid]) .. " then"
  search_code(out, lo, mid, bounds, indent .. "  ")
  out[#out + 1] = indent .. "else"
  search_code(out, mid + 1, hi, bounds, indent .. "  ")
  out[#out + 1] = indent .. "end"
end

local function histogram_meta(bounds)
  local parts = {}
  for i, b in ipairs(bounds) do parts[i] = format("%.17g", b) end
  local key = concat(parts, ",")
  local mt = observers[key]
  if mt then return mt end
  local code = {
    "local type, argerr = ...",
    "return function(self, x)",
    '  if type(x) ~= "number" then argerr("histogram:observe", 2, "expected a number, got %s", type(x)) end',
    "  local c = self.c",
  }
  search_code(code, 1, #bounds + 1, bounds, "  ")
  code[#code + 1] = "  self.s = self.s + x"
  code[#code + 1] = "end"
  local observe = assert(load(concat(code, "\n"), "=klua.metrics histogram:observe"))(type, argerr)
  mt = { __index = { observe = observe } }
  observers[key] = mt
  return mt
end

local function new_child(fam, lstr)
  local ch
  if fam.kind == "histogram" then
    local c = {}
    for i = 1, fam.nb + 1 do c[i] = 0 end
    ch = setmetatable({ c = c, s = 0, lstr = lstr }, fam.hmeta)
  else
    ch = setmetatable({ v = 0, lstr = lstr }, fam.kind == "counter" and Counter or Gauge)
  end
  local list = fam.list
  list[#list + 1] = ch
  return ch
end

-- ---- families ------------------------------------------------------------------------------

local Family = {}
Family.__index = Family

local function single(self, what)
  local ch = self.single
  if ch == nil then
    if self.collect then argerr(self.kind .. ":" .. what, 1, "gauge '%s' is computed by its collect function", self.name) end
    argerr(self.kind .. ":" .. what, 1, "%s '%s' has labels (%s): use :labels(...) first", self.kind, self.name,
           concat(self.label_names, ", "))
  end
  return ch
end

-- The child for a tuple of label values: children is a tree keyed by the values as given (a number
-- and its string are the same series: the slow path links both keys to one child).
local function labels_slow(self, ...)
  local fn = self.kind .. ":labels"
  local n, want = select("#", ...), self.nlabels
  if n ~= want then
    argerr(fn, (n < want and n or want) + 2, "%s '%s' has %d label(s) (%s): got %d value(s)", self.kind, self.name,
           want, concat(self.label_names, ", "), n)
  end
  if n == 0 then return single(self, "labels") end
  local level, parts = self.children, {}
  for i = 1, n do
    local v = select(i, ...)
    local tv = type(v)
    if (tv ~= "string" and tv ~= "number") or v ~= v then
      argerr(fn, i + 1, "label '%s' of '%s' must be a string or a number, got %s", self.label_names[i], self.name,
             v ~= v and "NaN" or tv)
    end
    local s = label_string(v)
    parts[i] = self.label_names[i] .. '="' .. esc_label(s) .. '"'
    local nxt = level[v] or level[s]
    if nxt == nil then
      if i == n then
        nxt = new_child(self, "{" .. concat(parts, ",") .. "}")
      else
        nxt = {}
      end
      level[s] = nxt
    end
    level[v] = nxt
    level = nxt
  end
  return level
end

function Family:labels(...)
  local n = self.nlabels
  if n == 1 then
    local ch = self.children[(...)]
    if ch ~= nil and select("#", ...) == 1 then return ch end
  elseif n == 2 then
    local a, b = ...
    local t = self.children[a]
    if t ~= nil then
      local ch = t[b]
      if ch ~= nil and select("#", ...) == 2 then return ch end
    end
  elseif n == 3 then
    local a, b, c = ...
    local t = self.children[a]
    t = t and t[b]
    local ch = t and t[c]
    if ch ~= nil and select("#", ...) == 3 then return ch end
  elseif n == 0 then
    local ch = self.single
    if ch ~= nil and select("#", ...) == 0 then return ch end
  end
  return labels_slow(self, ...)
end

function Family:inc(n)
  if self.kind == "histogram" then argerr("histogram:inc", 1, "a histogram has observe(), not inc()") end
  single(self, "inc"):inc(n)
end
function Family:set(v)
  if self.kind ~= "gauge" then argerr(self.kind .. ":set", 1, "only a gauge can be set") end
  single(self, "set"):set(v)
end
function Family:dec(n)
  if self.kind ~= "gauge" then argerr(self.kind .. ":dec", 1, "only a gauge goes down") end
  single(self, "dec"):dec(n)
end
function Family:observe(x)
  if self.kind ~= "histogram" then argerr(self.kind .. ":observe", 1, "only a histogram observes") end
  single(self, "observe"):observe(x)
end
function Family:__tostring()
  return "klua.metrics." .. self.kind .. "(" .. self.name .. ")"
end

local function check_buckets(fn, buckets)
  if buckets == nil then buckets = DEFAULT_BUCKETS end
  if type(buckets) ~= "table" then argerr(fn, 1, "option 'buckets' must be a list of numbers, got %s", type(buckets)) end
  local out = {}
  for i = 1, #buckets do
    local b = buckets[i]
    if type(b) ~= "number" or b ~= b then argerr(fn, 1, "option 'buckets': item %d must be a number, got %s", i, tostring(b)) end
    if b == huge and i == #buckets then break end  -- +Inf is implied
    if b == huge or b == -huge then argerr(fn, 1, "option 'buckets': item %d is infinite (+Inf is implied, last)", i) end
    if i > 1 and not (b > out[i - 1]) then
      argerr(fn, 1, "option 'buckets' must be increasing: item %d (%s) after %s", i, fmt_number(b), fmt_number(out[i - 1]))
    end
    out[i] = b
  end
  if #out == 0 then argerr(fn, 1, "option 'buckets' needs at least one finite bound") end
  return out
end

local OPTIONS = { name = true, help = true, labels = true, buckets = true, collect = true }

local function same_list(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

local function register(reg, kind, opts, builtin)
  local fn = "klua.metrics." .. kind
  if type(opts) ~= "table" then argerr(fn, 1, "options table expected, got %s", type(opts)) end
  for k in pairs(opts) do
    if not OPTIONS[k] or (k == "buckets" and kind ~= "histogram") or (k == "collect" and kind ~= "gauge") then
      argerr(fn, 1, "unknown option '%s'", tostring(k))
    end
  end
  local name, help = opts.name, opts.help
  if not valid_metric_name(name) then
    argerr(fn, 1, "option 'name' must match [a-zA-Z_:][a-zA-Z0-9_:]*, got %s",
           type(name) == "string" and format("%q", name) or type(name))
  end
  if type(help) ~= "string" then argerr(fn, 1, "option 'help' must be a string, got %s", type(help)) end
  if not builtin and (sub(name, 1, 5) == "klua_" or sub(name, 1, 8) == "process_") then
    argerr(fn, 1, "option 'name': the prefixes klua_ and process_ are reserved for klua's built-in metrics (%q)", name)
  end
  -- As client_python does: a counter is exposed as NAME_total.
  if kind == "counter" and sub(name, -6) ~= "_total" then name = name .. "_total" end
  local label_names = {}
  local ls = opts.labels
  if ls ~= nil then
    if type(ls) ~= "table" then argerr(fn, 1, "option 'labels' must be a list of label names, got %s", type(ls)) end
    local seen = {}
    for i = 1, #ls do
      local l = ls[i]
      if not valid_label_name(l) then
        argerr(fn, 1, "option 'labels': item %d must match [a-zA-Z_][a-zA-Z0-9_]* without a leading __, got %s", i,
               type(l) == "string" and format("%q", l) or type(l))
      end
      if l == "quantile" or (l == "le" and kind == "histogram") then
        argerr(fn, 1, "option 'labels': %q is reserved (Prometheus writes it for %s)", l, l == "le" and "histogram buckets" or "summaries")
      end
      if seen[l] then argerr(fn, 1, "option 'labels': %q appears twice", l) end
      seen[l] = true
      label_names[i] = l
    end
  end
  local collect = opts.collect
  if collect ~= nil then
    if type(collect) ~= "function" then argerr(fn, 1, "option 'collect' must be a function, got %s", type(collect)) end
    if #label_names > 0 then argerr(fn, 1, "option 'collect' is for a gauge without labels") end
  end
  local bounds = kind == "histogram" and check_buckets(fn, opts.buckets) or nil

  local old = reg.families[name]
  if old then
    if old.kind ~= kind or old.help ~= help or not same_list(old.label_names, label_names)
        or (bounds and not same_list(old.bounds, bounds)) or ((old.collect ~= nil) ~= (collect ~= nil)) then
      argerr(fn, 1, "'%s' is already registered as a %s with other options (help, labels%s): one name, one definition",
             name, old.kind, kind == "histogram" and ", buckets" or "")
    end
    -- A setup run again brings a new closure: the newest collect function wins.
    old.collect = collect
    return old
  end
  local produced = produced_names(name, kind)
  for _, n in ipairs(produced) do
    local other = reg.produced[n]
    if other then
      argerr(fn, 1, "'%s' would write the series name %s, which %s '%s' writes", name, n, reg.families[other].kind, other)
    end
  end

  local fam = setmetatable({
    kind = kind, name = name, help = help, label_names = label_names, nlabels = #label_names,
    bounds = bounds, nb = bounds and #bounds, collect = collect,
    children = {}, list = {},
  }, Family)
  if bounds then
    -- The le="..." part of each bucket line, made once.
    local le = {}
    for i, b in ipairs(bounds) do le[i] = 'le="' .. fmt_number(b) .. '"}' end
    le[#bounds + 1] = 'le="+Inf"}'
    fam.le = le
    fam.hmeta = histogram_meta(bounds)
  end
  if #label_names == 0 and not collect then fam.single = new_child(fam, "") end
  reg.families[name] = fam
  for _, n in ipairs(produced) do reg.produced[n] = name end
  return fam
end

-- ---- exposition ----------------------------------------------------------------------------

local function header(out, n, name, kind, help)
  out[n + 1] = "# HELP "
  out[n + 2] = name
  out[n + 3] = " "
  out[n + 4] = esc_help(help)
  out[n + 5] = "\n# TYPE "
  out[n + 6] = name
  out[n + 7] = " "
  out[n + 8] = kind
  out[n + 9] = "\n"
  return n + 9
end

-- One histogram series: cumulative buckets, +Inf equal to _count (both the same running sum).
-- open is '{' or '{labels,' (for the le label); lstr is '' or '{labels}'.
local function write_histogram(out, n, name, open, lstr, le, counts, nb, sum)
  local cum = 0
  for i = 1, nb + 1 do
    cum = cum + counts[i]
    out[n + 1] = name
    out[n + 2] = "_bucket"
    out[n + 3] = open
    out[n + 4] = le[i]
    out[n + 5] = " "
    out[n + 6] = fmt_number(cum)
    out[n + 7] = "\n"
    n = n + 7
  end
  out[n + 1] = name .. "_sum" .. lstr .. " " .. fmt_number(sum) .. "\n"
  out[n + 2] = name .. "_count" .. lstr .. " " .. fmt_number(cum) .. "\n"
  return n + 2
end

local function write_family(reg, out, n, fam)
  local name, kind = fam.name, fam.kind
  if fam.collect then
    local ok, v = pcall(fam.collect)
    if not ok or type(v) ~= "number" then
      warn_once(reg, format("gauge '%s': its collect function %s; the gauge is left out", name,
                            ok and "returned " .. type(v) .. ", not a number" or "raised: " .. tostring(v)))
      return n
    end
    n = header(out, n, name, kind, fam.help)
    out[n + 1] = name .. " " .. fmt_number(v) .. "\n"
    return n + 1
  end
  n = header(out, n, name, kind, fam.help)
  local list = fam.list
  if kind == "histogram" then
    local le, nb = fam.le, fam.nb
    for i = 1, #list do
      local ch = list[i]
      local lstr = ch.lstr
      local open = lstr == "" and "{" or sub(lstr, 1, -2) .. ","
      n = write_histogram(out, n, name, open, lstr, le, ch.c, nb, ch.s)
    end
  else
    for i = 1, #list do
      local ch = list[i]
      out[n + 1] = name
      out[n + 2] = ch.lstr
      out[n + 3] = " "
      out[n + 4] = fmt_number(ch.v)
      out[n + 5] = "\n"
      n = n + 5
    end
  end
  return n
end

-- A collected family, checked; problems are warned about once and the offending part left out.
-- Returns the family as {name, kind, help, series = {{lstr=, key=, value= | counts=, sum=}}} or nil.
local function check_collected(reg, f, merged)
  if type(f) ~= "table" then
    warn_once(reg, "a collector returned a " .. type(f) .. " where a family table belongs; left out")
    return nil
  end
  local name, kind, help = f.name, f.type, f.help
  if not valid_metric_name(name) then
    warn_once(reg, format("a collector returned a family with a bad name (%s); left out", tostring(name)))
    return nil
  end
  if not TYPES[kind] then
    warn_once(reg, format("collected family '%s' has type %s (counter, gauge or histogram); left out", name, tostring(kind)))
    return nil
  end
  if kind == "counter" and sub(name, -6) ~= "_total" then
    warn_once(reg, format("collected counter '%s' does not end in _total; left out", name))
    return nil
  end
  if help ~= nil and type(help) ~= "string" then help = tostring(help) end
  if reg.families[name] then
    warn_once(reg, format("a collector repeats the family '%s' the script registered; the collector's is dropped", name))
    return nil
  end
  local fam = merged[name]
  if fam then
    if fam.kind ~= kind then
      warn_once(reg, format("collectors give family '%s' as a %s and as a %s; the second is dropped", name, fam.kind, kind))
      return nil
    end
  else
    for _, pn in ipairs(produced_names(name, kind)) do
      local other = reg.produced[pn] or merged.produced[pn]
      if other and other ~= name then
        warn_once(reg, format("collected family '%s' would write the series name %s, which '%s' writes; dropped", name, pn, other))
        return nil
      end
    end
    fam = { name = name, kind = kind, help = help or "", series = {}, keys = {} }
    merged[name] = fam
    merged.list[#merged.list + 1] = fam
    for _, pn in ipairs(produced_names(name, kind)) do merged.produced[pn] = name end
  end
  local samples = f.samples
  if samples ~= nil and type(samples) ~= "table" then
    warn_once(reg, format("collected family '%s': samples must be a list; left out", name))
    return nil
  end
  for _, s in ipairs(samples or {}) do
    local bad
    local lbl = type(s) == "table" and s.labels or nil
    if type(s) ~= "table" then bad = "a sample is not a table" end
    local names = {}
    if not bad and lbl ~= nil then
      if type(lbl) ~= "table" then
        bad = "labels must be a table"
      else
        for k, v in pairs(lbl) do
          if not valid_label_name(k) or (kind == "histogram" and k == "le") or k == "quantile" then
            bad = "bad label name " .. tostring(k)
            break
          end
          local tv = type(v)
          if tv ~= "string" and (tv ~= "number" or v ~= v) then
            bad = "label " .. k .. " has a " .. tv .. " value"
            break
          end
          names[#names + 1] = k
        end
      end
    end
    local value, counts, sum, nb, bounds
    if not bad then
      if kind == "histogram" then
        bounds, counts, sum = s.buckets, s.counts, s.sum
        if type(bounds) ~= "table" or type(counts) ~= "table" or type(sum) ~= "number" then
          bad = "a histogram sample needs buckets, counts and sum"
        else
          nb = #bounds
          if #counts ~= nb + 1 then bad = format("%d bucket bounds need %d counts, got %d", nb, nb + 1, #counts) end
          for i = 1, nb do
            local b = bounds[i]
            if bad then break end
            if type(b) ~= "number" or b ~= b or b == huge or (i > 1 and not (b > bounds[i - 1])) then
              bad = "bucket bounds must be finite and increasing"
            end
          end
          for i = 1, nb + 1 do
            if bad then break end
            if type(counts[i]) ~= "number" or not (counts[i] >= 0) then bad = "counts must be numbers >= 0" end
          end
        end
      else
        value = s.value
        if type(value) ~= "number" then bad = "value must be a number, got " .. type(value) end
      end
    end
    if bad then
      warn_once(reg, format("collected family '%s': %s; the sample is left out", name, bad))
    else
      sort(names)
      local parts = {}
      for i, k in ipairs(names) do parts[i] = k .. '="' .. esc_label(label_string(lbl[k])) .. '"' end
      local key = concat(parts, ",")
      if fam.keys[key] then
        warn_once(reg, format("collected family '%s' repeats the series {%s}; the repeat is dropped", name, key))
      else
        fam.keys[key] = true
        fam.series[#fam.series + 1] = { key = key, value = value, counts = counts, sum = sum, bounds = bounds }
      end
    end
  end
  return fam
end

local function write_collected(out, n, fam)
  local name = fam.name
  n = header(out, n, name, fam.kind, fam.help)
  for _, s in ipairs(fam.series) do
    local lstr = s.key == "" and "" or "{" .. s.key .. "}"
    if fam.kind == "histogram" then
      local le = {}
      for i, b in ipairs(s.bounds) do le[i] = 'le="' .. fmt_number(b) .. '"}' end
      le[#s.bounds + 1] = 'le="+Inf"}'
      n = write_histogram(out, n, name, s.key == "" and "{" or "{" .. s.key .. ",", lstr, le, s.counts, #s.bounds, s.sum)
    else
      out[n + 1] = name .. lstr .. " " .. fmt_number(s.value) .. "\n"
      n = n + 1
    end
  end
  return n
end

local function expose(reg)
  local merged = { list = {}, produced = {} }
  for _, c in ipairs(reg.collectors) do
    local ok, fams = pcall(c.fn)
    if not ok then
      warn_once(reg, "a collector raised: " .. tostring(fams) .. " (its families are left out)")
    elseif type(fams) ~= "table" then
      if fams ~= nil then warn_once(reg, "a collector returned a " .. type(fams) .. ", not a list of families") end
    else
      for _, f in ipairs(fams) do check_collected(reg, f, merged) end
    end
  end
  local items = {}
  for name, fam in pairs(reg.families) do items[#items + 1] = { name, fam, false } end
  for _, fam in ipairs(merged.list) do items[#items + 1] = { fam.name, fam, true } end
  sort(items, function(a, b) return a[1] < b[1] end)
  local out, n = {}, 0
  for _, it in ipairs(items) do
    if it[3] then n = write_collected(out, n, it[2]) else n = write_family(reg, out, n, it[2]) end
  end
  return concat(out, "", 1, n)
end

-- ---- registries ----------------------------------------------------------------------------

-- The function that takes entry out of list again (what register_collector and
-- add_readiness_check return).
local function remover(list, entry)
  return function()
    for i = #list, 1, -1 do
      if list[i] == entry then table.remove(list, i) end
    end
  end
end

local function new_registry(is_default)
  local reg = { families = {}, produced = {}, collectors = {}, checks = {}, warned = {} }
  local m = { DEFAULT_BUCKETS = DEFAULT_BUCKETS, CONTENT_TYPE = CONTENT_TYPE }
  function m.counter(opts) return register(reg, "counter", opts) end
  function m.gauge(opts) return register(reg, "gauge", opts) end
  function m.histogram(opts) return register(reg, "histogram", opts) end
  function m.expose() return expose(reg) end
  function m.register_collector(fn)
    if type(fn) ~= "function" then argerr("klua.metrics.register_collector", 1, "expected a function, got %s", type(fn)) end
    local entry = { fn = fn }
    local list = reg.collectors
    list[#list + 1] = entry
    return remover(list, entry)
  end
  function m.add_readiness_check(name, fn)
    local F = "klua.metrics.add_readiness_check"
    if type(name) ~= "string" or name == "" then argerr(F, 1, "expected a non-empty name, got %s", type(name)) end
    if type(fn) ~= "function" then argerr(F, 2, "expected a function, got %s", type(fn)) end
    local entry = { name = name, fn = fn }
    local list = reg.checks
    list[#list + 1] = entry
    return remover(list, entry)
  end
  P.install_serve(m, reg, is_default, warn_once, argerr)
  return m, reg
end

-- ---- the default registry: process_ metrics and klua_build_info -----------------------------

local M, default_reg = new_registry(true)

-- The process metrics of the standard client libraries (client_golang's names), read at scrape time.
local function process_collector()
  local s = P.process_stats()
  local fams = {}
  local function g(name, help, v, kind)
    if v ~= nil then fams[#fams + 1] = { name = name, type = kind or "gauge", help = help, samples = { { value = v } } } end
  end
  g("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", s.cpu_seconds, "counter")
  g("process_open_fds", "Number of open file descriptors.", s.open_fds)
  g("process_max_fds", "Maximum number of open file descriptors.", s.max_fds)
  g("process_virtual_memory_bytes", "Virtual memory size in bytes.", s.virtual_memory_bytes)
  g("process_resident_memory_bytes", "Resident memory size in bytes.", s.resident_memory_bytes)
  g("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", s.start_time_seconds)
  fams[#fams + 1] = { name = "klua_build_info", type = "gauge", help = "klua's version; the value is always 1.",
                      samples = { { labels = { version = klua.version }, value = 1 } } }
  return fams
end
M.register_collector(process_collector)

function M.registry()
  return (new_registry())
end

-- For klua's own modules (the worker's metrics): families under the reserved klua_ prefix in the
-- default registry. debug.getregistry()["klua.private"].metrics.
local private = {
  register = function(kind, opts) return register(default_reg, kind, opts, true) end,
  fmt_number = fmt_number,
}

return M, private
