-- klua.avro.codegen: generates a specialised encoder and decoder for a parsed schema (the node tree
-- of avro/schema.lua) as Lua source, compiled with load(). Each record type gets a function of its
-- own (F[n], so recursive types call each other); everything else is inlined into its parent. The
-- primitives are avro/runtime.lua's put_*/get_* (small functions LuaJIT inlines into the traces).
--
-- Failures do not raise: a generated function returns nil (runtime.err says why) and every caller
-- returns at once. The fast variant keeps no path; when it fails, the caller runs the `track`
-- variant (generated on first need) over the same input, which keeps the field path in PT
-- (PT.n segments: ".name", an array index as a number, a map key as '["key"]'), and the error
-- names it: "$.lines[2].qty: expected int, got string ..." (array indexes 0-based).
local R = require("klua.avro.runtime")

local M = {}

local format, concat, tostring, type, pairs, ipairs = string.format, table.concat, tostring, type, pairs, ipairs

local HELPERS = {
  "put_null", "put_bool", "put_int", "put_long", "put_float", "put_double", "put_str", "put_fixed", "put_count",
  "put_zero", "put_decimal", "put_decimal_fixed", "put_duration", "fail_type", "fail", "fail_at",
  "get_int", "get_long", "get_bool", "get_float", "get_double", "get_str", "get_fixed", "get_decimal",
  "get_decimal_fixed", "get_duration", "get_count", "get_size",
}

local PT = { n = 0 }
M.PT = PT
local ARRAY_MT = getmetatable(klua.json.array {})

local function q(s) return format("%q", s) end

local Gen = {}
Gen.__index = Gen

local function new_gen(track)
  return setmetatable({ out = {}, K = {}, kmemo = {}, fn = {}, nfn = 0, queue = {}, nvar = 0, track = track,
                        ind = "" }, Gen)
end

