// klua.json — JSON for Lua values, on nlohmann/json's SAX parser (decode) and a direct
// writer with nlohmann-compatible output (encode).
//
// klua.json.encode(value [, opts]) -> string
//   * nil and klua.json.null encode as null; booleans as true/false.
//   * Numbers: an integral value within +-2^53 encodes without a decimal point (1 -> 1,
//     -0.0 -> 0); any other number encodes as the shortest decimal that reads back as the
//     same double (1.5 -> 1.5, 0.1 -> 0.1, 1e300 -> 1e+300), like nlohmann's dump.
//     NaN and +-Infinity raise.
//   * Strings are bytes. Valid UTF-8 passes through unescaped; '"', '\' and control
//     characters are escaped (\b \f \n \r \t, others \u00XX; "\0" -> \u0000). Invalid
//     UTF-8 raises by default, naming the 0-based byte offset inside the string;
//     opts.invalid_utf8 = "replace" writes U+FFFD per maximal invalid sequence instead,
//     "ignore" drops those bytes ("error" is the default).
//   * Tables are read raw (metamethods are not called). A table whose keys are exactly
//     1..n (n >= 1, no holes) encodes as an array; any other table as an object. Object
//     keys must be strings or numbers (numbers become their JSON text: 1 -> "1"); a
//     number and a string key that give the same text raise. Object members are written
//     sorted bytewise by key (nlohmann's default std::map ordering), so output is stable.
//   * An empty table encodes as {} unless marked. klua.json.array(t) / klua.json.object(t)
//     set a shared marker metatable on t and return t (with no argument they return a new
//     empty marked table); they raise if t already has another metatable — put the field
//     __jsontype = "array" | "object" into your own metatable instead, the encoder honours
//     it. Marked arrays encode elements 1..max index, holes as null (raises if excessively
//     sparse: max index > 10 and > 2 * element count; and on a non-index key). Marked
//     objects encode every key as an object member, so {} -> {} and {1,2} -> {"1":1,"2":2}.
//   * opts: indent = n (integer 0..64) pretty-prints like nlohmann's dump(n) (n spaces per
//     level, ": " after keys; [] and {} stay on one line); max_depth = n (integer 0..1000,
//     default 128) is the deepest allowed nesting of tables (the outermost table is depth
//     1); invalid_utf8 as above. Unknown option names raise.
//   * Programmer errors raise a klua error (name KLUA_JSON, code -1004 = klua::CODE_JSON) whose
//     message names the problem and the path in Lua indexing syntax (1-based indexes):
//       klua.json.encode: cannot encode a function at $.a[2]
//       klua.json.encode: cannot encode NaN at $.x
//       klua.json.encode: cannot encode a cycle (table contains itself) at $.self
//       klua.json.encode: nesting deeper than max_depth 128 at $[1][1]...
//       klua.json.encode: invalid UTF-8 at byte 3 of string at $.name
//       klua.json.encode: cannot encode a boolean key at $.t
//     Userdata other than klua.json.null, threads and cdata are errors too.
//
// klua.json.decode(string [, opts]) -> value | nil, err
//   * Parses exactly one JSON value (surrounding whitespace allowed; a UTF-8 BOM is skipped;
//     no comments, no trailing commas, nothing after the value).
//   * null decodes to klua.json.null, so '[1,null,3]' decodes to a table of length 3 and
//     decode('null') returns klua.json.null (nil always means failure).
//   * Arrays get the array marker metatable and objects the object marker, so decode ->
//     encode round-trips [] and {}. Duplicate object keys: the last one wins.
//   * All numbers decode to Lua numbers (doubles): integers beyond +-2^53 are rounded to
//     the nearest double (9007199254740993 -> 9007199254740992); a number too large for a
//     double (1e400) is an error ("number out of range at byte N"); -0 decodes as 0.
//   * Strings: escapes are decoded (\u00e9 -> "\xC3\xA9", surrogate pairs -> one 4-byte
//     UTF-8 sequence, \u0000 -> a NUL byte). Unpaired surrogates, raw control characters
//     and invalid UTF-8 in the input are syntax errors.
//   * opts: max_depth = n (integer 0..1000, default 128; the outermost array/object is
//     depth 1). Unknown option names raise.
//   * Bad input is a runtime failure, not a raise: decode returns nil, err where err is a
//     klua error with name KLUA_JSON (klua.errors.KLUA_JSON), code CODE_JSON (-1004), and a
//     message naming the 0-based byte offset (bytes before the offending token) and what
//     was expected:
//       json decode: syntax error at byte 5: expected value, found '}'           ('[1,2,}')
//       json decode: syntax error at byte 7: expected string key, found '}'      ('{"a":1,}')
//       json decode: syntax error at byte 4: expected ',' or ']', found end of input ('[1,2')
//     For errors inside a token (the lexer's), the offset is the byte where it stopped:
//       json decode: syntax error at byte 4: invalid literal                     ('[tru]')
//       json decode: syntax error at byte 3: invalid string: ill-formed UTF-8 byte
//       json decode: number out of range at byte 0: 1e400
//       json decode: nesting deeper than max_depth 128 at byte 128
//
// klua.json.null is a unique light userdata (the same value in every Lua state of the
// process; type() is "userdata"); compare with ==. It encodes as null.
//
// Argument errors raise KLUA_INVALID_ARGUMENT through raise_bad_argument (host/error.hpp), located at
// the caller's line: e.g. bad argument #1 to 'decode' (string expected, got nil); opts must be a table
// or nil. (The function is named as luaL_argerror names it, by its field name.)
//
// The module is in three files: this one (the module table, options, errors, the array/object
// markers), json_encode.cpp (the encoder) and json_decode.cpp (the SAX decoder); json_internal.hpp
// is what they share.

