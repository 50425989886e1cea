-- klua.timespec: the one parser of times and durations, for the library (admin:reset_group_offsets'
-- {timestamp=}, {duration=}) and every CLI option that takes a TIME or a DURATION.
--   klua.timespec.time("2024-05-01T12:00:00Z")   -> 1714564800000 (epoch ms)
--   klua.timespec.time("-2h")                    -> klua.time() - 7200000 ("2h" alone means the same)
--   klua.timespec.duration("1h30m")              -> 5400000 (ms); also "PT1H30M", "500ms", "1d", "90000"
-- Both return nil, message on a string they cannot read.
local M = {}
local type, tonumber, floor = type, tonumber, math.floor

local UNIT = { ms = 1, s = 1000, m = 60000, h = 3600000, d = 86400000, w = 604800000 }

local DURATION_HELP = "expected a duration: 1h, 30m, 90s, 500ms, 1d, 1h30m, ISO-8601 (PT1H30M) or ms"
local TIME_HELP = "expected a time: epoch ms, ISO-8601 (2024-05-01T12:00:00Z, 2024-05-01), relative (-2h, 30m, 1d: that long ago; +1h: ahead) or now"

-- "1h30m", "500ms", "2d": a sum of number+unit terms; nil when s is not one.
local function unit_terms(s)
  if s == "" then return nil end
  local total, pos = 0, 1
  while pos <= #s do
    local n, unit, next_pos = s:match("^(%d+%.?%d*)(%a+)()", pos)
    if not n or not UNIT[unit] then return nil end
    total = total + tonumber(n) * UNIT[unit]
    pos = next_pos
  end
  return total
end

-- ISO-8601 durations as Kafka's tools take them: P[nW][nD][T[nH][nM][n[.n]S]] (no years or months,
-- whose length varies); nil when s is not one.
local function iso_duration(s)
  local body = s:match("^[Pp](.+)$")
  if not body then return nil end
  local date, time = body:match("^([^Tt]*)[Tt](.+)$")
  if not date then date, time = body, "" end
  local total = 0
  local function terms(part, units)
    local pos = 1
    while pos <= #part do
      local n, unit, next_pos = part:match("^(%d+%.?%d*)(%a)()", pos)
      if not n then return false end
      local mult = units[unit:upper()]
      if not mult then return false end
      total = total + tonumber(n) * mult
      pos = next_pos
    end
    return true
  end
  if not terms(date, { W = UNIT.w, D = UNIT.d }) then return nil end
  if not terms(time, { H = UNIT.h, M = UNIT.m, S = UNIT.s }) then return nil end
  if date == "" and time == "" then return nil end
  return total
end

-- duration(s) -> milliseconds (signed: "-2h" is -7200000), or nil, message. A number is taken as ms.
local function finite(n) return n == n and n ~= math.huge and n ~= -math.huge end

function M.duration(s)
  if type(s) == "number" then
    if not finite(s) then return nil, DURATION_HELP end
    return s
  end
  if type(s) ~= "string" then return nil, DURATION_HELP end
  local sign, rest = s:match("^([+-]?)(.*)$")
  local ms = rest:match("^%d+$") and tonumber(rest) or unit_terms(rest) or iso_duration(rest)
  if not ms then return nil, DURATION_HELP end
  ms = floor(ms + 0.5)
  return sign == "-" and -ms or ms
end

-- Days since 1970-01-01 of a civil (proleptic Gregorian) date, after Howard Hinnant's algorithm.
local function days_from_civil(y, mo, d)
  if mo <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function days_in_month(y, mo)
  if mo == 2 then return (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) and 29 or 28 end
  return (mo == 4 or mo == 6 or mo == 9 or mo == 11) and 30 or 31
end

-- ISO-8601 date-times (UTC with Z, an offset, or neither: UTC), or a date alone (its midnight, UTC).
local function iso_time(s)
  local y, mo, d, rest = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)(.*)$")
  if not y then return nil end
  local h, mi, sec, frac, tz = "0", "0", "0", "", ""
  if rest ~= "" then
    h, mi, rest = rest:match("^[Tt ](%d%d):(%d%d)(.*)$")
    if not h then return nil end
    local s2, r2 = rest:match("^:(%d%d)(.*)$")
    if s2 then
      sec, rest = s2, r2
      local f, r3 = rest:match("^[.,](%d+)(.*)$")
      if f then frac, rest = f, r3 end
    end
    tz = rest
  end
  y, mo, d, h, mi, sec = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(sec)
  if mo < 1 or mo > 12 or d < 1 or d > days_in_month(y, mo) or h > 23 or mi > 59 or sec > 60 then return nil end
  local ms = ((days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * 60000 + sec * 1000
  if frac ~= "" then ms = ms + floor(tonumber("0." .. frac) * 1000 + 0.5) end
  if tz == "" or tz == "Z" or tz == "z" then return ms end
  local sign, th, tm = tz:match("^([+-])(%d%d):?(%d%d)$")
  if not sign or tonumber(th) > 18 or tonumber(tm) > 59 then return nil end  -- offsets span -18:00..+18:00
  local off = (tonumber(th) * 60 + tonumber(tm)) * 60000
  return sign == "+" and ms - off or ms + off
end

-- time(s [, now]) -> epoch ms, or nil, message. A number is taken as epoch ms; "now" is now; a duration
-- (-2h, 2h, PT2H) is that long before now, +2h that long after; now defaults to klua.time().
function M.time(s, now)
  if type(s) == "number" then
    if not finite(s) then return nil, TIME_HELP end
    return s
  end
  if type(s) ~= "string" then return nil, TIME_HELP end
  if s:match("^%d+$") then return tonumber(s) end
  local iso = iso_time(s)
  if iso then return iso end
  now = now or klua.time()
  if s == "now" then return now end
  local sign = s:sub(1, 1)
  local d = M.duration((sign == "+" or sign == "-") and s:sub(2) or s)
  if not d or s:sub(2, 2) == "-" or s:sub(2, 2) == "+" then return nil, TIME_HELP end
  return sign == "+" and now + d or now - d
end

return M
