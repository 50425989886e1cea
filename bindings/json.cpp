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

#include "bindings/json.hpp"

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "host/error.hpp"

namespace klua {

namespace {

char null_sentinel;  // its address is klua.json.null

constexpr int kDefaultMaxDepth = 128;
constexpr int kMaxMaxDepth = 1000;
constexpr int kMaxIndent = 64;
constexpr double kMaxSafeInt = 9007199254740992.0;  // 2^53

// Upvalues shared by the module functions.
constexpr int UV_ARRAY_MT = 1;
constexpr int UV_OBJECT_MT = 2;

enum class Kind { none, array, object };

// ---------------------------------------------------------------------------------------
// Options

enum class Utf8Mode { error, replace, ignore };

struct Options {
  int max_depth = kDefaultMaxDepth;
  int indent = -1;  // < 0: compact
  Utf8Mode utf8 = Utf8Mode::error;
};

int opt_int(lua_State* L, int opts, const char* fn, const char* name, int lo, int hi) {
  lua_Number n = lua_tonumber(L, -1);
  if (lua_type(L, -1) != LUA_TNUMBER || n != std::floor(n) || n < lo || n > hi)
    raise_bad_argument(L, opts, fn, fmt::format("opts.{} must be an integer between {} and {}", name, lo, hi));
  return static_cast<int>(n);
}

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

// ---------------------------------------------------------------------------------------
// Helpers shared by encode and error messages

// Length of the valid UTF-8 sequence at p (1..4), or 0 with *bad set to the length of the
// maximal invalid subpart (>= 1). Strict: no overlongs, surrogates or values > U+10FFFF.
inline size_t utf8_seq(const unsigned char* p, size_t avail, size_t* bad) {
  unsigned c = p[0];
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c == 0xE0) need = 2, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC) need = 2;
  else if (c == 0xED) need = 2, hi = 0x9F;
  else if (c >= 0xEE && c <= 0xEF) need = 2;
  else if (c == 0xF0) need = 3, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) need = 3;
  else if (c == 0xF4) need = 3, hi = 0x8F;
  else {
    *bad = 1;
    return 0;
  }
  for (size_t i = 1; i <= need; i++) {
    if (i >= avail || p[i] < lo || p[i] > hi) {
      *bad = i;
      return 0;
    }
    lo = 0x80;
    hi = 0xBF;
  }
  return need + 1;
}

// 1: byte needs attention in a JSON string (control, '"', '\\', non-ASCII).
struct EscapeTable {
  unsigned char t[256];
  constexpr EscapeTable() : t{} {
    for (int i = 0; i < 256; i++) t[i] = (i < 0x20 || i == '"' || i == '\\' || i >= 0x80) ? 1 : 0;
  }
};
constexpr EscapeTable kEscape;

template <class Buf>
void append_number(Buf& out, double d) {
  char buf[32];
  std::to_chars_result r;
  if (d == std::floor(d) && std::fabs(d) <= kMaxSafeInt) {
    r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(d));
  } else {
    r = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip representation
  }
  out.append(buf, r.ptr - buf);
}

bool is_identifier(const char* s, size_t n) {
  if (n == 0 || !(std::isalpha(static_cast<unsigned char>(s[0])) || s[0] == '_')) return false;
  for (size_t i = 1; i < n; i++)
    if (!(std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) return false;
  return true;
}

// Lua-quoted key for paths in error messages (printable ASCII kept, the rest as \ddd).
void append_quoted(std::string& out, const char* s, size_t n) {
  out.push_back('"');
  for (size_t i = 0; i < n; i++) {
    unsigned char c = s[i];
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c >= 0x20 && c < 0x7F) {
      out.push_back(c);
    } else {
      char b[8];
      int k = std::snprintf(b, sizeof b, "\\%u", c);
      out.append(b, k);
    }
  }
  out.push_back('"');
}

// ---------------------------------------------------------------------------------------
// Encode

struct EncodeError {
  std::string message;
};

