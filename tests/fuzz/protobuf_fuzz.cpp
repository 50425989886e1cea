// libFuzzer target: klua.protobuf's primitives (bindings/protobuf.cpp) on arbitrary bytes, with a fixed
// schema (tests/protobuf/order.proto's shapes: every scalar type, nested and repeated messages, maps,
// a oneof, well-known types). The first byte picks what the rest is fed to:
//   0: decode as shop.Order and shop.Scalars, and to_json;
//   1: the Confluent message-index array (read_indexes), then message_at with what it read;
//   2: decode, then encode what decoded and decode that again;
//   3: compile as .proto text (importing the fixed file);
//   4: from_json as shop.Order.
// Properties beyond "no crash, no sanitizer report, no leak":
//   - no primitive raises on bad input (each returns nil, name, message);
//   - what decodes encodes without error and decodes to an equal table; its encoding is stable;
//   - message indexes that read write back to bytes that read the same;
//   - what from_json accepts decodes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <lua.hpp>
#include <string>

#include "bindings/protobuf.hpp"

namespace {

const char* kSchema = R"(
syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
import "google/protobuf/struct.proto";
import "google/protobuf/wrappers.proto";
import "common.proto";
message Order {
  enum Status { UNKNOWN = 0; NEW = 1; SHIPPED = 2; }
  message Line { string sku = 1; int32 qty = 2; double price = 3; }
  string id = 1;
  repeated Line lines = 2;
  Status status = 3;
  map<string, int64> counts = 4;
  oneof payment { string card = 5; int64 voucher = 6; }
  google.protobuf.Timestamp created = 7;
  common.Money total = 8;
  optional string note = 9;
  google.protobuf.Int64Value big = 10;
  google.protobuf.Struct extra = 11;
  map<int32, Line> by_pos = 13;
  map<uint64, bool> flags = 14;
  repeated Status history = 15;
}
message Scalars {
  double d = 1; float f = 2; int32 i32 = 3; int64 i64 = 4; uint32 u32 = 5; uint64 u64 = 6;
  sint32 s32 = 7; sint64 s64 = 8; fixed32 f32 = 9; fixed64 f64 = 10; sfixed32 sf32 = 11; sfixed64 sf64 = 12;
  bool b = 13; string s = 14; bytes by = 15; repeated int32 packed = 16; repeated sint64 ps64 = 17;
}
)";

const char* kCommon = R"(syntax = "proto3"; package common; message Money { string currency = 1; int64 units = 2; })";

// The properties, in Lua over the primitives P (as bindings/lua/protobuf.lua uses them).
const char* kCheck = R"LUA(
local P, schema, common = ...
local ffi = require("ffi")
local I64, U64 = tonumber(ffi.typeof("int64_t")), tonumber(ffi.typeof("uint64_t"))
local i64box, u64box = ffi.new("int64_t[1]"), ffi.new("uint64_t[1]")
P.init(nil, function(v)
  local id = tonumber(ffi.typeof(v))
  return id == I64 and 1 or id == U64 and 2 or 0
end, function(bytes, unsigned)
  if unsigned then ffi.copy(u64box, bytes, 8); return u64box[0] end
  ffi.copy(i64box, bytes, 8)
  return i64box[0]
end)
local file = assert(P.compile("order.proto", schema, false, { ["common.proto"] = common }, {}))
local order = assert(P.message(file, "Order"))
local scalars = assert(P.message(file, "Scalars"))

local function same(a, b, path)
  if type(a) ~= type(b) then error("PROPERTY: " .. path .. ": " .. type(a) .. " vs " .. type(b)) end
  if type(a) == "table" then
    for k, v in pairs(a) do same(v, b[k], path .. "." .. tostring(k)) end
    for k in pairs(b) do if a[k] == nil then error("PROPERTY: " .. path .. "." .. tostring(k) .. " appeared") end end
  elseif a ~= b and not (a ~= a and b ~= b) then
    error("PROPERTY: " .. path .. ": " .. tostring(a) .. " vs " .. tostring(b))
  end
end

