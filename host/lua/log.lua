-- klua.log: leveled records with fields, written by host/log.cpp as text or one JSON object a line.
-- The level check reads the C++ threshold through the FFI, so a record below it costs a type check
-- and a load in the caller's trace: no formatting, no C call.
local klua, native, threshold_address = ...
local ffi = require("ffi")
local type, tostring = type, tostring
local emit = native.emit
local threshold = ffi.cast("const int*", threshold_address)

local LEVELS = { debug = 0, info = 1, warn = 2, warning = 2, error = 3 }
local NAMES = { [0] = "debug", "info", "warn", "error" }

local function bad(fn, n, detail)
  klua.errors.bad_argument(fn, n, detail)
end

local function writer(n, fn)
  return function(message, fields)
    if type(message) ~= "string" then bad(fn, 1, "message must be a string, got " .. type(message)) end
    if n < threshold[0] then return end
    if fields ~= nil and type(fields) ~= "table" then bad(fn, 2, "fields must be a table, got " .. type(fields)) end
    emit(n, message, fields, false, nil, fn)
  end
end

local function level_of(name, fn, arg)
  local n = type(name) == "string" and LEVELS[name:lower()]
  if not n then
    bad(fn, arg, "level must be \"debug\", \"info\", \"warn\" or \"error\", got " ..
      (type(name) == "string" and ("%q"):format(name) or type(name)))
  end
  return n
end

local M = {
  debug = writer(0, "klua.log.debug"),
  info = writer(1, "klua.log.info"),
  warn = writer(2, "klua.log.warn"),
  error = writer(3, "klua.log.error"),
}

function M.set_level(name)
  native.set_level(level_of(name, "klua.log.set_level", 1))
end

function M.level()
  return NAMES[threshold[0]]
end

function M.enabled(name)
  return level_of(name, "klua.log.enabled", 1) >= threshold[0]
end

function M.format()
  return native.format()
end

-- klua's own warnings from its Lua (the worker, the HTTP server, ...): text keeps their line as it
-- was ("klua.worker g: ..."), JSON gets the message and the fields.
local private = {
  diagnostic = function(level, message, fields, text)
    local n = LEVELS[level] or 2
    if n < threshold[0] then return end
    emit(n, tostring(message), fields, true, text, "klua.log")
  end,
  -- the line "PREFIX: message" in text (klua.worker's, klua.http's...); logger names the component
  say = function(level, logger, prefix, message, fields)
    local n = LEVELS[level] or 2
    if n < threshold[0] then return end
    message = tostring(message)
    fields = fields or {}
    if fields.logger == nil then fields.logger = logger end
    emit(n, message, fields, true, prefix .. ": " .. message, "klua.log")
  end,
  add_secret = native.add_secret,
  redact = native.redact,
}

return M, private
