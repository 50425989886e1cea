// klua.json.decode: Lua values built from nlohmann/json's SAX events (the behaviour is described at
// the top of json.cpp).
#include <cstring>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "bindings/json_internal.hpp"
#include "host/error.hpp"

namespace klua::json_impl {

namespace {

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

}  // namespace

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

}  // namespace klua::json_impl