#include "bindings/json.hpp"

#include <cmath>
#include <cstring>
#include <fmt/format.h>
#include <string>

#include "bindings/json_internal.hpp"
#include "host/error.hpp"

namespace klua {
namespace json_impl {

char null_sentinel;

namespace {

// ---------------------------------------------------------------------------------------
// Options

int opt_int(lua_State* L, int opts, const char* fn, const char* name, int lo, int hi) {
  lua_Number n = lua_tonumber(L, -1);
  if (lua_type(L, -1) != LUA_TNUMBER || n != std::floor(n) || n < lo || n > hi)
    raise_bad_argument(L, opts, fn, fmt::format("opts.{} must be an integer between {} and {}", name, lo, hi));
  return static_cast<int>(n);
}

}  // namespace

// Reads the options table at index `opts` (none/nil: defaults).
Options read_options(lua_State* L, int opts, bool encode) {
  const char* fn = encode ? "encode" : "decode";
  Options o;
  if (lua_isnoneornil(L, opts)) return o;
  check_arg_type(L, opts, LUA_TTABLE, fn);
  lua_pushnil(L);
  while (lua_next(L, opts)) {
    const char* name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : nullptr;
    if (name && std::strcmp(name, "max_depth") == 0) {
      o.max_depth = opt_int(L, opts, fn, name, 0, kMaxMaxDepth);
    } else if (encode && name && std::strcmp(name, "indent") == 0) {
      o.indent = opt_int(L, opts, fn, name, 0, kMaxIndent);
    } else if (encode && name && std::strcmp(name, "invalid_utf8") == 0) {
      const char* v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
      if (std::strcmp(v, "error") == 0) o.utf8 = Utf8Mode::error;
      else if (std::strcmp(v, "replace") == 0) o.utf8 = Utf8Mode::replace;
      else if (std::strcmp(v, "ignore") == 0) o.utf8 = Utf8Mode::ignore;
      else raise_bad_argument(L, opts, fn, "opts.invalid_utf8 must be \"error\", \"replace\" or \"ignore\"");
    } else {
      lua_pushvalue(L, -2);  // tostring on a copy: lua_tolstring must not convert the key in place
      const char* shown = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                              ? lua_tostring(L, -1)
                              : luaL_typename(L, -1);
      raise_bad_argument(L, opts, fn, fmt::format("unknown option '{}'", shown));
    }
    lua_pop(L, 1);
  }
  return o;
}

// Only trivially destructible objects may be live in the caller's frame when it raises the error.
void push_json_error(lua_State* L, std::string message) {
  ErrorSpec spec;
  spec.code = CODE_JSON;
  spec.name = ERR_JSON;
  spec.message = std::move(message);
  push_error(L, spec);
}

namespace {

// ---------------------------------------------------------------------------------------
// Markers

int mark(lua_State* L, int uv, const char* fn) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    check_arg_type(L, 1, LUA_TTABLE, fn);
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) {
      bool ours = lua_rawequal(L, -1, lua_upvalueindex(UV_ARRAY_MT)) ||
                  lua_rawequal(L, -1, lua_upvalueindex(UV_OBJECT_MT));
      lua_pop(L, 1);
      if (!ours)
        raise_bad_argument(L, 1, fn, "table already has a metatable; set __jsontype in it instead");
    }
  }
  lua_pushvalue(L, lua_upvalueindex(uv));
  lua_setmetatable(L, 1);
  return 1;
}

int l_array(lua_State* L) { return mark(L, UV_ARRAY_MT, "array"); }
int l_object(lua_State* L) { return mark(L, UV_OBJECT_MT, "object"); }

void push_marker_mt(lua_State* L, const char* kind) {
  lua_createtable(L, 0, 1);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "__jsontype");
}

}  // namespace
}  // namespace json_impl

int open_json(lua_State* L) {
  using namespace json_impl;
  lua_createtable(L, 0, 5);
  static const luaL_Reg fns[] = {
      {"encode", l_encode}, {"decode", l_decode}, {"array", l_array}, {"object", l_object}, {nullptr, nullptr}};
  // The two marker metatables, shared as upvalues.
  push_marker_mt(L, "array");
  int array_mt = lua_gettop(L);
  push_marker_mt(L, "object");
  int object_mt = lua_gettop(L);
  for (const luaL_Reg* r = fns; r->name; r++) {
    lua_pushvalue(L, array_mt);
    lua_pushvalue(L, object_mt);
    lua_pushcclosure(L, r->func, 2);
    lua_setfield(L, -4, r->name);
  }
  lua_pop(L, 2);
  lua_pushlightuserdata(L, &null_sentinel);
  lua_setfield(L, -2, "null");
  return 1;
}

}  // namespace klua
