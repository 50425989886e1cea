-- How `klua consume` prints messages: -f templates (kcat's tokens), --json lines, --filter and
-- --grep. Each is compiled once into a function called per message; printing goes through
-- klua._stdout (bindings/lua/stdout_fast.lua), a buffer appended to through the FFI, so a
-- message costs a few appends and no string building.
local M = {}
local out = klua._stdout
local put, put_int, put_u32be = out.put, out.put_int, out.put_u32be

-- The tokens of -f, as kcat 1.7.1 reads them (%v is klua's older name for %s).
M.TOKENS = "%s value, %S value size, %R value size as 4 bytes big-endian, %k key, %K key size, " ..
  "%T timestamp, %h headers, %t topic, %p partition, %o offset, %v value, %% a percent sign"

-- kcat's escapes in the literal text of a template (strtoul's reading): \n \t \r, \xHH, \NNN (decimal; octal after
-- a leading 0), and \c for any other c (so \\ is a backslash).
local function unescape(s)
  local o, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    local d = s:sub(i + 1, i + 1)
    if c ~= "\\" or d == "" then
      o[#o + 1] = c
      i = i + 1
    elseif d == "n" or d == "t" or d == "r" then
      o[#o + 1] = d == "n" and "\n" or d == "t" and "\t" or "\r"
      i = i + 2
    else
      local num, base = s:match("^[xX](%x+)", i + 1), 16
      if num then
        i = i + 2 + #num
      else
        num = s:match("^0[xX](%x+)", i + 1)
        if num then
          i = i + 3 + #num
        else
          num = s:match("^0[0-7]*", i + 1)
          if num then base = 8 else num, base = s:match("^%d+", i + 1), 10 end
          if num then i = i + 1 + #num end
        end
      end
      if num then
        -- strtoul's value truncated to a byte, as kcat stores it
        o[#o + 1] = string.char(base == 16 and tonumber(num:sub(-2), 16) or tonumber(num, base) % 256)
      else
        o[#o + 1] = d
        i = i + 2
      end
    end
  end
  return table.concat(o)
end
M.unescape = unescape

-- A message without headers has no headers field (reading it builds an empty list): rawget.
local rawget = rawget

local function put_headers(hs)
  if hs == nil then return end
  for i = 1, #hs do
    local h = hs[i]
    if i > 1 then put(",") end
    put(h[1])
    put("=")
    if h[2] == nil then put("NULL") else put(h[2]) end
  end
end

-- Field code per token: kcat's output for each (a null key/value prints nothing, or the -Z
-- marker; sizes are -1 for null; a missing timestamp is -1; headers are name=value joined by
-- commas, a null value as name=NULL).
local CODE = {
  s = "do local v = m.value if v then put(v) NULLV end end",
  S = "do local v = m.value put_int(v and #v or -1) end",
  R = "do local v = m.value put_u32be(v and #v or -1) end",
  k = "do local v = m.key if v then put(v) NULLK end end",
  K = "do local v = m.key put_int(v and #v or -1) end",
  T = "put_int(m.timestamp or -1)",
  h = "put_headers(rawget(m, 'headers'))",
  t = "put(m.topic)",
  p = "put_int(m.partition)",
  o = "put_int(m.offset)",
}
CODE.v = CODE.s

-- Compiles a -f template into emit(msg). null: the text printed for a null key or value (-Z),
-- or nil. Returns nil, message for an unknown token.
function M.template(fmt, null)
  local parts, lits = {}, {}
  local text = {}
  local function flush_text()
    if #text > 0 then
      lits[#lits + 1] = unescape(table.concat(text))
      parts[#parts + 1] = "put(L" .. #lits .. ")"
      text = {}
    end
  end
  local i = 1
  while i <= #fmt do
    local at = fmt:find("%", i, true)
    if not at then
      text[#text + 1] = fmt:sub(i)
      break
    end
    text[#text + 1] = fmt:sub(i, at - 1)
    local c = fmt:sub(at + 1, at + 1)
    if c == "%" then
      text[#text + 1] = "%"
    elseif CODE[c] then
      flush_text()
      local code = CODE[c]:gsub("NULLV", null and "else put(NULL)" or ""):gsub("NULLK", null and "else put(NULL)" or "")
      parts[#parts + 1] = code
    elseif c == "" then
      return nil, "a lone % at the end of the format (write %% for a percent sign)"
    else
      return nil, "unknown token %" .. c .. " in the format (known: " .. M.TOKENS .. ")"
    end
    i = at + 2
  end
  flush_text()
  local src = { "local put, put_int, put_u32be, put_headers, NULL, lits, rawget = ...\n" }
  for n = 1, #lits do src[#src + 1] = "local L" .. n .. " = lits[" .. n .. "]\n" end
  src[#src + 1] = "return function(m)\n" .. table.concat(parts, "\n") .. "\nend\n"
  local chunk = assert(loadstring(table.concat(src), "=klua consume -f"))
  return chunk(put, put_int, put_u32be, put_headers, null, lits, rawget)
end

-- --json: one object per message, keys sorted (as klua.json.encode writes them):
--   {"headers":[{"name":N,"value":V},...],"key":K,"offset":O,"partition":P,"timestamp":T,"topic":TOPIC,"value":V}
-- A key, value, header name or header value that is not valid UTF-8 is written as base64 in a
-- twin field instead ("key_b64", "value_b64", "name_b64", "value_b64"); null stays null in the
-- plain field. binary = "base64" writes every key, value and header value as base64 (their
-- _b64 fields, null included), so a reader needs one decoding path. key_json, value_json: the key or
-- value is already one line of JSON text (decoded by --key-format/--value-format), written as it is.
function M.json(binary, key_json, value_json)
  local always = binary == "base64"
  local utf8, json_string, base64 = out.utf8, out.json_string, out.base64
  local function field(plain, b64, v)  -- plain: ',"key":'; b64: ',"key_b64":'
    if v == nil then
      put(always and b64 or plain)
      put("null")
    elseif not always and utf8(v) then
      put(plain)
      json_string(v)
    else
      put(b64)
      base64(v)
    end
  end
  local function raw(plain, v)
    put(plain)
    if v == nil then put("null") else put(v) end
  end
  local key_field = key_json and function(plain, _, v) raw(plain, v) end or field
  local value_field = value_json and function(plain, _, v) raw(plain, v) end or field
  local EMPTY = {}
  local quoted = setmetatable({}, { __index = function(t, topic)
    local q = klua.json.encode(topic, { invalid_utf8 = "replace" })
    t[topic] = q
    return q
  end })
  return function(m)
    put('{"headers":[')
    local hs = rawget(m, "headers") or EMPTY
    for i = 1, #hs do
      local h = hs[i]
      local name = h[1]
      if utf8(name) then
        put(i > 1 and ',{"name":' or '{"name":')
        json_string(name)
      else
        put(i > 1 and ',{"name_b64":' or '{"name_b64":')
        base64(name)
      end
      field(',"value":', ',"value_b64":', h[2])
      put("}")
    end
    put("]")
    key_field(',"key":', ',"key_b64":', m.key)
    put(',"offset":')
    put_int(m.offset)
    put(',"partition":')
    put_int(m.partition)
    local ts = m.timestamp
    if ts then
      put(',"timestamp":')
      put_int(ts)
    else
      put(',"timestamp":null')
    end
    put(',"topic":')
    put(quoted[m.topic])
    value_field(',"value":', ',"value_b64":', m.value)
    put("}\n")
  end
end

-- What --filter EXPR sees besides the message's fields: no io, os, require, load, debug or
-- setting of globals; the `string` table without string.dump (a string's methods are still
-- Lua's string library, whose dump is harmless without load).
local function sandbox()
  local s = {}
  for _, k in ipairs({ "byte", "char", "find", "format", "gmatch", "gsub", "len", "lower", "match", "rep",
                       "reverse", "sub", "upper" }) do s[k] = string[k] end
  local m = {}
  for k, v in pairs(math) do m[k] = v end
  local env = { string = s, math = m, tonumber = tonumber, tostring = tostring, type = type, pairs = pairs,
                ipairs = ipairs, next = next, select = select, unpack = unpack, null = klua.json.null,
                table = { concat = table.concat } }
  return setmetatable(env, { __newindex = function(_, k)
    error("--filter cannot set the global " .. tostring(k), 2)
  end })
end

local function mentions(expr, name)
  return expr:find("%f[%w_]" .. name .. "%f[^%w_]") ~= nil
end

-- --filter EXPR: a Lua expression over key, value, headers, json, topic, partition, offset,
-- timestamp (and null, klua.json.null), compiled once. headers maps each name to its (last)
-- value, and holds the {name, value} pairs in order as a list; json is the value decoded as
-- JSON (nil when it is not JSON), decoded only when EXPR mentions json. Returns keep(msg) ->
-- truthy, or nil and the syntax error.
function M.filter(expr)
  local src = "return function(key, value, headers, json, topic, partition, offset, timestamp) return (" ..
    expr .. "\n) end"
  local chunk, err = loadstring(src, "=--filter")
  if not chunk then return nil, (err:gsub("^%-%-filter:%d+: ", "")) end
  setfenv(chunk, sandbox())
  local ok, f = pcall(chunk)
  if not ok then return nil, tostring(f) end
  local want_json, want_headers = mentions(expr, "json"), mentions(expr, "headers")
  local decode, null = klua.json.decode, klua.json.null
  return function(m)
    local headers, json
    if want_headers then
      headers = {}
      local hs = m.headers
      for i = 1, #hs do
        local h = hs[i]
        headers[i] = h
        headers[h[1]] = h[2]
      end
    end
    if want_json and m.value then
      local v = decode(m.value)
      if v ~= nil and v ~= null then json = v end
    end
    return f(m.key, m.value, headers, json, m.topic, m.partition, m.offset, m.timestamp)
  end
end

-- --grep TEXT: the key or the value contains TEXT (a plain substring; Lua patterns through
-- --filter, e.g. --filter 'value:find("^ab%d")').
function M.grep(text)
  local find = string.find
  return function(m)
    local v, k = m.value, m.key
    return (v ~= nil and find(v, text, 1, true) ~= nil) or (k ~= nil and find(k, text, 1, true) ~= nil)
  end
end

return M
