-- A rebalance hook's task (bindings/consumer_rebalance.cpp): whatever happens, the rebalance is answered.
local hook, parts, done = ...
local ok, err = pcall(hook, parts)
done()
if not ok then error(err, 0) end
