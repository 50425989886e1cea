-- Regression test (avro_jit_replay in tests/CMakeLists.txt) of a crash tests/fuzz/avro_fuzz met
-- with the JIT on: the fuzz driver (read out of avro_fuzz.cpp) over the seed corpus with random
-- byte mutations. Debian's LuaJIT 2.1.0-beta3 (git 20220320, without upstream 5e3c45c4 "x64: Fix
-- RETHI/RETLO swap after call") compiled the map encoder's `for k, x in next, v` into a call of
-- lj_vm_next whose pointer result a 32-bit XCHG truncated, and klua died of SIGSEGV within 3,000
-- rounds (with most seeds: the crash depends on trace and register allocation, so the registered
-- test runs several). klua now builds on Debian's luajit2 (OpenResty's LuaJIT, with the fix) and,
-- on any other LuaJIT, makes next and pairs C functions the JIT does not compile
-- (host/lua_next.cpp); the encoders loop with next again, as they did then. This test guards that
-- their compiled loops stay sound on the LuaJIT klua runs on: the same encoders died here with
-- LuaJIT's own next on Debian's luajit (seeds 1 and 2 at 3,000 rounds), and run clean on luajit2,
-- and on Debian's luajit with klua's C next. CODEGEN runs the driver with another
-- scripts/klua/avro/codegen.lua, e.g. one from git history:
--
--   git show COMMIT:scripts/klua/avro/codegen.lua > other_codegen.lua
--   build/klua run tests/fuzz/avro_jit_replay.lua [SEEDS] [ROUNDS] [CODEGEN]  (SEEDS: 1 or 1,2,3; exit 139 = the crash)
if arg[3] then package.loaded["klua.avro.codegen"] = dofile(arg[3]) end
local src = assert(io.open("tests/fuzz/avro_fuzz.cpp")):read("*a")
local code = src:match('R"lua%((.-)%)lua"'):gsub('if os.getenv%("AVRO_FUZZ_NOJIT"%) then jit.off%(%) end', "")
local driver = assert(load(code))()
local inputs = {}
for name in io.popen("ls tests/fuzz/corpus/avro/*"):lines() do
  local f = assert(io.open(name, "rb"))
  inputs[#inputs + 1] = f:read("*a")
  f:close()
end
local count = 0
for seed in (arg[1] or "1"):gmatch("%d+") do  -- SEEDS: one or more, comma-separated
  math.randomseed(tonumber(seed))
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
end
print("ran " .. count .. " inputs without a crash")
