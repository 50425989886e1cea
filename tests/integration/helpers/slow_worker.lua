-- A worker process for worker_signal_test.lua: klua run slow_worker.lua TOPIC GROUP
-- Its handler prints "start <value>", waits 1.5 s (the signal arrives then), prints "end <value>".
local topic, group = ...
local w = klua.worker(klua.testkit.group_conf{ group = group, topics = { topic },
  handlers = function(msg)
    io.stdout:write("start ", msg.value, "\n"); io.stdout:flush()
    klua.sleep(1500)
    io.stdout:write("end ", msg.value, "\n"); io.stdout:flush()
  end })
w:run()
print("not reached")
