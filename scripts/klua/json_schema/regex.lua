-- klua.json_schema.regex: the ECMA-262 regular expressions of JSON Schema's `pattern` and
-- `patternProperties`, compiled once per schema into a matcher.
--
--   local re, err = require("klua.json_schema.regex").compile("^[a-z]+(-[a-z]+)*$")
--   re(s) -> true when the pattern matches somewhere in s (JSON Schema patterns are not anchored)
--
-- Supported: literals, `.`, `^`, `$`, classes `[a-z]` `[^...]` with ranges and escapes, `\d \D \w \W
-- \s \S \b \B`, `\t \n \r \f \v \0 \xHH \uHHHH \cX`, escaped punctuation, groups `(...)`, `(?:...)`,
-- `(?<name>...)`, alternation `|`, quantifiers `* + ? {n} {n,} {n,m}` and their lazy forms. Matching is
-- on code points of UTF-8 text (`.` and `[^a]` consume a whole character). Refused (an error, never
-- silently accepted): backreferences, lookahead and lookbehind, `\p{...}`, `\k<name>`, and any
-- other escape of a letter.
--
-- Patterns whose every atom matches exactly one ASCII byte (no `.`, no negated class, no `\s`, no
-- groups or alternation) are translated to a Lua pattern and run by string.find; the others by a
-- backtracking matcher of closures in continuation-passing style.
local M = {}

local byte, sub, char = string.byte, string.sub, string.char
local floor = math.floor

local MAX_REPEAT = 1000

-- Decodes the UTF-8 character at byte i: code point, next byte index. Bad bytes count as one
-- character each (the JSON decoder never hands out invalid UTF-8).
local function decode_at(s, i)
  local c = byte(s, i)
  if c < 0x80 then return c, i + 1 end
  if c >= 0xF0 then
    local c2, c3, c4 = byte(s, i + 1, i + 3)
    if c4 then return (c - 0xF0) * 0x40000 + (c2 - 0x80) * 0x1000 + (c3 - 0x80) * 0x40 + (c4 - 0x80), i + 4 end
  elseif c >= 0xE0 then
    local c2, c3 = byte(s, i + 1, i + 2)
    if c3 then return (c - 0xE0) * 0x1000 + (c2 - 0x80) * 0x40 + (c3 - 0x80), i + 3 end
  elseif c >= 0xC0 then
    local c2 = byte(s, i + 1)
    if c2 then return (c - 0xC0) * 0x40 + (c2 - 0x80), i + 2 end
  end
  return c, i + 1
end
M.decode_at = decode_at

-- Character sets: an ASCII lookup table plus a list of ranges for the rest.
local function new_set() return { ascii = {}, ranges = {}, negate = false } end

