-- The transactional producer's methods (bindings/transactions.cpp loads this once per runtime):
-- the producer's own methods, plus init_transactions, begin, send_offsets, commit, abort and
-- transaction, and a close that settles the transactional side first. klua.producer with a
-- ["transactional.id"] gives its userdata a metatable of its own whose __index is this table;
-- the plain producer's metatable is not touched.
--
--   producer_methods: producer.lua's methods table (copied, not modified)
--   raw: init, begin, send_offsets, commit, abort (C, already wrapped: a cancellation raises),
--        abort_nowait(self), prepare_close(self) (C, wrapped; "deferred" when it cannot wait)
local producer_methods, raw = ...
local error, pcall, type, tostring, pairs = error, pcall, type, tostring, pairs
local say = debug.getregistry()["klua.private"].log.say  -- warnings through klua's log (host/lua/log.lua)

local methods = {}
for k, v in pairs(producer_methods) do methods[k] = v end

methods.init_transactions = raw.init
methods.begin = raw.begin
methods.send_offsets = raw.send_offsets
methods.commit = raw.commit
methods.abort = raw.abort

local abort_nowait, prepare_close, producer_close = raw.abort_nowait, raw.prepare_close, producer_methods.close

-- p:close(): stop transactional calls, abort an open transaction and wait until nothing runs on
-- the handle, then the producer's own close.
function methods.close(self, ...)
  if prepare_close(self) == "deferred" then return true end
  return producer_close(self, ...)
end

local function warn(what, err)
  say("warn", "klua", "klua", "p:transaction: " .. what .. ": " .. tostring(err))
end

local function abort(self)
  local ok, r, err = pcall(methods.abort, self)
  if not ok then
    abort_nowait(self)  -- cancelled: the abort still has to happen, without waiting for it
  elseif not r then
    warn("abort failed", err)
  end
end

local function finish(self, ok, ...)
  if not ok then
    local err = ...
    if type(err) == "table" and err.name == "KLUA_CANCELLED" then
      abort_nowait(self)
    else
      abort(self)
    end
    error(err, 0)
  end
  local cok, cerr = methods.commit(self)
  if not cok then
    if type(cerr) == "table" and cerr.txn_requires_abort then abort(self) end
    return nil, cerr
  end
  return ...
end

-- p:transaction(fn, ...): begin; fn(...); commit. Aborts when fn raises (then re-raises) or when
-- the commit fails with txn_requires_abort. Returns fn's results, or nil, err from begin/commit.
function methods.transaction(self, fn, ...)
  if type(fn) ~= "function" then
    klua.errors.bad_argument("p:transaction", 2, "function expected, got " .. type(fn))
  end
  local ok, err = methods.begin(self)
  if not ok then return nil, err end
  return finish(self, pcall(fn, ...))
end

return methods
