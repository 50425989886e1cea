// klua.protobuf's primitives, on Debian's libprotobuf (3.21): .proto text is parsed with compiler::Parser
// and built into a DescriptorPool of its own whose underlay is the generated pool, so the well-known types
// (google/protobuf/*.proto, compiled into libprotobuf) import without files on disk. A compiled file owns
// its pool, a DynamicMessageFactory and, per message type, one scratch DynamicMessage that encode and
// decode Clear() and reuse: no message is allocated per call once warm.
//
// The primitives return `nil, ERROR_NAME, message [, path]` on failure; bindings/lua/protobuf.lua turns
// that into a klua error (so the codes the registry module registers apply) and checks arguments.
#include "bindings/protobuf.hpp"

#include <google/protobuf/compiler/parser.h>
#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/type_resolver.h>
#include <google/protobuf/util/type_resolver_util.h>

#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "host/error.hpp"

namespace pb = google::protobuf;

namespace klua {
namespace {

constexpr const char* FILE_MT = "klua.protobuf.file";
constexpr const char* TYPE_MT = "klua.protobuf.type";
constexpr const char* E_SCHEMA = "KLUA_SCHEMA";
constexpr const char* E_SER = "KLUA_SERIALIZATION";
constexpr const char* E_DESER = "KLUA_DESERIALIZATION";
constexpr int kLuaTCdata = 10;  // lua_type() of LuaJIT cdata (not in lua.h)
constexpr int kMaxDepth = 100;  // as libprotobuf's own parse recursion limit
constexpr int kMaxImportDepth = 64;
constexpr double k2p53 = 9007199254740992.0;
constexpr double k2p63 = 9223372036854775808.0;
constexpr double k2p64 = 18446744073709551616.0;
constexpr const char* kTypeUrlPrefix = "type.googleapis.com";

// klua.json.null (a light userdata): a field given it is unset, as nil. Set once by P.init.
std::atomic<const void*> g_null{nullptr};

// libprotobuf reports why a parse failed (invalid UTF-8 in a proto3 string, ...) through its log, which
// goes to stderr by default: klua keeps the last message instead and names it in the error.
thread_local std::string g_last_log;
void log_handler(pb::LogLevel level, const char* file, int line, const std::string& message) {
  if (level >= pb::LOGLEVEL_FATAL) std::fprintf(stderr, "libprotobuf FATAL %s:%d: %s\n", file, line, message.c_str());
  g_last_log = message;
}

struct MsgType {
  const pb::Descriptor* d = nullptr;
  const pb::Message* prototype = nullptr;
  std::unique_ptr<pb::Message> scratch;  // created at the first encode/decode of this type
  std::unordered_map<std::string_view, const pb::FieldDescriptor*> by_name;  // views of the descriptors' names
  // Reflection's whole-message passes (Clear, IsInitialized) walk every field through HasBit at ~50 ns a
  // field: encode clears only the top-level fields the previous encode set, and checks initialization
  // only where a required field can be (never in proto3).
  bool has_required = false;
  std::vector<const pb::FieldDescriptor*> dirty;
  bool clear_all = false;  // after a decode: any field may be set
  pb::Message* message() {
    if (!scratch) scratch.reset(prototype->New());
    return scratch.get();
  }
};

bool any_required(const pb::Descriptor* d, std::set<const pb::Descriptor*>& seen) {
  if (!seen.insert(d).second) return false;
  for (int i = 0; i < d->field_count(); i++) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->is_required()) return true;
    if (f->message_type() && any_required(f->message_type(), seen)) return true;
  }
  return false;
}

struct File {
  // Declaration order is destruction order reversed: messages, then the factory, then the pool.
  std::unique_ptr<pb::DescriptorPool> pool;
  const pb::FileDescriptor* fd = nullptr;
  std::unique_ptr<pb::DynamicMessageFactory> factory;
  std::unique_ptr<pb::util::TypeResolver> resolver;
  std::unordered_map<const pb::Descriptor*, std::unique_ptr<MsgType>> types;
  std::string buf;  // the encode buffer, reused

  MsgType* type(const pb::Descriptor* d) {
    auto& slot = types[d];
    if (!slot) {
      slot = std::make_unique<MsgType>();
      slot->d = d;
      slot->prototype = factory->GetPrototype(d);
      for (int i = 0; i < d->field_count(); i++) slot->by_name.emplace(d->field(i)->name(), d->field(i));
      std::set<const pb::Descriptor*> seen;
      slot->has_required = any_required(d, seen);
    }
    return slot.get();
  }
  pb::util::TypeResolver* type_resolver() {
    if (!resolver) resolver.reset(pb::util::NewTypeResolverForDescriptorPool(kTypeUrlPrefix, pool.get()));
    return resolver.get();
  }
};

struct FileUd {
  File* f;
};
struct TypeUd {
  File* f;
  MsgType* t;
};

int fail(lua_State* L, const char* name, const std::string& message) {
  lua_pushnil(L);
  lua_pushstring(L, name);
  lua_pushlstring(L, message.data(), message.size());
  return 3;
}

// ---- compiling -----------------------------------------------------------------------------------

void append_error(std::string* out, const std::string& line) {
  if (out->size() > 4000) return;  // the first errors say it
  if (!out->empty()) out->push_back('\n');
  *out += line;
}

struct ParseErrors : pb::io::ErrorCollector {
  std::string file;
  std::string* out;
  void AddError(int line, pb::io::ColumnNumber col, const std::string& msg) override {
    append_error(out, file + ":" + std::to_string(line + 1) + ":" + std::to_string(col + 1) + ": " + msg);
  }
};

struct BuildErrors : pb::DescriptorPool::ErrorCollector {
  const pb::compiler::SourceLocationTable* table = nullptr;  // null for a FileDescriptorProto given as bytes
  std::string* out;
  void AddError(const std::string& filename, const std::string& element, const pb::Message* descriptor,
                ErrorLocation location, const std::string& message) override {
    int line = -1, col = -1;
    if (table) {
      if (location == IMPORT)
        table->FindImport(descriptor, element, &line, &col);
      else
        table->Find(descriptor, location, &line, &col);
    }
    std::string where = filename;
    if (line >= 0) where += ":" + std::to_string(line + 1) + ":" + std::to_string(col + 1);
    append_error(out, where + ": " + message);
  }
};

struct Source {
  std::string text;
  bool descriptor;  // a serialized FileDescriptorProto, not .proto text
};

struct Compiler {
  pb::DescriptorPool* pool;
  std::unordered_map<std::string, Source> sources;
  std::set<std::string> building;
  std::string err;

