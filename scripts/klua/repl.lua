-- klua repl: a basic prompt (a richer one with line editing comes later).
-- Input is read with klua.read_line, so the loop keeps running while the user types: a
-- consumer spawned in the background keeps consuming. Each line runs in its own task;
-- `=expr` or a bare expression prints its value.
local M = {}

local function show(...)
  local n = select("#", ...)
  if n == 0 then return end
  local parts = {}
  for i = 1, n do
    local v = select(i, ...)
    if type(v) == "table" and klua.json and not (getmetatable(v) or {}).__tostring then
      local ok, s = pcall(klua.json.encode, v, { indent = 2 })
      parts[i] = ok and s or tostring(v)
    else
      parts[i] = tostring(v)
    end
  end
  print(table.concat(parts, "\t"))
end

function M.main()
  io.stdout:setvbuf("no")
  local buffer = ""
  while true do
    io.stdout:write(buffer == "" and "klua> " or "   >> ")
    local line = klua.read_line()
    if not line then print() break end
    buffer = buffer == "" and line or (buffer .. "\n" .. line)
    local src = buffer:gsub("^=", "return ")
    local chunk, err = loadstring("return " .. src, "=repl")
    if not chunk then chunk, err = loadstring(src, "=repl") end
    if chunk then
      buffer = ""
      local task = klua.spawn(function() return chunk() end)
      local results = { n = 0 }
      local function collect(...) results = { n = select("#", ...), ... } end
      collect(task:join())
      if task:status() == "failed" then
        print(tostring(results[2]))
      else
        show(unpack(results, 1, results.n))
      end
    elseif not err:find("<eof>") then
      buffer = ""
      print(err)
    end
  end
end

return M
