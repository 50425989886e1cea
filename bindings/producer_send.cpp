// Enqueueing a message: the full path (every field, checked; raises on misuse) and p:send's FFI
// fast path (plain fields only), and the producer's topic handles.
#include "bindings/producer.hpp"

#include <cmath>
#include <cstring>
#include <fmt/format.h>

namespace klua::producer_impl {

rd_kafka_topic_t* Producer::topic(lua_State* L, const char* name, size_t len, std::string* problem) {
  if (last_topic_ && len == last_topic_name_.size() && memcmp(name, last_topic_name_.data(), len) == 0)
    return last_topic_;
  std::string key(name, len);
  auto it = topics_.find(key);
  if (it == topics_.end()) {
    *problem = topic_name_problem(name, len);
    if (!problem->empty()) return nullptr;
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_, key.c_str(), nullptr);
    it = topics_.emplace(key, rkt).first;
  }
  last_topic_ = it->second;
  last_topic_name_.assign(name, len);
  return last_topic_;
}

// A bad message raises the one programmer error: "bad argument #2 to 'p:send' (detail)", with
// "item N: " before the detail for p:produce_batch's messages.
void MessageArg::raise(lua_State* L, const std::string& detail) const {
  if (before_raise) before_raise();
  raise_bad_argument(L, 2, fn, item ? fmt::format("item {}: {}", item, detail) : detail);
}

static rd_kafka_headers_t* build_headers(lua_State* L, int idx, const MessageArg& arg) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  rd_kafka_headers_t* h = rd_kafka_headers_new(8);
  lua_rawgeti(L, idx, 1);
  bool is_list = !lua_isnil(L, -1);
  lua_pop(L, 1);
  auto add = [&](int name_idx, int value_idx) {
    if (lua_type(L, name_idx) != LUA_TSTRING) {
      rd_kafka_headers_destroy(h);
      arg.raise(L, fmt::format("header names must be strings, got {}", luaL_typename(L, name_idx)));
    }
    size_t nl, vl = 0;
    const char* n = lua_tolstring(L, name_idx, &nl);
    if (std::memchr(n, 0, nl)) {
      // librdkafka sends the whole name, but its consumer API (rd_kafka_header_get_all) hands
      // names out NUL-terminated: every reader (klua, kcat, confluent-kafka) would see it cut
      // at the NUL. Refused instead of truncated at the far end.
      std::string shown;
      for (size_t i = 0; i < nl; ++i) shown += n[i] ? std::string(1, n[i]) : std::string("\\0");
      rd_kafka_headers_destroy(h);
      arg.raise(L, fmt::format("header name \"{}\" contains a NUL byte, which Kafka consumers cannot read back "
                               "(librdkafka returns header names NUL-terminated)", shown));
    }
    const char* v = nullptr;
    if (!lua_isnil(L, value_idx)) {
      if (lua_type(L, value_idx) != LUA_TSTRING && lua_type(L, value_idx) != LUA_TNUMBER) {
        rd_kafka_headers_destroy(h);
        arg.raise(L, fmt::format("header '{}' must have a string value, got {}", n, luaL_typename(L, value_idx)));
      }
      v = lua_tolstring(L, value_idx, &vl);
    }
    rd_kafka_header_add(h, n, static_cast<ssize_t>(nl), v, static_cast<ssize_t>(vl));
  };
  if (is_list) {
    int n = static_cast<int>(lua_objlen(L, idx));
    for (int i = 1; i <= n; ++i) {
      lua_rawgeti(L, idx, i);
      if (!lua_istable(L, -1)) {
        rd_kafka_headers_destroy(h);
        arg.raise(L, fmt::format("headers[{}] must be a {{name, value}} pair, got {}", i, luaL_typename(L, -1)));
      }
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      add(-2, -1);
      lua_pop(L, 3);
    }
  } else {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      add(-2, -1);
      lua_pop(L, 1);
    }
  }
  return h;
}