local function roundtrip(t, data)
  local v, name, msg = P.decode(t, data)
  if not v then
    assert(name == "KLUA_DESERIALIZATION", "PROPERTY: error name " .. tostring(name))
    return
  end
  local bytes, ename, emsg = P.encode(t, v)
  if not bytes then error("PROPERTY: what decoded does not encode: " .. tostring(emsg)) end
  local w = P.decode(t, bytes)
  if not w then error("PROPERTY: klua's own encoding does not decode") end
  same(v, w, "$")
  if P.encode(t, w) ~= bytes then error("PROPERTY: encoding not stable") end
end

return file, function(mode, data)
  if mode == 0 then
    for _, t in ipairs({ order, scalars }) do
      local v, name = P.decode(t, data)
      assert(v or name == "KLUA_DESERIALIZATION")
      P.decode(t, data, #data > 3 and 3 or 0)
      P.to_json(t, data, 0, true, true, false, false)
    end
  elseif mode == 1 then
    local list, nxt = P.read_indexes(data, 0)
    if list then
      assert(nxt >= 1 and nxt <= #data, "PROPERTY: next offset " .. tostring(nxt))
      local again = P.read_indexes(P.index_bytes(list), 0)
      same(list, again, "indexes")
      P.message_at(file, list)
    end
  elseif mode == 2 then
    roundtrip(order, data)
    roundtrip(scalars, data)
  elseif mode == 3 then
    local f = P.compile("fuzz.proto", data, false, { ["order.proto"] = schema, ["common.proto"] = common }, {})
    if f then
      local _, _, _, names = P.file_info(f)
      for _, n in ipairs(names) do
        local t = assert(P.message(f, n))
        roundtrip(t, "")
      end
    end
  elseif mode == 4 then
    local bytes = P.from_json(order, data, nil, false)
    if bytes and not P.decode(order, bytes) then error("PROPERTY: from_json's bytes do not decode") end
  end
end
)LUA";

void* volatile g_fixed_file = nullptr;

lua_State* state() {
  static lua_State* L = [] {
    lua_State* s = luaL_newstate();
    luaL_openlibs(s);
    if (luaL_loadstring(s, kCheck) != 0) {
      std::fprintf(stderr, "protobuf_fuzz: %s\n", lua_tostring(s, -1));
      std::abort();
    }
    klua::push_protobuf_primitives(s);
    lua_pushstring(s, kSchema);
    lua_pushstring(s, kCommon);
    if (lua_pcall(s, 3, 2, 0) != 0) {
      std::fprintf(stderr, "protobuf_fuzz: setup: %s\n", lua_tostring(s, -1));
      std::abort();
    }
    lua_setglobal(s, "check");
    // The fixed file's caches (message types, scratch messages and what parsing left in them) grow
    // during inputs and are reachable only through its userdata, in LuaJIT's heap, which LeakSanitizer
    // does not scan: a global copy of the handle's pointer (its first word) keeps them visibly reachable.
    g_fixed_file = *static_cast<void**>(lua_touserdata(s, -1));
    lua_setglobal(s, "fixed_file");
    return s;
  }();
  return L;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  int mode = data[0] % 5;
  if (mode == 3 && size > 512) return 0;  // the parser's cost grows with the text; 512 bytes reach every construct
  lua_State* L = state();
  int base = lua_gettop(L);
  lua_getglobal(L, "check");
  lua_pushinteger(L, mode);
  lua_pushlstring(L, reinterpret_cast<const char*>(data + 1), size - 1);
  if (lua_pcall(L, 2, 0, 0) != 0) {
    std::fprintf(stderr, "protobuf_fuzz: mode %d: %s\n", mode, lua_tostring(L, -1));
    std::abort();
  }
  lua_settop(L, base);
  // A file compiled from the input is freed now, not at some later step: libFuzzer counts what an input
  // leaves allocated (and LuaJIT's own heap, which holds the handles, is not scanned for pointers).
  lua_gc(L, mode == 3 ? LUA_GCCOLLECT : LUA_GCSTEP, 0);
  return 0;
}