function Gen:emit(line) self.out[#self.out + 1] = self.ind .. line end
function Gen:indent() self.ind = self.ind .. "  " end
function Gen:dedent() self.ind = self.ind:sub(3) end

function Gen:const(v)
  local k = self.kmemo[v]
  if k then return "K[" .. k .. "]" end
  k = #self.K + 1
  self.K[k] = v
  if v ~= nil then self.kmemo[v] = k end
  return "K[" .. k .. "]"
end

function Gen:var(prefix)
  self.nvar = self.nvar + 1
  return (prefix or "x") .. self.nvar
end

function Gen:func(node)
  local n = self.fn[node]
  if not n then
    self.nfn = self.nfn + 1
    n = self.nfn
    self.fn[node] = n
    self.queue[#self.queue + 1] = node
  end
  return "F[" .. n .. "]"
end

function Gen:push(seg_code)
  if self.track then self:emit("PT.n = PT.n + 1; PT[PT.n] = " .. seg_code) end
end
function Gen:pop()
  if self.track then self:emit("PT.n = PT.n - 1") end
end

-- The smallest number of bytes a value of node takes (for block counts).
local function min_size(node, seen)
  local t = node.type
  if t == "null" then return 0
  elseif t == "float" then return 4
  elseif t == "double" then return 8
  elseif t == "fixed" then return node.size
  elseif t == "record" then
    seen = seen or {}
    if seen[node] then return 0 end
    seen[node] = true
    local s = 0
    for _, f in ipairs(node.fields) do s = s + min_size(f.type, seen) end
    seen[node] = nil
    return s
  end
  return 1
end
M.min_size = min_size

-- Whether a record can contain itself (so its generated function recurses and needs a depth guard:
-- a deep enough value or input would otherwise overflow the Lua stack, and decode must not raise).
local function recursive(target)
  local seen = {}
  local function walk(node)
    local t = node.type
    if t == "record" or t == "enum" or t == "fixed" then
      if node == target and next(seen) ~= nil then return true end
      if seen[node] then return false end
      seen[node] = true
    end
    if t == "record" then
      for _, f in ipairs(node.fields) do if walk(f.type) then return true end end
    elseif t == "array" then return walk(node.items)
    elseif t == "map" then return walk(node.values)
    elseif t == "union" then
      for _, b in ipairs(node.branches) do if walk(b) then return true end end
    end
    return false
  end
  return walk(target)
end
M.recursive = recursive

M.MAX_DEPTH = 500
local DEPTH_MSG = "nesting deeper than " .. M.MAX_DEPTH .. " levels of a recursive record"

-- Encoder -----------------------------------------------------------------------------------------

local CHECK = "if not pos then return end"

function Gen:enc_prim(node, v)
  local t, lt = node.type, node.logical
  if t == "null" then
    self:emit("pos = put_null(pos, " .. v .. ") " .. CHECK)
  elseif t == "boolean" then
    self:emit("pos = put_bool(pos, " .. v .. ") " .. CHECK)
  elseif t == "int" then
    self:emit("pos = put_int(pos, " .. v .. ") " .. CHECK)
  elseif t == "long" then
    self:emit("pos = put_long(pos, " .. v .. ") " .. CHECK)
  elseif t == "float" then
    self:emit("pos = put_float(pos, " .. v .. ") " .. CHECK)
  elseif t == "double" then
    self:emit("pos = put_double(pos, " .. v .. ") " .. CHECK)
  elseif t == "bytes" and lt == "decimal" then
    self:emit(format("pos = put_decimal(pos, %s, %d, %d) %s", v, node.scale, node.precision, CHECK))
  elseif t == "string" or t == "bytes" then
    self:emit(format("pos = put_str(pos, %s, %q) %s", v, t, CHECK))
  elseif t == "fixed" then
    if lt == "decimal" then
      self:emit(format("pos = put_decimal_fixed(pos, %s, %d, %d, %d, %q) %s", v, node.scale, node.precision,
                       node.size, node.name, CHECK))
    elseif lt == "duration" then
      self:emit("pos = put_duration(pos, " .. v .. ") " .. CHECK)
    else
      self:emit(format("pos = put_fixed(pos, %s, %d, %q) %s", v, node.size, node.name, CHECK))
    end
  else
    error("klua.avro: no encoder for type " .. tostring(t))
  end
end

local function enum_desc(node)
  local syms = concat(node.symbols, ", ")
  if #syms > 60 then syms = syms:sub(1, 60) .. "..." end
  return "a symbol of enum " .. node.name .. " (" .. syms .. ")"
end

function Gen:enc(node, v)
  local t = node.type
  if t == "record" then
    self:emit("pos = " .. self:func(node) .. "(" .. v .. ", pos) " .. CHECK)
  elseif t == "enum" then
    local k = self:var("k")
    self:emit(format("local %s = %s[%s]", k, self:const(node.symbol_index), v))
    self:emit(format("if %s == nil then return fail_type(%q, %s) end", k, enum_desc(node), v))
    self:emit(format("pos = put_count(pos, %s)", k))
  elseif t == "array" then
    local n, i, x = self:var("n"), self:var("i"), self:var("x")
    self:emit(format("if type(%s) ~= \"table\" then return fail_type(\"array\", %s) end", v, v))
    self:emit(format("local %s = #%s", n, v))
    self:emit(format("if %s > 0 then", n))
    self:indent()
    self:emit(format("pos = put_count(pos, %s)", n))
    self:emit(format("for %s = 1, %s do", i, n))
    self:indent()
    self:emit(format("local %s = %s[%s]", x, v, i))
    self:push(i)
    self:enc(node.items, x)
    self:pop()
    self:dedent()
    self:emit("end")
    self:dedent()
    self:emit(format("elseif next(%s) ~= nil then return fail_type(\"array (a sequence)\", %s) end", v, v))
    self:emit("pos = put_zero(pos)")
  elseif t == "map" then
    local n, k, x = self:var("n"), self:var("k"), self:var("x")
    self:emit(format("if type(%s) ~= \"table\" then return fail_type(\"map\", %s) end", v, v))
    self:emit(format("local %s = 0", n))
    self:emit(format("for _ in next, %s do %s = %s + 1 end", v, n, n))
    self:emit(format("if %s > 0 then", n))
    self:indent()
    self:emit(format("pos = put_count(pos, %s)", n))
    self:emit(format("for %s, %s in next, %s do", k, x, v))
    self:indent()
    self:emit(format("pos = put_str(pos, %s, \"string (a map key)\") %s", k, CHECK))
    self:push(format("'[\"' .. tostring(%s) .. '\"]'", k))
    self:enc(node.values, x)
    self:pop()
    self:dedent()
    self:emit("end")
    self:dedent()
    self:emit("end")
    self:emit("pos = put_zero(pos)")
  elseif t == "union" then
    self:enc_union(node, v)
  else
    self:enc_prim(node, v)
  end
end

-- The Lua types a branch takes, and the test that a value of that Lua type fits it.
local function branch_fits(node, b, i, v, gen)
  local t, lt = b.type, b.logical
  local fits = {}
  if t == "null" then
    fits.null = "true"
  elseif t == "boolean" then
    fits.boolean = "true"
  elseif t == "int" then
    fits.number = format("%s == floor(%s) and %s >= -2147483648 and %s <= 2147483647", v, v, v, v)
  elseif t == "long" then
    fits.number = format("%s == floor(%s) and %s >= -9223372036854775808 and %s < 9223372036854775808", v, v, v, v)
    fits.cdata = "true"
  elseif t == "float" or t == "double" then
    -- fastavro's rule (Python floats are doubles): a float branch is not chosen when a double follows.
    local later_double = false
    for j = i + 1, #node.branches do
      if node.branches[j].type == "double" then later_double = true end
    end
    if not (t == "float" and later_double) then
      fits.number = "true"
      fits.cdata = "true"
    end
  elseif (t == "bytes" or t == "fixed") and lt == "decimal" then
    fits.number = "true"
    fits.string = format("is_decimal(%s)", v)
  elseif t == "string" or t == "bytes" then
    fits.string = "true"
  elseif t == "fixed" and lt == "duration" then
    fits.table = format("validate(%s, %s)", gen:const(b), v)
  elseif t == "fixed" then
    fits.string = format("#%s == %d", v, b.size)
  elseif t == "enum" then
    fits.string = format("%s[%s] ~= nil", gen:const(b.symbol_index), v)
  else  -- record, array, map
    fits.table = format("validate(%s, %s)", gen:const(b), v)
  end
  return fits
end

function Gen:enc_union(node, v)
  local by_type = { null = {}, boolean = {}, number = {}, string = {}, table = {}, cdata = {} }
  for i, b in ipairs(node.branches) do
    for lt, cond in pairs(branch_fits(node, b, i, v, self)) do
      local list = by_type[lt]
      list[#list + 1] = { i = i, cond = cond }
    end
  end
  -- Only one branch takes tables: no need to validate it first; its own code names the mismatch.
  -- Several: choose_table picks one (as fastavro does: the record naming most of the value's keys).
  local tl = by_type.table
  local pre_table
  if #tl == 1 then
    tl[1].cond = "true"
  elseif #tl > 1 then
    local nodes = {}
    for j, c in ipairs(tl) do nodes[j] = node.branches[c.i] end
    local ch = self:var("ch")
    pre_table = format("local %s = choose_table(%s, %s)", ch, self:const(nodes), v)
    for j, c in ipairs(tl) do c.cond = format("%s == %d", ch, j) end
  end
  local names = {}
  for i, b in ipairs(node.branches) do names[i] = b.name or b.type end
  local desc = "one of the union's branches (" .. concat(names, ", ") .. ")"
  local function arm(list)
    for j, c in ipairs(list) do
      self:emit((j == 1 and "if " or "elseif ") .. c.cond .. " then")
      self:indent()
      self:emit(format("pos = put_count(pos, %d)", c.i - 1))
      self:enc(node.branches[c.i], v)
      self:dedent()
    end
    if #list > 0 then
      self:emit(format("else return fail_type(%q, %s) end", desc, v))
    else
      self:emit(format("return fail_type(%q, %s)", desc, v))
    end
  end
  local tv = self:var("tv")
  self:emit(format("local %s = type(%s)", tv, v))
  self:emit(format("if %s == nil or %s == NULL then", v, v))
  self:indent(); arm(by_type.null); self:dedent()
  for _, lt in ipairs { "number", "string", "table", "boolean", "cdata" } do
    self:emit(format("elseif %s == %q then", tv, lt))
    self:indent()
    if lt == "table" and pre_table then self:emit(pre_table) end
    arm(by_type[lt])
    self:dedent()
  end
  self:emit(format("else return fail_type(%q, %s) end", desc, v))
end

function Gen:enc_record_fn(node, n)
  self:emit(format("F[%d] = function(v, pos) -- %s", n, node.name))
  self:indent()
  self:emit(format("if type(v) ~= \"table\" then return fail_type(%q, v) end", "record " .. node.name))
  local guard = recursive(node)
  if guard then
    self:emit(format("depth = depth + 1 if depth > %d then return fail(%q) end", M.MAX_DEPTH, DEPTH_MSG .. " (a cycle in the value?)"))
  end
  for _, f in ipairs(node.fields) do
    local x = self:var("f")
    self:emit("do")
    self:indent()
    self:emit(format("local %s = v[%q]", x, f.name))
    if f.has_default and f.default ~= nil then
      self:emit(format("if %s == nil then %s = %s end", x, x, self:const(f.default)))
    end
    self:push(q("." .. f.name))
    self:enc(f.type, x)
    self:pop()
    self:dedent()
    self:emit("end")
  end
  if guard then self:emit("depth = depth - 1") end
  self:emit("return pos")
  self:dedent()
  self:emit("end")
end

-- Decoder -----------------------------------------------------------------------------------------

-- Emits code leaving the decoded value in the (declared) local `dst`. nullval: "nil" in record
-- fields and at the top, "NULL" (klua.json.null) inside arrays and maps.
function Gen:dec(node, dst, nullval)
  local t, lt = node.type, node.logical
  if t == "null" then
    self:emit(dst .. " = " .. nullval)
  elseif t == "boolean" then
    self:emit(dst .. ", pos = get_bool(pos) " .. CHECK)
  elseif t == "int" then
    self:emit(dst .. ", pos = get_int(pos) " .. CHECK)
  elseif t == "long" then
    self:emit(dst .. ", pos = get_long(pos) " .. CHECK)
  elseif t == "float" then
    self:emit(dst .. ", pos = get_float(pos) " .. CHECK)
  elseif t == "double" then
    self:emit(dst .. ", pos = get_double(pos) " .. CHECK)
  elseif t == "bytes" and lt == "decimal" then
    self:emit(format("%s, pos = get_decimal(pos, %d, %d) %s", dst, node.scale, node.precision, CHECK))
  elseif t == "string" or t == "bytes" then
    self:emit(dst .. ", pos = get_str(pos) " .. CHECK)
  elseif t == "fixed" then
    if lt == "decimal" then
      self:emit(format("%s, pos = get_decimal_fixed(pos, %d, %d) %s", dst, node.size, node.scale, CHECK))
    elseif lt == "duration" then
      self:emit(dst .. ", pos = get_duration(pos) " .. CHECK)
    else
      self:emit(format("%s, pos = get_fixed(pos, %d) %s", dst, node.size, CHECK))
    end
  elseif t == "enum" then
    local k = self:var("k")
    self:emit(format("local %s; %s, pos = get_int(pos) %s", k, k, CHECK))
    self:emit(format("%s = %s[%s + 1]", dst, self:const(node.symbols), k))
    self:emit(format("if %s == nil then return fail_at(pos, \"enum index \" .. %s .. %q) end", dst, k,
                     " out of range for " .. node.name .. " (" .. #node.symbols .. " symbols)"))
  elseif t == "record" then
    self:emit(format("%s, pos = %s(pos) %s", dst, self:func(node), CHECK))
  elseif t == "array" then
    local a, i, n, x = self:var("a"), self:var("i"), self:var("n"), self:var("x")
    self:emit(format("local %s, %s = setmetatable({}, ARRAY_MT), 0", a, i))
    self:emit("while true do")
    self:indent()
    self:emit(format("local %s; %s, pos = get_count(pos, %d, %s) %s", n, n, min_size(node.items), i, CHECK))
    self:emit(format("if %s == 0 then break end", n))
    self:emit(format("for _ = 1, %s do", n))
    self:indent()
    self:emit(format("local %s", x))
    self:push(i .. " + 1")
    self:dec(node.items, x, "NULL")
    self:pop()
    self:emit(format("%s = %s + 1; %s[%s] = %s", i, i, a, i, x))
    self:dedent()
    self:emit("end")
    self:dedent()
    self:emit("end")
    self:emit(format("%s = %s", dst, a))
  elseif t == "map" then
    local m, n, k, x = self:var("m"), self:var("n"), self:var("k"), self:var("x")
    self:emit(format("local %s = {}", m))
    self:emit("while true do")
    self:indent()
    self:emit(format("local %s; %s, pos = get_count(pos, %d) %s", n, n, 1 + min_size(node.values), CHECK))
    self:emit(format("if %s == 0 then break end", n))
    self:emit(format("for _ = 1, %s do", n))
    self:indent()
    self:emit(format("local %s, %s; %s, pos = get_str(pos) %s", k, x, k, CHECK))
    self:push(format("'[\"' .. %s .. '\"]'", k))
    self:dec(node.values, x, "NULL")
    self:pop()
    self:emit(format("%s[%s] = %s", m, k, x))
    self:dedent()
    self:emit("end")
    self:dedent()
    self:emit("end")
    self:emit(format("%s = %s", dst, m))
  elseif t == "union" then
    local b = self:var("b")
    self:emit(format("local %s; %s, pos = get_size(pos) %s", b, b, CHECK))
    for i, br in ipairs(node.branches) do
      self:emit(format("%s %s == %d then", i == 1 and "if" or "elseif", b, i - 1))
      self:indent()
      self:dec(br, dst, nullval)
      self:dedent()
    end
    local msg = format(" out of range (the union has %d branches)", #node.branches)
    if #node.branches > 0 then
      self:emit(format("else return fail_at(pos, \"union index \" .. tostring(%s) .. %q) end", b, msg))
    else
      self:emit(format("return fail_at(pos, \"union index \" .. tostring(%s) .. %q)", b, msg))
    end
  else
    error("klua.avro: no decoder for type " .. tostring(t))
  end
end

local MAX_LOCAL_FIELDS = 120

function Gen:dec_record_fn(node, n)
  self:emit(format("F[%d] = function(pos) -- %s", n, node.name))
  self:indent()
  local guard = recursive(node)
  if guard then
    self:emit(format("depth = depth + 1 if depth > %d then return fail_at(pos, %q) end", M.MAX_DEPTH, DEPTH_MSG))
  end
  local fields = node.fields
  if #fields <= MAX_LOCAL_FIELDS then
    -- Fields into locals, then one table constructor (a template LuaJIT copies).
    local vars = {}
    for i = 1, #fields do vars[i] = self:var("f") end
    if #vars > 0 then self:emit("local " .. concat(vars, ", ")) end
    for i, f in ipairs(fields) do
      self:emit("do")
      self:indent()
      self:push(q("." .. f.name))
      self:dec(f.type, vars[i], "nil")
      self:pop()
      self:dedent()
      self:emit("end")
    end
    local parts = {}
    for i, f in ipairs(fields) do parts[i] = format("[%q] = %s", f.name, vars[i]) end
    if guard then self:emit("depth = depth - 1") end
    self:emit("return { " .. concat(parts, ", ") .. " }, pos")
  else
    self:emit("local r = {}")
    for _, f in ipairs(fields) do
      local x = self:var("f")
      self:emit("do")
      self:indent()
      self:emit("local " .. x)
      self:push(q("." .. f.name))
      self:dec(f.type, x, "nil")
      self:pop()
      self:emit(format("r[%q] = %s", f.name, x))
      self:dedent()
      self:emit("end")
    end
    if guard then self:emit("depth = depth - 1") end
    self:emit("return r, pos")
  end
  self:dedent()
  self:emit("end")
end

-- Assembly ----------------------------------------------------------------------------------------

local function assemble(gen, name)
  while #gen.queue > 0 do
    local node = table.remove(gen.queue, 1)
    if gen.mode == "enc" then gen:enc_record_fn(node, gen.fn[node]) else gen:dec_record_fn(node, gen.fn[node]) end
  end
  local head = {
    "local R, K, F, PT, NULL, ARRAY_MT, validate, is_decimal, choose_table = ...",
    "local type, next, floor, tostring, setmetatable = type, next, math.floor, tostring, setmetatable",
    "local depth = 0  -- nesting of recursive records, reset by F[0]",
  }
  for _, h in ipairs(HELPERS) do head[#head + 1] = format("local %s = R.%s", h, h) end
  local code = concat(head, "\n") .. "\n" .. concat(gen.out, "\n") .. "\nreturn F[0]\n"
  local chunk, err = load(code, "=" .. name)
  if not chunk then error("klua.avro: generated code does not compile: " .. err .. "\n" .. code) end
  M.last_code = code
  return chunk(R, gen.K, {}, PT, R.NULL, ARRAY_MT, M.validate, M.is_decimal, M.choose_table)
end

-- encoder(node [, track]) -> function(v, pos) -> next pos | nil (runtime.err)
function M.encoder(node, track)
  local gen = new_gen(track)
  gen.mode = "enc"
  gen:emit("F[0] = function(v, pos)")
  gen:indent()
  gen:emit("depth = 0")
  gen:enc(node, "v")
  gen:emit("return pos")
  gen:dedent()
  gen:emit("end")
  return assemble(gen, "klua.avro encoder " .. (node.name or node.type))
end

-- decoder(node [, track]) -> function(pos) -> value, next pos | nil (runtime.err)
function M.decoder(node, track)
  local gen = new_gen(track)
  gen.mode = "dec"
  gen:emit("F[0] = function(pos)")
  gen:indent()
  gen:emit("depth = 0")
  gen:emit("local r")
  gen:dec(node, "r", "nil")
  gen:emit("return r, pos")
  gen:dedent()
  gen:emit("end")
  return assemble(gen, "klua.avro decoder " .. (node.name or node.type))
end

-- Validation (for choosing among a union's record/map/array branches) -------------------------------

local function is_decimal(v)
  return type(v) == "number" or (type(v) == "string" and v:find("^%s*[-+]?%d*%.?%d*%s*$") ~= nil and v:find("%d") ~= nil)
end
M.is_decimal = is_decimal

local validate
validate = function(node, v, depth)
  depth = (depth or 0) + 1
  if depth > M.MAX_DEPTH then return false end  -- a cycle in the value
  local t = node.type
  if t == "null" then return v == nil or v == R.NULL
  elseif t == "boolean" then return type(v) == "boolean"
  elseif t == "int" then return type(v) == "number" and v == math.floor(v) and v >= -2147483648 and v <= 2147483647
  elseif t == "long" then
    return (type(v) == "number" and v == math.floor(v) and v >= -2^63 and v < 2^63) or type(v) == "cdata"
  elseif t == "float" or t == "double" then return type(v) == "number" or type(v) == "cdata"
  elseif (t == "bytes" or t == "fixed") and node.logical == "decimal" then return is_decimal(v)
  elseif t == "string" or t == "bytes" then return type(v) == "string"
  elseif t == "fixed" and node.logical == "duration" then return type(v) == "table"
  elseif t == "fixed" then return type(v) == "string" and #v == node.size
  elseif t == "enum" then return type(v) == "string" and node.symbol_index[v] ~= nil
  elseif t == "array" then
    if type(v) ~= "table" then return false end
    local n = #v
    if n == 0 and next(v) ~= nil then return false end
    for i = 1, n do if not validate(node.items, v[i], depth) then return false end end
    return true
  elseif t == "map" then
    if type(v) ~= "table" then return false end
    for k, x in pairs(v) do
      if type(k) ~= "string" or not validate(node.values, x, depth) then return false end
    end
    return true
  elseif t == "record" then
    if type(v) ~= "table" then return false end
    for _, f in ipairs(node.fields) do
      local x = v[f.name]
      if not (x == nil and f.has_default) and not validate(f.type, x, depth) then return false end
    end
    return true
  elseif t == "union" then
    for _, b in ipairs(node.branches) do
      if validate(b, v, depth) then return true end
    end
    return false
  end
  return false
end
M.validate = validate

-- A union's branches that take tables (records, maps, arrays, durations), in order -> the position
-- of the one v goes to: the validating record that names most of v's keys (fastavro's rule), else
-- the first validating map/array/duration; 0 when none fits.
function M.choose_table(nodes, v)
  local best, most = 0, -1
  for j, b in ipairs(nodes) do
    if validate(b, v) then
      if b.type == "record" then
        local n = 0
        for k in pairs(v) do
          if b.field_index[k] then n = n + 1 end
        end
        if n > most then best, most = j, n end
      elseif best == 0 then
        return j
      end
    end
  end
  return best
end

return M
