-- klua.worker.timers (internal): one worker's timers (retry back-offs, retry-topic resumes) on a
-- single task that sleeps until the earliest one is due (klua.sleep: a libuv timer), instead of a
-- sleeping task per message. An earlier timer replaces the task (the old one is cancelled).
-- Callbacks run on that task and must not wait; one that raises is reported on stderr.
local log = debug.getregistry()["klua.private"].log -- warnings through klua's log (host/lua/log.lua)
local M = {}
local T = {}
T.__index = T

function M.new(name) return setmetatable({ h = {}, n = 0, task = nil, at = nil, gen = 0, name = name }, T) end

local function up(h, i)
  local x = h[i]
  while i > 1 do
    local p = math.floor(i / 2)
    if h[p].due <= x.due then break end
    h[i] = h[p]
    i = p
  end
  h[i] = x
end

local function down(h, n, i)
  local x = h[i]
  while true do
    local c = 2 * i
    if c > n then break end
    if c < n and h[c + 1].due < h[c].due then c = c + 1 end
    if x.due <= h[c].due then break end
    h[i] = h[c]
    i = c
  end
  h[i] = x
end

-- gen identifies the current loop (task objects are not unique per task: compare generations)
local function loop(self, gen)
  local h = self.h
  while self.gen == gen and self.n > 0 do
    local top = h[1]
    local left = top.due - klua.now()
    if left > 0 then
      self.at = top.due
      if not pcall(klua.sleep, left) then break end -- cancelled: replaced, stopped, or a signal
    else
      h[1] = h[self.n]
      h[self.n] = nil
      self.n = self.n - 1
      if self.n > 0 then down(h, self.n, 1) end
      self.in_loop = true
      local ok, err = pcall(top.fn, top.a, top.b, top.c, top.d)
      self.in_loop = false
      if not ok then
        log.say("warn", "klua.worker", "klua.worker " .. tostring(self.name), "timer: " .. tostring(err),
          { worker = tostring(self.name) })
      end
    end
  end
  if self.gen == gen then self.task, self.at = nil, nil end
end

-- Calls fn(a, b, c, d) at klua.now() >= due.
function T:at_time(due, fn, a, b, c, d)
  self.n = self.n + 1
  self.h[self.n] = { due = due, fn = fn, a = a, b = b, c = c, d = d }
  up(self.h, self.n)
  if self.task == nil or (not self.in_loop and due < self.at) then
    local old = self.task
    self.at = due
    self.gen = self.gen + 1
    self.task = klua.spawn(loop, self, self.gen)
    if old then old:cancel() end
  end
end

-- Drops every timer and ends the task.
function T:stop()
  self.h, self.n = {}, 0
  local old = self.task
  self.task, self.at = nil, nil
  self.gen = self.gen + 1
  if old and not self.in_loop then old:cancel() end
end

return M
