-- A rebalance hook's task (bindings/consumer_rebalance.cpp): whatever happens, the rebalance is
-- answered. What on_assign returns (the partitions with the offsets to start at) goes to done().
local hook, parts, done, enter = ...
enter()  -- the consumer learns the hook's coroutine: c:close() inside the hook must not wait for it
local ok, res = pcall(hook, parts)
done(ok and res or nil)
if not ok then error(res, 0) end