// Growable output buffer with inlined appends (std::string::push_back is not inlined).
class OutBuf {
 public:
  OutBuf() = default;
  OutBuf(const OutBuf&) = delete;
  OutBuf& operator=(const OutBuf&) = delete;
  ~OutBuf() { std::free(buf_); }
  const char* data() const { return buf_; }
  size_t size() const { return len_; }
  void push_back(char c) {
    if (len_ == cap_) grow(1);
    buf_[len_++] = c;
  }
  void append(const char* s, size_t n) {
    if (cap_ - len_ < n) grow(n);
    std::memcpy(buf_ + len_, s, n);
    len_ += n;
  }
  void append(size_t n, char c) {
    if (cap_ - len_ < n) grow(n);
    std::memset(buf_ + len_, c, n);
    len_ += n;
  }

 private:
  char* buf_ = nullptr;
  size_t len_ = 0, cap_ = 0;
  void grow(size_t n) {
    size_t cap = std::max(cap_ * 2, len_ + n + 256);
    char* p = static_cast<char*>(std::realloc(buf_, cap));
    if (!p) throw std::bad_alloc();
    buf_ = p;
    cap_ = cap;
  }
};

// Bytewise (unsigned) ordering of object keys, as std::string's operator< (nlohmann's map).
inline bool key_less(const char* a, size_t an, const char* b, size_t bn) {
  size_t n = an < bn ? an : bn;
  for (size_t i = 0; i < n; i++) {
    unsigned char x = a[i], y = b[i];
    if (x != y) return x < y;
  }
  return an < bn;
}

class Encoder {
 public:
  Encoder(lua_State* L, const Options& o) : L(L), opt_(o) {}

  OutBuf out;

