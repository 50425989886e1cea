-- What the bench/*.lua scripts share. Each loads it from its own directory:
--
--   local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
--   local o = bench.parse_args(arg, { count = "count", topic = "string", mode = { "tasks", "batched" } },
--                              { count = 1000000, topic = "bench" })
--
-- parse_args(args, spec, defaults): the --name value options.
-- spec maps each option (without the leading --) to what its value must be: "count" (an
-- integer >= 0), "positive" (an integer >= 1), "number", "string", or a list of the allowed
-- strings. The result has one field per option, dashes turned into underscores (--per-task
-- is o.per_task), holding the given value or the default. A bad or unknown option raises an
-- error naming it.
local M = {}

function M.parse_args(args, spec, defaults)
  local o = {}
  for name in pairs(spec) do o[(name:gsub("-", "_"))] = defaults and defaults[name] end
  local i = 1
  while args[i] ~= nil do
    local a = args[i]
    local name = type(a) == "string" and a:match("^%-%-(.+)$")
    local kind = name and spec[name]
    if kind == nil then error("unknown argument " .. tostring(a), 0) end
    local v = args[i + 1]
    if v == nil then error("missing value for " .. a, 0) end
    local n = tonumber(v)
    local ok
    if kind == "count" then ok = n and n >= 0 and n == math.floor(n)
    elseif kind == "positive" then ok = n and n >= 1 and n == math.floor(n)
    elseif kind == "number" then ok = n ~= nil
    elseif kind == "string" then ok, n = true, v
    else  -- a list of allowed strings
      for _, allowed in ipairs(kind) do if v == allowed then ok, n = true, v end end
    end
    if not ok then error("bad value for " .. a .. ": " .. v, 0) end
    o[(name:gsub("-", "_"))] = n
    i = i + 2
  end
  return o
end

-- This process's resident set (VmRSS), in KiB.
function M.rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

return M