rd_kafka_resp_err_t Producer::enqueue(lua_State* L, int idx, const MessageArg& arg, Delivery* extra,
                                      bool allow_callbacks, std::string* topic_out, std::string* err_message,
                                      double* timeout_ms) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  const char* topic_name = nullptr;
  size_t topic_len = 0;
  const char *key = nullptr, *value = nullptr;
  size_t key_len = 0, value_len = 0;
  int32_t partition = RD_KAFKA_PARTITION_UA;
  int64_t timestamp = 0;
  int headers_idx = 0, on_delivery_idx = 0, opaque_idx = 0;
  // Slots that keep converted or referenced values alive while the message is built.
  const int slots = lua_gettop(L);
  const int S_KEY = slots + 1, S_VALUE = slots + 2, S_HEADERS = slots + 3, S_CB = slots + 4, S_OPAQUE = slots + 5;
  lua_settop(L, slots + 5);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    const char* k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : nullptr;
    int vt = lua_type(L, -1);
    if (k == statics_->field_ptrs[F_TOPIC]) {
      if (vt != LUA_TSTRING) arg.raise(L, fmt::format("message field 'topic' must be a string, got {}", luaL_typename(L, -1)));
      topic_name = lua_tolstring(L, -1, &topic_len);
      // An empty name is a programmer error (a nil or "" variable): raised. A name the rules or
      // the broker refuse ("bad topic!") stays a runtime failure, nil, err (docs/producer.md).
      if (topic_len == 0) arg.raise(L, "message field 'topic' must be a non-empty topic name");
    } else if (k == statics_->field_ptrs[F_VALUE] || k == statics_->field_ptrs[F_KEY]) {
      bool is_value = k == statics_->field_ptrs[F_VALUE];
      if (vt != LUA_TSTRING && vt != LUA_TNUMBER)
        arg.raise(L, fmt::format("message field '{}' must be a string or nil, got {}", is_value ? "value" : "key", luaL_typename(L, -1)));
      lua_pushvalue(L, -1);  // convert a copy: converting the table's value in place would confuse lua_next
      lua_replace(L, is_value ? S_VALUE : S_KEY);
      if (is_value) value = lua_tolstring(L, S_VALUE, &value_len);
      else key = lua_tolstring(L, S_KEY, &key_len);
    } else if (k == statics_->field_ptrs[F_HEADERS]) {
      if (vt != LUA_TTABLE) arg.raise(L, fmt::format("message field 'headers' must be a table, got {}", luaL_typename(L, -1)));
      lua_pushvalue(L, -1);
      lua_replace(L, S_HEADERS);
      headers_idx = S_HEADERS;
    } else if (k == statics_->field_ptrs[F_PARTITION]) {
      if (vt != LUA_TNUMBER) arg.raise(L, fmt::format("message field 'partition' must be a number, got {}", luaL_typename(L, -1)));
      // Checked as a number before the cast: 1e10 became 1410065408, NaN 0 and 1.5 1.
      double p = lua_tonumber(L, -1);
      if (!(p >= 0 && p <= 2147483647.0) || p != std::floor(p))
        arg.raise(L, fmt::format("message field 'partition' must be a whole number from 0 to 2147483647 (partitions "
                                 "are 0-based), got {}", lua_tostring(L, -1)));
      partition = static_cast<int32_t>(p);
    } else if (k == statics_->field_ptrs[F_TIMESTAMP]) {
      if (vt != LUA_TNUMBER) arg.raise(L, fmt::format("message field 'timestamp' must be epoch milliseconds, got {}", luaL_typename(L, -1)));
      double ts = lua_tonumber(L, -1);
      if (!(ts >= 0 && ts < 9.2e18)) arg.raise(L, "message field 'timestamp' must be epoch milliseconds >= 0");
      timestamp = static_cast<int64_t>(ts);
    } else if (k == statics_->field_ptrs[F_ON_DELIVERY]) {
      if (!allow_callbacks) arg.raise(L, "message field 'on_delivery' is for p:send only");
      if (vt != LUA_TFUNCTION) arg.raise(L, fmt::format("message field 'on_delivery' must be a function, got {}", luaL_typename(L, -1)));
      lua_pushvalue(L, -1);
      lua_replace(L, S_CB);
      on_delivery_idx = S_CB;
    } else if (k == statics_->field_ptrs[F_OPAQUE]) {
      if (!allow_callbacks) arg.raise(L, "message field 'opaque' is for p:send only");
      lua_pushvalue(L, -1);
      lua_replace(L, S_OPAQUE);
      opaque_idx = S_OPAQUE;
    } else if (k == statics_->field_ptrs[F_TIMEOUT]) {
      if (vt != LUA_TNUMBER) arg.raise(L, "message field 'timeout_ms' must be a number");
      if (!(lua_tonumber(L, -1) >= 0))
        arg.raise(L, fmt::format("message field 'timeout_ms' must be a number >= 0, got {}", lua_tonumber(L, -1)));
      if (timeout_ms) *timeout_ms = lua_tonumber(L, -1);
    } else {
      arg.raise(L, fmt::format("unknown message field '{}' (fields: topic, key, value, headers, partition, "
                               "timestamp, on_delivery, opaque, timeout_ms)", k ? k : luaL_typename(L, -2)));
    }
    lua_pop(L, 1);
  }
  if (!topic_name) arg.raise(L, "message field 'topic' is required");
  std::string problem;
  rd_kafka_topic_t* rkt = topic(L, topic_name, topic_len, &problem);
  if (!rkt) {
    if (topic_out) topic_out->assign(topic_name, topic_len);
    lua_settop(L, slots);
    *err_message = fmt::format("invalid topic name \"{}\": {}", std::string(topic_name, topic_len), problem);
    return RD_KAFKA_RESP_ERR__INVALID_ARG;
  }
  Delivery* d = extra;
  std::unique_ptr<Delivery> own;
  if ((on_delivery_idx || opaque_idx) && !d) {
    own = std::make_unique<Delivery>();
    d = own.get();
  }
  rd_kafka_headers_t* hdrs = headers_idx ? build_headers(L, headers_idx, arg) : nullptr;
  rd_kafka_resp_err_t err;
  if (hdrs) {
    err = rd_kafka_producev(rk_, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void*)value, value_len),
                            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_TIMESTAMP(timestamp),
                            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err) rd_kafka_headers_destroy(hdrs);
  } else {
    err = rd_kafka_producev(rk_, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void*)value, value_len),
                            RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_TIMESTAMP(timestamp),
                            RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
  }
  if (err) {
    lua_settop(L, slots);
    if (topic_out) topic_out->assign(topic_name, topic_len);
    if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
      *err_message = fmt::format("cannot produce to topic \"{}\": {}", std::string(topic_name, topic_len),
                                 rd_kafka_err2str(err));
    return err;
  }
  if (own) {
    if (on_delivery_idx) {
      lua_pushvalue(L, on_delivery_idx);
      d->callback_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (opaque_idx) {
      lua_pushvalue(L, opaque_idx);
      d->opaque_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    own.release();
  }
  lua_settop(L, slots);
  if (last_auth_error_) arm_auth_purge();  // messages sent after a purge: see arm_auth_purge
  return RD_KAFKA_RESP_ERR_NO_ERROR;
}

int Producer::send_fast(const char* topic_name, size_t topic_len, const char* value, size_t value_len,
                        const char* key, size_t key_len, int32_t partition) {
  if (state_ != Open || fatal_) return -1;
  if (turn_due()) {
    turn_pending = true;
    return -1;
  }
  std::string problem;
  rd_kafka_topic_t* rkt = topic(nullptr, topic_name, topic_len, &problem);
  if (!rkt) return -1;
  rd_kafka_resp_err_t err =
      rd_kafka_producev(rk_, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void*)value, value_len),
                        RD_KAFKA_V_KEY(key, key_len), RD_KAFKA_V_END);
  if (err) return err;
  if (last_auth_error_) arm_auth_purge();  // messages sent after a purge: see arm_auth_purge
  return 0;
}

}  // namespace klua::producer_impl