  // Built already, or a well-known type of the underlay. Only google/protobuf/ names are asked of the
  // generated pool: it remembers every name it failed to find, for the life of the process.
  bool known(const std::string& name) {
    if (built.count(name)) return true;
    return name.rfind("google/protobuf/", 0) == 0 && pool->FindFileByName(name) != nullptr;
  }
  std::set<std::string> built;

  // Builds `name` and, first, what it imports. The importer's position names a missing import.
  bool build(const std::string& name, int depth) {
    if (known(name)) return true;
    auto it = sources.find(name);
    if (it == sources.end()) {
      append_error(&err, name + ": not found (give its text in opts.imports)");
      return false;
    }
    if (depth > kMaxImportDepth || !building.insert(name).second) {
      append_error(&err, name + ": imports itself (an import cycle)");
      return false;
    }
    pb::FileDescriptorProto proto;
    pb::compiler::SourceLocationTable table;
    bool text = !it->second.descriptor;
    if (text) {
      ParseErrors pe;
      pe.file = name;
      pe.out = &err;
      pb::io::ArrayInputStream input(it->second.text.data(), static_cast<int>(it->second.text.size()));
      pb::io::Tokenizer tokenizer(&input, &pe);
      pb::compiler::Parser parser;
      parser.RecordErrorsTo(&pe);
      parser.RecordSourceLocationsTo(&table);
      if (!parser.Parse(&tokenizer, &proto) || !err.empty()) {
        if (err.empty()) append_error(&err, name + ": does not parse");
        return false;
      }
    } else if (!proto.ParseFromString(it->second.text)) {
      append_error(&err, name + ": not a serialized FileDescriptorProto");
      return false;
    }
    proto.set_name(name);
    for (const std::string& dep : proto.dependency()) {
      if (known(dep)) continue;
      if (sources.find(dep) == sources.end()) {
        int line = -1, col = -1;
        std::string where = name;
        if (text && table.FindImport(&proto, dep, &line, &col))
          where += ":" + std::to_string(line + 1) + ":" + std::to_string(col + 1);
        append_error(&err, where + ": import \"" + dep + "\" was not found (give its text in opts.imports)");
        return false;
      }
      if (!build(dep, depth + 1)) return false;
    }
    BuildErrors be;
    be.table = text ? &table : nullptr;
    be.out = &err;
    if (!pool->BuildFileCollectingErrors(proto, &be)) {
      if (err.empty()) append_error(&err, name + ": does not compile");
      return false;
    }
    building.erase(name);
    built.insert(name);
    return true;
  }
};

// P.compile(name, source, is_descriptor, imports, descriptor_names) -> file | nil, name, message
// imports: { [file name] = text or serialized FileDescriptorProto }; descriptor_names: { [file name] = true }
// for the imports that are descriptors.
int l_compile(lua_State* L) {
  std::string name = luaL_checkstring(L, 1);
  size_t n;
  const char* src = luaL_checklstring(L, 2, &n);
  Compiler c;
  auto file = std::make_unique<File>();
  file->pool = std::make_unique<pb::DescriptorPool>(pb::DescriptorPool::generated_pool());
  c.pool = file->pool.get();
  c.sources[name] = Source{std::string(src, n), static_cast<bool>(lua_toboolean(L, 3))};
  if (lua_istable(L, 4)) {
    lua_pushnil(L);
    while (lua_next(L, 4)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
        size_t len;
        const char* text = lua_tolstring(L, -1, &len);
        std::string key = lua_tostring(L, -2);
        bool desc = false;
        if (lua_istable(L, 5)) {
          lua_getfield(L, 5, key.c_str());
          desc = lua_toboolean(L, -1);
          lua_pop(L, 1);
        }
        if (key != name) c.sources[key] = Source{std::string(text, len), desc};
      }
      lua_pop(L, 1);
    }
  }
  if (!c.build(name, 0)) return fail(L, E_SCHEMA, c.err);
  file->fd = file->pool->FindFileByName(name);
  if (!file->fd) return fail(L, E_SCHEMA, name + ": does not compile");
  file->factory = std::make_unique<pb::DynamicMessageFactory>(file->pool.get());
  auto* ud = static_cast<FileUd*>(lua_newuserdata(L, sizeof(FileUd)));
  ud->f = file.release();
  luaL_getmetatable(L, FILE_MT);
  lua_setmetatable(L, -2);
  return 1;
}

int l_file_gc(lua_State* L) {
  auto* ud = static_cast<FileUd*>(luaL_checkudata(L, 1, FILE_MT));
  delete ud->f;
  ud->f = nullptr;
  return 0;
}

File* check_file(lua_State* L, int idx) { return static_cast<FileUd*>(luaL_checkudata(L, idx, FILE_MT))->f; }
TypeUd* check_type(lua_State* L, int idx) { return static_cast<TypeUd*>(luaL_checkudata(L, idx, TYPE_MT)); }

void collect_messages(lua_State* L, const pb::Descriptor* d, int* n) {
  lua_pushstring(L, d->full_name().c_str());
  lua_rawseti(L, -2, ++*n);
  for (int i = 0; i < d->nested_type_count(); i++)
    if (!d->nested_type(i)->options().map_entry()) collect_messages(L, d->nested_type(i), n);
}

// P.file_info(file) -> name, package, syntax ("proto2" | "proto3"), { message full names, depth first }
int l_file_info(lua_State* L) {
  File* f = check_file(L, 1);
  lua_pushstring(L, f->fd->name().c_str());
  lua_pushstring(L, f->fd->package().c_str());
  lua_pushstring(L, pb::FileDescriptor::SyntaxName(f->fd->syntax()));
  lua_newtable(L);
  int n = 0;
  for (int i = 0; i < f->fd->message_type_count(); i++) collect_messages(L, f->fd->message_type(i), &n);
  return 4;
}

