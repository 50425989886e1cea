-- Reproducer (not a registered test) of a crash in LuaJIT 2.1.0-beta3's compiled code that
-- tests/fuzz/avro_fuzz met: the fuzz driver (read out of avro_fuzz.cpp) run with the JIT on over
-- the seed corpus with random byte mutations segfaults klua within a few thousand rounds. It goes
-- away with jit.opt.start("-fwd") (or -fold, -cse, -fuse), or with jit.off() on the runtime's
-- get_long; no single schema of the 8 triggers it alone. Open: see the avro helper's report.
--
--   build/klua run tests/fuzz/avro_jit_replay.lua [SEED] [ROUNDS]      (exit 139 = the crash)
local src = assert(io.open("tests/fuzz/avro_fuzz.cpp")):read("*a")
local code = src:match('R"lua%((.-)%)lua"'):gsub('if not os.getenv%("AVRO_FUZZ_JIT"%) then jit.off%(%) end', "")
local driver = assert(load(code))()
local inputs = {}
for name in io.popen("ls tests/fuzz/corpus/avro/*"):lines() do
  local f = assert(io.open(name, "rb"))
  inputs[#inputs + 1] = f:read("*a")
  f:close()
end
math.randomseed(tonumber(arg[1]) or 1)
local count = 0
for _ = 1, tonumber(arg[2]) or 20000 do
  for _, s in ipairs(inputs) do
    local t = { s:byte(1, -1) }
    for _ = 1, math.random(0, 3) do
      if #t > 0 then t[math.random(#t)] = math.random(0, 255) end
    end
    driver(string.char(unpack(t)))
    count = count + 1
  end
end
print("ran " .. count .. " inputs without a crash")
