-- The wrapper around waiting C functions (Scheduler::push_waiting): a cancelled wait resumes the
-- task with (sentinel, err), and the call raises err at the script's call site.
local CANCEL = ...
local error = error
local function check(first, ...)
  if first == CANCEL then error((...), 0) end
  return first, ...
end
return function(fn)
  return function(...) return check(fn(...)) end
end