// P.descriptor(file) -> the file's FileDescriptorProto, serialized (what Python's serializer registers)
int l_descriptor(lua_State* L) {
  File* f = check_file(L, 1);
  pb::FileDescriptorProto proto;
  f->fd->CopyTo(&proto);
  std::string out = proto.SerializeAsString();
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// Pushes the message type's handle and its Confluent index path (nil outside the compiled file).
int push_type(lua_State* L, int file_idx, File* f, const pb::Descriptor* d) {
  auto* ud = static_cast<TypeUd*>(lua_newuserdata(L, sizeof(TypeUd)));
  ud->f = f;
  ud->t = f->type(d);
  luaL_getmetatable(L, TYPE_MT);
  lua_setmetatable(L, -2);
  lua_createtable(L, 1, 0);  // the type keeps its file (pool, factory) alive
  lua_pushvalue(L, file_idx);
  lua_rawseti(L, -2, 1);
  lua_setfenv(L, -2);
  if (d->file() != f->fd) {
    lua_pushnil(L);
    return 2;
  }
  std::vector<int> path;
  for (const pb::Descriptor* p = d; p; p = p->containing_type()) path.push_back(p->index());
  lua_createtable(L, static_cast<int>(path.size()), 0);
  for (size_t i = 0; i < path.size(); i++) {
    lua_pushinteger(L, path[path.size() - 1 - i]);
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  return 2;
}

// P.message(file, name) -> type, index | nil, name, message. name: a full name, or one relative to the
// file's package ("Order", "Order.Line").
int l_message(lua_State* L) {
  File* f = check_file(L, 1);
  std::string name = luaL_checkstring(L, 2);
  const pb::Descriptor* d = nullptr;
  if (!f->fd->package().empty()) d = f->pool->FindMessageTypeByName(f->fd->package() + "." + name);
  if (!d) d = f->pool->FindMessageTypeByName(name);
  if (!d) return fail(L, E_SCHEMA, "no message type \"" + name + "\" in " + f->fd->name());
  return push_type(L, 1, f, d);
}

// P.message_at(file, { index path }) -> type, index | nil, name, message
int l_message_at(lua_State* L) {
  File* f = check_file(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = static_cast<int>(lua_objlen(L, 2));
  const pb::Descriptor* d = nullptr;
  std::string path;
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 2, i);
    double v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    path += (i > 1 ? ", " : "") + std::to_string(static_cast<long long>(v));
    int count = d ? d->nested_type_count() : f->fd->message_type_count();
    if (v != std::floor(v) || v < 0 || v >= count)
      return fail(L, E_DESER, "message index {" + path + "} is not in " + f->fd->name() + " (" +
                                  (d ? d->full_name() + " has " : "it has ") + std::to_string(count) +
                                  (d ? " nested" : " top-level") + " message types)");
    d = d ? d->nested_type(static_cast<int>(v)) : f->fd->message_type(static_cast<int>(v));
  }
  if (!d) return fail(L, E_DESER, "an empty message index");
  return push_type(L, 1, f, d);
}

// ---- Lua table -> message ------------------------------------------------------------------------

struct PathSeg {
  enum Kind { field, index, key_string, key_number } kind;
  const char* s;
  size_t n;
  double num;
};

struct Scalar {
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  bool b = false;
  const char* s = nullptr;
  size_t n = 0;
  int enum_number = 0;
};

std::string quoted_key(lua_State* L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t n;
    const char* s = lua_tolstring(L, idx, &n);
    std::string out = "\"";
    for (size_t i = 0; i < n && i < 64; i++) {
      unsigned char c = s[i];
      if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') out.push_back(c);
      else { char b[8]; std::snprintf(b, sizeof b, "\\%u", c); out += b; }
    }
    return out + "\"";
  }
  if (lua_type(L, idx) == LUA_TNUMBER) {
    char b[32];
    std::snprintf(b, sizeof b, "%.17g", lua_tonumber(L, idx));
    return b;
  }
  return std::string("a ") + luaL_typename(L, idx) + " key";
}

const char* type_label(const pb::FieldDescriptor* f) { return f->type_name(); }

struct Encoder {
  lua_State* L;
  File* f;
  std::vector<PathSeg> path;
  std::string err, err_path;
  std::vector<const pb::FieldDescriptor*>* dirty;  // the top-level fields set, for the next encode to clear

  std::string format_path() const {
    std::string out = "$";
    for (const PathSeg& p : path) {
      char b[40];
      switch (p.kind) {
        case PathSeg::field: out.push_back('.'); out.append(p.s, p.n); break;
        case PathSeg::index:
          std::snprintf(b, sizeof b, "[%.0f]", p.num);
          out += b;
          break;
        case PathSeg::key_string: {
          out += "[\"";
          for (size_t i = 0; i < p.n && i < 64; i++) {
            unsigned char c = p.s[i];
            if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') out.push_back(c);
            else { std::snprintf(b, sizeof b, "\\%u", c); out += b; }
          }
          out += "\"]";
          break;
        }
        case PathSeg::key_number:
          std::snprintf(b, sizeof b, "[%.17g]", p.num);
          out += b;
          break;
      }
    }
    return out;
  }

  bool error(const std::string& detail) {
    err_path = format_path();
    err = err_path + ": " + detail;
    return false;
  }

  bool type_error(const pb::FieldDescriptor* field, int idx, const char* expected) {
    std::string got = luaL_typename(L, idx);
    if (lua_type(L, idx) == LUA_TNUMBER) {
      char b[40];
      std::snprintf(b, sizeof b, "%.17g", lua_tonumber(L, idx));
      got = std::string("number ") + b;
    } else if (lua_type(L, idx) == LUA_TSTRING) {
      got = "string " + quoted_key(L, idx);
    }
    return error(std::string("expected ") + expected + " for " + field->full_name() + " (" + type_label(field) +
                 "), got " + got);
  }

  // A LuaJIT int64_t/uint64_t cdata at idx: 1 int64, 2 uint64, 0 another cdata.
  int cdata_kind(int idx) {
    lua_getfield(L, LUA_REGISTRYINDEX, "klua.protobuf.cdata_kind");
    if (!lua_isfunction(L, -1)) {
      lua_pop(L, 1);
      return 0;
    }
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
    int k = static_cast<int>(lua_tointeger(L, -1));
    lua_pop(L, 1);
    return k;
  }

  // Whole numbers within [lo, hi] (as doubles), int64/uint64 cdata, and for 64-bit fields decimal strings
  // (what proto3 JSON writes for them).
  bool read_signed(const pb::FieldDescriptor* field, int idx, double lo, double hi, int64_t* out) {
    int t = lua_type(L, idx);
    if (t == LUA_TNUMBER) {
      double d = lua_tonumber(L, idx);
      if (d != std::floor(d) || d < lo || d >= hi) return type_error(field, idx, "a whole number in range");
      *out = static_cast<int64_t>(d);
      return true;
    }
    if (t == kLuaTCdata) {
      int k = cdata_kind(idx);
      const void* p = lua_topointer(L, idx);
      int64_t v;
      if (k == 1) {
        std::memcpy(&v, p, 8);
      } else if (k == 2) {
        uint64_t u;
        std::memcpy(&u, p, 8);
        if (u > static_cast<uint64_t>(INT64_MAX)) return type_error(field, idx, "a whole number in range");
        v = static_cast<int64_t>(u);
      } else {
        return type_error(field, idx, "an integer");
      }
      // Only int32 fields have narrower bounds, and those are exact as doubles.
      if (hi < k2p63 && (static_cast<double>(v) < lo || static_cast<double>(v) >= hi))
        return type_error(field, idx, "a whole number in range");
      *out = v;
      return true;
    }
    if (t == LUA_TSTRING && hi > 1e10) {
      size_t n;
      const char* s = lua_tolstring(L, idx, &n);
      auto r = std::from_chars(s, s + n, *out);
      if (r.ec == std::errc() && r.ptr == s + n && n > 0) return true;
    }
    return type_error(field, idx, "an integer");
  }

