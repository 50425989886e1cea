-- klua side of bench/http's server benchmark (nginx: bench/http_nginx.conf, Python:
-- bench/http_aiohttp_server.py): the same trivial JSON handler.
--
--   klua run bench/http_server.lua [--host 127.0.0.1] [--port 0] [--profile MODE --profile-out FILE]
--
-- One route, GET /hello -> {"message":"hello","n":42}, the table encoded per request as the
-- others do. Prints srv.url (the bound port when --port 0) once listening, then serves until
-- SIGTERM or SIGINT stops it gracefully (bench/http sends SIGTERM).
-- --profile MODE runs LuaJIT's sampling profiler (jit.p) while serving, written to FILE at the
-- stop: "v" the VM states (interpreted, compiled, C, GC), "F" functions, "l" lines ("Fl", "vF"...).

local bench = dofile((arg[0]:match("^(.*)/") or ".") .. "/common.lua")
local o = bench.parse_args(arg, { host = "string", port = "count", profile = "string", ["profile-out"] = "string" },
                           { host = "127.0.0.1", port = 0 })
local prof = o.profile and require("jit.p")
if prof then prof.start(o.profile, o.profile_out or "-") end

local srv = klua.http.serve{
  host = o.host,
  port = o.port,
  routes = {
    ["GET /hello"] = function(req)
      return { json = { message = "hello", n = 42 } }
    end,
  },
}
io.stdout:write(srv.url, "\n")
io.stdout:flush()
srv:wait()
if prof then prof.stop() end
