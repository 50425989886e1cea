// klua.base64.encode(s) -> string; klua.base64.decode(s) -> string | nil, err (RFC 4648's standard
// alphabet; decode also accepts the URL-safe alphabet and missing padding, and ignores ASCII
// whitespace). `klua consume --json` writes keys, values and headers that are not UTF-8 as base64.
#include "bindings/base64.hpp"

#include <string>

#include "host/error.hpp"

namespace klua {

static const char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void base64_encode(char* out, const unsigned char* in, size_t n) {
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    unsigned v = in[i] << 16 | in[i + 1] << 8 | in[i + 2];
    *out++ = kAlphabet[v >> 18];
    *out++ = kAlphabet[(v >> 12) & 63];
    *out++ = kAlphabet[(v >> 6) & 63];
    *out++ = kAlphabet[v & 63];
  }
  if (i < n) {
    unsigned v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0);
    *out++ = kAlphabet[v >> 18];
    *out++ = kAlphabet[(v >> 12) & 63];
    *out++ = i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
    *out++ = '=';
  }
}

namespace {

int l_encode(lua_State* L) {
  check_arg_type(L, 1, LUA_TSTRING, "klua.base64.encode");
  size_t n;
  const char* s = lua_tolstring(L, 1, &n);
  std::string out(base64_size(n), '\0');
  base64_encode(out.data(), reinterpret_cast<const unsigned char*>(s), n);
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

int digit(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

int l_decode(lua_State* L) {
  check_arg_type(L, 1, LUA_TSTRING, "klua.base64.decode");
  size_t n;
  const unsigned char* s = reinterpret_cast<const unsigned char*>(lua_tolstring(L, 1, &n));
  std::string out;
  out.reserve(n / 4 * 3 + 3);
  unsigned acc = 0;
  int bits = 0, pad = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    int d = c == '=' ? -2 : digit(c);
    if (d == -1 || (d >= 0 && pad > 0)) {
      lua_pushnil(L);
      ErrorSpec e;
      e.code = CODE_INVALID_ARGUMENT;
      e.name = ERR_INVALID_ARGUMENT;
      e.message = "klua.base64.decode: not base64 at byte " + std::to_string(i);
      push_error(L, e);
      return 2;
    }
    if (d == -2) {
      pad++;
      continue;
    }
    acc = (acc << 6) | static_cast<unsigned>(d);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

}  // namespace

void open_base64(lua_State* L, int klua_table) {
  lua_createtable(L, 0, 2);
  lua_pushcfunction(L, l_encode);
  lua_setfield(L, -2, "encode");
  lua_pushcfunction(L, l_decode);
  lua_setfield(L, -2, "decode");
  lua_setfield(L, klua_table, "base64");
}

}  // namespace klua
