-- The Python interpreter that has confluent-kafka, for the interop tests: KLUA_PYTHON (tools/dev
-- sets it), else the virtualenv tools/dev makes in ~/.cache/klua, else python3.
--   local PYTHON = dofile("tests/integration/helpers/python.lua")
local p = os.getenv("KLUA_PYTHON")
if p and p ~= "" then return p end
local venv = (os.getenv("XDG_CACHE_HOME") or ((os.getenv("HOME") or "") .. "/.cache")) .. "/klua/venv/bin/python"
local f = io.open(venv, "rb")
if f then
  f:close()
  return venv
end
return "python3"
