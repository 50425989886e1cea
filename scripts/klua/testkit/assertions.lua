-- klua.testkit.assertions: assertions with readable failure messages, shared by `klua test`
-- (which puts them in every test file's environment) and klua.testkit.
--
--   local A = require("klua.testkit.assertions")
--   A.assert_eq(actual, expected [, msg])   deep equality; tables that differ are shown as a diff:
--       tables differ (expected vs actual):
--         [2].value: expected "b", got "B"
--         .extra: unexpected true
--   A.assert_ne(a, b [, msg]), A.assert_true(v [, msg]), A.assert_false(v [, msg]),
--   A.assert_nil(v [, msg]), A.assert_not_nil(v [, msg]), A.assert_match(str, pattern [, msg]),
--   A.assert_raises(fn, pattern), A.assert_error(err, name)
--   A.show(value), A.diff(actual, expected) -> list of lines (empty when equal)
--   A.luassert: a callable table in the style of luassert (`assert(v, msg)` keeps Lua's meaning;
--   assert.same(expected, actual), assert.are.equal, assert.is_true, assert.is_nil,
--   assert.has_error(fn [, pattern]), assert.matches(pattern, s), assert.are_not.same, ...).
--
-- Failures raise a string naming the caller's file and line, so the test's own line is reported.
local M = {}

local MAX_DIFF_LINES = 20

local function show(v, depth)
  depth = depth or 0
  if type(v) == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if type(v) ~= "table" or depth > 3 then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == "number" and type(b) == "number" then return a < b end
    return tostring(a) < tostring(b)
  end)
  local parts, n = {}, #v
  for _, k in ipairs(keys) do
    if type(k) == "number" and k >= 1 and k <= n and k % 1 == 0 then
      parts[#parts + 1] = show(v[k], depth + 1)
    else
      parts[#parts + 1] = (type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. show(k) .. "]") ..
        "=" .. show(v[k], depth + 1)
    end
  end
  return "{" .. table.concat(parts, ", ") .. "}"
end
M.show = show

local function deep_eq(a, b)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not deep_eq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
M.deep_eq = deep_eq

local function key_path(path, k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") then return path .. "." .. k end
  return path .. "[" .. show(k) .. "]"
end

local function sorted_keys(a, b)
  local seen, keys = {}, {}
  for _, t in ipairs({ b, a }) do
    for k in pairs(t) do
      if not seen[k] then seen[k] = true; keys[#keys + 1] = k end
    end
  end
  table.sort(keys, function(x, y)
    if type(x) == "number" and type(y) == "number" then return x < y end
    if type(x) ~= type(y) then return type(x) == "number" end
    return tostring(x) < tostring(y)
  end)
  return keys
end

-- Lines naming each path where actual differs from expected.
function M.diff(actual, expected)
  local out = {}
  local function walk(a, e, path)
    if #out > MAX_DIFF_LINES then return end
    if deep_eq(a, e) then return end
    if type(a) == "table" and type(e) == "table" then
      for _, k in ipairs(sorted_keys(a, e)) do
        local p = key_path(path, k)
        if a[k] == nil then
          out[#out + 1] = p .. ": missing (expected " .. show(e[k]) .. ")"
        elseif e[k] == nil then
          out[#out + 1] = p .. ": unexpected " .. show(a[k])
        else
          walk(a[k], e[k], p)
        end
      end
    else
      out[#out + 1] = (path == "" and "value" or path) .. ": expected " .. show(e) .. ", got " .. show(a)
    end
  end
  walk(actual, expected, "")
  if #out > MAX_DIFF_LINES then
    for i = #out, MAX_DIFF_LINES + 1, -1 do out[i] = nil end
    out[#out + 1] = "... (more differences)"
  end
  return out
end

-- Raises msg at the position of the first caller outside this file (the test's own line, also
-- through the luassert-style wrappers).
local THIS = debug.getinfo(1, "S").source
local function fail(msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then level = 1; break end
    if info.source ~= THIS then break end
    level = level + 1
  end
  error(msg, level)
end
M.fail = fail

local function prefix(msg) return msg and (tostring(msg) .. ": ") or "" end

function M.assert_eq(actual, expected, msg)
  if deep_eq(actual, expected) then return actual end
  if type(actual) == "table" and type(expected) == "table" then
    fail(prefix(msg) .. "tables differ (expected vs actual):\n  " .. table.concat(M.diff(actual, expected), "\n  "))
  end
  fail(string.format("%sexpected %s, got %s", prefix(msg), show(expected), show(actual)))
end
M.assert_equal = M.assert_eq

function M.assert_ne(actual, unexpected, msg)
  if deep_eq(actual, unexpected) then
    fail(string.format("%sexpected anything but %s", prefix(msg), show(unexpected)))
  end
  return actual
end

function M.assert_true(v, msg)
  if not v then fail(msg or ("expected a true value, got " .. show(v))) end
  return v
end

function M.assert_false(v, msg)
  if v then fail(msg or ("expected a false value, got " .. show(v))) end
  return v
end

function M.assert_nil(v, msg)
  if v ~= nil then fail(string.format("%sexpected nil, got %s", prefix(msg), show(v))) end
end

function M.assert_not_nil(v, msg)
  if v == nil then fail(msg or "expected a value, got nil") end
  return v
end

function M.assert_match(s, pattern, msg)
  if type(pattern) ~= "string" then error("assert_match: pattern must be a string", 2) end
  if type(s) ~= "string" or not s:find(pattern) then
    fail(string.format("%sexpected %s to match %q", prefix(msg), show(s), pattern))
  end
  return s
end

function M.assert_raises(fn, pattern)
  if type(fn) ~= "function" then error("assert_raises: fn must be a function", 2) end
  local ok, err = pcall(fn)
  if ok then fail("expected an error matching " .. string.format("%q", pattern or ".") .. ", but none was raised") end
  local text = tostring(err)
  if pattern and not text:find(pattern) then
    fail(string.format("expected an error matching %q, got %s", pattern, text))
  end
  return err
end

function M.assert_error(err, name)
  if type(err) ~= "table" or err.name ~= name then
    fail(string.format("expected a %s error, got %s", name, show(err)))
  end
  return err
end

-- luassert-style names for people coming from busted. `assert(v, msg)` itself stays Lua's.
local function luassert()
  local raw_assert = assert
  local pos = {
    same = function(expected, actual, msg) return M.assert_eq(actual, expected, msg) end,
    equal = function(expected, actual, msg)
      if expected ~= actual then fail(string.format("%sexpected %s, got %s", prefix(msg), show(expected), show(actual))) end
    end,
    is_true = function(v, msg) if v ~= true then fail(string.format("%sexpected true, got %s", prefix(msg), show(v))) end end,
    is_false = function(v, msg) if v ~= false then fail(string.format("%sexpected false, got %s", prefix(msg), show(v))) end end,
    truthy = function(v, msg) return M.assert_true(v, msg) end,
    falsy = function(v, msg) return M.assert_false(v, msg) end,
    is_nil = function(v, msg) return M.assert_nil(v, msg) end,
    is_not_nil = function(v, msg) return M.assert_not_nil(v, msg) end,
    has_error = function(fn, pattern) return M.assert_raises(fn, pattern) end,
    matches = function(pattern, s, msg) return M.assert_match(s, pattern, msg) end,
  }
  pos.equals, pos.are_equal, pos.are_same, pos.error, pos.has_errors = pos.equal, pos.equal, pos.same, pos.has_error, pos.has_error
  local neg = {
    same = function(expected, actual, msg) return M.assert_ne(actual, expected, msg) end,
    equal = function(expected, actual, msg)
      if expected == actual then fail(string.format("%sexpected anything but %s", prefix(msg), show(expected))) end
    end,
    is_nil = function(v, msg) return M.assert_not_nil(v, msg) end,
  }
  neg.equals = neg.equal
  local a = setmetatable({}, { __index = pos, __call = function(_, ...) return raw_assert(...) end })
  a.are, a.is, a.has = a, a, a
  a.are_not, a.is_not = neg, neg
  return a
end
M.luassert = luassert

-- The names `klua test` puts in a test file's environment.
function M.install(env)
  for _, k in ipairs({ "assert_eq", "assert_equal", "assert_ne", "assert_true", "assert_false", "assert_nil",
                       "assert_not_nil", "assert_match", "assert_raises", "assert_error" }) do
    env[k] = M[k]
  end
  env.assert = luassert()
  return env
end

return M