  bool read_unsigned(const pb::FieldDescriptor* field, int idx, double hi, uint64_t* out) {
    int t = lua_type(L, idx);
    if (t == LUA_TNUMBER) {
      double d = lua_tonumber(L, idx);
      if (d != std::floor(d) || d < 0 || d >= hi) return type_error(field, idx, "a whole number in range");
      *out = static_cast<uint64_t>(d);
      return true;
    }
    if (t == kLuaTCdata) {
      int k = cdata_kind(idx);
      const void* p = lua_topointer(L, idx);
      uint64_t v;
      if (k == 1) {
        int64_t s;
        std::memcpy(&s, p, 8);
        if (s < 0) return type_error(field, idx, "a whole number in range");
        v = static_cast<uint64_t>(s);
      } else if (k == 2) {
        std::memcpy(&v, p, 8);
      } else {
        return type_error(field, idx, "an integer");
      }
      if (hi < k2p64 && static_cast<double>(v) >= hi) return type_error(field, idx, "a whole number in range");
      *out = v;
      return true;
    }
    if (t == LUA_TSTRING && hi > 1e10) {
      size_t n;
      const char* s = lua_tolstring(L, idx, &n);
      auto r = std::from_chars(s, s + n, *out);
      if (r.ec == std::errc() && r.ptr == s + n && n > 0) return true;
    }
    return type_error(field, idx, "an integer");
  }

