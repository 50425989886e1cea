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
-- Patterns without groups or alternation are translated to a Lua pattern and run by string.find:
-- for any text when every atom matches exactly one ASCII byte, for ASCII text only when they hold
-- `.`, negated classes or `\s` (on ASCII text a character is a byte). The others run on a Pike VM
-- (below), in time linear in the text. Lazy quantifiers match what greedy ones do: only whether
-- the pattern matches is asked.
local M = {}

local byte, sub, char = string.byte, string.sub, string.char

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

-- The Lua class of the ASCII characters a set matches (with negation applied), or nil when none.
local function lua_set(set)
  local parts = {}
  -- a negated set as [^...] of its members (only used on ASCII text, see to_lua)
  local function member(cp) return cp <= 127 and set.ascii[cp] == true end
  local cp = 0
  while cp <= 127 do
    if member(cp) then
      local ch = char(cp)
      local last = cp
      while member(last + 1) and char(last + 1):match("%w") do last = last + 1 end
      if ch:match("%w") and last >= cp + 2 then
        -- a run of letters or digits as a range (Lua's matcher scans a class entry by entry)
        while not char(last):match("%w") do last = last - 1 end
        parts[#parts + 1] = ch .. "-" .. char(last)
        cp = last
      elseif ch:match("%w") then parts[#parts + 1] = ch
      elseif cp == 0 then parts[#parts + 1] = "%z"
      else parts[#parts + 1] = "%" .. ch end
    end
    cp = cp + 1
  end
  if #parts == 0 then return nil end
  return (set.negate and "[^" or "[") .. table.concat(parts) .. "]"
end

-- A Lua pattern equivalent to the sequence, or nil. With ascii = false the pattern holds for any
-- text: only atoms that match exactly one ASCII byte qualify (a non-ASCII character is several
-- bytes). With ascii = true it need only hold for ASCII text, where every character is one byte:
-- "." and negated classes qualify too (the caller checks the text first).
local function to_lua(ast, ascii)
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
      local min, max = 1, 1
      if t == "rep" then
        min, max = node.min, node.max
        node = node.node
        t = node.t
      end
      local atom
      if t == "char" and node.cp < 128 then
        atom = lua_char(node.cp)
      elseif t == "set" and (node.ascii_only or ascii) then
        atom = lua_set(node.set)
      elseif t == "any" and ascii then
        atom = "[^\n\r]"
      end
      if not atom then return nil end
      if min == 1 and max == 1 then
        out[#out + 1] = atom
      elseif min == 0 and max == 1 then
        out[#out + 1] = atom .. "?"
      elseif max == math.huge then
        if min > 8 then return nil end
        for _ = 1, min - 1 do out[#out + 1] = atom end
        out[#out + 1] = atom .. (min == 0 and "*" or "+")
      else
        -- x{n} and x{n,n+1} only: a run of optional atoms (x?x?x?...) makes Lua's matcher try
        -- every combination of them, where a counted loop tries each count once.
        if max > 16 or max > min + 1 then return nil end
        for _ = 1, min do out[#out + 1] = atom end
        for _ = min + 1, max do out[#out + 1] = atom .. "?" end
      end
    end
  end
  return table.concat(out)
end

-- The matcher: a Thompson NFA run as a Pike VM (Russ Cox, "Regular Expression Matching: the
-- Virtual Machine Approach"). JSON Schema only asks whether a pattern matches, so no captures and
-- no priorities are needed: every thread advances in step over the text, one character at a time,
-- in time linear in the text (times the program's size) and without recursion; "^(a|aa)+$" or a
-- group repeated 100,000 times cost what "^a+$" does.
--
-- Program: a list of instructions { op, x, y }: CHAR cp | SET test | ANY | SPLIT a b | JMP a |
-- BOL | EOL | WORDB neg | MATCH.

local CHAR, SET, ANY, SPLIT, JMP, BOL, EOL, WORDB, MATCH = 1, 2, 3, 4, 5, 6, 7, 8, 9
local MAX_PROGRAM = 20000

local function emit(prog, op, x, y)
  local n = #prog + 1
  if n > MAX_PROGRAM then error({ regex_error = "pattern too large (over " .. MAX_PROGRAM .. " instructions)" }, 0) end
  prog[n] = { op, x, y }
  return n
end

local gen

local function gen_rep(prog, node)
  local body, min, max = node.node, node.min, node.max
  for _ = 1, min do gen(prog, body) end
  if max == math.huge then
    -- L: SPLIT body, out; body; JMP L
    local split = emit(prog, SPLIT)
    gen(prog, body)
    emit(prog, JMP, split)
    prog[split][2], prog[split][3] = split + 1, #prog + 1
  else
    local splits = {}
    for _ = min + 1, max do
      splits[#splits + 1] = emit(prog, SPLIT)
      gen(prog, body)
    end
    for _, sp in ipairs(splits) do prog[sp][2], prog[sp][3] = sp + 1, #prog + 1 end
  end
end

function gen(prog, node)
  local t = node.t
  if t == "char" then emit(prog, CHAR, node.cp)
  elseif t == "set" then emit(prog, SET, set_test(node.set))
  elseif t == "any" then emit(prog, ANY)
  elseif t == "bol" then emit(prog, BOL)
  elseif t == "eol" then emit(prog, EOL)
  elseif t == "wordb" then emit(prog, WORDB, node.neg)
  elseif t == "group" then gen(prog, node.alt)
  elseif t == "seq" then
    for _, n in ipairs(node.list) do gen(prog, n) end
  elseif t == "alt" then
    -- SPLIT a1, next; a1; JMP end; SPLIT a2, next; a2; JMP end; ...; an
    local jumps = {}
    local list = node.list
    for k = 1, #list - 1 do
      local split = emit(prog, SPLIT)
      gen(prog, list[k])
      jumps[#jumps + 1] = emit(prog, JMP)
      prog[split][2], prog[split][3] = split + 1, #prog + 1
    end
    gen(prog, list[#list])
    for _, j in ipairs(jumps) do prog[j][2] = #prog + 1 end
  elseif t == "rep" then gen_rep(prog, node)
  else error("regex: unknown node " .. tostring(t)) end
end

-- matcher(prog, anchored) -> function(s) -> bool. The thread lists are reused between calls
-- (a match never yields, so calls never overlap).
local function vm(prog, anchored)
  local np = #prog
  local ops, xs, ys = {}, {}, {}
  for k = 1, np do ops[k], xs[k], ys[k] = prog[k][1], prog[k][2], prog[k][3] end
  local mark = {}
  for k = 1, np do mark[k] = 0 end
  local clist, nlist, stack = {}, {}, {}
  local stamp = 0

  -- Adds pc's thread (following SPLIT, JMP and the assertions, which hold at byte i) to list of
  -- length n; returns the new length, or -1 when a MATCH is reached.
  local function add(list, n, pc, s, i)
    local sp = 1
    stack[1] = pc
    while sp > 0 do
      pc = stack[sp]
      sp = sp - 1
      if mark[pc] ~= stamp then
        mark[pc] = stamp
        local op = ops[pc]
        if op == SPLIT then
          sp = sp + 1; stack[sp] = ys[pc]
          sp = sp + 1; stack[sp] = xs[pc]
        elseif op == JMP then
          sp = sp + 1; stack[sp] = xs[pc]
        elseif op == BOL then
          if i == 1 then sp = sp + 1; stack[sp] = pc + 1 end
        elseif op == EOL then
          if i == #s + 1 then sp = sp + 1; stack[sp] = pc + 1 end
        elseif op == WORDB then
          local at = is_word(s, i) ~= (i > 1 and is_word(s, i - 1))
          if at ~= xs[pc] then sp = sp + 1; stack[sp] = pc + 1 end
        elseif op == MATCH then
          return -1
        else
          n = n + 1
          list[n] = pc
        end
      end
    end
    return n
  end

  return function(s)
    local len = #s
    stamp = stamp + 1
    local cn = add(clist, 0, 1, s, 1)
    if cn < 0 then return true end
    local i = 1
    while i <= len do
      local cp, j = decode_at(s, i)
      stamp = stamp + 1
      local nn = 0
      for t = 1, cn do
        local pc = clist[t]
        local op = ops[pc]
        local ok
        if op == CHAR then ok = xs[pc] == cp
        elseif op == SET then ok = xs[pc](cp)
        else ok = not is_line_terminator(cp) end -- ANY
        if ok then
          nn = add(nlist, nn, pc + 1, s, j)
          if nn < 0 then return true end
        end
      end
      if not anchored then
        -- a new thread at every position: the search is unanchored
        nn = add(nlist, nn, 1, s, j)
        if nn < 0 then return true end
      elseif nn == 0 then
        return false
      end
      clist, nlist = nlist, clist
      cn = nn
      i = j
    end
    return false
  end
end

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
  local prog = {}
  local okp, err = pcall(function()
    gen(prog, ast)
    emit(prog, MATCH)
  end)
  if not okp then
    if type(err) == "table" and err.regex_error then return nil, err.regex_error .. " in /" .. source .. "/" end
    error(err, 0)
  end
  local run = vm(prog, anchored_start(ast))
  local la = to_lua(ast, true)
  if la then
    -- ASCII text (the common case) by string.find, the rest by the VM
    local find = string.find
    return function(s)
      if not find(s, "[\128-\255]") then return find(s, la) ~= nil end
      return run(s)
    end, la
  end
  return run
end

return M
