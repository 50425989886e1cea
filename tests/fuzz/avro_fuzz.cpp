// libFuzzer target: klua.avro's decoder (scripts/klua/avro*.lua, loaded from the source tree) on
// arbitrary bytes. The first byte picks one of the schemas below (every type, logical types, a
// recursive record, unions, blocks of zero-size items); the rest is the Avro body. Properties
// checked beyond "no crash, no sanitizer report":
//   - decode never raises: it returns a value or nil, err (KLUA_DESERIALIZATION);
//   - a decoded value encodes (or fails with KLUA_SERIALIZATION: a decimal wider than its
//     precision), what klua wrote decodes, and encoding that again gives as many bytes.
// LuaJIT's compiler is on, as in klua: the mutated inputs once crashed Debian's luajit 2.1.0-beta3
// within seconds (a compiled next() whose pointer result a 32-bit XCHG truncated, upstream
// 5e3c45c4; klua builds on luajit2, which has the fix, and makes next and pairs C functions on any
// other LuaJIT, as this driver's state does: host/lua_next.cpp). AVRO_FUZZ_NOJIT=1 turns it off,
// to tell a JIT fault from the codec's.
// The Lua code is invisible to libFuzzer's coverage, so the driver returns a "feature" (the schema,
// and the error with its digits blanked, its path naming how deep the decode got; or the success
// and the value's size class) that is counted in libFuzzer's extra counters: inputs that reach new
// places and new failures are kept in the corpus.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <lua.hpp>
#include <string>

#include "bindings/json.hpp"
#include "host/error.hpp"
#include "host/lua_next.hpp"

namespace {

const char* kDriver = R"lua(
if os.getenv("AVRO_FUZZ_NOJIT") then jit.off() end
local avro = require("klua.avro")
local texts = {
  [=[{"type":"record","name":"All","namespace":"f","fields":[
    {"name":"u","type":["null","boolean","int","long","float","double","bytes","string"]},
    {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
    {"name":"x","type":{"type":"fixed","name":"X","size":3}},
    {"name":"a","type":{"type":"array","items":{"type":"map","values":["null","All"]}}},
    {"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":30,"scale":6}},
    {"name":"fd","type":{"type":"fixed","name":"FD","size":8,"logicalType":"decimal","precision":18,"scale":2}},
    {"name":"du","type":{"type":"fixed","name":"Du","size":12,"logicalType":"duration"}},
    {"name":"t","type":{"type":"long","logicalType":"timestamp-micros"}},
    {"name":"next","type":["null","All"]}]}]=],
  [=[{"type":"array","items":"null"}]=],
  [=[{"type":"map","values":{"type":"array","items":"long"}}]=],
  [=[["null",{"type":"record","name":"R","fields":[{"name":"r","type":{"type":"array","items":"R"}}]},"string"]]=],
  [=["long"]=], [=["int"]=], [=["double"]=], [=["string"]=],
}
local schemas = {}
for i, t in ipairs(texts) do schemas[i] = assert(avro.parse(t)) end
return function(data)
  if #data == 0 then return end
  local s = schemas[data:byte(1) % #schemas + 1]
  local which = data:byte(1) % #schemas + 1
  local v, err = s:decode(data, 1)
  if err then
    if err.name ~= "KLUA_DESERIALIZATION" then error("decode failed with " .. tostring(err)) end
    -- the kind of failure, and how deep in the value (path segments, up to 8)
    local _, depth = err.path:gsub("[.[]", "")
    local kind = err.message:sub(#err.path + 3):gsub('%b""', "K"):gsub("%d+", "#")
    return which .. " " .. math.min(depth, 8) .. " " .. kind
  end
  local b, eerr = s:encode(v)
  if not b then
    if eerr.name ~= "KLUA_SERIALIZATION" then error("encode failed with " .. tostring(eerr)) end
    return
  end
  local v2, err2 = s:decode(b)
  if err2 then error("klua's own encoding does not decode: " .. tostring(err2)) end
  local b2, err3 = s:encode(v2)
  if not b2 then error("re-encoding failed: " .. tostring(err3)) end
  if #b2 ~= #b then error("re-encoding changed the length") end
  return which .. " ok " .. math.floor(math.log(#b + 1) * 4)
end
)lua";

int g_driver = LUA_NOREF;

// libFuzzer's extra counters (Linux): a feature's hash bumps one of them.
__attribute__((used, section("__libfuzzer_extra_counters"))) uint8_t g_features[1 << 14];

lua_State* state() {
  static lua_State* L = [] {
    lua_State* s = luaL_newstate();
    luaL_openlibs(s);
    lua_newtable(s);  // klua
    klua::open_errors(s, lua_gettop(s));
    klua::open_json(s);
    lua_setfield(s, -2, "json");
    klua::install_uncompiled_next(s);  // as the host does, on a LuaJIT without the fix
    lua_setglobal(s, "klua");
    lua_getglobal(s, "package");
    lua_pushstring(s, KLUA_ROOT "/scripts/?.lua");
    lua_setfield(s, -2, "path");
    lua_pop(s, 1);
    if (luaL_loadstring(s, kDriver) != 0 || lua_pcall(s, 0, 1, 0) != 0) {
      std::fprintf(stderr, "avro_fuzz: the driver does not load: %s\n", lua_tostring(s, -1));
      std::abort();
    }
    g_driver = luaL_ref(s, LUA_REGISTRYINDEX);
    return s;
  }();
  return L;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  lua_State* L = state();
  int base = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, g_driver);
  lua_pushlstring(L, reinterpret_cast<const char*>(data), size);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    const char* msg = lua_tostring(L, -1);
    std::fprintf(stderr, "avro_fuzz: %s\n", msg ? msg : luaL_typename(L, -1));
    std::abort();
  }
  size_t n = 0;
  if (const char* f = lua_tolstring(L, -1, &n)) {
    uint32_t h = 2166136261u;  // FNV-1a
    for (size_t i = 0; i < n; i++) h = (h ^ static_cast<uint8_t>(f[i])) * 16777619u;
    g_features[h % sizeof g_features]++;
  }
  lua_settop(L, base);
  return 0;
}