  bool utf8_ok(const char* s, size_t n) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(s);
    size_t i = 0;
    while (i < n) {
      unsigned c = p[i];
      if (c < 0x80) { i++; continue; }
      size_t need;
      unsigned lo = 0x80, hi = 0xBF;
      if (c >= 0xC2 && c <= 0xDF) need = 1;
      else if (c == 0xE0) need = 2, lo = 0xA0;
      else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
      else if (c == 0xED) need = 2, hi = 0x9F;
      else if (c == 0xF0) need = 3, lo = 0x90;
      else if (c >= 0xF1 && c <= 0xF3) need = 3;
      else if (c == 0xF4) need = 3, hi = 0x8F;
      else return false;
      for (size_t k = 1; k <= need; k++) {
        if (i + k >= n || p[i + k] < lo || p[i + k] > hi) return false;
        lo = 0x80, hi = 0xBF;
      }
      i += need + 1;
    }
    return true;
  }

  // Converts the non-message value at idx for `field` (its type, not its label).
  bool read_scalar(const pb::FieldDescriptor* field, int idx, Scalar* v) {
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32:
        return read_signed(field, idx, -2147483648.0, 2147483648.0, &v->i);
      case pb::FieldDescriptor::CPPTYPE_INT64:
        return read_signed(field, idx, -k2p63, k2p63, &v->i);
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        return read_unsigned(field, idx, 4294967296.0, &v->u);
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        return read_unsigned(field, idx, k2p64, &v->u);
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        if (lua_type(L, idx) != LUA_TNUMBER) return type_error(field, idx, "a number");
        v->d = lua_tonumber(L, idx);
        return true;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        if (lua_type(L, idx) != LUA_TBOOLEAN) return type_error(field, idx, "a boolean");
        v->b = lua_toboolean(L, idx);
        return true;
      case pb::FieldDescriptor::CPPTYPE_STRING:
        if (lua_type(L, idx) != LUA_TSTRING) return type_error(field, idx, "a string");
        v->s = lua_tolstring(L, idx, &v->n);
        if (field->type() == pb::FieldDescriptor::TYPE_STRING &&
            field->file()->syntax() == pb::FileDescriptor::SYNTAX_PROTO3 && !utf8_ok(v->s, v->n))
          return error("expected UTF-8 text for " + field->full_name() + " (string; a bytes field takes any bytes)");
        return true;
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        const pb::EnumDescriptor* e = field->enum_type();
        if (lua_type(L, idx) == LUA_TSTRING) {
          const pb::EnumValueDescriptor* ev = e->FindValueByName(lua_tostring(L, idx));
          if (!ev) return type_error(field, idx, ("a value of enum " + e->full_name()).c_str());
          v->enum_number = ev->number();
          return true;
        }
        if (lua_type(L, idx) == LUA_TNUMBER) {
          double d = lua_tonumber(L, idx);
          bool open = e->file()->syntax() == pb::FileDescriptor::SYNTAX_PROTO3;
          if (d != std::floor(d) || d < -2147483648.0 || d >= 2147483648.0 ||
              (!open && !e->FindValueByNumber(static_cast<int>(d))))
            return type_error(field, idx, ("a value of enum " + e->full_name()).c_str());
          v->enum_number = static_cast<int>(d);
          return true;
        }
        return type_error(field, idx, ("a value of enum " + e->full_name() + " (its name or number)").c_str());
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
    return error("internal: not a scalar field");
  }

  bool set_singular(pb::Message* m, const pb::Reflection* r, const pb::FieldDescriptor* field, int idx, int depth) {
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!lua_istable(L, idx)) return type_error(field, idx, ("a table (message " + field->message_type()->full_name() + ")").c_str());
      pb::Message* sub = r->MutableMessage(m, field, f->factory.get());
      return fill(sub, f->type(field->message_type()), idx, depth + 1);
    }
    Scalar v;
    if (!read_scalar(field, idx, &v)) return false;
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32: r->SetInt32(m, field, static_cast<int32_t>(v.i)); break;
      case pb::FieldDescriptor::CPPTYPE_INT64: r->SetInt64(m, field, v.i); break;
      case pb::FieldDescriptor::CPPTYPE_UINT32: r->SetUInt32(m, field, static_cast<uint32_t>(v.u)); break;
      case pb::FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(m, field, v.u); break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE: r->SetDouble(m, field, v.d); break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT: r->SetFloat(m, field, static_cast<float>(v.d)); break;
      case pb::FieldDescriptor::CPPTYPE_BOOL: r->SetBool(m, field, v.b); break;
      case pb::FieldDescriptor::CPPTYPE_STRING: r->SetString(m, field, std::string(v.s, v.n)); break;
      case pb::FieldDescriptor::CPPTYPE_ENUM: r->SetEnumValue(m, field, v.enum_number); break;
      default: break;
    }
    return true;
  }

  bool add_repeated(pb::Message* m, const pb::Reflection* r, const pb::FieldDescriptor* field, int idx, int depth) {
    if (field->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!lua_istable(L, idx)) return type_error(field, idx, ("a table (message " + field->message_type()->full_name() + ")").c_str());
      pb::Message* sub = r->AddMessage(m, field, f->factory.get());
      return fill(sub, f->type(field->message_type()), idx, depth + 1);
    }
    Scalar v;
    if (!read_scalar(field, idx, &v)) return false;
    switch (field->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32: r->AddInt32(m, field, static_cast<int32_t>(v.i)); break;
      case pb::FieldDescriptor::CPPTYPE_INT64: r->AddInt64(m, field, v.i); break;
      case pb::FieldDescriptor::CPPTYPE_UINT32: r->AddUInt32(m, field, static_cast<uint32_t>(v.u)); break;
      case pb::FieldDescriptor::CPPTYPE_UINT64: r->AddUInt64(m, field, v.u); break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE: r->AddDouble(m, field, v.d); break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT: r->AddFloat(m, field, static_cast<float>(v.d)); break;
      case pb::FieldDescriptor::CPPTYPE_BOOL: r->AddBool(m, field, v.b); break;
      case pb::FieldDescriptor::CPPTYPE_STRING: r->AddString(m, field, std::string(v.s, v.n)); break;
      case pb::FieldDescriptor::CPPTYPE_ENUM: r->AddEnumValue(m, field, v.enum_number); break;
      default: break;
    }
    return true;
  }

  bool is_null(int idx) { return lua_type(L, idx) == LUA_TLIGHTUSERDATA && lua_touserdata(L, idx) == g_null.load(); }

  bool set_map(pb::Message* m, const pb::Reflection* r, const pb::FieldDescriptor* field, int idx, int depth) {
    const pb::Descriptor* entry_type = field->message_type();
    const pb::FieldDescriptor* kf = entry_type->map_key();
    const pb::FieldDescriptor* vf = entry_type->map_value();
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int key = lua_gettop(L) - 1, val = lua_gettop(L);
      PathSeg seg{PathSeg::key_string, nullptr, 0, 0};
      if (lua_type(L, key) == LUA_TSTRING) seg.s = lua_tolstring(L, key, &seg.n);
      else seg.kind = PathSeg::key_number, seg.num = lua_tonumber(L, key);
      path.push_back(seg);
      pb::Message* entry = r->AddMessage(m, field, f->factory.get());
      const pb::Reflection* er = entry->GetReflection();
      bool ok;
      if (kf->cpp_type() == pb::FieldDescriptor::CPPTYPE_BOOL && lua_type(L, key) == LUA_TSTRING &&
          (seg.n == 4 && std::memcmp(seg.s, "true", 4) == 0)) {
        er->SetBool(entry, kf, true), ok = true;
      } else if (kf->cpp_type() == pb::FieldDescriptor::CPPTYPE_BOOL && lua_type(L, key) == LUA_TSTRING &&
                 (seg.n == 5 && std::memcmp(seg.s, "false", 5) == 0)) {
        er->SetBool(entry, kf, false), ok = true;
      } else if (kf->cpp_type() != pb::FieldDescriptor::CPPTYPE_STRING && lua_type(L, key) == LUA_TSTRING &&
                 kf->cpp_type() != pb::FieldDescriptor::CPPTYPE_BOOL) {
        // An integer key from JSON (object keys are strings): its digits.
        lua_pushvalue(L, key);
        lua_Number num = 0;
        size_t n;
        const char* s = lua_tolstring(L, -1, &n);
        long long ll;
        auto res = std::from_chars(s, s + n, ll);
        if (res.ec == std::errc() && res.ptr == s + n && n > 0 && kf->cpp_type() != pb::FieldDescriptor::CPPTYPE_UINT64 &&
            kf->cpp_type() != pb::FieldDescriptor::CPPTYPE_INT64) {
          num = static_cast<lua_Number>(ll);
          lua_pop(L, 1);
          lua_pushnumber(L, num);
        }
        ok = set_singular(entry, er, kf, lua_gettop(L), depth);
        lua_pop(L, 1);
      } else {
        ok = set_singular(entry, er, kf, key, depth);
      }
      if (ok) {
        if (is_null(val)) ok = error("a map value cannot be null (" + field->full_name() + ")");
        else ok = set_singular(entry, er, vf, val, depth);
      }
      if (!ok) {
        lua_pop(L, 2);
        return false;
      }
      path.pop_back();
      lua_pop(L, 1);
    }
    return true;
  }

  bool set_list(pb::Message* m, const pb::Reflection* r, const pb::FieldDescriptor* field, int idx, int depth) {
    int n = static_cast<int>(lua_objlen(L, idx));
    if (n == 0) {
      lua_pushnil(L);
      if (lua_next(L, idx)) {
        lua_pop(L, 1);
        std::string k = quoted_key(L, -1);
        lua_pop(L, 1);
        return error("expected a list for " + field->full_name() + " (repeated " + type_label(field) +
                     "), got a table with the key " + k);
      }
      return true;
    }
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      // 0-based, as the Avro and JSON Schema errors (and JSON paths) count.
      path.push_back(PathSeg{PathSeg::index, nullptr, 0, static_cast<double>(i - 1)});
      bool ok;
      if (lua_isnil(L, -1) || is_null(lua_gettop(L))) ok = error("a list element cannot be nil or null (" + field->full_name() + ")");
      else ok = add_repeated(m, r, field, lua_gettop(L), depth);
      lua_pop(L, 1);
      if (!ok) return false;
      path.pop_back();
    }
    return true;
  }

  // Fills m from the table at idx: keys are field names; nil and klua.json.null leave a field unset.
  bool fill(pb::Message* m, MsgType* t, int idx, int depth) {
    if (depth > kMaxDepth) return error("nested deeper than " + std::to_string(kMaxDepth) + " levels (a table that contains itself?)");
    if (!lua_checkstack(L, 8)) return error("out of Lua stack");
    const pb::Reflection* r = m->GetReflection();
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      int val = lua_gettop(L);
      if (lua_type(L, val - 1) != LUA_TSTRING) {
        std::string k = quoted_key(L, val - 1);
        lua_pop(L, 2);
        return error("unexpected key " + k + " in " + t->d->full_name() + " (keys are field names)");
      }
      size_t n;
      const char* k = lua_tolstring(L, val - 1, &n);
      path.push_back(PathSeg{PathSeg::field, k, n, 0});
      auto it = t->by_name.find(std::string_view(k, n));
      if (it == t->by_name.end()) {
        std::string key = quoted_key(L, val - 1);
        lua_pop(L, 2);
        return error("unknown field " + key + " in " + t->d->full_name());
      }
      const pb::FieldDescriptor* field = it->second;
      if (depth == 0) dirty->push_back(field);
      bool ok = true;
      if (!lua_isnil(L, val) && !is_null(val)) {
        if (field->is_map() || field->is_repeated()) {
          if (!lua_istable(L, val)) ok = type_error(field, val, field->is_map() ? "a table (map)" : "a table (list)");
          else ok = field->is_map() ? set_map(m, r, field, val, depth) : set_list(m, r, field, val, depth);
        } else {
          const pb::OneofDescriptor* oneof = field->real_containing_oneof();
          const pb::FieldDescriptor* other = oneof ? r->GetOneofFieldDescriptor(*m, oneof) : nullptr;
          if (other && other != field)
            ok = error("oneof " + oneof->full_name() + " has two members set: " + other->name() + " and " + field->name());
          else
            ok = set_singular(m, r, field, val, depth);
        }
      }
      if (!ok) {
        lua_pop(L, 2);
        return false;
      }
      path.pop_back();
      lua_pop(L, 1);
    }
    return true;
  }
};

