-- Startup benchmark: create a producer, send one message, wait for its delivery
-- report and exit (bench/startup_producer.py is the Python twin).
--   klua -b BROKERS run bench/startup_producer.lua TOPIC
local topic = assert(arg[1], "usage: startup_producer.lua TOPIC")
local p = klua.producer()
assert(p:produce{ topic = topic, value = "x" })
p:close()
