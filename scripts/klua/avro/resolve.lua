-- klua.avro.resolve: Avro schema resolution (spec 1.11, "Schema Resolution"): data written with one
-- schema (the writer's) read into the shape of another (the reader's).
--
--   local r, err = klua.avro.resolver(writer, reader)   -- parsed schemas (klua.avro.parse), or text/tables
--   local v, err = r:decode(bytes [, offset])           -- a value in the reader's shape
--
-- resolver() walks the two node trees once (avro/schema.lua describes them) and generates one Lua
-- chunk for the pair, compiled with load(): one function per (writer record, reader record) pair
-- (recursive types call themselves), everything else inline. The chunk reads the bytes through a
-- `const uint8_t*` with unrolled varint helpers, so the decoder runs at the speed of s:decode; resolvers are cached per (writer node, reader node), so calling resolver() again
-- with the same parsed schemas costs a table lookup.
--
-- The rules (the spec's, with klua's choices where the spec leaves room):
-- * records match when their unqualified names are equal or the writer's fullname (or unqualified
--   name) is one of the reader's aliases; enums and fixed likewise (fixed also needs equal sizes).
--   Fields match by name or by a reader field's alias; writer-only fields are skipped (arrays and
--   maps written with byte sizes are skipped whole); reader-only fields take their default, and
--   one without a default makes the record pair incompatible.
-- * promotions: int -> long, float, double; long -> float, double; float -> double; string <-> bytes.
--   A promotion to float rounds to single precision, as Java's (float) does.
-- * enums: a writer symbol the reader lacks reads as the reader's default symbol; with no default,
--   decoding that symbol fails (the schemas still resolve).
-- * a writer union resolves each branch; a branch with no counterpart fails only when data uses it.
--   A reader union takes the first branch that matches the writer's type exactly (named types by
--   name), else the first it can be promoted to.
-- * logical types follow the reader: a reader decimal gives decimal strings at the reader's scale
--   (a writer decimal with another scale, or a larger precision, does not resolve); a reader duration
--   gives {months, days, milliseconds}.
-- * what the reader cannot take but data need not contain (a writer union's branch, array items,
--   map values, an enum symbol without a reader default) fails only when data reaches it, as in
--   Apache Avro's Java library; r.unreadable lists those messages.
-- A pair where no data can be read gives KLUA_SCHEMA at resolver() naming the path ("$.lines[].qty:
-- the writer's string cannot be read as int"); undecodable bytes KLUA_DESERIALIZATION with err.path.
-- Recursive records nest at most 500 deep (hostile input fails instead of exhausting the stack).
local ffi = require("ffi")
local bit = require("bit")
local new_tab = require("table.new")

local type, tostring, tonumber, pairs, ipairs, setmetatable, getmetatable, error, pcall =
  type, tostring, tonumber, pairs, ipairs, setmetatable, getmetatable, error, pcall
local format, concat = string.format, table.concat

local M = {}

-- klua.errors.new keeps its known fields only: the path is set on the error afterwards.
local function new_error(name, message, path)
  local e = klua.errors.new{ name = name, message = message }
  if path then e.path = path end
  return e
end

-- ---- runtime helpers, upvalues of every generated chunk ---------------------------------------

local u8p = ffi.typeof("const uint8_t*")
local int64_t, uint64_t = ffi.typeof("int64_t"), ffi.typeof("uint64_t")
local fbox = ffi.new("float[1]")
local TWO53 = 2 ^ 53

-- A decoding failure: raised inside the generated code, caught by r:decode's pcall.
local Fail = {}
Fail.__index = Fail
local function fail(msg) error(setmetatable({ msg = msg }, Fail), 0) end
local DEPTH = { n = 0 } -- how deep the decoder is in recursive records (reset at each decode)
local function fail_schema(msg) error(setmetatable({ msg = msg, schema = true }, Fail), 0) end

-- Longs beyond the 7 bytes a double holds exactly: 64-bit arithmetic, int64 cdata beyond 2^53.
local function rlong_big(p, pos, n)
  local u = uint64_t(0)
  local shift = 0
  for _ = 1, 10 do
    if pos >= n then fail("truncated (a long runs past the end)") end
    local b = p[pos]
    pos = pos + 1
    u = bit.bor(u, bit.lshift(uint64_t(bit.band(b, 127)), shift))
    if b < 128 then
      local v = int64_t(bit.bxor(bit.rshift(u, 1), -bit.band(u, 1ULL)))
      if v >= -TWO53 and v <= TWO53 then return tonumber(v), pos end
      return v, pos
    end
    shift = shift + 7
  end
  fail("bad varint (longer than 10 bytes)")
end

local function rlong_slow(p, pos, n)
  local u, mul = 0, 1
  local start = pos
  for _ = 1, 7 do -- 49 bits: exact in a double
    if pos >= n then fail("truncated (a long runs past the end)") end
    local b = p[pos]
    pos = pos + 1
    if b < 128 then
      u = u + b * mul
      if u % 2 == 0 then return u / 2, pos end
      return -(u + 1) / 2, pos
    end
    u = u + (b - 128) * mul
    mul = mul * 128
  end
  return rlong_big(p, start, n)
end

local function unzigzag(z)
  if z % 2 == 0 then return z / 2 end
  return -(z + 1) / 2
end

-- Unrolled up to 7 bytes when 10 remain: no loop, so a record's decoder stays one trace.
local function rlong(p, pos, n)
  if pos + 10 <= n then
    local b = p[pos]
    if b < 128 then return unzigzag(b), pos + 1 end
    local z = b - 128
    b = p[pos + 1]
    if b < 128 then return unzigzag(z + b * 128), pos + 2 end
    z = z + (b - 128) * 128
    b = p[pos + 2]
    if b < 128 then return unzigzag(z + b * 16384), pos + 3 end
    z = z + (b - 128) * 16384
    b = p[pos + 3]
    if b < 128 then return unzigzag(z + b * 2097152), pos + 4 end
    z = z + (b - 128) * 2097152
    b = p[pos + 4]
    if b < 128 then return unzigzag(z + b * 268435456), pos + 5 end
    z = z + (b - 128) * 268435456
    b = p[pos + 5]
    if b < 128 then return unzigzag(z + b * 34359738368), pos + 6 end
    z = z + (b - 128) * 34359738368
    b = p[pos + 6]
    if b < 128 then return unzigzag(z + b * 4398046511104), pos + 7 end
    return rlong_big(p, pos, n)
  end
  return rlong_slow(p, pos, n)
end

local function rint_slow(p, pos, n)
  local u, mul = 0, 1
  for _ = 1, 5 do
    if pos >= n then fail("truncated (an int runs past the end)") end
    local b = p[pos]
    pos = pos + 1
    if b < 128 then
      u = u + b * mul
      if u > 4294967295 then fail("bad int (beyond 32 bits)") end
      return unzigzag(u), pos
    end
    u = u + (b - 128) * mul
    mul = mul * 128
  end
  fail("bad varint (an int longer than 5 bytes)")
end

local function rint(p, pos, n)
  if pos + 5 <= n then
    local b = p[pos]
    if b < 128 then return unzigzag(b), pos + 1 end
    local z = b - 128
    b = p[pos + 1]
    if b < 128 then return unzigzag(z + b * 128), pos + 2 end
    z = z + (b - 128) * 128
    b = p[pos + 2]
    if b < 128 then return unzigzag(z + b * 16384), pos + 3 end
    z = z + (b - 128) * 16384
    b = p[pos + 3]
    if b < 128 then return unzigzag(z + b * 2097152), pos + 4 end
    z = z + (b - 128) * 2097152
    b = p[pos + 4]
    if b < 16 then return unzigzag(z + b * 268435456), pos + 5 end
  end
  return rint_slow(p, pos, n)
end

-- A length (string, bytes, a block's byte size): a long that must fit what is left.
local function rlen(p, pos, n)
  local len
  len, pos = rlong(p, pos, n)
  if len < 0 then fail("bad length " .. tostring(len)) end
  if len > n - pos then fail("truncated (a length of " .. tostring(len) .. " runs past the end)") end
  return len, pos
end

local function rstr(p, pos, n)
  local len
  len, pos = rlen(p, pos, n)
  return ffi.string(p + pos, len), pos + len
end

local function rbool(p, pos, n)
  if pos >= n then fail("truncated (a boolean past the end)") end
  local b = p[pos]
  if b == 1 then return true, pos + 1 end
  if b == 0 then return false, pos + 1 end
  fail("bad boolean byte " .. b)
end

local float_p, double_p = ffi.typeof("const float*"), ffi.typeof("const double*")
local u32p_nan = ffi.typeof("const uint32_t*")
local function rfloat(p, pos, n)
  if pos + 4 > n then fail("truncated (a float runs past the end)") end
  -- A NaN's payload bits must not reach a Lua value (see runtime.lua's get_float).
  local bits = ffi.cast(u32p_nan, p + pos)[0]
  if bit.band(bits, 0x7f800000) == 0x7f800000 and bit.band(bits, 0x7fffff) ~= 0 then return 0 / 0, pos + 4 end
  return ffi.cast(float_p, p + pos)[0], pos + 4
end
local function rdouble(p, pos, n)
  if pos + 8 > n then fail("truncated (a double runs past the end)") end
  local hi = ffi.cast(u32p_nan, p + pos + 4)[0]
  if bit.band(hi, 0x7ff00000) == 0x7ff00000 and (bit.band(hi, 0xfffff) ~= 0 or ffi.cast(u32p_nan, p + pos)[0] ~= 0) then
    return 0 / 0, pos + 8
  end
  return ffi.cast(double_p, p + pos)[0], pos + 8
end
local function rfixed(p, pos, n, size)
  if pos + size > n then fail("truncated (a fixed of " .. size .. " bytes runs past the end)") end
  return ffi.string(p + pos, size), pos + size
end
local function skip(p, pos, n, size)
  if pos + size > n then fail("truncated (" .. size .. " bytes run past the end)") end
  return pos + size
end

-- A block count: negative counts are followed by the block's byte size. `minsize` is the smallest
-- encoding of one item: a count beyond what is left cannot be right (it would also make a
-- malicious count allocate or spin); items of size 0 (null, empty records) are capped at 2^24.
local function rcount(p, pos, n, minsize)
  local c
  c, pos = rlong(p, pos, n)
  if c < 0 then
    c = -c
    local _
    _, pos = rlong(p, pos, n)
  end
  if minsize > 0 then
    if c * minsize > n - pos then fail("truncated (a block of " .. tostring(c) .. " items runs past the end)") end
  elseif c > 16777216 then
    fail("bad block count " .. tostring(c))
  end
  return c, pos
end

-- For skipping: the count and, when written, the byte size of the block (else -1).
local function rcount_sized(p, pos, n)
  local c, size
  c, pos = rlong(p, pos, n)
  if c < 0 then
    c = -c
    size, pos = rlen(p, pos, n)
    return c, pos, size
  end
  if c > n - pos + 16777216 then fail("bad block count " .. tostring(c)) end
  return c, pos, -1
end

local function tofloat(v)
  fbox[0] = v
  return fbox[0]
end
local function todouble(v)
  if type(v) == "number" then return v end
  return tonumber(v)
end

local function deepcopy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = deepcopy(x) end
  return setmetatable(t, getmetatable(v))
end

local u32p = ffi.typeof("const uint8_t*")
local function duration(s)
  local p = ffi.cast(u32p, s)
  local function le(i) return p[i] + p[i + 1] * 256 + p[i + 2] * 65536 + p[i + 3] * 16777216 end
  return { months = le(0), days = le(4), milliseconds = le(8) }
end

local decimal_to_string -- avro/runtime.lua's, looked up on first use
local MAPPED_DEFAULT -- avro/json.lua's mapped_default, likewise

-- ---- node helpers ----------------------------------------------------------------------------

local function short(name)
  return name and (name:match("([^.]+)$")) or name
end

local function names_match(w, r)
  if w.name == r.name or short(w.name) == short(r.name) then return true end
  for _, a in ipairs(r.aliases or {}) do
    if a == w.name or short(a) == short(w.name) then return true end
  end
  return false
end

local function describe(node)
  local t = node.type
  if t == "record" or t == "enum" or t == "fixed" then return t .. " " .. node.name end
  if t == "union" then
    local parts = {}
    for i, b in ipairs(node.branches) do parts[i] = describe(b) end
    return "union [" .. concat(parts, ", ") .. "]"
  end
  if t == "array" then return "array of " .. describe(node.items) end
  if t == "map" then return "map of " .. describe(node.values) end
  if node.logical then return t .. " (" .. node.logical .. ")" end
  return t
end

-- The smallest encoding of a value of writer type `node` (for block-count sanity checks).
local function min_size(node, seen)
  local t = node.type
  if t == "null" then return 0 end
  if t == "float" then return 4 end
  if t == "double" then return 8 end
  if t == "fixed" then return node.size end
  if t == "record" then
    seen = seen or {}
    if seen[node] then return 0 end
    seen[node] = true
    local s = 0
    for _, f in ipairs(node.fields) do s = s + min_size(f.type, seen) end
    seen[node] = nil
    return s
  end
  return 1 -- varints, lengths, counts, union indexes
end

local PROMOTE = {
  int = { long = true, float = true, double = true },
  long = { float = true, double = true },
  float = { double = true },
  string = { bytes = true },
  bytes = { string = true },
}

-- Does writer type w match reader branch r exactly (same type; named types by name)?
local function same_kind(w, r)
  if w.type ~= r.type then return false end
  if w.type == "record" or w.type == "enum" or w.type == "fixed" then return names_match(w, r) end
  return true
end

-- The reader union branch for writer type w: the first exact match, else the first promotion.
local function best_branch(w, runion)
  for i, b in ipairs(runion.branches) do
    if same_kind(w, b) then return i, b end
  end
  local p = PROMOTE[w.type]
  if p then
    for i, b in ipairs(runion.branches) do
      if p[b.type] then return i, b end
    end
  end
  return nil
end

-- ---- the generator ----------------------------------------------------------------------------

local Gen = {}
Gen.__index = Gen

local function new_gen(trace)
  return setmetatable({
    trace = trace, -- generate the path-tracking variant (run only to name the path of an error)
    K = {}, nk = 0, kindex = {}, -- constants: K[i]
    funcs = {}, nfun = 0, -- generated function bodies, F[i]
    pairs_memo = {}, -- [writer record][reader record] = function index
    skip_memo = {}, -- [writer record] = skip function index
    nvar = 0,
    unreadable = {}, unreadable_seen = {},
    in_progress = {}, recursive = {}, -- record pairs being generated; those that call themselves
  }, Gen)
end

function Gen:const(v)
  local keyable = v ~= nil and v == v -- NaN cannot be a table key
  if keyable and self.kindex[v] then return "K[" .. self.kindex[v] .. "]" end
  self.nk = self.nk + 1
  self.K[self.nk] = v
  if keyable then self.kindex[v] = self.nk end
  return "K[" .. self.nk .. "]"
end

-- Code failing with KLUA_SCHEMA when data reaches a part the reader cannot take (a writer union
-- branch, array items, map values): such pairs resolve, as in Java, and r.unreadable lists them.
function Gen:deferred(why)
  if not self.unreadable_seen[why] then
    self.unreadable_seen[why] = true
    self.unreadable[#self.unreadable + 1] = why
  end
  return "fail_schema(" .. self:const(why) .. ")\n"
end

function Gen:var()
  self.nvar = self.nvar + 1
  return "v" .. self.nvar
end

-- Path tracking (trace variant only): a stack of path segments in TP, its depth in TP.n.
function Gen:push(seg_code)
  if not self.trace then return "" end
  return "TP.n = TP.n + 1; TP[TP.n] = " .. seg_code .. "\n"
end
function Gen:pop()
  if not self.trace then return "" end
  return "TP.n = TP.n - 1\n"
end

-- A value's conversion when the reader has a logical type with a Lua shape of its own.
function Gen:convert(r, expr)
  if r.logical == "decimal" and (r.type == "bytes" or r.type == "fixed") then
    return "DEC(" .. expr .. ", " .. (r.scale or 0) .. ")"
  elseif r.logical == "duration" and r.type == "fixed" then
    return "DUR(" .. expr .. ")"
  end
  return nil
end

-- Code that reads a value of writer type `w` and assigns it, in the shape of reader type `r`, to
-- `tgt` (an lvalue). `container`: inside an array or a map, where null is klua.json.null instead of
-- an absent field. Returns code, or nil and why the types do not resolve.
function Gen:read(w, r, tgt, container, path)
  local wt, rt = w.type, r.type

  if wt == "union" then
    local code = { "do\nlocal bi; bi, pos = rlong(p, pos, n)\n" }
    local ok_any = false
    local why_first
    for i, wb in ipairs(w.branches) do
      code[#code + 1] = (i == 1 and "if" or "elseif") .. " bi == " .. (i - 1) .. " then\n"
      local c, why = self:read(wb, r, tgt, container, path)
      if c then
        ok_any = true
        code[#code + 1] = c
      else
        why_first = why_first or why
        code[#code + 1] = self:deferred(why)
      end
    end
    if not ok_any then
      if #w.branches == 0 then return nil, path .. ": the writer's union is empty" end
      return nil, why_first
    end
    code[#code + 1] = "else fail(\"bad union index \" .. tostring(bi) .. \" (the writer's union has "
      .. #w.branches .. " branches)\") end\nend\n"
    return concat(code)
  end

  if rt == "union" then
    local i, b = best_branch(w, r)
    if not i then
      return nil, format("%s: the writer's %s matches no branch of the reader's %s", path, describe(w), describe(r))
    end
    return self:read(w, b, tgt, container, path)
  end

  if wt == "null" then
    if rt ~= "null" then return nil, format("%s: the writer's null cannot be read as %s", path, describe(r)) end
    if container then return tgt .. " = NULL\n" end
    return ""
  end

  if wt == "record" then
    if rt ~= "record" then return nil, format("%s: the writer's %s cannot be read as %s", path, describe(w), describe(r)) end
    if not names_match(w, r) then
      return nil, format("%s: the writer's record %s and the reader's record %s have different names", path, w.name, r.name)
    end
    local idx, why = self:record_pair(w, r, path)
    if not idx then return nil, why end
    return tgt .. ", pos = F[" .. idx .. "](p, pos, n)\n"
  end

  if wt == "enum" then
    if rt ~= "enum" then return nil, format("%s: the writer's %s cannot be read as %s", path, describe(w), describe(r)) end
    if not names_match(w, r) then
      return nil, format("%s: the writer's enum %s and the reader's enum %s have different names", path, w.name, r.name)
    end
    -- writer index -> reader symbol (or false: unknown without default)
    local map, missing = {}, {}
    local rindex = {}
    for _, s in ipairs(r.symbols) do rindex[s] = true end
    for i, s in ipairs(w.symbols) do
      if rindex[s] then
        map[i - 1] = s
      elseif r.default ~= nil then
        map[i - 1] = r.default
      else
        map[i - 1] = false
        missing[#missing + 1] = s
      end
    end
    if #missing > 0 then
      self:deferred(format("%s: the writer's enum symbol%s %s not in the reader's enum %s, which has no default",
        path, #missing > 1 and "s" or "", concat(missing, ", ") .. (#missing > 1 and " are" or " is"), r.name))
    end
    local v = self:var()
    return "do\nlocal " .. v .. "; " .. v .. ", pos = rlong(p, pos, n)\n"
      .. "local s = " .. self:const(map) .. "[" .. v .. "]\n"
      .. "if not s then\n"
      .. "if s == false then fail_schema(" .. self:const(path .. ": the writer's enum symbol ") .. " .. "
      .. self:const(w.symbols) .. "[" .. v .. " + 1] .. " .. self:const(" is not in the reader's enum " .. r.name .. ", which has no default") .. ") end\n"
      .. "fail(\"bad enum index \" .. tostring(" .. v .. ") .. \" (the writer's enum has " .. #w.symbols .. " symbols)\")\n"
      .. "end\n" .. tgt .. " = s\nend\n"
  end

  if wt == "fixed" then
    if rt ~= "fixed" then return nil, format("%s: the writer's %s cannot be read as %s", path, describe(w), describe(r)) end
    if not names_match(w, r) then
      return nil, format("%s: the writer's fixed %s and the reader's fixed %s have different names", path, w.name, r.name)
    end
    if w.size ~= r.size then
      return nil, format("%s: the writer's fixed %s has %d bytes, the reader's %d", path, w.name, w.size, r.size)
    end
    local ok, why = self:decimal_compatible(w, r, path)
    if not ok then return nil, why end
    local conv = self:convert(r, "x")
    if conv then
      return "do\nlocal x; x, pos = rfixed(p, pos, n, " .. w.size .. ")\n" .. tgt .. " = " .. conv .. "\nend\n"
    end
    return tgt .. ", pos = rfixed(p, pos, n, " .. w.size .. ")\n"
  end

  if wt == "array" then
    if rt ~= "array" then return nil, format("%s: the writer's %s cannot be read as %s", path, describe(w), describe(r)) end
    local a, i, c = self:var(), self:var(), self:var()
    -- items that cannot be read fail when there is one: an empty array still reads (as Java's)
    local body, why = self:read(w.items, r.items, a .. "[" .. i .. "]", true, path .. "[]")
    if not body then body = self:deferred(why) end
    return "do\nlocal " .. a .. ", " .. i .. " = nil, 0\n"
      .. "while true do\n"
      .. "local " .. c .. "; " .. c .. ", pos = rcount(p, pos, n, " .. min_size(w.items) .. ")\n"
      .. "if " .. c .. " == 0 then break end\n"
      .. "if " .. a .. " == nil then " .. a .. " = setmetatable(new_tab(" .. c .. ", 0), ARRAY_MT) end\n"
      .. "for _ = 1, " .. c .. " do\n" .. i .. " = " .. i .. " + 1\n"
      .. self:push("'[' .. (" .. i .. " - 1) .. ']'") -- 0-based, as the encoder's paths
      .. body .. self:pop()
      .. "end\nend\n" .. tgt .. " = " .. a .. " or setmetatable({}, ARRAY_MT)\nend\n"
  end

  if wt == "map" then
    if rt ~= "map" then return nil, format("%s: the writer's %s cannot be read as %s", path, describe(w), describe(r)) end
    local m, k, c = self:var(), self:var(), self:var()
    local body, why = self:read(w.values, r.values, m .. "[" .. k .. "]", true, path .. "{}")
    if not body then body = self:deferred(why) end
    return "do\nlocal " .. m .. " = {}\n"
      .. "while true do\n"
      .. "local " .. c .. "; " .. c .. ", pos = rcount(p, pos, n, " .. (1 + min_size(w.values)) .. ")\n"
      .. "if " .. c .. " == 0 then break end\n"
      .. "for _ = 1, " .. c .. " do\n"
      .. "local " .. k .. "; " .. k .. ", pos = rstr(p, pos, n)\n"
      .. self:push("'[\"' .. " .. k .. " .. '\"]'")
      .. body .. self:pop()
      .. "end\nend\n" .. tgt .. " = " .. m .. "\nend\n"
  end

  -- primitives
  if wt == rt then
    if wt == "bytes" then
      local ok, why = self:decimal_compatible(w, r, path)
      if not ok then return nil, why end
    end
    local reader = ({ boolean = "rbool", int = "rint", long = "rlong", float = "rfloat", double = "rdouble",
      bytes = "rstr", string = "rstr" })[wt]
    local conv = self:convert(r, "x")
    if conv then
      return "do\nlocal x; x, pos = " .. reader .. "(p, pos, n)\n" .. tgt .. " = " .. conv .. "\nend\n"
    end
    return tgt .. ", pos = " .. reader .. "(p, pos, n)\n"
  end
  if PROMOTE[wt] and PROMOTE[wt][rt] then
    local reader = ({ int = "rint", long = "rlong", float = "rfloat", string = "rstr", bytes = "rstr" })[wt]
    local expr = "x"
    if rt == "float" then
      expr = "tofloat(x)"
    elseif rt == "double" and wt == "long" then
      expr = "todouble(x)"
    elseif rt == "bytes" then
      expr = self:convert(r, "x") or "x"
    end
    return "do\nlocal x; x, pos = " .. reader .. "(p, pos, n)\n" .. tgt .. " = " .. expr .. "\nend\n"
  end
  return nil, format("%s: the writer's %s cannot be read as %s", path, describe(w), describe(r))
end

function Gen:decimal_compatible(w, r, path)
  if w.logical == "decimal" and r.logical == "decimal" then
    if (w.scale or 0) ~= (r.scale or 0) then
      return nil, format("%s: the writer's decimal has scale %d, the reader's %d", path, w.scale or 0, r.scale or 0)
    end
    if w.precision and r.precision and w.precision > r.precision then
      return nil, format("%s: the writer's decimal has precision %d, more than the reader's %d", path,
        w.precision, r.precision)
    end
  end
  return true
end

-- The function F[i] reading a writer record as a reader record; returns i, or nil and why.
function Gen:record_pair(w, r, path)
  local memo = self.pairs_memo[w]
  if not memo then
    memo = {}
    self.pairs_memo[w] = memo
  end
  if memo[r] then
    if self.in_progress[memo[r]] then self.recursive[memo[r]] = true end
    return memo[r]
  end
  self.nfun = self.nfun + 1
  local idx = self.nfun
  memo[r] = idx -- before the body: recursive references call it
  self.in_progress[idx] = true

  local rfields_by_name = {}
  for _, f in ipairs(r.fields) do rfields_by_name[f.name] = f end
  local used = {}
  local function reader_field(wf)
    local f = rfields_by_name[wf.name]
    if f and not used[f] then return f end
    for _, rf in ipairs(r.fields) do
      if not used[rf] then
        for _, a in ipairs(rf.aliases or {}) do
          if a == wf.name then return rf end
        end
      end
    end
  end

  local code = { "F[" .. idx .. "] = function(p, pos, n)\nlocal r = new_tab(0, " .. #r.fields .. ")\n" }
  local function failed(why)
    self.funcs[idx] = "F[" .. idx .. "] = function() fail_schema(" .. self:const(why) .. ") end\n"
    return nil, why
  end
  for _, wf in ipairs(w.fields) do
    local rf = reader_field(wf)
    if rf then
      used[rf] = true
      local c, why = self:read(wf.type, rf.type, "r[" .. self:const(rf.name) .. "]", false, path .. "." .. rf.name)
      if not c then return failed(why) end
      code[#code + 1] = self:push(self:const("." .. rf.name)) .. c .. self:pop()
    else
      code[#code + 1] = self:push(self:const("." .. wf.name)) .. self:skip(wf.type) .. self:pop()
    end
  end
  for _, rf in ipairs(r.fields) do
    if not used[rf] then
      if not rf.has_default then
        return failed(format("%s.%s: the reader's field has no default and the writer's record %s lacks it",
          path, rf.name, w.name))
      end
      local d = MAPPED_DEFAULT(rf.type, rf.default)
      if type(d) == "table" then
        code[#code + 1] = "r[" .. self:const(rf.name) .. "] = deepcopy(" .. self:const(d) .. ")\n"
      elseif d ~= nil and d ~= NULL then -- a null default: the field stays absent
        code[#code + 1] = "r[" .. self:const(rf.name) .. "] = " .. self:const(d) .. "\n"
      end
    end
  end
  self.in_progress[idx] = nil
  if self.recursive[idx] then
    -- hostile input could nest a recursive type until the Lua stack overflows: 500 levels at most
    code[1] = code[1] .. "local d = DEPTH.n + 1\nif d > 500 then fail(\"records nested deeper than 500\") end\nDEPTH.n = d\n"
    code[#code + 1] = "DEPTH.n = d - 1\n"
  end
  code[#code + 1] = "return r, pos\nend\n"
  self.funcs[idx] = concat(code)
  return idx
end

-- Code that skips a value of writer type w.
function Gen:skip(w)
  local t = w.type
  if t == "null" then return "" end
  if t == "boolean" then return "pos = skip(p, pos, n, 1)\n" end
  if t == "int" or t == "long" or t == "enum" then return "do local _; _, pos = rlong(p, pos, n) end\n" end
  if t == "float" then return "pos = skip(p, pos, n, 4)\n" end
  if t == "double" then return "pos = skip(p, pos, n, 8)\n" end
  if t == "bytes" or t == "string" then return "do local len; len, pos = rlen(p, pos, n); pos = pos + len end\n" end
  if t == "fixed" then return "pos = skip(p, pos, n, " .. w.size .. ")\n" end
  if t == "union" then
    local code = { "do\nlocal bi; bi, pos = rlong(p, pos, n)\n" }
    for i, b in ipairs(w.branches) do
      code[#code + 1] = (i == 1 and "if" or "elseif") .. " bi == " .. (i - 1) .. " then\n" .. self:skip(b)
    end
    code[#code + 1] = (#w.branches > 0 and "else " or "") .. "fail(\"bad union index \" .. tostring(bi))"
      .. (#w.branches > 0 and " end" or "") .. "\nend\n"
    return concat(code)
  end
  if t == "array" or t == "map" then
    local inner = t == "array" and self:skip(w.items) or ("do local len; len, pos = rlen(p, pos, n); pos = pos + len end\n"
      .. self:skip(w.values))
    return "while true do\nlocal c, size; c, pos, size = rcount_sized(p, pos, n)\n"
      .. "if c == 0 then break end\n"
      .. "if size >= 0 then pos = pos + size else\n"
      .. "for _ = 1, c do\n" .. inner .. "end\nend\nend\n"
  end
  if t == "record" then
    local idx = self.skip_memo[w]
    if not idx then
      self.nfun = self.nfun + 1
      idx = self.nfun
      self.skip_memo[w] = idx
      local code = { "F[" .. idx .. "] = function(p, pos, n)\n"
        .. "local d = DEPTH.n + 1\nif d > 500 then fail(\"records nested deeper than 500\") end\nDEPTH.n = d\n" }
      for _, f in ipairs(w.fields) do code[#code + 1] = self:skip(f.type) end
      code[#code + 1] = "DEPTH.n = d - 1\nreturn pos\nend\n"
      self.funcs[idx] = concat(code)
    end
    return "pos = F[" .. idx .. "](p, pos, n)\n"
  end
  error("klua.avro.resolve: unknown writer type " .. tostring(t))
end

local NULL -- klua.json.null, looked up on first use (klua is the runtime's global)
local ARRAY_MT

-- Generates and loads the chunk for (writer node, reader node); returns the top-level function
-- (p, pos, n) -> value, pos, or nil and why they do not resolve.
local function compile(wnode, rnode, trace)
  if not NULL then
    NULL = klua.json.null
    ARRAY_MT = getmetatable(klua.json.array{}) -- decoded arrays carry the mark, as s:decode's do
    decimal_to_string = require("klua.avro.runtime").decimal_string
    MAPPED_DEFAULT = require("klua.avro.json").mapped_default
  end
  local g = new_gen(trace)
  local top, why = g:read(wnode, rnode, "v", false, "$")
  if not top then return nil, why end
  local src = { "local K, F, NULL, ARRAY_MT, setmetatable, DEPTH, TP, fail, fail_schema, rlong, rint, rlen, rstr, rbool, rfloat, rdouble, "
    .. "rfixed, skip, rcount, rcount_sized, tofloat, todouble, deepcopy, new_tab, DEC, DUR, tostring = ...\n" }
  for i = 1, g.nfun do src[#src + 1] = g.funcs[i] end
  src[#src + 1] = "return function(p, pos, n)\nlocal v\n" .. top .. "return v, pos\nend\n"
  local text = concat(src)
  local chunk, err = load(text, "=klua.avro.resolver")
  if not chunk then error("klua.avro.resolve: generated code does not compile: " .. err .. "\n" .. text) end
  local TP = { n = 0 }
  local fn = chunk(g.K, {}, NULL, ARRAY_MT, setmetatable, DEPTH, TP, fail, fail_schema, rlong, rint, rlen, rstr, rbool, rfloat, rdouble,
    rfixed, skip, rcount, rcount_sized, tofloat, todouble, deepcopy, new_tab, decimal_to_string, duration,
    tostring)
  return fn, nil, TP, text, g.unreadable
end

-- ---- the resolver object ------------------------------------------------------------------------

local Resolver = {}
Resolver.__index = Resolver

local function errors() return klua.errors end

function Resolver:decode(bytes, offset)
  if getmetatable(self) ~= Resolver then errors().bad_argument("r:decode", 1, "expected a resolver (call it as r:decode)") end
  if type(bytes) ~= "string" then
    errors().bad_argument("r:decode", 2, "expected a string of bytes, got " .. type(bytes))
  end
  local n = #bytes
  offset = offset or 0
  if type(offset) ~= "number" or offset < 0 or offset > n or offset % 1 ~= 0 then
    errors().bad_argument("r:decode", 3, "offset must be a whole number from 0 to #bytes, got " .. tostring(offset))
  end
  DEPTH.n = 0
  local ok, v, pos = pcall(self.fn, ffi.cast(u8p, bytes), offset, n)
  if ok then
    if pos == n then return v end
    return nil, new_error("KLUA_DESERIALIZATION",
      format("$: %d trailing bytes after the value (at byte %d of %d)", n - pos, pos, n), "$")
  end
  return nil, self:_error(v, bytes, offset)
end

-- A failure's error: KLUA_SCHEMA for data that uses a branch or symbol the reader cannot take,
-- else KLUA_DESERIALIZATION; the path comes from running the path-tracking variant of the decoder.
function Resolver:_error(e, bytes, offset)
  if getmetatable(e) ~= Fail then
    e = { msg = tostring(e) }
  end
  local path
  if not self.tracer then
    local fn, _, tp = compile(self.wnode, self.rnode, true)
    self.tracer, self.tp = fn, tp
  end
  if self.tracer then
    self.tp.n = 0
    DEPTH.n = 0
    local ok, e2 = pcall(self.tracer, ffi.cast(u8p, bytes), offset, #bytes)
    if not ok then
      path = "$" .. concat(self.tp, "", 1, self.tp.n)
      if getmetatable(e2) == Fail then e = e2 end
    end
  end
  if e.schema then
    return new_error("KLUA_SCHEMA", e.msg, path)
  end
  return new_error("KLUA_DESERIALIZATION", (path or "$") .. ": " .. e.msg, path)
end

local cache = setmetatable({}, { __mode = "k" }) -- [writer node] = { [reader node] = resolver }

local function node_of(s, argn)
  if type(s) == "table" and type(s.node) == "table" then return s.node, s end
  if type(s) == "string" or type(s) == "table" then
    local parsed, err = require("klua.avro").parse(s)
    if not parsed then return nil, nil, err end
    return parsed.node, parsed
  end
  errors().bad_argument("klua.avro.resolver", argn, "expected a parsed schema, JSON text or a table, got " .. type(s))
end

function M.resolver(writer, reader)
  local wnode, ws, err = node_of(writer, 1)
  if not wnode then return nil, err end
  local rnode, rs
  rnode, rs, err = node_of(reader, 2)
  if not rnode then return nil, err end
  local per = cache[wnode]
  if per and per[rnode] then return per[rnode] end
  local fn, why, _, text, unreadable = compile(wnode, rnode)
  if not fn then
    return nil, new_error("KLUA_SCHEMA", "cannot resolve the writer's schema against the reader's: " .. why)
  end
  local r = setmetatable({ fn = fn, wnode = wnode, rnode = rnode, writer = ws, reader = rs, source = text,
    unreadable = unreadable }, Resolver)
  if not per then
    per = setmetatable({}, { __mode = "kv" }) -- weak values too: a resolver refers to its nodes
    cache[wnode] = per
  end
  per[rnode] = r
  return r
end

M.Resolver = Resolver
-- The readers, for avro/json.lua's decode_json (binary to Avro JSON text without Lua values).
M.rt = { rlong = rlong, rint = rint, rstr = rstr, rbool = rbool, rfloat = rfloat, rdouble = rdouble,
  rfixed = rfixed, rcount = rcount, fail = fail, Fail = Fail, min_size = min_size, u8p = u8p, DEPTH = DEPTH }
return M