// Serializes m after prefix into f->buf and pushes it. Deterministic: map entries sorted by key, so the
// same value gives the same bytes (keys compacted on them, partitioning).
void push_serialized(lua_State* L, File* f, const pb::Message& m, const char* prefix, size_t plen) {
  size_t size = m.ByteSizeLong();
  f->buf.resize(plen + size);
  if (plen) std::memcpy(f->buf.data(), prefix, plen);
  {
    pb::io::ArrayOutputStream out(f->buf.data() + plen, static_cast<int>(size));
    pb::io::CodedOutputStream cos(&out);
    cos.SetSerializationDeterministic(true);
    m.SerializeWithCachedSizes(&cos);
  }
  lua_pushlstring(L, f->buf.data(), f->buf.size());
  if (f->buf.capacity() > (1 << 20)) std::string().swap(f->buf);  // one huge message does not stay pinned
}

std::string missing_required(const pb::Message& m) {
  return "missing required field(s) of " + m.GetDescriptor()->full_name() + ": " + m.InitializationErrorString();
}

// P.encode(type, table [, prefix]) -> bytes | nil, name, message, path
int l_encode(lua_State* L) {
  TypeUd* u = check_type(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  size_t plen = 0;
  const char* prefix = lua_isnoneornil(L, 3) ? nullptr : luaL_checklstring(L, 3, &plen);
  pb::Message* m = u->t->message();
  const pb::Reflection* r = m->GetReflection();
  if (u->t->clear_all) m->Clear();
  else
    for (const pb::FieldDescriptor* fd : u->t->dirty) r->ClearField(m, fd);
  u->t->dirty.clear();
  u->t->clear_all = false;
  Encoder e{L, u->f, {}, {}, {}, &u->t->dirty};
  if (!e.fill(m, u->t, 2, 0)) {
    lua_pushnil(L);
    lua_pushstring(L, E_SER);
    lua_pushlstring(L, e.err.data(), e.err.size());
    lua_pushlstring(L, e.err_path.data(), e.err_path.size());
    return 4;
  }
  if (u->t->has_required && !m->IsInitialized()) {
    fail(L, E_SER, missing_required(*m));
    lua_pushstring(L, "$");
    return 4;
  }
  push_serialized(L, u->f, *m, prefix, plen);
  return 1;
}

// ---- message -> Lua table ------------------------------------------------------------------------

struct Decoder {
  lua_State* L;
  File* f;

  void push_int64(int64_t v) {
    if (v >= -static_cast<int64_t>(k2p53) && v <= static_cast<int64_t>(k2p53)) {
      lua_pushnumber(L, static_cast<lua_Number>(v));
      return;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "klua.protobuf.int64");
    lua_pushlstring(L, reinterpret_cast<const char*>(&v), 8);
    lua_pushboolean(L, 0);
    lua_call(L, 2, 1);
  }
  void push_uint64(uint64_t v) {
    if (v <= static_cast<uint64_t>(k2p53)) {
      lua_pushnumber(L, static_cast<lua_Number>(v));
      return;
    }
    lua_getfield(L, LUA_REGISTRYINDEX, "klua.protobuf.int64");
    lua_pushlstring(L, reinterpret_cast<const char*>(&v), 8);
    lua_pushboolean(L, 1);
    lua_call(L, 2, 1);
  }

  // idx < 0: the singular field, else the element idx of the repeated one.
  void push_value(const pb::Message& m, const pb::Reflection* r, const pb::FieldDescriptor* fd, int idx, int depth) {
    bool rep = idx >= 0;
    switch (fd->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_INT32:
        lua_pushnumber(L, rep ? r->GetRepeatedInt32(m, fd, idx) : r->GetInt32(m, fd));
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64: push_int64(rep ? r->GetRepeatedInt64(m, fd, idx) : r->GetInt64(m, fd)); break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        lua_pushnumber(L, rep ? r->GetRepeatedUInt32(m, fd, idx) : r->GetUInt32(m, fd));
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        push_uint64(rep ? r->GetRepeatedUInt64(m, fd, idx) : r->GetUInt64(m, fd));
        break;
      case pb::FieldDescriptor::CPPTYPE_DOUBLE:
        lua_pushnumber(L, rep ? r->GetRepeatedDouble(m, fd, idx) : r->GetDouble(m, fd));
        break;
      case pb::FieldDescriptor::CPPTYPE_FLOAT:
        lua_pushnumber(L, rep ? r->GetRepeatedFloat(m, fd, idx) : r->GetFloat(m, fd));
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        lua_pushboolean(L, rep ? r->GetRepeatedBool(m, fd, idx) : r->GetBool(m, fd));
        break;
      case pb::FieldDescriptor::CPPTYPE_STRING: {
        std::string scratch;
        const std::string& s = rep ? r->GetRepeatedStringReference(m, fd, idx, &scratch) : r->GetStringReference(m, fd, &scratch);
        lua_pushlstring(L, s.data(), s.size());
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_ENUM: {
        int v = rep ? r->GetRepeatedEnumValue(m, fd, idx) : r->GetEnumValue(m, fd);
        const pb::EnumValueDescriptor* ev = fd->enum_type()->FindValueByNumber(v);
        if (ev) lua_pushlstring(L, ev->name().data(), ev->name().size());
        else lua_pushnumber(L, v);  // a value this schema does not know (proto3 enums are open)
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE: {
        const pb::Message& sub = rep ? r->GetRepeatedMessage(m, fd, idx) : r->GetMessage(m, fd, f->factory.get());
        push_message(sub, f->type(fd->message_type()), depth + 1);
        break;
      }
    }
  }

  void push_map_key(const pb::Message& e, const pb::Reflection* r, const pb::FieldDescriptor* kf) {
    // 64-bit keys beyond 2^53 become decimal strings: a cdata key would be a new key at every lookup.
    char b[24];
    if (kf->cpp_type() == pb::FieldDescriptor::CPPTYPE_INT64) {
      int64_t v = r->GetInt64(e, kf);
      if (v >= -static_cast<int64_t>(k2p53) && v <= static_cast<int64_t>(k2p53)) lua_pushnumber(L, static_cast<lua_Number>(v));
      else lua_pushlstring(L, b, std::to_chars(b, b + sizeof b, v).ptr - b);
    } else if (kf->cpp_type() == pb::FieldDescriptor::CPPTYPE_UINT64) {
      uint64_t v = r->GetUInt64(e, kf);
      if (v <= static_cast<uint64_t>(k2p53)) lua_pushnumber(L, static_cast<lua_Number>(v));
      else lua_pushlstring(L, b, std::to_chars(b, b + sizeof b, v).ptr - b);
    } else {
      push_value(e, r, kf, -1, 0);
    }
  }

  void push_message(const pb::Message& m, MsgType* t, int depth) {
    if (!lua_checkstack(L, 8)) luaL_error(L, "klua.protobuf: out of Lua stack");
    const pb::Descriptor* d = t->d;
    const pb::Reflection* r = m.GetReflection();
    int n = d->field_count();
    lua_createtable(L, 0, n);
    for (int i = 0; i < n; i++) {
      const pb::FieldDescriptor* fd = d->field(i);
      if (fd->is_map()) {
        int c = r->FieldSize(m, fd);
        lua_createtable(L, 0, c);
        const pb::FieldDescriptor* kf = fd->message_type()->map_key();
        const pb::FieldDescriptor* vf = fd->message_type()->map_value();
        for (int j = 0; j < c; j++) {
          const pb::Message& e = r->GetRepeatedMessage(m, fd, j);
          const pb::Reflection* er = e.GetReflection();
          push_map_key(e, er, kf);
          push_value(e, er, vf, -1, depth);
          lua_rawset(L, -3);
        }
      } else if (fd->is_repeated()) {
        int c = r->FieldSize(m, fd);
        lua_createtable(L, c, 0);
        for (int j = 0; j < c; j++) {
          push_value(m, r, fd, j, depth);
          lua_rawseti(L, -2, j + 1);
        }
      } else {
        if (fd->has_presence() && !r->HasField(m, fd)) continue;
        push_value(m, r, fd, -1, depth);
      }
      lua_setfield(L, -2, fd->name().c_str());
    }
  }
};

bool check_offset(lua_State* L, int idx, size_t n, size_t* off) {
  lua_Number o = luaL_optnumber(L, idx, 0);
  if (o != std::floor(o) || o < 0 || o > static_cast<lua_Number>(n)) return false;
  *off = static_cast<size_t>(o);
  return true;
}

std::string parse_failure(const pb::Descriptor* d) {
  std::string why = g_last_log.empty() ? "invalid or truncated protobuf data" : g_last_log;
  return "cannot decode " + d->full_name() + ": " + why;
}

// P.decode(type, bytes [, offset]) -> table | nil, name, message
int l_decode(lua_State* L) {
  TypeUd* u = check_type(L, 1);
  size_t n, off;
  const char* s = luaL_checklstring(L, 2, &n);
  if (!check_offset(L, 3, n, &off)) return fail(L, E_DESER, "offset is not within the data (" + std::to_string(n) + " bytes)");
  pb::Message* m = u->t->message();
  u->t->clear_all = true;
  g_last_log.clear();
  // ParsePartialFromArray clears the message first.
  if (n - off > INT32_MAX || !m->ParsePartialFromArray(s + off, static_cast<int>(n - off))) return fail(L, E_DESER, parse_failure(u->t->d));
  if (u->t->has_required && !m->IsInitialized()) return fail(L, E_DESER, missing_required(*m));
  Decoder dec{L, u->f};
  dec.push_message(*m, u->t, 0);
  return 1;
}

// ---- proto3 JSON ---------------------------------------------------------------------------------

// P.to_json(type, bytes, offset, defaults, proto_names, enums_as_ints, pretty) -> text | nil, name, message
int l_to_json(lua_State* L) {
  TypeUd* u = check_type(L, 1);
  size_t n, off;
  const char* s = luaL_checklstring(L, 2, &n);
  if (!check_offset(L, 3, n, &off)) return fail(L, E_DESER, "offset is not within the data (" + std::to_string(n) + " bytes)");
  pb::Message* m = u->t->message();
  u->t->clear_all = true;
  g_last_log.clear();
  // Parsed first: the JSON converter is not the place to meet malformed data.
  if (n - off > INT32_MAX || !m->ParsePartialFromArray(s + off, static_cast<int>(n - off))) return fail(L, E_DESER, parse_failure(u->t->d));
  pb::util::JsonPrintOptions opts;
  opts.always_print_primitive_fields = lua_toboolean(L, 4);
  opts.preserve_proto_field_names = lua_toboolean(L, 5);
  opts.always_print_enums_as_ints = lua_toboolean(L, 6);
  opts.add_whitespace = lua_toboolean(L, 7);
  std::string json;
  auto st = pb::util::BinaryToJsonString(u->f->type_resolver(), std::string(kTypeUrlPrefix) + "/" + u->t->d->full_name(),
                                         m->SerializePartialAsString(), &json, opts);
  if (!st.ok()) return fail(L, E_DESER, "cannot convert " + u->t->d->full_name() + " to JSON: " + std::string(st.message()));
  lua_pushlstring(L, json.data(), json.size());
  return 1;
}

// P.from_json(type, text, prefix, ignore_unknown) -> bytes | nil, name, message
int l_from_json(lua_State* L) {
  TypeUd* u = check_type(L, 1);
  size_t n, plen = 0;
  const char* s = luaL_checklstring(L, 2, &n);
  const char* prefix = lua_isnoneornil(L, 3) ? nullptr : luaL_checklstring(L, 3, &plen);
  pb::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = lua_toboolean(L, 4);
  std::string bin;
  auto st = pb::util::JsonToBinaryString(u->f->type_resolver(), std::string(kTypeUrlPrefix) + "/" + u->t->d->full_name(),
                                         pb::StringPiece(s, n), &bin, opts);
  if (!st.ok()) return fail(L, E_SER, "JSON does not match " + u->t->d->full_name() + ": " + std::string(st.message()));
  pb::Message* m = u->t->message();
  u->t->clear_all = true;
  g_last_log.clear();
  // Parsed and written again: the converter writes fields in the JSON's order, klua in field-number order.
  if (!m->ParsePartialFromString(bin)) return fail(L, E_SER, "JSON does not match " + u->t->d->full_name() + ": " + g_last_log);
  if (!m->IsInitialized()) return fail(L, E_SER, missing_required(*m));
  push_serialized(L, u->f, *m, prefix, plen);
  return 1;
}

// ---- Confluent message indexes -------------------------------------------------------------------

// A varint at s[*pos..n): false when truncated or longer than 10 bytes.
bool read_varint(const unsigned char* s, size_t n, size_t* pos, uint64_t* out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (*pos >= n) return false;
    unsigned char b = s[(*pos)++];
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return true;
    }
    if (shift == 63) return false;
  }
  return false;
}

int64_t unzigzag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

// P.read_indexes(bytes, offset) -> { indexes }, next_offset | nil, name, message
int l_read_indexes(lua_State* L) {
  size_t n, off;
  const unsigned char* s = reinterpret_cast<const unsigned char*>(luaL_checklstring(L, 1, &n));
  if (!check_offset(L, 2, n, &off)) return fail(L, E_DESER, "offset is not within the data (" + std::to_string(n) + " bytes)");
  size_t pos = off;
  uint64_t raw;
  if (!read_varint(s, n, &pos, &raw)) return fail(L, E_DESER, "truncated message-index array at byte " + std::to_string(off));
  int64_t count = unzigzag(raw);
  if (count == 0) {
    lua_createtable(L, 1, 0);
    lua_pushnumber(L, 0);
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, static_cast<lua_Number>(pos));
    return 2;
  }
  // Each index takes at least a byte: a count beyond the data is corrupt, not a reason to allocate.
  if (count < 0 || static_cast<uint64_t>(count) > n - pos)
    return fail(L, E_DESER, "invalid message-index count " + std::to_string(count) + " at byte " + std::to_string(off));
  lua_createtable(L, static_cast<int>(count), 0);
  for (int64_t i = 0; i < count; i++) {
    size_t at = pos;
    if (!read_varint(s, n, &pos, &raw)) return fail(L, E_DESER, "truncated message-index array at byte " + std::to_string(at));
    int64_t v = unzigzag(raw);
    if (v < 0 || v > INT32_MAX) return fail(L, E_DESER, "invalid message index " + std::to_string(v) + " at byte " + std::to_string(at));
    lua_pushnumber(L, static_cast<lua_Number>(v));
    lua_rawseti(L, -2, static_cast<int>(i + 1));
  }
  lua_pushnumber(L, static_cast<lua_Number>(pos));
  return 2;
}

