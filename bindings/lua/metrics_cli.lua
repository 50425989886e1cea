-- `klua run --metrics HOST:PORT FILE` (bindings/metrics_cli.cpp): serves klua.metrics' endpoints
-- before the script runs. Returns the URL of /metrics and a function that closes the server, or
-- nil and the error.
local host, port = ...
local srv, err = klua.metrics.serve{ host = host, port = port }
if not srv then return nil, err end
return srv.url .. "/metrics", function()
  -- Called outside any task (a loop callback): srv:close waits, so in a task of its own.
  klua.spawn(function() srv:close() end)
end