  void encode_value(int idx, int depth) {
    switch (lua_type(L, idx)) {
      case LUA_TNIL:
        out.append("null", 4);
        return;
      case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx)) out.append("true", 4);
        else out.append("false", 5);
        return;
      case LUA_TNUMBER: {
        double d = lua_tonumber(L, idx);
        if (!std::isfinite(d)) fail(std::isnan(d) ? "cannot encode NaN" : d > 0 ? "cannot encode inf" : "cannot encode -inf");
        append_number(out, d);
        return;
      }
      case LUA_TSTRING: {
        size_t n;
        const char* s = lua_tolstring(L, idx, &n);
        write_string(s, n, "string");
        return;
      }
      case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == &null_sentinel) {
          out.append("null", 4);
          return;
        }
        fail("cannot encode a light userdata");
      case LUA_TTABLE:
        encode_table(idx, depth + 1);
        return;
      default:
        fail(std::string("cannot encode a ") + luaL_typename(L, idx));
    }
  }

 private:
  struct PathElem {
    enum { index, key, number } kind;
    const char* s;
    size_t n;
    double d;
  };
  struct Key {
    const char* s;  // into the Lua string, or (as an offset) into the level's arena
    size_t n;
    double num;
    bool is_num;
    int value_idx;  // stack slot holding the value, 0: fetch it with rawget
  };
  // Objects keep up to this many key/value pairs on the Lua stack while sorting the keys;
  // beyond it values are fetched again with rawget.
  static constexpr size_t kStackedPairs = 64;

  lua_State* L;
  Options opt_;
  std::vector<const void*> visiting_;
  std::vector<PathElem> path_;
  // Per depth, reused between siblings. Deques: growing them must not move the elements,
  // as write_object keeps pointers into arenas_[depth] (maybe SSO storage) while deeper
  // levels run.
  std::deque<std::vector<Key>> keys_;
  std::deque<std::string> arenas_;  // text of numeric keys

  [[noreturn]] void fail(const std::string& what) {
    throw EncodeError{"klua.json.encode: " + what + " at " + path_string()};
  }

  std::string path_string() const {
    std::string p = "$";
    for (const PathElem& e : path_) {
      if (e.kind == PathElem::index || e.kind == PathElem::number) {
        p.push_back('[');
        append_number(p, e.d);
        p.push_back(']');
      } else if (is_identifier(e.s, e.n)) {
        p.push_back('.');
        p.append(e.s, e.n);
      } else {
        p.push_back('[');
        append_quoted(p, e.s, e.n);
        p.push_back(']');
      }
    }
    return p;
  }

  void newline(int depth) {
    if (opt_.indent < 0) return;
    out.push_back('\n');
    out.append(static_cast<size_t>(opt_.indent) * depth, ' ');
  }

  void write_string(const char* str, size_t n, const char* what) {
    const unsigned char* s = reinterpret_cast<const unsigned char*>(str);
    out.push_back('"');
    size_t i = 0, start = 0;
    while (i < n) {
      unsigned char c = s[i];
      if (!kEscape.t[c]) {
        i++;
        continue;
      }
      if (c >= 0x80) {
        size_t bad;
        size_t len = utf8_seq(s + i, n - i, &bad);
        if (len) {
          i += len;
          continue;
        }
        if (opt_.utf8 == Utf8Mode::error)
          fail("invalid UTF-8 at byte " + std::to_string(i) + " of " + what);
        out.append(str + start, i - start);
        if (opt_.utf8 == Utf8Mode::replace) out.append("\xEF\xBF\xBD", 3);
        i += bad;
        start = i;
        continue;
      }
      out.append(str + start, i - start);
      switch (c) {
        case '"': out.append("\\\"", 2); break;
        case '\\': out.append("\\\\", 2); break;
        case '\b': out.append("\\b", 2); break;
        case '\f': out.append("\\f", 2); break;
        case '\n': out.append("\\n", 2); break;
        case '\r': out.append("\\r", 2); break;
        case '\t': out.append("\\t", 2); break;
        default: {
          static const char hex[] = "0123456789abcdef";
          char b[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
          out.append(b, 6);
        }
      }
      i++;
      start = i;
    }
    out.append(str + start, n - start);
    out.push_back('"');
  }

  Kind marker(int idx) {
    if (!lua_getmetatable(L, idx)) return Kind::none;
    Kind k = Kind::none;
    if (lua_rawequal(L, -1, lua_upvalueindex(UV_ARRAY_MT))) {
      k = Kind::array;
    } else if (lua_rawequal(L, -1, lua_upvalueindex(UV_OBJECT_MT))) {
      k = Kind::object;
    } else {
      lua_pushliteral(L, "__jsontype");
      lua_rawget(L, -2);
      if (lua_type(L, -1) == LUA_TSTRING) {
        const char* s = lua_tostring(L, -1);
        if (std::strcmp(s, "array") == 0) k = Kind::array;
        else if (std::strcmp(s, "object") == 0) k = Kind::object;
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return k;
  }

  static bool positive_index(lua_State* L, int idx, double* out) {
    if (lua_type(L, idx) != LUA_TNUMBER) return false;
    double d = lua_tonumber(L, idx);
    if (!(d >= 1 && d <= kMaxSafeInt && d == std::floor(d))) return false;
    *out = d;
    return true;
  }

  void encode_table(int idx, int depth) {
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    const void* self = lua_topointer(L, idx);
    if (std::find(visiting_.begin(), visiting_.end(), self) != visiting_.end())
      fail("cannot encode a cycle (table contains itself)");
    if (depth > opt_.max_depth) fail("nesting deeper than max_depth " + std::to_string(opt_.max_depth));
    if (!lua_checkstack(L, 8)) fail("Lua stack overflow");
    visiting_.push_back(self);

    Kind kind = marker(idx);
    if (kind != Kind::object) {
      // Count keys and find the largest positive integer key.
      size_t count = 0;
      double max = 0;
      bool all_index = true;
      lua_pushnil(L);
      while (lua_next(L, idx)) {
        lua_pop(L, 1);
        double d;
        if (positive_index(L, -1, &d)) {
          if (d > max) max = d;
        } else if (kind == Kind::array) {
          path_.push_back(key_elem(-1));
          lua_pop(L, 1);
          fail("table marked as array has a key that is not a positive integer");
        } else {
          all_index = false;
          lua_pop(L, 1);  // the key: stop early, it is an object
          break;
        }
        count++;
      }
      if (kind == Kind::array && max > 10 && max > 2.0 * static_cast<double>(count))
        fail("excessively sparse array (max index " + std::to_string(static_cast<long long>(max)) +
             ", element count " + std::to_string(count) + ")");
      if (kind == Kind::array || (all_index && count > 0 && max == static_cast<double>(count))) {
        write_array(idx, static_cast<long long>(max), depth);
        visiting_.pop_back();
        return;
      }
    }
    write_object(idx, depth);
    visiting_.pop_back();
  }

  PathElem key_elem(int idx) {
    if (lua_type(L, idx) == LUA_TNUMBER) return {PathElem::number, nullptr, 0, lua_tonumber(L, idx)};
    if (lua_type(L, idx) == LUA_TSTRING) {
      size_t n;
      const char* s = lua_tolstring(L, idx, &n);
      return {PathElem::key, s, n, 0};
    }
    const char* t = luaL_typename(L, idx);
    return {PathElem::key, t, std::strlen(t), 0};
  }

  void write_array(int idx, long long n, int depth) {
    if (n == 0) {
      out.append("[]", 2);
      return;
    }
    out.push_back('[');
    path_.push_back({PathElem::index, nullptr, 0, 0});
    for (long long i = 1; i <= n; i++) {
      if (i > 1) out.push_back(',');
      newline(depth);
      path_.back().d = static_cast<double>(i);
      lua_rawgeti(L, idx, static_cast<int>(i));
      encode_value(-1, depth);
      lua_pop(L, 1);
    }
    path_.pop_back();
    newline(depth - 1);
    out.push_back(']');
  }

  void write_object(int idx, int depth) {
    while (keys_.size() <= static_cast<size_t>(depth)) {
      keys_.emplace_back();
      arenas_.emplace_back();
    }
    std::vector<Key>& keys = keys_[depth];
    std::string& arena = arenas_[depth];
    keys.clear();
    arena.clear();
    int base = lua_gettop(L);
    bool stacking = true;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      // Stack: ... key value. Keep both (and iterate on a copy of the key) while stacking.
      int value_idx = 0;
      if (stacking && keys.size() < kStackedPairs && lua_checkstack(L, 3)) {
        value_idx = lua_gettop(L);
        lua_pushvalue(L, -2);
      } else {
        stacking = false;
        lua_pop(L, 1);
      }
      int t = lua_type(L, -1);
      if (t == LUA_TSTRING) {
        size_t n;
        const char* s = lua_tolstring(L, -1, &n);
        keys.push_back({s, n, 0, false, value_idx});
      } else if (t == LUA_TNUMBER) {
        double d = lua_tonumber(L, -1);
        if (!std::isfinite(d)) fail(d > 0 ? "cannot encode the key inf" : "cannot encode the key -inf");
        size_t off = arena.size();
        append_number(arena, d);
        keys.push_back({reinterpret_cast<const char*>(off), arena.size() - off, d, true, value_idx});
      } else {
        fail(std::string("cannot encode a ") + luaL_typename(L, -1) + " key");
      }
    }
    if (keys.empty()) {
      out.append("{}", 2);
      return;
    }
    for (Key& k : keys)
      if (k.is_num) k.s = arena.data() + reinterpret_cast<size_t>(k.s);
    std::sort(keys.begin(), keys.end(), [](const Key& a, const Key& b) { return key_less(a.s, a.n, b.s, b.n); });
    for (size_t i = 1; i < keys.size(); i++) {
      if (keys[i].n == keys[i - 1].n && std::memcmp(keys[i].s, keys[i - 1].s, keys[i].n) == 0) {
        std::string k;
        append_quoted(k, keys[i].s, keys[i].n);
        fail("duplicate key " + k + " (a number and a string key give the same text)");
      }
    }
    out.push_back('{');
    for (size_t i = 0; i < keys.size(); i++) {
      const Key& k = keys[i];
      if (i > 0) out.push_back(',');
      newline(depth);
      write_string(k.s, k.n, "key");
      out.push_back(':');
      if (opt_.indent >= 0) out.push_back(' ');
      path_.push_back(k.is_num ? PathElem{PathElem::number, nullptr, 0, k.num} : PathElem{PathElem::key, k.s, k.n, 0});
      if (k.value_idx) {
        encode_value(k.value_idx, depth);
      } else {
        if (k.is_num) lua_pushnumber(L, k.num);
        else lua_pushlstring(L, k.s, k.n);
        lua_rawget(L, idx);
        encode_value(-1, depth);
        lua_pop(L, 1);
      }
      path_.pop_back();
    }
    lua_settop(L, base);
    newline(depth - 1);
    out.push_back('}');
  }
};

// Raises a klua error (name KLUA_JSON) carrying `message` (consumed). Only trivially
// destructible objects may be live in the caller's frame when lua_error runs.
void push_json_error(lua_State* L, std::string message) {
  ErrorSpec spec;
  spec.code = CODE_JSON;
  spec.name = ERR_JSON;
  spec.message = std::move(message);
  push_error(L, spec);
}

int l_encode(lua_State* L) {
  if (lua_isnone(L, 1)) raise_bad_argument(L, 1, "encode", "value expected");
  bool failed = false;
  {
    Options o = read_options(L, 2, true);
    lua_settop(L, 1);
    Encoder enc(L, o);
    try {
      enc.encode_value(1, 0);
      lua_pushlstring(L, enc.out.data(), enc.out.size());
    } catch (EncodeError& e) {
      lua_settop(L, 1);
      push_json_error(L, std::move(e.message));
      failed = true;
    }
  }
  if (failed) return lua_error(L);
  return 1;
}

// ---------------------------------------------------------------------------------------
// Decode

// Builds Lua values directly on the Lua stack from nlohmann's SAX events. Stack layout
// while parsing: one slot per open container, plus the pending key inside an object.
class DecodeSax {
 public:
  using json = nlohmann::json;

  DecodeSax(lua_State* L, const char* input, size_t len, int max_depth)
      : L(L), input_(input), len_(len), max_depth_(max_depth) {}

  std::string error;  // set when parsing stopped

  bool null() {
    lua_pushlightuserdata(L, &null_sentinel);
    return add();
  }
  bool boolean(bool v) {
    lua_pushboolean(L, v);
    return add();
  }
  bool number_integer(json::number_integer_t v) {
    lua_pushnumber(L, static_cast<lua_Number>(v));
    return add();
  }
  bool number_unsigned(json::number_unsigned_t v) {
    lua_pushnumber(L, static_cast<lua_Number>(v));
    return add();
  }
  bool number_float(json::number_float_t v, const json::string_t&) {
    lua_pushnumber(L, v);
    return add();
  }
  bool string(json::string_t& s) {
    lua_pushlstring(L, s.data(), s.size());
    return add();
  }
  bool binary(json::binary_t&) { return false; }  // not produced by the JSON parser
  bool start_object(std::size_t) { return open(false); }
  bool start_array(std::size_t) { return open(true); }
  bool key(json::string_t& s) {
    lua_pushlstring(L, s.data(), s.size());
    levels_.back().n++;
    return true;
  }
  bool end_object() { return close(); }
  bool end_array() { return close(); }

  bool parse_error(std::size_t position, const std::string& last_token, const nlohmann::detail::exception& ex) {
    error = describe(position, last_token, ex.what());
    return false;
  }

 private:
  struct Level {
    bool is_array;
    int n;  // elements so far (array) or keys so far (object)
  };
  lua_State* L;
  const char* input_;
  size_t len_;
  int max_depth_;
  std::vector<Level> levels_;

  bool add() {
    if (levels_.empty()) return true;
    Level& lv = levels_.back();
    if (lv.is_array) lua_rawseti(L, -2, ++lv.n);
    else lua_rawset(L, -3);
    return true;
  }

  bool open(bool is_array) {
    if (static_cast<int>(levels_.size()) >= max_depth_ || !lua_checkstack(L, 4)) {
      error = "nesting deeper than max_depth " + std::to_string(max_depth_) + " at byte " +
              std::to_string(open_offset(levels_.size() + 1));
      return false;
    }
    lua_createtable(L, 0, 0);
    lua_pushvalue(L, lua_upvalueindex(is_array ? UV_ARRAY_MT : UV_OBJECT_MT));
    lua_setmetatable(L, -2);
    levels_.push_back({is_array, 0});
    return true;
  }

  bool close() {
    levels_.pop_back();
    return add();
  }

  // Offset of the bracket that opens nesting level `depth`; the input before it was
  // accepted by the parser, so a bracket/string scan is exact.
  size_t open_offset(size_t depth) const {
    size_t d = 0;
    bool in_string = false;
    for (size_t i = 0; i < len_; i++) {
      char c = input_[i];
      if (in_string) {
        if (c == '\\') i++;
        else if (c == '"') in_string = false;
      } else if (c == '"') {
        in_string = true;
      } else if (c == '[' || c == '{') {
        if (++d == depth) return i;
      } else if (c == ']' || c == '}') {
        d--;
      }
    }
    return len_;
  }

  // Turns nlohmann's message ("[json.exception.parse_error.101] parse error at line 1,
  // column 8: syntax error while parsing value - unexpected '}'; expected '[', '{', or a
  // literal") into "syntax error at byte 7: expected value, found '}'".
  std::string describe(std::size_t position, const std::string& token, std::string_view what) const {
    std::string_view context, detail;
    size_t p = what.find("syntax error ");
    if (p != std::string_view::npos) {
      std::string_view rest = what.substr(p + 13);
      size_t dash = rest.find("- ");
      if (dash != std::string_view::npos) {
        context = rest.substr(0, dash);
        if (context.substr(0, 14) == "while parsing ") context.remove_prefix(14);
        while (!context.empty() && context.back() == ' ') context.remove_suffix(1);
        detail = rest.substr(dash + 2);
      }
    }
    if (detail.empty()) {
      // Not a syntax error: a number token that overflows a double (out_of_range.406), or
      // a message format we do not know (keep nlohmann's text after the "[json...] " tag).
      size_t tag = what.find("] ");
      if (tag != std::string_view::npos) what.remove_prefix(tag + 2);
      if (what.substr(0, 15) == "number overflow") {
        size_t at = position >= token.size() ? position - token.size() : 0;
        return "number out of range at byte " + std::to_string(at) + ": " + token;
      }
      size_t at = position > 0 ? std::min(position - 1, len_) : 0;
      return "syntax error at byte " + std::to_string(at) + ": " + std::string(what);
    }
    if (detail.substr(0, 11) != "unexpected ") {
      // A lexer error: report where the lexer stopped, with its message.
      std::string_view msg = detail.substr(0, detail.find("; last read:"));
      size_t at = position > 0 ? std::min(position - 1, len_) : 0;
      return "syntax error at byte " + std::to_string(at) + ": " + std::string(msg);
    }
    std::string_view found_name = detail.substr(11);
    std::string_view expected_name;
    size_t semi = found_name.find("; expected ");
    if (semi != std::string_view::npos) {
      expected_name = found_name.substr(semi + 11);
      found_name = found_name.substr(0, semi);
    }
    std::string expected;
    if (expected_name == "end of input") expected = "end of input";
    else if (context == "value") expected = "value";
    else if (context == "array") expected = "',' or ']'";
    else if (context == "object") expected = "',' or '}'";
    else if (context == "object separator") expected = "':'";
    else if (context == "object key")
      expected = (!levels_.empty() && levels_.back().n == 0) ? "string key or '}'" : "string key";
    else expected = std::string(expected_name);

    size_t at;
    std::string found;
    if (found_name == "end of input") {
      at = len_;
      found = "end of input";
    } else if (found_name.size() == 3 && found_name[0] == '\'') {
      // A structural character ('}', ':', ...). The lexer does not reset its token text
      // for these, so use the name, and the character is the last one read.
      at = position > 0 ? position - 1 : 0;
      found = std::string(found_name);
    } else {
      // A literal, number or string: the token text starts where the token does.
      at = position >= token.size() ? position - token.size() : 0;
      found = "'";
      if (token.size() > 40) {
        found.append(token, 0, 37);
        found += "...";
      } else {
        found += token;
      }
      found += "'";
    }
    return "syntax error at byte " + std::to_string(at) + ": expected " + expected + ", found " + found;
  }
};

int l_decode(lua_State* L) {
  size_t len;
  if (lua_type(L, 1) != LUA_TSTRING) check_arg_type(L, 1, LUA_TSTRING, "decode");
  const char* s = lua_tolstring(L, 1, &len);
  int max_depth = read_options(L, 2, false).max_depth;
  lua_settop(L, 2);
  bool ok;
  {
    DecodeSax sax(L, s, len, max_depth);
    ok = nlohmann::json::sax_parse(s, s + len, &sax);
    if (!ok) {
      lua_settop(L, 2);
      lua_pushnil(L);
      push_json_error(L, "json decode: " + sax.error);
    }
  }
  return ok ? 1 : 2;
}

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

int open_json(lua_State* L) {
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