void write_zigzag(std::string& out, int64_t v) {
  uint64_t z = (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
  while (z >= 0x80) {
    out.push_back(static_cast<char>((z & 0x7f) | 0x80));
    z >>= 7;
  }
  out.push_back(static_cast<char>(z));
}

// P.index_bytes({ indexes }) -> bytes ({0}: the single byte 0). The Lua side checks the list.
int l_index_bytes(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = static_cast<int>(lua_objlen(L, 1));
  std::string out;
  lua_rawgeti(L, 1, 1);
  bool zero = n == 1 && lua_tonumber(L, -1) == 0;
  lua_pop(L, 1);
  if (zero) {
    out.push_back(0);
  } else {
    write_zigzag(out, n);
    for (int i = 1; i <= n; i++) {
      lua_rawgeti(L, 1, i);
      write_zigzag(out, static_cast<int64_t>(lua_tonumber(L, -1)));
      lua_pop(L, 1);
    }
  }
  lua_pushlstring(L, out.data(), out.size());
  return 1;
}

// P.type_name(type) -> the message type's full name
int l_type_name(lua_State* L) {
  TypeUd* u = check_type(L, 1);
  lua_pushstring(L, u->t->d->full_name().c_str());
  return 1;
}

// P.descriptor_name(bytes) -> the name a serialized FileDescriptorProto gives itself | nil
int l_descriptor_name(lua_State* L) {
  size_t n;
  const char* s = luaL_checklstring(L, 1, &n);
  pb::FileDescriptorProto proto;
  if (!proto.ParseFromArray(s, static_cast<int>(n)) || proto.name().empty()) return 0;
  lua_pushstring(L, proto.name().c_str());
  return 1;
}

// P.init(null, cdata_kind, int64): klua.json.null, and the FFI helpers for 64-bit integers.
int l_init(lua_State* L) {
  if (lua_type(L, 1) == LUA_TLIGHTUSERDATA) g_null.store(lua_touserdata(L, 1));
  lua_pushvalue(L, 2);
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.protobuf.cdata_kind");
  lua_pushvalue(L, 3);
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.protobuf.int64");
  return 0;
}

}  // namespace

void push_protobuf_primitives(lua_State* L) {
  static const bool logging = (pb::SetLogHandler(log_handler), true);
  (void)logging;
  if (luaL_newmetatable(L, FILE_MT)) {
    lua_pushcfunction(L, l_file_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  luaL_newmetatable(L, TYPE_MT);  // a type's file lives in its environment table
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"init", l_init},
                                 {"compile", l_compile},
                                 {"file_info", l_file_info},
                                 {"descriptor", l_descriptor},
                                 {"message", l_message},
                                 {"message_at", l_message_at},
                                 {"type_name", l_type_name},
                                 {"descriptor_name", l_descriptor_name},
                                 {"encode", l_encode},
                                 {"decode", l_decode},
                                 {"to_json", l_to_json},
                                 {"from_json", l_from_json},
                                 {"read_indexes", l_read_indexes},
                                 {"index_bytes", l_index_bytes},
                                 {nullptr, nullptr}};
  lua_newtable(L);
  for (const luaL_Reg* r = fns; r->name; r++) {
    lua_pushcfunction(L, r->func);
    lua_setfield(L, -2, r->name);
  }
}

}  // namespace klua
