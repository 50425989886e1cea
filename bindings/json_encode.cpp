// klua.json.encode: a direct writer with nlohmann-compatible output (the behaviour is described
// at the top of json.cpp).
#include <algorithm>
#include <charconv>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <new>
#include <optional>
#include <fmt/format.h>
#include <string>
#include <string_view>
#include <vector>

#include "bindings/json_internal.hpp"
#include "host/error.hpp"

namespace klua::json_impl {

namespace {

enum class Kind { none, array, object };

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

}  // namespace

bool utf8_valid(const char* str, size_t n) {
  const unsigned char* s = reinterpret_cast<const unsigned char*>(str);
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t bad;
    size_t len = utf8_seq(s + i, n - i, &bad);
    if (!len) return false;
    i += len;
  }
  return true;
}

namespace {

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
  // For reuse: empty, and the memory given back when it grew past max.
  void clear(size_t max) {
    len_ = 0;
    if (cap_ > max) {
      std::free(buf_);
      buf_ = nullptr;
      cap_ = 0;
    }
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

  // An encoder is kept for the next call (l_encode): its buffers, once grown, make a small value's
  // encoding allocation-free (a server's JSON answer paid ~8 malloc/free pairs for them). What grew
  // large (a big document's output or keys) is given back.
  void reset(lua_State* l, const Options& o) {
    L = l;
    opt_ = o;
    out.clear(kKeptBytes);
    visiting_.clear();
    path_.clear();
  }
  void trim() {
    out.clear(kKeptBytes);
    for (const std::vector<Key>& k : keys_) {
      if (k.capacity() > kKeptKeys) {
        keys_.clear();
        arenas_.clear();
        break;
      }
    }
  }
  static constexpr size_t kKeptBytes = 64 << 10;
  static constexpr size_t kKeptKeys = 1024;

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

}  // namespace

int l_encode(lua_State* L) {
  if (lua_isnone(L, 1)) raise_bad_argument(L, 1, "encode", "value expected");
  bool failed = false;
  {
    Options o = read_options(L, 2, true);
    lua_settop(L, 1);
    // The kept encoder (see Encoder::reset). An encode calls no Lua code, so it is not re-entered;
    // a busy one (should that change) makes the call use one of its own.
    static thread_local Encoder kept(nullptr, Options{});
    static thread_local bool kept_busy = false;
    std::optional<Encoder> own;
    Encoder* enc;
    bool using_kept = !kept_busy;
    if (using_kept) {
      kept.reset(L, o);
      kept_busy = true;
      enc = &kept;
    } else {
      enc = &own.emplace(L, o);
    }
    // Released however the block ends: LuaJIT raises through C++ frames (a memory error in
    // lua_pushlstring), and a flag left set would cost every later encode its kept buffers.
    struct KeptRelease {
      bool active;
      ~KeptRelease() {
        if (active) {
          kept.trim();
          kept_busy = false;
        }
      }
    } release{using_kept};
    try {
      enc->encode_value(1, 0);
      lua_pushlstring(L, enc->out.data(), enc->out.size());
    } catch (EncodeError& e) {
      lua_settop(L, 1);
      push_json_error(L, std::move(e.message));
      failed = true;
    }
  }
  if (failed) return lua_error(L);
  return 1;
}

}  // namespace klua::json_impl
