-- klua.json_schema: JSON Schema validation of Lua values (drafts 4, 6, 7, and the cheap keywords of
-- 2019-09 and 2020-12), for the JSON Schema serde of the schema registry (docs/json_schema.md).
--
--   local v, err = klua.json_schema.compile(schema [, { references = { [uri or name] = text or table },
--                                                       draft = 7, formats = false }])
--   local ok, err = v:validate(value)     -- true | nil, err (KLUA_SERIALIZATION: err.path, err.keyword,
--                                          -- err.schema_path, err.message "$.lines[2].qty: 0 is less ...")
--   v.title, v.draft, v.schema
--
-- The schema is compiled once into a tree of closures, one per keyword, so validating a value does
-- no lookups of keywords by name: the closure for `minimum` holds the number, the one for
-- `properties` holds its list of names and their compiled subschemas. A closure returns nothing when
-- the value is valid, or a failure record; on the way back up each container pushes the key or index
-- it was looking at, so paths cost nothing unless validation fails. Messages are built only at the
-- top, from the record (anyOf and friends discard their branches' records unread).
--
-- Lua values are read as klua.json.encode writes them (bindings/json.cpp): klua.json.null (or nil at
-- the top) is null; a table marked array/object (klua.json.decode marks every table it makes, and
-- klua.json.array/object mark yours) is that; an unmarked table whose keys are exactly 1..n (n >= 1)
-- is an array, any other unmarked table an object (an empty unmarked table encodes as {}). Number
-- keys of objects are their decimal text ("1"). All numbers are doubles: in draft 6+ 1.0 is an
-- integer, as the spec says; in draft 4 it is too (the decoded value cannot tell 1.0 from 1).
--
-- $ref: JSON pointers (`#/definitions/a`, percent- and ~-escapes), plain-name fragments (`$id: "#a"`
-- in draft 6/7, `id` in draft 4, `$anchor` in 2019+), `$id` base-URI changes (RFC 3986 resolution)
-- and other documents: `references` maps a URI (absolute, as the $ref resolves, or the $ref's text
-- without its fragment, or its last path segment: a registry reference's name) to a schema. In
-- drafts 4-7 the siblings of a $ref are ignored; in 2019+ they apply beside it. Refused with
-- KLUA_SCHEMA rather than half-done: $recursiveRef, $dynamicRef, unevaluatedProperties,
-- unevaluatedItems, and regex features outside klua.json_schema.regex's subset.
local M = {}

local regex = require("klua.json_schema.regex")
local formats = require("klua.json_schema.format")

local json = klua.json
local NULL = json.null
local type, next, rawget, getmetatable, tostring, tonumber = type, next, rawget, getmetatable, tostring, tonumber
local huge = math.huge
local byte, fmt, concat = string.byte, string.format, table.concat

local SCHEMA_ERROR = "KLUA_SCHEMA"
local VALUE_ERROR = "KLUA_SERIALIZATION"

-- Values ------------------------------------------------------------------------------------------

-- "array" or "object" for a table, as klua.json.encode would write it.
local function table_kind(v)
  local mt = getmetatable(v)
  if mt then
    local j = mt.__jsontype
    if j == "array" or j == "object" then return j end
  end
  if rawget(v, 1) == nil then return "object" end
  local n = #v
  local count = 0
  for k in next, v do
    if type(k) ~= "number" or k < 1 or k > n or k % 1 ~= 0 then return "object" end
    count = count + 1
  end
  if count == n then return "array" end
  return "object"
end


local function is_array(v) return type(v) == "table" and table_kind(v) == "array" end

-- The JSON type of a Lua value, or nil for what JSON cannot hold (functions, cdata, userdata).
local function kind_of(v)
  local t = type(v)
  if t == "string" or t == "boolean" then return t end
  if t == "number" then
    if v ~= v or v == huge or v == -huge then return nil end
    return "number"
  end
  if t == "table" then return table_kind(v) end
  if v == NULL or v == nil then return "null" end
  return nil
end

-- An object key as JSON text: numbers as klua.json.encode writes them.
local function key_text(k)
  if type(k) == "string" then return k end
  if type(k) == "number" then
    if k % 1 == 0 and k >= -2 ^ 53 and k <= 2 ^ 53 then return fmt("%d", k) end
    return json.encode(k)
  end
  return tostring(k)
end

local deep_equal
function deep_equal(a, b)
  if a == nil then a = NULL end
  if b == nil then b = NULL end
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  local ka, kb = table_kind(a), table_kind(b)
  if ka ~= kb then return false end
  if ka == "array" then
    local n = #a
    if #b ~= n then return false end
    for i = 1, n do
      if not deep_equal(a[i], b[i]) then return false end
    end
    return true
  end
  local ta, tb = {}, {}
  local na = 0
  for k, x in next, a do ta[key_text(k)] = x; na = na + 1 end
  for k, x in next, b do tb[key_text(k)] = x end
  for k, x in next, tb do
    local y = ta[k]
    if y == nil or not deep_equal(x, y) then return false end
    na = na - 1
  end
  return na == 0
end


-- Code points in a UTF-8 string.
local function ulen(s)
  local c = 0
  for i = 1, #s do
    local b = byte(s, i)
    if b < 0x80 or b >= 0xC0 then c = c + 1 end
  end
  return c
end

-- Messages ----------------------------------------------------------------------------------------

local function show(v)
  if v == nil or v == NULL then return "null" end
  local t = type(v)
  if t == "string" then
    if #v > 40 then
      local cut = 38
      while cut > 1 and (byte(v, cut) or 0) >= 0x80 and (byte(v, cut) or 0) < 0xC0 do cut = cut - 1 end
      v = v:sub(1, cut - 1) .. "..."
    end
    local ok, s = pcall(json.encode, v)
    return ok and s or fmt("%q", v)
  end
  if t == "number" then
    local ok, s = pcall(json.encode, v)
    return ok and s or tostring(v)
  end
  if t == "boolean" then return tostring(v) end
  if t == "table" then return table_kind(v) == "array" and "an array" or "an object" end
  return "a Lua " .. t
end

local function kind_name(v)
  local k = kind_of(v)
  if k == "number" and v % 1 == 0 then return "integer" end
  return k or ("a Lua " .. type(v))
end

-- A failure record: kw (keyword), sp (schema path), msg (function(rec) -> text), v (the value),
-- a (the keyword's argument), and the instance path's segments innermost first in [1..n].
local function fail(kw, sp, msg, v, a)
  return { kw = kw, sp = sp, msg = msg, v = v, a = a, n = 0 }
end

local function at(e, seg)
  local n = e.n + 1
  e.n = n
  e[n] = seg
  return e
end

local function path_of(e, from)
  local parts = { "$" }
  for i = e.n, (from or 1), -1 do
    local seg = e[i]
    if type(seg) == "number" then
      parts[#parts + 1] = "[" .. (seg - 1) .. "]" -- 0-based, as JSON (and the Avro and Protobuf codecs) count
    elseif seg:match("^[%a_][%w_]*$") then
      parts[#parts + 1] = "." .. seg
    else
      parts[#parts + 1] = "[" .. json.encode(seg) .. "]"
    end
  end
  return concat(parts)
end

local function message_of(e) return e.msg(e) end

-- A branch's message for anyOf/oneOf: the path below the combinator, then the message.
local function branch_messages(list)
  local out = {}
  for i, e in ipairs(list) do
    if i > 3 then out[#out + 1] = ("... %d more"):format(#list - 3); break end
    local p = path_of(e)
    out[#out + 1] = ("[%d] %s%s"):format(i - 1, p == "$" and "" or p:sub(2) .. ": ", message_of(e))
  end
  return concat(out, "; ")
end

local MSG = {}
function MSG.type(e) return ("expected %s, found %s"):format(e.a, e.v == nil and "null" or
  (type(e.v) == "string" and "string " .. show(e.v) or kind_name(e.v) .. (type(e.v) == "table" and "" or " " .. show(e.v)))
  .. ((e.a:find("array", 1, true) and type(e.v) == "table" and next(e.v) == nil) and
      " (an empty unmarked Lua table is an object: mark it with klua.json.array)" or "")) end
function MSG.false_schema(e) return "no value is allowed here (the schema is false)" end
function MSG.minimum(e) return ("%s is less than the minimum %s"):format(show(e.v), show(e.a)) end
function MSG.maximum(e) return ("%s is greater than the maximum %s"):format(show(e.v), show(e.a)) end
function MSG.exclusiveMinimum(e) return ("%s is not greater than the exclusive minimum %s"):format(show(e.v), show(e.a)) end
function MSG.exclusiveMaximum(e) return ("%s is not less than the exclusive maximum %s"):format(show(e.v), show(e.a)) end
function MSG.multipleOf(e) return ("%s is not a multiple of %s"):format(show(e.v), show(e.a)) end
function MSG.minLength(e) return ("%s is shorter than %d characters"):format(show(e.v), e.a) end
function MSG.maxLength(e) return ("%s is longer than %d characters"):format(show(e.v), e.a) end
function MSG.pattern(e) return ("%s does not match the pattern %s"):format(show(e.v), show(e.a)) end
function MSG.format(e) return ("%s is not a valid %s"):format(show(e.v), e.a) end
function MSG.enum(e) return ("%s is not one of the allowed values"):format(show(e.v)) end
function MSG.const(e) return ("%s is not the constant %s"):format(show(e.v), show(e.a)) end
function MSG.minItems(e) return ("%d items, fewer than the minimum %d"):format(#e.v, e.a) end
function MSG.maxItems(e) return ("%d items, more than the maximum %d"):format(#e.v, e.a) end
function MSG.uniqueItems(e) return ("items %d and %d are equal"):format(e.a[1] - 1, e.a[2] - 1) end
function MSG.contains(e) return "no item matches the contains schema" end
function MSG.minContains(e) return ("%d items match the contains schema, fewer than %d"):format(e.a[1], e.a[2]) end
function MSG.maxContains(e) return ("%d items match the contains schema, more than %d"):format(e.a[1], e.a[2]) end
function MSG.additionalItems(e) return ("%d items, more than the %d allowed (additionalItems is false)"):format(#e.v, e.a) end
function MSG.required(e) return ("missing required property %s"):format(show(e.a)) end
function MSG.dependentRequired(e) return ("property %s requires property %s"):format(show(e.a[1]), show(e.a[2])) end
function MSG.minProperties(e) return ("%d properties, fewer than the minimum %d"):format(e.a[1], e.a[2]) end
function MSG.maxProperties(e) return ("%d properties, more than the maximum %d"):format(e.a[1], e.a[2]) end
function MSG.additionalProperties(e) return ("property %s is not allowed (additionalProperties)"):format(show(e.a)) end
function MSG.propertyNames(e) return ("property name %s: %s"):format(show(e.a), message_of(e.sub)) end
function MSG.anyOf(e) return ("matches none of the %d schemas of anyOf: %s"):format(#e.a, branch_messages(e.a)) end
function MSG.oneOf_none(e) return ("matches none of the %d schemas of oneOf: %s"):format(#e.a, branch_messages(e.a)) end
function MSG.oneOf_many(e) return ("matches schemas %d and %d of oneOf, exactly one is allowed"):format(e.a[1] - 1, e.a[2] - 1) end
MSG["not"] = function() return "matches the schema of not" end

-- URIs (RFC 3986 section 5.2) ------------------------------------------------------------------

local function parse_uri(u)
  local scheme, rest = u:match("^(%a[%w+.%-]*):(.*)$")
  if not scheme then rest = u end
  local frag
  local h = rest:find("#", 1, true)
  if h then frag = rest:sub(h + 1); rest = rest:sub(1, h - 1) end
  local query
  local q = rest:find("?", 1, true)
  if q then query = rest:sub(q + 1); rest = rest:sub(1, q - 1) end
  local auth
  if rest:sub(1, 2) == "//" then
    local s = rest:find("/", 3, true)
    if s then auth = rest:sub(3, s - 1); rest = rest:sub(s) else auth = rest:sub(3); rest = "" end
  end
  return scheme, auth, rest, query, frag
end

local function remove_dots(path)
  if not path:find(".", 1, true) then return path end
  local out = {}
  local lead = path:sub(1, 1) == "/"
  local segs = {}
  for s in (path .. "/"):gmatch("([^/]*)/") do segs[#segs + 1] = s end
  if lead then table.remove(segs, 1) end
  for i, s in ipairs(segs) do
    if s == ".." then
      if #out > 0 then out[#out] = nil end
      if i == #segs then out[#out + 1] = "" end
    elseif s == "." then
      if i == #segs then out[#out + 1] = "" end
    else
      out[#out + 1] = s
    end
  end
  return (lead and "/" or "") .. concat(out, "/")
end

local function resolve_uri(base, ref)
  local rs, ra, rp, rq, rf = parse_uri(ref)
  local s, a, p, q
  if rs then
    s, a, p, q = rs, ra, remove_dots(rp), rq
  else
    local bs, ba, bp, bq = parse_uri(base or "")
    s = bs
    if ra then
      a, p, q = ra, remove_dots(rp), rq
    else
      a = ba
      if rp == "" then
        p = bp
        q = rq or bq
      else
        if rp:sub(1, 1) == "/" then
          p = remove_dots(rp)
        else
          local merged
          if ba and bp == "" then merged = "/" .. rp
          else
            local dir = bp:match("^(.*/)") or ""
            merged = dir .. rp
          end
          p = remove_dots(merged)
        end
        q = rq
      end
    end
  end
  return (s and s .. ":" or "") .. (a and "//" .. a or "") .. p .. (q and "?" .. q or "") .. (rf and "#" .. rf or "")
end


local function split_fragment(u)
  local h = u:find("#", 1, true)
  if not h then return u, "" end
  return u:sub(1, h - 1), u:sub(h + 1)
end

local function percent_decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- Compilation ------------------------------------------------------------------------------------

local function schema_error(sp, fmtstr, ...)
  error({ schema_error = fmtstr:format(...), sp = sp }, 0)
end

local function ok_fn() return nil end

local DRAFTS = { [4] = 4, [6] = 6, [7] = 7, [2019] = 2019, [2020] = 2020, ["2019-09"] = 2019, ["2020-12"] = 2020,
                 ["4"] = 4, ["6"] = 6, ["7"] = 7 }

local function draft_of_uri(s)
  if type(s) ~= "string" then return nil end
  if s:find("draft-04", 1, true) then return 4 end
  if s:find("draft-06", 1, true) then return 6 end
  if s:find("draft-07", 1, true) then return 7 end
  if s:find("2019-09", 1, true) then return 2019 end
  if s:find("2020-12", 1, true) then return 2020 end
  if s:find("draft-03", 1, true) then return 3 end
  return nil
end

local SINGLE = { "additionalItems", "additionalProperties", "contains", "propertyNames", "not", "if", "then",
                 "else", "items", "contentSchema" }
local LISTS = { "allOf", "anyOf", "oneOf", "items", "prefixItems" }
local MAPS = { "properties", "patternProperties", "definitions", "$defs", "dependencies", "dependentSchemas" }

local function ptr_seg(s)
  return (tostring(s):gsub("~", "~0"):gsub("/", "~1"))
end

-- Records every subschema's base URI and schema path, and the resources and anchors that $id,
-- id and $anchor define.
local function index(ctx, node, base, sp)
  if type(node) ~= "table" or ctx.bases[node] then return end
  local draft = ctx.draft
  local has_ref = draft <= 7 and rawget(node, "$ref") ~= nil
  local id = rawget(node, draft == 4 and "id" or "$id")
  if type(id) == "string" and not has_ref then
    local abs = resolve_uri(base, id)
    local doc, frag = split_fragment(abs)
    if id:sub(1, 1) == "#" then
      if draft <= 7 then ctx.anchors[doc .. "#" .. frag] = node end
    else
      base = doc
      if not ctx.resources[doc] then ctx.resources[doc] = node end
      if frag ~= "" and frag:sub(1, 1) ~= "/" and draft <= 7 then ctx.anchors[doc .. "#" .. frag] = node end
    end
  end
  if draft >= 2019 then
    local a = rawget(node, "$anchor")
    if type(a) == "string" then ctx.anchors[split_fragment(base) .. "#" .. a] = node end
    a = rawget(node, "$dynamicAnchor")
    if type(a) == "string" and draft >= 2020 then ctx.anchors[split_fragment(base) .. "#" .. a] = node end
  end
  ctx.bases[node] = base
  ctx.spaths[node] = sp
  for _, k in ipairs(SINGLE) do
    local s = rawget(node, k)
    if type(s) == "table" and (k ~= "items" or not is_array(s) or next(s) == nil) then
      index(ctx, s, base, sp .. "/" .. k)
    end
  end
  for _, k in ipairs(LISTS) do
    local l = rawget(node, k)
    if type(l) == "table" and is_array(l) then
      for i, s in ipairs(l) do index(ctx, s, base, sp .. "/" .. k .. "/" .. (i - 1)) end
    end
  end
  for _, k in ipairs(MAPS) do
    local m = rawget(node, k)
    if type(m) == "table" then
      for name, s in next, m do
        if type(s) == "table" and not (k == "dependencies" and is_array(s)) then
          index(ctx, s, base, sp .. "/" .. k .. "/" .. ptr_seg(key_text(name)))
        end
      end
    end
  end
end

-- A document from compile's `references` (or nil): by the absolute URI, by the $ref's own text,
-- by the last path segment (a registry reference's name).
local metaschemas

local function load_external(ctx, doc, ref)
  local refs = ctx.references or {}
  local refdoc = split_fragment(ref)
  local tries = { doc, refdoc, doc:match("([^/]+)$"), refdoc:match("([^/]+)$") }
  if doc:match("^https?://json%-schema%.org/draft%-0[467]/schema$") then
    metaschemas = metaschemas or require("klua.json_schema.metaschemas")
    refs = setmetatable({}, { __index = function(_, k) return rawget(ctx.references or {}, k) or metaschemas[k] end })
    tries = { doc, (doc:gsub("^https:", "http:")) }
  end
  for _, key in ipairs(tries) do
    local found = key and refs[key]
    if found ~= nil then
      local cached = ctx.loaded[key]
      if cached then
        ctx.resources[doc] = cached
        return cached
      end
      if type(found) == "string" then
        local t, err = json.decode(found)
        if t == nil then
          error({ schema_error = ("reference %s is not JSON: %s"):format(key, err.message), sp = key }, 0)
        end
        found = t
      end
      if type(found) ~= "table" and type(found) ~= "boolean" then
        error({ schema_error = ("reference %s must be a schema (JSON text or a table)"):format(key), sp = key }, 0)
      end
      ctx.loaded[key] = found
      ctx.resources[doc] = found
      if type(found) == "table" then index(ctx, found, doc, doc .. "#") end
      return found
    end
  end
  return nil
end

-- The node a $ref names, resolved against base; raises a schema error when there is none.
local function resolve_ref(ctx, base, ref, sp)
  local abs = resolve_uri(base, ref)
  local doc, frag = split_fragment(abs)
  local root = ctx.resources[doc]
  if root == nil then root = load_external(ctx, doc, ref) end
  if root == nil then
    schema_error(sp, "cannot resolve $ref %s (%s): no such document; pass it in references", show(ref), abs)
  end
  if frag == "" then return root end
  frag = percent_decode(frag)
  if frag:sub(1, 1) ~= "/" then
    local a = ctx.anchors[doc .. "#" .. frag]
    if a == nil then schema_error(sp, "cannot resolve $ref %s: no anchor %s", show(ref), show(frag)) end
    return a
  end
  local node = root
  local nbase = ctx.bases[root] or doc
  local npath = ctx.spaths[root] or (doc .. "#")
  for seg in (frag:sub(2) .. "/"):gmatch("([^/]*)/") do
    seg = seg:gsub("~1", "/"):gsub("~0", "~")
    if type(node) ~= "table" then node = nil; break end
    local nx
    if table_kind(node) == "array" and seg:match("^%d+$") then
      nx = node[tonumber(seg) + 1]
    else
      nx = rawget(node, seg)
      if nx == nil and seg:match("^%-?%d+$") then nx = rawget(node, tonumber(seg)) end
    end
    node = nx
    npath = npath .. "/" .. ptr_seg(seg)
    if type(node) == "table" and ctx.bases[node] then nbase = ctx.bases[node]; npath = ctx.spaths[node] end
  end
  if node == nil then schema_error(sp, "cannot resolve $ref %s: nothing at %s", show(ref), abs) end
  if type(node) == "table" and not ctx.bases[node] then index(ctx, node, nbase, npath) end
  return node
end

local compile_node

-- A subschema that applies to a part of the value (an item, a property): a cycle of $refs through
-- one of these ends when the value does; a cycle without one would validate the same value forever.
local function compile_child(ctx, node, sp)
  ctx.descents = ctx.descents + 1
  local f = compile_node(ctx, node, sp)
  ctx.descents = ctx.descents - 1
  return f
end

local function number_arg(sp, k, x)
  if type(x) ~= "number" then schema_error(sp, "%s must be a number, got %s", k, show(x)) end
  return x
end

local function count_arg(sp, k, x)
  if type(x) ~= "number" or x < 0 or x % 1 ~= 0 then
    schema_error(sp, "%s must be a non-negative integer, got %s", k, show(x))
  end
  return x
end

-- Generated code for the lists of a schema (its keywords, its properties): one straight line of
-- calls, each site calling one closure, where a loop over a table of closures would make one call
-- site see them all (LuaJIT's traces then fall back or unroll). One factory per shape and length,
-- made once per process.
local unpack = unpack or table.unpack
local factories = {}

local function generated(shape, n)
  local key = shape .. n
  local f = factories[key]
  if f then return f end
  local src = {}
  if shape == "checks" then
    local params = {}
    for i = 1, n do params[i] = "c" .. i end
    src[#src + 1] = "local " .. concat(params, ", ") .. " = ...\nreturn function(v)\n  local e\n"
    for i = 1, n - 1 do src[#src + 1] = ("  e = c%d(v)\n  if e then return e end\n"):format(i) end
    src[#src + 1] = ("  return c%d(v)\nend\n"):format(n)
    f = assert(load(concat(src), "=json_schema(" .. key .. ")"))
  elseif shape == "required" then
    src[#src + 1] = "local type, rawget, table_kind, fail, msg, sp, is_obj, names, aliases = ...\n"
    for i = 1, n do src[#src + 1] = ("local n%d, a%d = names[%d], aliases[%d]\n"):format(i, i, i, i) end
    src[#src + 1] = "return function(v)\n  if not is_obj and (type(v) ~= 'table' or table_kind(v) ~= 'object') then return end\n"
    for i = 1, n do
      src[#src + 1] = ("  if rawget(v, n%d) == nil and (not a%d or rawget(v, a%d) == nil) then " ..
                       "return fail('required', sp, msg, v, n%d) end\n"):format(i, i, i, i)
    end
    src[#src + 1] = "end\n"
    f = assert(load(concat(src), "=json_schema(" .. key .. ")"))
  else -- "props": names, aliases, fns
    src[#src + 1] = "local type, rawget, table_kind, at, names, aliases, fns, is_obj = ...\n"
    for i = 1, n do
      src[#src + 1] = ("local n%d, a%d, f%d = names[%d], aliases[%d], fns[%d]\n"):format(i, i, i, i, i, i)
    end
    src[#src + 1] = "return function(v)\n  if not is_obj and (type(v) ~= 'table' or table_kind(v) ~= 'object') then return end\n  local x, e\n"
    for i = 1, n do
      src[#src + 1] = ("  x = rawget(v, n%d)\n  if x == nil and a%d then x = rawget(v, a%d) end\n" ..
                       "  if x ~= nil then e = f%d(x) if e then return at(e, n%d) end end\n"):format(i, i, i, i, i)
    end
    src[#src + 1] = "end\n"
    f = assert(load(concat(src), "=json_schema(" .. key .. ")"))
  end
  factories[key] = f
  return f
end

local combine
function combine(checks)
  local n = #checks
  if n == 0 then return ok_fn end
  if n == 1 then return checks[1] end
  if n == 2 then
    local a, b = checks[1], checks[2]
    return function(v)
      local e = a(v)
      if e then return e end
      return b(v)
    end
  end
  if n == 3 then
    local a, b, c = checks[1], checks[2], checks[3]
    return function(v)
      local e = a(v)
      if e then return e end
      e = b(v)
      if e then return e end
      return c(v)
    end
  end
  if n > 50 then -- a function has at most 60 upvalues
    local head, tail = {}, {}
    for i = 1, n do
      if i <= 50 then head[i] = checks[i] else tail[i - 50] = checks[i] end
    end
    return combine({ combine(head), combine(tail) })
  end
  return generated("checks", n)(unpack(checks, 1, n))
end

local TYPE_NAMES = { null = true, boolean = true, object = true, array = true, number = true, string = true,
                     integer = true }

local function type_check(ctx, sp, t)
  local names = type(t) == "string" and { t } or t
  if type(names) ~= "table" then schema_error(sp, "type must be a string or an array of strings") end
  local set, list = {}, {}
  for _, n in ipairs(names) do
    if not TYPE_NAMES[n] then schema_error(sp, "unknown type %s", show(n)) end
    set[n] = true
    list[#list + 1] = n
  end
  local desc = concat(list, " or ")
  if #list == 1 then
    local n = list[1]
    if n == "string" or n == "boolean" then
      return function(v) if type(v) ~= n then return fail("type", sp, MSG.type, v, desc) end end
    elseif n == "number" then
      return function(v)
        if type(v) ~= "number" or v ~= v then return fail("type", sp, MSG.type, v, desc) end
      end
    elseif n == "integer" then
      return function(v)
        if type(v) ~= "number" or v % 1 ~= 0 then return fail("type", sp, MSG.type, v, desc) end
      end
    elseif n == "null" then
      return function(v) if v ~= NULL and v ~= nil then return fail("type", sp, MSG.type, v, desc) end end
    else
      return function(v)
        if type(v) ~= "table" or table_kind(v) ~= n then return fail("type", sp, MSG.type, v, desc) end
      end
    end
  end
  return function(v)
    local k = kind_of(v)
    if k and (set[k] or (k == "number" and set.integer and v % 1 == 0)) then return nil end
    return fail("type", sp, MSG.type, v, desc)
  end
end

local function enum_check(sp, values, kw, msg, a)
  local set, tables = {}, {}
  for _, x in ipairs(values) do
    if type(x) == "table" then tables[#tables + 1] = x
    elseif x ~= nil then set[x] = true end
  end
  local nt = #tables
  return function(v)
    if v == nil then v = NULL end
    if type(v) ~= "table" then
      if set[v] then return nil end
    else
      for i = 1, nt do
        if deep_equal(v, tables[i]) then return nil end
      end
    end
    return fail(kw, sp, msg, v, a)
  end
end

-- Subschema lists (allOf, anyOf, oneOf, items, prefixItems).
local function compile_list(ctx, node, k, sp)
  local l = rawget(node, k)
  if type(l) ~= "table" or not is_array(l) or (next(l) == nil and k ~= "items" and k ~= "prefixItems") then
    schema_error(sp .. "/" .. k, "%s must be a non-empty array of schemas", k)
  end
  local fns = {}
  for i, s in ipairs(l) do fns[i] = (k == "items" or k == "prefixItems") and compile_child(ctx, s, sp .. "/" .. k .. "/" .. (i - 1))
    or compile_node(ctx, s, sp .. "/" .. k .. "/" .. (i - 1)) end
  return fns
end

local function string_list(sp, k, l)
  if type(l) ~= "table" or (next(l) ~= nil and not is_array(l)) then
    schema_error(sp, "%s must be an array of strings", k)
  end
  for _, s in ipairs(l) do
    if type(s) ~= "string" then schema_error(sp, "%s must be an array of strings, found %s", k, show(s)) end
  end
  return l
end

-- The number-key alias of a property name ("1" -> 1), for unmarked Lua tables.
local function num_alias(name)
  if name:match("^%-?[1-9]%d*$") or name == "0" then
    local n = tonumber(name)
    if n and n <= 2 ^ 53 and n >= -2 ^ 53 then return n end
  end
  return false
end

local function get_prop(v, name, alias)
  local x = rawget(v, name)
  if x == nil and alias then x = rawget(v, alias) end
  return x
end

local function compile_keywords(ctx, node, sp)
  local draft = ctx.draft
  local checks = {}
  local function add(f) checks[#checks + 1] = f end
  local function has(k) return rawget(node, k) ~= nil end
  local function kp(k) return sp .. "/" .. k end

  if draft >= 2019 then
    for _, k in ipairs({ "$recursiveRef", "$dynamicRef", "unevaluatedProperties", "unevaluatedItems" }) do
      if has(k) then schema_error(kp(k), "%s is not supported by klua.json_schema", k) end
    end
  end

  local ref = rawget(node, "$ref")
  if ref ~= nil then
    if type(ref) ~= "string" then schema_error(kp("$ref"), "$ref must be a string") end
    local target = resolve_ref(ctx, ctx.bases[node] or "", ref, kp("$ref"))
    local f = compile_node(ctx, target, ctx.spaths[target] or kp("$ref"))
    if draft <= 7 then return f end
    add(f)
  end

  local t = rawget(node, "type")
  if t ~= nil then add(type_check(ctx, kp("type"), t)) end
  -- With "type": "object" (or "array") checked first, the keywords after it know the kind.
  local is_obj, is_arr = t == "object", t == "array"

  -- numbers
  local excl_max, excl_min = rawget(node, "exclusiveMaximum"), rawget(node, "exclusiveMinimum")
  if draft == 4 then
    if excl_max ~= nil and type(excl_max) ~= "boolean" then schema_error(kp("exclusiveMaximum"), "exclusiveMaximum must be a boolean in draft 4") end
    if excl_min ~= nil and type(excl_min) ~= "boolean" then schema_error(kp("exclusiveMinimum"), "exclusiveMinimum must be a boolean in draft 4") end
  end
  if has("maximum") then
    local m = number_arg(kp("maximum"), "maximum", rawget(node, "maximum"))
    if draft == 4 and excl_max == true then
      local s = kp("maximum")
      add(function(v) if type(v) == "number" and v >= m then return fail("exclusiveMaximum", s, MSG.exclusiveMaximum, v, m) end end)
    else
      local s = kp("maximum")
      add(function(v) if type(v) == "number" and v > m then return fail("maximum", s, MSG.maximum, v, m) end end)
    end
  end
  if has("minimum") then
    local m = number_arg(kp("minimum"), "minimum", rawget(node, "minimum"))
    local s = kp("minimum")
    if draft == 4 and excl_min == true then
      add(function(v) if type(v) == "number" and v <= m then return fail("exclusiveMinimum", s, MSG.exclusiveMinimum, v, m) end end)
    else
      add(function(v) if type(v) == "number" and v < m then return fail("minimum", s, MSG.minimum, v, m) end end)
    end
  end
  if draft >= 6 then
    if excl_max ~= nil then
      local m = number_arg(kp("exclusiveMaximum"), "exclusiveMaximum", excl_max)
      local s = kp("exclusiveMaximum")
      add(function(v) if type(v) == "number" and v >= m then return fail("exclusiveMaximum", s, MSG.exclusiveMaximum, v, m) end end)
    end
    if excl_min ~= nil then
      local m = number_arg(kp("exclusiveMinimum"), "exclusiveMinimum", excl_min)
      local s = kp("exclusiveMinimum")
      add(function(v) if type(v) == "number" and v <= m then return fail("exclusiveMinimum", s, MSG.exclusiveMinimum, v, m) end end)
    end
  end
  if has("multipleOf") then
    local d = number_arg(kp("multipleOf"), "multipleOf", rawget(node, "multipleOf"))
    if d <= 0 then schema_error(kp("multipleOf"), "multipleOf must be greater than 0") end
    local s = kp("multipleOf")
    if d % 1 == 0 then
      add(function(v) if type(v) == "number" and v % d ~= 0 then return fail("multipleOf", s, MSG.multipleOf, v, d) end end)
    else
      -- As Python's jsonschema: the quotient must be a whole number (v / 0.01 for v = 0.07 is 7).
      add(function(v)
        if type(v) == "number" then
          local q = v / d
          if q ~= q or q == huge or q == -huge then
            if v % 1 == 0 and 1 % d == 0 then return nil end
            return fail("multipleOf", s, MSG.multipleOf, v, d)
          end
          if q % 1 ~= 0 then return fail("multipleOf", s, MSG.multipleOf, v, d) end
        end
      end)
    end
  end

  -- strings
  if has("maxLength") then
    local m = count_arg(kp("maxLength"), "maxLength", rawget(node, "maxLength"))
    local s = kp("maxLength")
    add(function(v)
      if type(v) == "string" and #v > m and ulen(v) > m then return fail("maxLength", s, MSG.maxLength, v, m) end
    end)
  end
  if has("minLength") then
    local m = count_arg(kp("minLength"), "minLength", rawget(node, "minLength"))
    local s = kp("minLength")
    add(function(v)
      if type(v) == "string" then
        local n = #v
        if n < m or (n < 4 * m and ulen(v) < m) then return fail("minLength", s, MSG.minLength, v, m) end
      end
    end)
  end
  if has("pattern") then
    local p = rawget(node, "pattern")
    local s = kp("pattern")
    local re, err = regex.compile(p)
    if not re then schema_error(s, "pattern: %s", err) end
    add(function(v) if type(v) == "string" and not re(v) then return fail("pattern", s, MSG.pattern, v, p) end end)
  end
  if has("format") and ctx.formats then
    local f = rawget(node, "format")
    local chk = formats[f]
    local s = kp("format")
    if chk then
      add(function(v) if type(v) == "string" and not chk(v) then return fail("format", s, MSG.format, v, f) end end)
    end
  end

  -- any type
  if has("enum") then
    local e = rawget(node, "enum")
    if type(e) ~= "table" or not is_array(e) then schema_error(kp("enum"), "enum must be an array") end
    add(enum_check(kp("enum"), e, "enum", MSG.enum, e))
  end
  if draft >= 6 and has("const") then
    local c = rawget(node, "const")
    add(enum_check(kp("const"), { c }, "const", MSG.const, c))
  end

  -- arrays
  local items = rawget(node, "items")
  local prefix_fns
  local items_fn
  if draft >= 2020 then
    if has("prefixItems") then prefix_fns = compile_list(ctx, node, "prefixItems", sp) end
    if items ~= nil then
      if type(items) == "table" and is_array(items) and next(items) ~= nil then
        schema_error(kp("items"), "items must be a schema in 2020-12 (use prefixItems for tuples)")
      end
      items_fn = compile_child(ctx, items, kp("items"))
    end
  elseif items ~= nil then
    if type(items) == "table" and is_array(items) and next(items) ~= nil then
      prefix_fns = compile_list(ctx, node, "items", sp)
      if has("additionalItems") then items_fn = compile_child(ctx, rawget(node, "additionalItems"), kp("additionalItems")) end
    else
      items_fn = compile_child(ctx, items, kp("items"))
    end
  end
  if prefix_fns then
    local np = #prefix_fns
    local rest = items_fn
    local rest_false = (draft >= 2020 and rawget(node, "items") == false) or (draft < 2020 and rawget(node, "additionalItems") == false)
    local s = draft >= 2020 and kp("items") or kp("additionalItems")
    add(function(v)
      if not is_arr and (type(v) ~= "table" or table_kind(v) ~= "array") then return end
      local n = #v
      for i = 1, (n < np and n or np) do
        local x = v[i]
        if x == nil then x = NULL end
        local e = prefix_fns[i](x)
        if e then return at(e, i) end
      end
      if rest and n > np then
        if rest_false then return fail("additionalItems", s, MSG.additionalItems, v, np) end
        for i = np + 1, n do
          local x = v[i]
          if x == nil then x = NULL end
          local e = rest(x)
          if e then return at(e, i) end
        end
      end
    end)
  elseif items_fn then
    local f = items_fn
    add(function(v)
      if not is_arr and (type(v) ~= "table" or table_kind(v) ~= "array") then return end
      for i = 1, #v do
        local x = v[i]
        if x == nil then x = NULL end
        local e = f(x)
        if e then return at(e, i) end
      end
    end)
  end
  if has("maxItems") then
    local m = count_arg(kp("maxItems"), "maxItems", rawget(node, "maxItems"))
    local s = kp("maxItems")
    add(function(v) if type(v) == "table" and #v > m and table_kind(v) == "array" then return fail("maxItems", s, MSG.maxItems, v, m) end end)
  end
  if has("minItems") then
    local m = count_arg(kp("minItems"), "minItems", rawget(node, "minItems"))
    local s = kp("minItems")
    add(function(v) if type(v) == "table" and #v < m and table_kind(v) == "array" then return fail("minItems", s, MSG.minItems, v, m) end end)
  end
  if rawget(node, "uniqueItems") == true then
    local s = kp("uniqueItems")
    add(function(v)
      if not is_arr and (type(v) ~= "table" or table_kind(v) ~= "array") then return end
      local seen, tables = {}, nil
      for i = 1, #v do
        local x = v[i]
        if x == nil then x = NULL end
        if type(x) == "table" then
          tables = tables or {}
          for _, j in ipairs(tables) do
            if deep_equal(v[j], x) then return fail("uniqueItems", s, MSG.uniqueItems, v, { j, i }) end
          end
          tables[#tables + 1] = i
        else
          local j = seen[x]
          if j then return fail("uniqueItems", s, MSG.uniqueItems, v, { j, i }) end
          seen[x] = i
        end
      end
    end)
  end
  if draft >= 6 and has("contains") then
    local f = compile_child(ctx, rawget(node, "contains"), kp("contains"))
    local s = kp("contains")
    local minc, maxc = 1, nil
    if draft >= 2019 then
      if has("minContains") then minc = count_arg(kp("minContains"), "minContains", rawget(node, "minContains")) end
      if has("maxContains") then maxc = count_arg(kp("maxContains"), "maxContains", rawget(node, "maxContains")) end
    end
    add(function(v)
      if not is_arr and (type(v) ~= "table" or table_kind(v) ~= "array") then return end
      local c = 0
      for i = 1, #v do
        local x = v[i]
        if x == nil then x = NULL end
        if not f(x) then
          c = c + 1
          if c >= minc and not maxc then return nil end
        end
      end
      if c < minc then
        if minc == 1 then return fail("contains", s, MSG.contains, v) end
        return fail("minContains", s, MSG.minContains, v, { c, minc })
      end
      if maxc and c > maxc then return fail("maxContains", s, MSG.maxContains, v, { c, maxc }) end
    end)
  end

  -- objects
  local props = rawget(node, "properties")
  local prop_set = {}
  if props ~= nil then
    if type(props) ~= "table" then schema_error(kp("properties"), "properties must be an object") end
    local names, aliases, fns = {}, {}, {}
    for name, s in next, props do
      name = key_text(name)
      names[#names + 1] = name
    end
    table.sort(names)
    for i, name in ipairs(names) do
      prop_set[name] = true
      aliases[i] = num_alias(name)
      local sub = rawget(props, name)
      if sub == nil then sub = rawget(props, aliases[i]) end
      fns[i] = compile_child(ctx, sub, kp("properties") .. "/" .. ptr_seg(name))
    end
    local n = #names
    -- 16 properties a function (3 upvalues each, at most 60)
    for first = 1, n, 16 do
      local last = math.min(n, first + 15)
      add(generated("props", last - first + 1)(type, rawget, table_kind, at, { unpack(names, first, last) },
                                                { unpack(aliases, first, last) }, { unpack(fns, first, last) }, is_obj))
    end
  end
  local pprops = rawget(node, "patternProperties")
  local addl = rawget(node, "additionalProperties")
  if pprops ~= nil or addl ~= nil then
    local res, pfns, pats = {}, {}, {}
    if pprops ~= nil then
      if type(pprops) ~= "table" then schema_error(kp("patternProperties"), "patternProperties must be an object") end
      for p in next, pprops do pats[#pats + 1] = p end
      table.sort(pats)
      for i, p in ipairs(pats) do
        local s = kp("patternProperties") .. "/" .. ptr_seg(p)
        local re, err = regex.compile(p)
        if not re then schema_error(s, "patternProperties: %s", err) end
        res[i] = re
        pfns[i] = compile_child(ctx, rawget(pprops, p), s)
      end
    end
    local np = #res
    local addl_fn = addl ~= nil and addl ~= true and compile_child(ctx, addl, kp("additionalProperties"))
    local addl_false = addl == false
    local s = kp("additionalProperties")
    if np > 0 or addl_fn then
      add(function(v)
        if not is_obj and (type(v) ~= "table" or table_kind(v) ~= "object") then return end
        for k, x in next, v do
          local key = type(k) == "string" and k or key_text(k)
          local matched = prop_set[key] == true
          for i = 1, np do
            if res[i](key) then
              matched = true
              local e = pfns[i](x)
              if e then return at(e, key) end
            end
          end
          if not matched and addl_fn then
            if addl_false then return at(fail("additionalProperties", s, MSG.additionalProperties, x, key), key) end
            local e = addl_fn(x)
            if e then return at(e, key) end
          end
        end
      end)
    end
  end
  if has("required") then
    local req = string_list(kp("required"), "required", rawget(node, "required"))
    if draft == 4 and next(req) == nil then schema_error(kp("required"), "required must not be empty in draft 4") end
    local aliases = {}
    for i, name in ipairs(req) do aliases[i] = num_alias(name) end
    local n = #req
    local s = kp("required")
    for first = 1, n, 24 do -- 24 names a function (2 upvalues each, at most 60)
      local last = math.min(n, first + 23)
      add(generated("required", last - first + 1)(type, rawget, table_kind, fail, MSG.required, s, is_obj,
                                                   { unpack(req, first, last) }, { unpack(aliases, first, last) }))
    end
  end
  if draft >= 6 and has("propertyNames") then
    local f = compile_child(ctx, rawget(node, "propertyNames"), kp("propertyNames"))
    local s = kp("propertyNames")
    add(function(v)
      if not is_obj and (type(v) ~= "table" or table_kind(v) ~= "object") then return end
      for k in next, v do
        local key = key_text(k)
        local e = f(key)
        if e then
          local r = fail("propertyNames", s, MSG.propertyNames, v, key)
          r.sub = e
          return r
        end
      end
    end)
  end
  if has("maxProperties") or has("minProperties") then
    local maxp = has("maxProperties") and count_arg(kp("maxProperties"), "maxProperties", rawget(node, "maxProperties"))
    local minp = has("minProperties") and count_arg(kp("minProperties"), "minProperties", rawget(node, "minProperties"))
    local smax, smin = kp("maxProperties"), kp("minProperties")
    add(function(v)
      if not is_obj and (type(v) ~= "table" or table_kind(v) ~= "object") then return end
      local c = 0
      for _ in next, v do c = c + 1 end
      if maxp and c > maxp then return fail("maxProperties", smax, MSG.maxProperties, v, { c, maxp }) end
      if minp and c < minp then return fail("minProperties", smin, MSG.minProperties, v, { c, minp }) end
    end)
  end
  -- dependencies (draft 4-7), dependentRequired and dependentSchemas (2019+)
  local dep_req, dep_sch = {}, {}
  local function add_deps(kw, m, allow_req, allow_sch)
    if type(m) ~= "table" then schema_error(kp(kw), "%s must be an object", kw) end
    local names = {}
    for name in next, m do names[#names + 1] = key_text(name) end
    table.sort(names)
    for _, name in ipairs(names) do
      local d = rawget(m, name)
      local s = kp(kw) .. "/" .. ptr_seg(name)
      if allow_req and type(d) == "table" and is_array(d) then
        dep_req[#dep_req + 1] = { name, num_alias(name), string_list(s, kw, d), s }
      elseif allow_sch and (type(d) == "table" or type(d) == "boolean") then
        dep_sch[#dep_sch + 1] = { name, num_alias(name), compile_node(ctx, d, s) }
      else
        schema_error(s, "%s: bad dependency %s", kw, show(d))
      end
    end
  end
  if draft <= 7 and has("dependencies") then add_deps("dependencies", rawget(node, "dependencies"), true, true) end
  if draft >= 2019 and has("dependentRequired") then add_deps("dependentRequired", rawget(node, "dependentRequired"), true, false) end
  if draft >= 2019 and has("dependentSchemas") then add_deps("dependentSchemas", rawget(node, "dependentSchemas"), false, true) end
  if #dep_req > 0 or #dep_sch > 0 then
    local nr, ns = #dep_req, #dep_sch
    add(function(v)
      if not is_obj and (type(v) ~= "table" or table_kind(v) ~= "object") then return end
      for i = 1, nr do
        local d = dep_req[i]
        if get_prop(v, d[1], d[2]) ~= nil then
          local list = d[3]
          for j = 1, #list do
            if get_prop(v, list[j], num_alias(list[j])) == nil then
              return fail("dependentRequired", d[4], MSG.dependentRequired, v, { d[1], list[j] })
            end
          end
        end
      end
      for i = 1, ns do
        local d = dep_sch[i]
        if get_prop(v, d[1], d[2]) ~= nil then
          local e = d[3](v)
          if e then return e end
        end
      end
    end)
  end

  -- combinators
  if has("allOf") then
    local fns = compile_list(ctx, node, "allOf", sp)
    for _, f in ipairs(fns) do add(f) end
  end
  if has("anyOf") then
    local fns = compile_list(ctx, node, "anyOf", sp)
    local n = #fns
    local s = kp("anyOf")
    add(function(v)
      local errs
      for i = 1, n do
        local e = fns[i](v)
        if not e then return nil end
        errs = errs or {}
        errs[i] = e
      end
      return fail("anyOf", s, MSG.anyOf, v, errs)
    end)
  end
  if has("oneOf") then
    local fns = compile_list(ctx, node, "oneOf", sp)
    local n = #fns
    local s = kp("oneOf")
    add(function(v)
      local first, errs
      for i = 1, n do
        local e = fns[i](v)
        if not e then
          if first then return fail("oneOf", s, MSG.oneOf_many, v, { first, i }) end
          first = i
        else
          errs = errs or {}
          errs[i] = e
        end
      end
      if not first then return fail("oneOf", s, MSG.oneOf_none, v, errs) end
    end)
  end
  if has("not") then
    local f = compile_node(ctx, rawget(node, "not"), kp("not"))
    local s = kp("not")
    add(function(v) if not f(v) then return fail("not", s, MSG["not"], v) end end)
  end
  if draft >= 7 and has("if") and (has("then") or has("else")) then
    local fi = compile_node(ctx, rawget(node, "if"), kp("if"))
    local ft = has("then") and compile_node(ctx, rawget(node, "then"), kp("then"))
    local fe = has("else") and compile_node(ctx, rawget(node, "else"), kp("else"))
    add(function(v)
      if not fi(v) then
        if ft then return ft(v) end
      elseif fe then
        return fe(v)
      end
    end)
  end
  return combine(checks)
end

function compile_node(ctx, node, sp)
  if node == true then return ok_fn end
  if node == false then
    return function(v) return fail("false", sp, MSG.false_schema, v) end
  end
  if type(node) ~= "table" or (next(node) ~= nil and table_kind(node) ~= "object") then
    schema_error(sp, "a schema must be an object or a boolean, got %s", show(node))
  end
  local cell = ctx.cells[node]
  if cell then
    if cell.fn then return cell.fn end
    if cell.descents == ctx.descents then
      schema_error(sp, "$ref cycle: %s applies to the same value again without looking inside it", ctx.spaths[node] or sp)
    end
    return function(v) return cell.fn(v) end
  end
  cell = { descents = ctx.descents }
  ctx.cells[node] = cell
  if not ctx.bases[node] then index(ctx, node, ctx.base, sp) end
  local fn = compile_keywords(ctx, node, ctx.spaths[node] or sp)
  cell.fn = fn
  return fn
end

-- The public API -----------------------------------------------------------------------------------

local Validator = {}
Validator.__index = Validator

local function make_error(e)
  local path = path_of(e)
  local err = klua.errors.new { name = VALUE_ERROR, message = path .. ": " .. message_of(e) }
  err.path = path
  err.keyword = e.kw
  err.schema_path = e.sp
  return err
end

function Validator:validate(value)
  if value == nil then value = NULL end
  local e = self.fn(value)
  if not e then return true end
  return nil, make_error(e)
end

-- validator:check(value) -> boolean: validity alone, no error built.
function Validator:check(value)
  if value == nil then value = NULL end
  return self.fn(value) == nil
end

local COMPILE_OPTS = { references = true, draft = true, formats = true }

function M.compile(schema, opts)
  local fn_name = "klua.json_schema.compile"
  if opts ~= nil then
    if type(opts) ~= "table" then klua.errors.bad_argument(fn_name, 2, "opts must be a table, got " .. type(opts)) end
    for k in next, opts do
      if not COMPILE_OPTS[k] then klua.errors.bad_argument(fn_name, 2, "unknown option " .. tostring(k)) end
    end
    if opts.references ~= nil and type(opts.references) ~= "table" then
      klua.errors.bad_argument(fn_name, 2, "references must be a table of uri = schema")
    end
    if opts.draft ~= nil and not DRAFTS[opts.draft] then
      klua.errors.bad_argument(fn_name, 2, "draft must be 4, 6, 7, \"2019-09\" or \"2020-12\", got " .. tostring(opts.draft))
    end
  else
    opts = {}
  end
  local st = type(schema)
  if st == "string" then
    local t, err = json.decode(schema)
    if t == nil then
      return nil, klua.errors.new { name = SCHEMA_ERROR, message = "schema is not JSON: " .. err.message }
    end
    schema = t
  elseif st ~= "table" and st ~= "boolean" then
    klua.errors.bad_argument(fn_name, 1, "expected a schema (JSON text, a table or a boolean), got " .. st)
  end
  local draft = DRAFTS[opts.draft]
  if not draft then
    draft = type(schema) == "table" and draft_of_uri(rawget(schema, "$schema")) or 7
    if draft == 3 then
      return nil, klua.errors.new { name = SCHEMA_ERROR, message = "draft 3 schemas are not supported" }
    end
  end
  local base = ""
  local ctx = { draft = draft, formats = opts.formats == true, references = opts.references, resources = {},
                anchors = {}, bases = {}, spaths = {}, cells = {}, loaded = {}, base = base, descents = 0 }
  local ok, fn = pcall(function()
    if type(schema) == "table" then
      ctx.resources[""] = schema
      index(ctx, schema, base, "#")
    end
    return compile_node(ctx, schema, "#")
  end)
  if not ok then
    if type(fn) == "table" and fn.schema_error then
      local err = klua.errors.new { name = SCHEMA_ERROR, message = ("%s: %s"):format(fn.sp, fn.schema_error) }
      err.schema_path = fn.sp
      return nil, err
    end
    error(fn, 0)
  end
  local title = type(schema) == "table" and rawget(schema, "title") or nil
  return setmetatable({ fn = fn, title = type(title) == "string" and title or nil, draft = draft,
                        schema = schema }, Validator)
end

return M
