-- klua.json_schema.format: checks for the `format` keyword, used when a schema is compiled with
-- { formats = true } (format is an annotation by default, as drafts 7 and 2019+ say).
-- Each check takes a string and returns true when it is well formed; non-strings always pass.
local M = {}

local tonumber = tonumber

local function leap(y) return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0 end
local MDAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function full_date(s)
  local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
  if not y then return false end
  y, m, d = tonumber(y), tonumber(m), tonumber(d)
  if m < 1 or m > 12 or d < 1 then return false end
  local max = MDAYS[m]
  if m == 2 and leap(y) then max = 29 end
  return d <= max
end

-- RFC 3339 full-time: hh:mm:ss[.frac](Z|+hh:mm|-hh:mm); a leap second only at 23:59:60 UTC.
local function full_time(s)
  local h, mi, sec, rest = s:match("^(%d%d):(%d%d):(%d%d)(.*)$")
  if not h then return false end
  local frac, zone = rest:match("^(%.%d+)(.*)$")
  if not frac then zone = rest end
  h, mi, sec = tonumber(h), tonumber(mi), tonumber(sec)
  if h > 23 or mi > 59 or sec > 60 then return false end
  local off_min
  if zone == "Z" or zone == "z" then
    off_min = 0
  else
    local sign, oh, om = zone:match("^([+-])(%d%d):(%d%d)$")
    if not sign then return false end
    oh, om = tonumber(oh), tonumber(om)
    if oh > 23 or om > 59 then return false end
    off_min = (oh * 60 + om) * (sign == "+" and 1 or -1)
  end
  if sec == 60 then
    local utc = ((h * 60 + mi - off_min) % 1440 + 1440) % 1440
    if utc ~= 23 * 60 + 59 then return false end
  end
  return true
end

M["date"] = full_date
M["time"] = full_time
M["date-time"] = function(s)
  local d, t = s:match("^(%d%d%d%d%-%d%d%-%d%d)[Tt](.+)$")
  return d ~= nil and full_date(d) and full_time(t)
end

M["ipv4"] = function(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return false end
  for _, p in ipairs({ a, b, c, d }) do
    if #p > 3 or (#p > 1 and p:sub(1, 1) == "0") or tonumber(p) > 255 then return false end
  end
  return true
end

M["ipv6"] = function(s)
  if s:find("[^%x:%.]") then return false end
  local head, tail = s, nil
  local dc = s:find("::", 1, true)
  if dc then
    if s:find("::", dc + 1, true) then return false end
    head, tail = s:sub(1, dc - 1), s:sub(dc + 2)
  end
  local groups = 0
  local function count(part, last)
    if part == "" then return true end
    local pieces = {}
    for p in (part .. ":"):gmatch("([^:]*):") do pieces[#pieces + 1] = p end
    for n, p in ipairs(pieces) do
      if n == #pieces and last and p:find(".", 1, true) then
        if not M.ipv4(p) then return false end
        groups = groups + 2
      elseif #p >= 1 and #p <= 4 and not p:find("[^%x]") then
        groups = groups + 1
      else
        return false
      end
    end
    return true
  end
  if not count(head, tail == nil) then return false end
  if tail and not count(tail, true) then return false end
  if dc then return groups <= 7 end
  return groups == 8
end

M["uuid"] = function(s)
  return s:match("^%x%x%x%x%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$") ~= nil
end

local function hostname(s)
  if #s == 0 or #s > 253 then return false end
  for label in (s .. "."):gmatch("([^.]*)%.") do
    if #label == 0 or #label > 63 or not label:match("^[%w][%w%-]*$") or not label:match("%w$") then
      return false
    end
  end
  return true
end
M["hostname"] = hostname

M["email"] = function(s)
  local l, d = s:match("^(.+)@([^@]+)$")
  if not l or #l > 64 then return false end
  if l:find("^%.") or l:find("%.$") or l:find("..", 1, true) then return false end
  if l:find("[%s\"(),:;<>@%[%]\\]") then return false end
  local lit = d:match("^%[(.*)%]$")
  if lit then return M.ipv4(lit) or (lit:sub(1, 5) == "IPv6:" and M.ipv6(lit:sub(6))) end
  return hostname(d)
end

-- RFC 3986 absolute URI: scheme ":" hier-part, no spaces or other characters outside the grammar.
M["uri"] = function(s)
  if not s:match("^%a[%w+.%-]*:") then return false end
  if s:find("[^%w%-%._~:/%?#%[%]@!%$&'%(%)%*%+,;=%%]") then return false end
  if s:find("%%%X") or s:find("%%%x%X") or s:find("%%.?$") then return false end
  return true
end

M["uri-reference"] = function(s)
  if s:find("[^%w%-%._~:/%?#%[%]@!%$&'%(%)%*%+,;=%%]") then return false end
  return true
end

M["regex"] = function(s)
  return (require("klua.json_schema.regex").compile(s)) ~= nil
end

M["json-pointer"] = function(s)
  if s == "" then return true end
  if s:sub(1, 1) ~= "/" then return false end
  return not s:gsub("~[01]", ""):find("~", 1, true)
end

return M