local function set_add_range(set, lo, hi)
  for cp = lo, math.min(hi, 127) do set.ascii[cp] = true end
  if hi > 127 then set.ranges[#set.ranges + 1] = { math.max(lo, 128), hi } end
end

local SPACE_RANGES = { { 9, 13 }, { 32, 32 }, { 0xA0, 0xA0 }, { 0x1680, 0x1680 }, { 0x2000, 0x200A },
                       { 0x2028, 0x2029 }, { 0x202F, 0x202F }, { 0x205F, 0x205F }, { 0x3000, 0x3000 },
                       { 0xFEFF, 0xFEFF } }
local WORD_RANGES = { { 48, 57 }, { 65, 90 }, { 95, 95 }, { 97, 122 } }
local DIGIT_RANGES = { { 48, 57 } }

local function invert(ranges)
  local out, lo = {}, 0
  for _, r in ipairs(ranges) do
    if r[1] > lo then out[#out + 1] = { lo, r[1] - 1 } end
    lo = r[2] + 1
  end
  out[#out + 1] = { lo, 0x10FFFF }
  return out
end

local CLASS_RANGES = { d = DIGIT_RANGES, w = WORD_RANGES, s = SPACE_RANGES, D = invert(DIGIT_RANGES),
                       W = invert(WORD_RANGES), S = invert(SPACE_RANGES) }

local function set_test(set)
  local ascii, ranges, negate = set.ascii, set.ranges, set.negate
  local n = #ranges
  return function(cp)
    local hit
    if cp < 128 then
      hit = ascii[cp] == true
    else
      hit = false
      for k = 1, n do
        local r = ranges[k]
        if cp >= r[1] and cp <= r[2] then hit = true; break end
      end
    end
    if negate then return not hit end
    return hit
  end
end

local function is_word(s, i)
  local c = byte(s, i)
  return c ~= nil and ((c >= 48 and c <= 57) or (c >= 65 and c <= 90) or c == 95 or (c >= 97 and c <= 122))
end

local function is_line_terminator(cp) return cp == 10 or cp == 13 or cp == 0x2028 or cp == 0x2029 end

-- Parser ------------------------------------------------------------------------------------------
-- AST nodes: { t = "char", cp = n } | { t = "set", set = s, ascii_only = bool } | { t = "any" }
-- | { t = "bol" } | { t = "eol" } | { t = "wordb", neg = bool } | { t = "group", alt = node }
-- | { t = "alt", list } | { t = "seq", list } | { t = "rep", node, min, max, lazy }

local Parser = {}
Parser.__index = Parser

local function perr(p, msg)
  error({ regex_error = ("%s at offset %d of /%s/"):format(msg, p.i - 1, p.src) }, 0)
end

function Parser:peek() return byte(self.src, self.i) end

function Parser:next_cp()
  local cp, j = decode_at(self.src, self.i)
  self.i = j
  return cp
end

local function hexval(p, n)
  local s = sub(p.src, p.i, p.i + n - 1)
  if #s ~= n or not s:match("^%x+$") then perr(p, "bad hexadecimal escape") end
  p.i = p.i + n
  return tonumber(s, 16)
end

-- An escape after the backslash. in_class: inside [...] (\b is a backspace there).
-- Returns ("cp", n) or ("ranges", list) or ("assert", node).
function Parser:escape(in_class)
  local c = self:peek()
  if not c then perr(self, "trailing backslash") end
  local ch = char(c)
  self.i = self.i + 1
  if CLASS_RANGES[ch] then return "ranges", CLASS_RANGES[ch] end
  if ch == "t" then return "cp", 9 end
  if ch == "n" then return "cp", 10 end
  if ch == "v" then return "cp", 11 end
  if ch == "f" then return "cp", 12 end
  if ch == "r" then return "cp", 13 end
  if ch == "b" then
    if in_class then return "cp", 8 end
    return "assert", { t = "wordb", neg = false }
  end
  if ch == "B" and not in_class then return "assert", { t = "wordb", neg = true } end
  if ch == "0" then
    local d = self:peek()
    if d and d >= 48 and d <= 57 then perr(self, "octal escapes are not supported") end
    return "cp", 0
  end
  if ch == "x" then return "cp", hexval(self, 2) end
  if ch == "u" then
    if self:peek() == 123 then perr(self, "\\u{...} escapes are not supported") end
    local hi = hexval(self, 4)
    -- A surrogate pair written as two escapes is one character.
    if hi >= 0xD800 and hi <= 0xDBFF and sub(self.src, self.i, self.i + 1) == "\\u" then
      local save = self.i
      self.i = self.i + 2
      local ok, lo = pcall(hexval, self, 4)
      if ok and lo >= 0xDC00 and lo <= 0xDFFF then return "cp", 0x10000 + (hi - 0xD800) * 0x400 + (lo - 0xDC00) end
      self.i = save
    end
    return "cp", hi
  end
  if ch == "c" then
    local l = self:peek()
    if l and ((l >= 65 and l <= 90) or (l >= 97 and l <= 122)) then
      self.i = self.i + 1
      return "cp", l % 32
    end
    perr(self, "bad \\c escape")
  end
  if c >= 49 and c <= 57 then perr(self, "backreferences are not supported") end
  if ch == "p" or ch == "P" then perr(self, "unicode property escapes \\" .. ch .. "{...} are not supported") end
  if ch == "k" then perr(self, "named backreferences are not supported") end
  if (c >= 65 and c <= 90) or (c >= 97 and c <= 122) then perr(self, "unsupported escape \\" .. ch) end
  if c == 45 and not in_class then perr(self, "unsupported escape \\-") end
  self.i = self.i - 1
  return "cp", self:next_cp()
end

function Parser:class()
  -- after '['
  local set = new_set()
  local ascii_only = true
  if self:peek() == 94 then set.negate = true; self.i = self.i + 1 end
  local first = true
  while true do
    local c = self:peek()
    if not c then perr(self, "unterminated character class") end
    if c == 93 then self.i = self.i + 1; break end
    first = false
    local kind, v
    if c == 92 then
      self.i = self.i + 1
      kind, v = self:escape(true)
    else
      kind, v = "cp", self:next_cp()
    end
    if kind == "ranges" then
      for _, r in ipairs(v) do set_add_range(set, r[1], r[2]) end
      if v == SPACE_RANGES or v[#v][2] > 127 then ascii_only = false end
    else
      local lo, hi = v, v
      -- a range a-z (a '-' before ']' is a literal)
      if self:peek() == 45 and byte(self.src, self.i + 1) ~= 93 and byte(self.src, self.i + 1) then
        self.i = self.i + 1
        local k2, v2
        if self:peek() == 92 then
          self.i = self.i + 1
          k2, v2 = self:escape(true)
        else
          k2, v2 = "cp", self:next_cp()
        end
        if k2 ~= "cp" then perr(self, "a class escape cannot end a range") end
        hi = v2
        if hi < lo then perr(self, "range out of order in character class") end
      end
      if hi > 127 then ascii_only = false end
      set_add_range(set, lo, hi)
    end
  end
  local _ = first
  return { t = "set", set = set, ascii_only = ascii_only and not set.negate }
end

function Parser:atom()
  local c = self:peek()
  if c == 40 then -- (
    self.i = self.i + 1
    if self:peek() == 63 then -- ?
      local nx = byte(self.src, self.i + 1)
      if nx == 58 then
        self.i = self.i + 2
      elseif nx == 60 and byte(self.src, self.i + 2) ~= 61 and byte(self.src, self.i + 2) ~= 33 then
        local close = self.src:find(">", self.i + 2, true)
        if not close then perr(self, "unterminated group name") end
        self.i = close + 1
      elseif nx == 61 or nx == 33 or nx == 60 then
        perr(self, "lookahead and lookbehind assertions are not supported")
      else
        perr(self, "bad group")
      end
    end
    local alt = self:alternation()
    if self:peek() ~= 41 then perr(self, "missing )") end
    self.i = self.i + 1
    return { t = "group", alt = alt }
  elseif c == 91 then
    self.i = self.i + 1
    return self:class()
  elseif c == 46 then
    self.i = self.i + 1
    return { t = "any" }
  elseif c == 94 then
    self.i = self.i + 1
    return { t = "bol" }
  elseif c == 36 then
    self.i = self.i + 1
    return { t = "eol" }
  elseif c == 92 then
    self.i = self.i + 1
    local kind, v = self:escape(false)
    if kind == "cp" then return { t = "char", cp = v } end
    if kind == "assert" then return v end
    local set = new_set()
    for _, r in ipairs(v) do set_add_range(set, r[1], r[2]) end
    return { t = "set", set = set, ascii_only = v == DIGIT_RANGES or v == WORD_RANGES }
  elseif c == 41 then
    perr(self, "unmatched )")
  elseif c == 42 or c == 43 or c == 63 then
    perr(self, "nothing to repeat")
  end
  return { t = "char", cp = self:next_cp() }
end

-- {n}, {n,}, {n,m} at self.i (on '{'): min, max or nil when it is not a quantifier (then '{' is a
-- literal, as ECMA's Annex B and Python's re read it).
function Parser:braces()
  local a, b, comma, close = self.src:match("^{(%d+)(,?)(%d*)}()", self.i)
  if not a then return nil end
  local min = tonumber(a)
  local max
  if b == "" then
    if comma ~= "" then perr(self, "bad quantifier") end
    max = min
  elseif comma == "" then
    max = math.huge
  else
    max = tonumber(comma)
  end
  if min > MAX_REPEAT or (max ~= math.huge and max > MAX_REPEAT) then perr(self, "repeat count above 1000") end
  if max < min then perr(self, "numbers out of order in {} quantifier") end
  self.i = close
  return min, max
end

function Parser:sequence()
  local list = {}
  while true do
    local c = self:peek()
    if not c or c == 124 or c == 41 then break end
    local a = self:atom()
    local min, max
    c = self:peek()
    if c == 42 then min, max = 0, math.huge; self.i = self.i + 1
    elseif c == 43 then min, max = 1, math.huge; self.i = self.i + 1
    elseif c == 63 then min, max = 0, 1; self.i = self.i + 1
    elseif c == 123 then min, max = self:braces()
    end
    if min then
      if a.t == "bol" or a.t == "eol" or a.t == "wordb" then perr(self, "nothing to repeat") end
      local lazy = false
      if self:peek() == 63 then lazy = true; self.i = self.i + 1 end
      local q = self:peek()
      if q == 42 or q == 43 or q == 63 or (q == 123 and self.src:match("^{%d+,?%d*}", self.i)) then
        perr(self, "nothing to repeat")
      end
      a = { t = "rep", node = a, min = min, max = max, lazy = lazy }
    end
    list[#list + 1] = a
  end
  return { t = "seq", list = list }
end

function Parser:alternation()
  local alts = { self:sequence() }
  while self:peek() == 124 do
    self.i = self.i + 1
    alts[#alts + 1] = self:sequence()
  end
  if #alts == 1 then return alts[1] end
  return { t = "alt", list = alts }
end

-- Lua pattern translation -------------------------------------------------------------------------

local LUA_MAGIC = "^$()%.[]*+-?"

local function lua_char(cp)
  local ch = char(cp)
  if LUA_MAGIC:find(ch, 1, true) then return "%" .. ch end
  if cp == 0 then return "%z" end
  return ch
end

local function lua_set(set)
  local parts = {}
  for cp = 0, 127 do
    if set.ascii[cp] then
      local ch = char(cp)
      if ch:match("[%w]") then parts[#parts + 1] = ch
      elseif cp == 0 then parts[#parts + 1] = "%z"
      else parts[#parts + 1] = "%" .. ch end
    end
  end
  if #parts == 0 then return nil end
  return "[" .. table.concat(parts) .. "]"
end

-- A Lua pattern equivalent to the sequence, or nil.
local function to_lua(ast)
  if ast.t ~= "seq" then return nil end
  local out = {}
  local list = ast.list
  for k, node in ipairs(list) do
    local t = node.t
    if t == "bol" then
      if k ~= 1 then return nil end
      out[#out + 1] = "^"
    elseif t == "eol" then
      if k ~= #list then return nil end
      out[#out + 1] = "$"
    else
      local q = ""
      local min, max = 1, 1
      if t == "rep" then
        min, max = node.min, node.max
        node = node.node
        t = node.t
        if node.lazy then return nil end
      end
      local atom
      if t == "char" and node.cp < 128 then
        atom = lua_char(node.cp)
      elseif t == "set" and node.ascii_only then
        atom = lua_set(node.set)
      end
      if not atom then return nil end
      if list[k].lazy then return nil end
      if min == 1 and max == 1 then
        out[#out + 1] = atom
      elseif min == 0 and max == 1 then
        out[#out + 1] = atom .. "?"
      elseif max == math.huge then
        if min > 8 then return nil end
        for _ = 1, min - 1 do out[#out + 1] = atom end
        out[#out + 1] = atom .. (min == 0 and "*" or "+")
      else
        if max > 16 then return nil end
        for _ = 1, min do out[#out + 1] = atom end
        for _ = min + 1, max do out[#out + 1] = atom .. "?" end
      end
      local _ = q
    end
  end
  return table.concat(out)
end

-- Backtracking matcher ----------------------------------------------------------------------------
-- A compiled node is m(s, i, k) -> bool: does the node match at byte i with a continuation k(j)
-- that accepts the rest?

local build

local function build_seq(list, from)
  if from > #list then return function(s, i, k) return k(i) end end
  local head = build(list[from])
  if from == #list then return head end
  local rest = build_seq(list, from + 1)
  return function(s, i, k)
    return head(s, i, function(j) return rest(s, j, k) end)
  end
end

function build(node)
  local t = node.t
  if t == "char" then
    local cp = node.cp
    if cp < 128 then
      return function(s, i, k)
        if byte(s, i) == cp then return k(i + 1) end
        return false
      end
    end
    local lit = node.lit or ""
    if lit == "" then
      -- the UTF-8 bytes of the code point
      if cp < 0x800 then lit = char(0xC0 + floor(cp / 64), 0x80 + cp % 64)
      elseif cp < 0x10000 then lit = char(0xE0 + floor(cp / 4096), 0x80 + floor(cp / 64) % 64, 0x80 + cp % 64)
      else lit = char(0xF0 + floor(cp / 262144), 0x80 + floor(cp / 4096) % 64, 0x80 + floor(cp / 64) % 64,
                      0x80 + cp % 64) end
    end
    local n = #lit
    return function(s, i, k)
      if sub(s, i, i + n - 1) == lit then return k(i + n) end
      return false
    end
  elseif t == "set" then
    local test = set_test(node.set)
    return function(s, i, k)
      if i > #s then return false end
      local cp, j = decode_at(s, i)
      if test(cp) then return k(j) end
      return false
    end
  elseif t == "any" then
    return function(s, i, k)
      if i > #s then return false end
      local cp, j = decode_at(s, i)
      if is_line_terminator(cp) then return false end
      return k(j)
    end
  elseif t == "bol" then
    return function(s, i, k)
      if i == 1 then return k(i) end
      return false
    end
  elseif t == "eol" then
    return function(s, i, k)
      if i == #s + 1 then return k(i) end
      return false
    end
  elseif t == "wordb" then
    local neg = node.neg
    return function(s, i, k)
      local at = is_word(s, i) ~= (i > 1 and is_word(s, i - 1))
      if at ~= neg then return k(i) end
      return false
    end
  elseif t == "group" then
    return build(node.alt)
  elseif t == "seq" then
    return build_seq(node.list, 1)
  elseif t == "alt" then
    local ms = {}
    for n, a in ipairs(node.list) do ms[n] = build(a) end
    return function(s, i, k)
      for n = 1, #ms do
        if ms[n](s, i, k) then return true end
      end
      return false
    end
  elseif t == "rep" then
    local m, min, max, lazy = build(node.node), node.min, node.max, node.lazy
    local function rep(s, i, k, count)
      if count < min then
        return m(s, i, function(j)
          if j == i and count + 1 >= min then return rep(s, j, k, min) end
          return rep(s, j, k, count + 1)
        end)
      end
      if lazy then
        if k(i) then return true end
        if count >= max then return false end
        return m(s, i, function(j) return j ~= i and rep(s, j, k, count + 1) end)
      end
      if count < max and m(s, i, function(j) return j ~= i and rep(s, j, k, count + 1) end) then return true end
      return k(i)
    end
    return function(s, i, k) return rep(s, i, k, 0) end
  end
  error("regex: unknown node " .. tostring(t))
end

local function accept() return true end

local function anchored_start(ast)
  if ast.t == "seq" then
    local first = ast.list[1]
    if not first then return false end
    if first.t == "bol" then return true end
    if first.t == "group" then return anchored_start(first.alt) end
    return false
  elseif ast.t == "alt" then
    for _, a in ipairs(ast.list) do
      if not anchored_start(a) then return false end
    end
    return true
  end
  return false
end

-- compile(source) -> matcher | nil, message
function M.compile(source)
  if type(source) ~= "string" then return nil, "a pattern must be a string" end
  local p = setmetatable({ src = source, i = 1 }, Parser)
  local ok, ast = pcall(function()
    local a = p:alternation()
    if p.i <= #source then perr(p, "unmatched )") end
    return a
  end)
  if not ok then
    if type(ast) == "table" and ast.regex_error then return nil, ast.regex_error end
    error(ast, 0)
  end
  local lp = to_lua(ast)
  if lp then
    local find = string.find
    if lp == "" then return function() return true end end
    return function(s) return find(s, lp) ~= nil end, lp
  end
  local m = build(ast)
  if anchored_start(ast) then
    return function(s) return m(s, 1, accept) end
  end
  return function(s)
    local n = #s
    local i = 1
    while i <= n + 1 do
      if m(s, i, accept) then return true end
      local c = byte(s, i)
      -- start only at character boundaries
      if c and c >= 0xC0 then
        local _, j = decode_at(s, i)
        i = j
      else
        i = i + 1
      end
    end
    return false
  end
end

return M
