-- tests/integration/helpers/dead_txn.lua SOURCE TARGET GROUP TRANSACTIONAL_ID OFFSET PARTITIONS [TXN_TIMEOUT_MS]
-- Leaves a transaction open, as a replay SIGKILLed between send_offsets and commit does: with
-- TRANSACTIONAL_ID it writes one record (key "dead") to TARGET and sends the offsets OFFSET of
-- SOURCE's partitions 0..PARTITIONS-1 for GROUP into the transaction, flushes, prints "pending"
-- and sleeps until it is killed. Until that transaction ends, a read_committed lookup of GROUP's
-- committed offsets for those partitions fails (the broker holds them as unstable). The broker
-- aborts it after TXN_TIMEOUT_MS (transaction.timeout.ms, default 60 s) unless fenced first.
local source, target, group, txid, offset, parts, txn_timeout = ...
offset, parts = tonumber(offset), tonumber(parts)
assert(source and target and group and txid and offset and parts,
       "usage: dead_txn.lua SOURCE TARGET GROUP TRANSACTIONAL_ID OFFSET PARTITIONS")
io.stdout:setvbuf("no")
local c = klua.consumer{ group = group, ["enable.auto.commit"] = false, ["isolation.level"] = "read_committed" }
local p = klua.producer{ ["transactional.id"] = txid, ["transaction.timeout.ms"] = tonumber(txn_timeout) }
assert(p:begin())
assert(p:send{ topic = target, key = "dead", value = "from the killed transaction" })
local list = {}
for i = 0, parts - 1 do list[#list + 1] = { topic = source, partition = i, offset = offset } end
assert(p:send_offsets(c, list))
assert(p:flush())
print("pending")
klua.sleep(300000)
