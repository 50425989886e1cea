#include "bindings/kafka_handle.hpp"
#include "host/log.hpp"

#include "bindings/security.hpp"

#include <sys/eventfd.h>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <fmt/format.h>

namespace klua {

ErrorSpec kafka_error(rd_kafka_resp_err_t code, std::string message) {
  ErrorSpec e;
  e.code = code;
  e.name = rd_kafka_err2name(code);
  e.message = message.empty() ? rd_kafka_err2str(code) : std::move(message);
  e.kafka = true;
  switch (code) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
      e.retriable = true;
      break;
    default:
      break;
  }
  return e;
}

ErrorSpec kafka_error(const rd_kafka_error_t* err) {
  ErrorSpec e = kafka_error(rd_kafka_error_code(err), rd_kafka_error_string(err));
  e.retriable = rd_kafka_error_is_retriable(err);
  e.fatal = rd_kafka_error_is_fatal(err);
  e.txn_requires_abort = rd_kafka_error_txn_requires_abort(err);
  return e;
}

int kafka_nil_error(lua_State* L, rd_kafka_resp_err_t code, std::string message, const std::string& topic,
                    int partition) {
  ErrorSpec e = kafka_error(code, std::move(message));
  e.topic = topic;
  if (partition >= 0) e.partition = partition;
  return nil_error(L, e);
}

// The same rule as klua.secrets.is_secret (scripts/klua/secrets.lua), which masks what scripts
// print: a name is a secret by its shape, misspellings included (sasl.pasword).
bool is_secret_property(const std::string& key) {
  std::string k = key;
  std::transform(k.begin(), k.end(), k.begin(), [](unsigned char c) { return std::tolower(c); });
  static const char* words[] = {"pass", "pasw", "pwd", "secret", "token", "jaas", "credential", "private",
                                "oauthbearer.config", "key.pem", "key_", "key-", "user.info", "userinfo"};
  if (k.size() >= 3 && k.compare(k.size() - 3, 3, "key") == 0) return true;
  return std::any_of(std::begin(words), std::end(words), [&](const char* w) { return k.find(w) != std::string::npos; });
}

static std::string redact(std::string text, const std::string& key, const std::string& value) {
  if (!is_secret_property(key) || value.empty()) return text;
  for (size_t pos; (pos = text.find(value)) != std::string::npos;) text.replace(pos, value.size(), "***");
  return text;
}

static std::string lua_value_to_property(lua_State* L, int idx, const std::string& key, const char* what,
                                         rd_kafka_conf_t* conf) {
  switch (lua_type(L, idx)) {
    case LUA_TSTRING: {
      size_t n;
      const char* s = lua_tolstring(L, idx, &n);
      return std::string(s, n);
    }
    case LUA_TNUMBER: {
      double d = lua_tonumber(L, idx);
      if (std::floor(d) == d && std::fabs(d) < 9.007199254740992e15) return fmt::format("{}", static_cast<long long>(d));
      return fmt::format("{}", d);
    }
    case LUA_TBOOLEAN:
      return lua_toboolean(L, idx) ? "true" : "false";
    default:
      rd_kafka_conf_destroy(conf);
      raise_bad_argument(L, 1, what, fmt::format("property \"{}\" must be a string, number or boolean, got {}", key,
                                                 luaL_typename(L, idx)));
      return {};
  }
}

static void set_property(lua_State* L, rd_kafka_conf_t* conf, const std::string& key, const std::string& value,
                         const char* what, const std::string& source) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    std::string reason = redact(errstr, key, value);
    rd_kafka_conf_destroy(conf);
    // (the property may come from -X, -F or a profile: not always an argument of the call)
    raise_misuse(L, what, fmt::format("bad configuration property \"{}\" (from {}): {}", key, source, reason));
  }
  if (is_secret_property(key)) log::add_secret(value);  // masked in every log record (klua.log's too)
}

std::string redact_userinfo(std::string text) {
  // "SASL_SSL://user:pass@host:9093", "[user:pass@host]:9092": what precedes an '@' back to a
  // separator is a URL's user information.
  static const char* separators = " \t'\"[](),/;=";
  for (size_t at = text.find('@'); at != std::string::npos; at = text.find('@', at + 1)) {
    size_t from = at;
    while (from > 0 && !std::strchr(separators, text[from - 1])) --from;
    if (from == at) continue;
    text.replace(from, at - from, "***");
    at = from + 3;
  }
  return text;
}

bool is_klua_property(const std::string& key) {
  return key.rfind("klua.", 0) == 0 || key.rfind("schema.registry.", 0) == 0;
}

std::vector<std::string> klua_property_names() {
  return {UNREACHABLE_TIMEOUT_PROPERTY, SCHEMA_REGISTRY_URL_PROPERTY, SCHEMA_REGISTRY_USER_INFO_PROPERTY,
          SCHEMA_REGISTRY_TOKEN_PROPERTY, SCHEMA_REGISTRY_CA_PROPERTY};
}

std::string klua_property_problem(const std::string& key, const std::string& value) {
  // An empty value of the registry's keys is none (klua.set_config(key, "") takes one back).
  if (key.rfind("schema.registry.", 0) == 0 && value.empty() &&
      (key == SCHEMA_REGISTRY_URL_PROPERTY || key == SCHEMA_REGISTRY_USER_INFO_PROPERTY ||
       key == SCHEMA_REGISTRY_TOKEN_PROPERTY || key == SCHEMA_REGISTRY_CA_PROPERTY))
    return {};
  if (key == SCHEMA_REGISTRY_URL_PROPERTY) {
    // One URL (Confluent's clients take a comma-separated list; klua.registry talks to one). Its
    // user information, when any, is never repeated here.
    if (value.rfind("http://", 0) != 0 && value.rfind("https://", 0) != 0)
      return fmt::format("bad value for '{}': expected an http:// or https:// URL, got \"{}\"", key,
                         redact_userinfo(value));
    if (value.find(',') != std::string::npos)
      return fmt::format("bad value for '{}': one URL, not a list (got \"{}\")", key, redact_userinfo(value));
    return {};
  }
  if (key == SCHEMA_REGISTRY_USER_INFO_PROPERTY) {
    if (value.find(':') == std::string::npos)
      return fmt::format("bad value for '{}': expected \"user:password\" (the value is a secret: not shown)", key);
    return {};
  }
  if (key == SCHEMA_REGISTRY_TOKEN_PROPERTY || key == SCHEMA_REGISTRY_CA_PROPERTY) return {};
  if (key != UNREACHABLE_TIMEOUT_PROPERTY) {
    std::string names;
    for (const auto& n : klua_property_names()) names += (names.empty() ? "" : ", ") + n;
    return fmt::format("unknown klua property '{}' (klua's properties: {})", key, names);
  }
  char* end = nullptr;
  double v = std::strtod(value.c_str(), &end);
  if (value.empty() || *end || !(v >= 0) || v > 1e12)
    return fmt::format("bad value for '{}': expected a number of milliseconds >= 0, got \"{}\"", key, value);
  return {};
}

// klua's own properties: true when key is one (and it was taken).
static bool take_klua_property(lua_State* L, ClientOptions& o, const std::string& key, const std::string& value,
                               const char* what, const std::string& source) {
  if (!is_klua_property(key)) return false;
  std::string problem = klua_property_problem(key, value);
  if (!problem.empty()) {
    rd_kafka_conf_destroy(o.conf);
    raise_misuse(L, what, fmt::format("{} (from {})", problem, source));
  }
  if (is_secret_property(key)) log::add_secret(value);
  // The schema registry's keys are klua.registry's: a client takes them and leaves them unused.
  if (key == UNREACHABLE_TIMEOUT_PROPERTY) o.unreachable_timeout_ms = std::strtod(value.c_str(), nullptr);
  return true;
}

ClientOptions build_client_options(lua_State* L, int idx, const char* what,
                                   const std::vector<std::pair<std::string, std::string>>& defaults,
                                   const std::vector<std::string>& allowed_options) {
  Runtime& rt = Runtime::from(L);
  ClientOptions o;
  o.conf = rd_kafka_conf_new();
  for (const auto& [k, v] : defaults) set_property(L, o.conf, k, v, what, "klua's defaults");
  bool brokers_named = false;
  std::string brokers_source;  // who set bootstrap.servers last (the highest precedence wins)
  for (const auto& e : rt.config()) {
    if (take_klua_property(L, o, e.key, e.value, what, e.source)) continue;
    set_property(L, o.conf, e.key, e.value, what, e.source);
    if (e.key == "bootstrap.servers" || e.key == "metadata.broker.list") {
      brokers_named = true;
      brokers_source = e.source;
    }
  }
  if (idx != 0) {
    if (idx < 0) idx = lua_gettop(L) + idx + 1;
    luaL_checktype(L, idx, LUA_TTABLE);
    bool has_group = false, has_group_id = false;
    lua_pushnil(L);
    while (lua_next(L, idx) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING) {
        rd_kafka_conf_destroy(o.conf);
        raise_bad_argument(L, 1, what, fmt::format("option keys must be strings, got a {} key", luaL_typename(L, -2)));
      }
      std::string key = lua_tostring(L, -2);
      if (key.find('.') != std::string::npos) {
        if (key == "group.id") has_group_id = true;
        if (key == "bootstrap.servers" || key == "metadata.broker.list") {
          brokers_named = true;
          brokers_source = "the script's table";
        }
        std::string value = lua_value_to_property(L, -1, key, what, o.conf);
        if (!take_klua_property(L, o, key, value, what, "the script's table"))
          set_property(L, o.conf, key, value, what, "the script's table");
      } else if (key == "brokers") {
        // A number (brokers = 9092) or a list would be turned into a host name or refused later
        // with librdkafka's words: a "host:port[,host:port...]" string only.
        if (lua_type(L, -1) != LUA_TSTRING) {
          rd_kafka_conf_destroy(o.conf);
          raise_bad_argument(L, 1, what,
                             fmt::format("option 'brokers' must be a string \"host:port[,host:port...]\", got {}",
                                         luaL_typename(L, -1)));
        }
        brokers_named = true;
        brokers_source = "the script's table (brokers)";
        std::string value = lua_value_to_property(L, -1, key, what, o.conf);
        set_property(L, o.conf, "bootstrap.servers", value, what, "the script's table (brokers)");
      } else if (key == "on_error" || key == "on_log" || key == "on_stats" || key == OAUTHBEARER_TOKEN_REFRESH_OPTION) {
        if (!lua_isfunction(L, -1)) {
          rd_kafka_conf_destroy(o.conf);
          raise_bad_argument(L, 1, what,
                             fmt::format("option '{}' must be a function, got {}", key, luaL_typename(L, -1)));
        }
        lua_pushvalue(L, -1);
        int ref = luaL_ref(L, LUA_REGISTRYINDEX);
        (key == "on_error" ? o.on_error : key == "on_log" ? o.on_log : key == "on_stats" ? o.on_stats
                                                                                          : o.oauthbearer_token_refresh) = ref;
      } else if (std::find(allowed_options.begin(), allowed_options.end(), key) != allowed_options.end()) {
        if (key == "group") has_group = true;
        o.klua_keys.push_back(key);
      } else if (char probe[512]; [&] {
                   // librdkafka's own undotted names (acks, debug, partitioner, ...) pass through.
                   rd_kafka_conf_t* scratch = rd_kafka_conf_new();
                   bool known = rd_kafka_conf_set(scratch, key.c_str(), "", probe, sizeof probe) != RD_KAFKA_CONF_UNKNOWN;
                   rd_kafka_conf_destroy(scratch);
                   return known;
                 }()) {
        std::string value = lua_value_to_property(L, -1, key, what, o.conf);
        set_property(L, o.conf, key, value, what, "the script's table");
      } else {
        std::string known = "brokers, on_error, on_log, on_stats, oauthbearer_token_refresh";
        for (const auto& a : allowed_options) known += ", " + a;
        rd_kafka_conf_destroy(o.conf);
        raise_bad_argument(L, 1, what,
                           fmt::format("unknown option '{}' (librdkafka properties contain a dot; klua's options are: {})",
                                       key, known));
      }
      lua_pop(L, 1);
    }
    if (has_group && has_group_id) {
      rd_kafka_conf_destroy(o.conf);
      raise_bad_argument(L, 1, what, "give either 'group' or 'group.id', not both");
    }
  }
  if (!brokers_named) {
    // Nothing names a broker: use the embedded cluster (decided from configuration only).
    o.embedded = true;
    o.bootstrap = embedded_bootstrap(rt);
    set_property(L, o.conf, "bootstrap.servers", o.bootstrap, what, "the embedded cluster");
  }
  set_property(L, o.conf, "log.queue", "true", what, "klua");
  prepare_security(o.conf, o.oauthbearer_token_refresh != LUA_NOREF);
  if (!o.embedded) {
    char buf[1024];
    size_t n = sizeof buf;
    if (rd_kafka_conf_get(o.conf, "bootstrap.servers", buf, &n) == RD_KAFKA_CONF_OK) o.bootstrap = buf;
    // An empty or blank list (`-b ''`) named no broker: librdkafka then waits out its timeouts
    // (300 s for a send) and says nothing.
    if (o.bootstrap.find_first_not_of(" \t,") == std::string::npos) {
      rd_kafka_conf_destroy(o.conf);
      for (int ref : {o.on_error, o.on_log, o.on_stats}) luaL_unref(L, LUA_REGISTRYINDEX, ref);
      raise_misuse(L, what, fmt::format("bootstrap.servers is empty{}: give at least one host:port (or leave it unset "
                                        "for the embedded cluster)",
                                        brokers_source.empty() ? "" : " (set by " + brokers_source + ")"));
    }
  }
  return o;
}

void destroy_handle_async(Runtime& rt, rd_kafka_t* rk, int flags, std::function<void()> done) {
  // On the runtime's executor, the one way off the loop (rd_kafka_destroy has no asynchronous
  // form). librdkafka 2.0.2 could hang here (a consumer close waiting for a lost partition), so
  // klua used to destroy on detached threads and abandon a handle after 10 s; 2.1.0 fixed that
  // hang, and tests/integration/close_test.lua closes consumers in the situations that used to hang.
  rt.executor().submit([rk, flags] { rd_kafka_destroy_flags(rk, flags); forget_tls_errors(rk); }, std::move(done));
}

rd_kafka_t* new_handle(lua_State* L, rd_kafka_type_t type, rd_kafka_conf_t* conf, const char* what) {
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    ErrorSpec e;
    e.code = CODE_INVALID_ARGUMENT;
    e.name = ERR_INVALID_ARGUMENT;
    e.op = what;
    e.message = fmt::format("{}: cannot create the client: {}", what, errstr);
    raise_error(L, e);
  }
  return rk;
}

std::string topic_name_problem(const char* name, size_t len) {
  if (len == 0) return "a topic name must not be empty";
  if (len > 249) return fmt::format("a topic name has at most 249 characters (this one has {})", len);
  if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
    return "a topic name cannot be \".\" or \"..\"";
  for (size_t i = 0; i < len; ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (!(std::isalnum(c) || c == '.' || c == '_' || c == '-'))
      return fmt::format("a topic name may contain only ASCII letters, digits, '.', '_' and '-' "
                         "(found {} at position {})",
                         std::isprint(c) ? fmt::format("'{}'", static_cast<char>(c)) : fmt::format("byte 0x{:02x}", c),
                         i + 1);
  }
  return {};
}

bool opt_number_field(lua_State* L, int idx, const char* key, double* out) {
  lua_getfield(L, idx, key);
  bool has = !lua_isnil(L, -1);
  if (has) {
    if (!lua_isnumber(L, -1))
      raise_misuse(L, "", fmt::format("option '{}' must be a number, got {}", key, luaL_typename(L, -1)));
    *out = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return has;
}

// ---- QueueWatcher ------------------------------------------------------------

QueueWatcher::QueueWatcher(uv_loop_t* loop, rd_kafka_queue_t* q, std::function<void()> on_ready)
    : q_(q), on_ready_(std::move(on_ready)) {
  fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error("eventfd failed");
  static const uint64_t one = 1;
  rd_kafka_queue_io_event_enable(q_, fd_, &one, sizeof one);
  poll_ = new uv_poll_t;
  uv_poll_init(loop, poll_, fd_);
  poll_->data = this;
  uv_poll_start(poll_, UV_READABLE, on_poll);
  uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  idle_ = new uv_idle_t;
  uv_idle_init(loop, idle_);
  idle_->data = this;
  // Events queued before the fd was attached never trigger a write: drain once by hand.
  schedule();
}

QueueWatcher::~QueueWatcher() { close(); }

void QueueWatcher::close() {
  if (!poll_) return;
  rd_kafka_queue_io_event_enable(q_, -1, nullptr, 0);
  uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
  uv_close(reinterpret_cast<uv_handle_t*>(idle_), [](uv_handle_t* h) { delete reinterpret_cast<uv_idle_t*>(h); });
  poll_ = nullptr;
  idle_ = nullptr;
  ::close(fd_);
  fd_ = -1;
}

void QueueWatcher::schedule() {
  if (!idle_) return;
  uv_idle_start(idle_, [](uv_idle_t* h) {
    uv_idle_stop(h);
    auto* self = static_cast<QueueWatcher*>(h->data);
    self->on_ready_();
  });
}

void QueueWatcher::on_poll(uv_poll_t* h, int status, int events) {
  auto* self = static_cast<QueueWatcher*>(h->data);
  uint64_t v;
  while (read(self->fd_, &v, sizeof v) > 0) {
  }
  self->on_ready_();
}

// ---- KafkaHandle --------------------------------------------------------------------

KafkaHandle::~KafkaHandle() { untrack_live(); }

std::string KafkaHandle::describe() const { return fmt::format("klua.{}({})", kind_, rd_kafka_name(rk_)); }

void KafkaHandle::destroy_handle(int flags) {
  state_ = Destroying;
  untrack_live();  // a scrape must not read a handle rd_kafka_destroy is taking apart
  release_hooks();
  close_reachability();
  destroy_handle_async(rt_, rk_, flags, [this] {
    rk_ = nullptr;
    state_ = Closed;
    wake_close_waiters(rt_.scheduler(), std::move(close_waiters));
    if (orphaned) delete this;
  });
}

void check_can_wait(lua_State* L, const char* op) {
  Scheduler& s = Runtime::from(L).scheduler();
  if (!s.can_wait(L))
    raise_misuse(L, op, "must be called from a klua task (the main chunk, a klua.spawn function or a hook), "
                        "not from a plain coroutine or an inline callback such as on_delivery");
  s.check_cancelled(L);
}

void raise_closed(lua_State* L, const char* kind) {
  ErrorSpec e;
  e.code = CODE_CLOSED;
  e.name = ERR_CLOSED;
  e.message = fmt::format("the {} is closed", kind);
  raise_error(L, e);
}

void KafkaHandle::set_hooks(const ClientOptions& o) {
  on_error_ = o.on_error;
  on_log_ = o.on_log;
  on_stats_ = o.on_stats;
  on_token_refresh_ = o.oauthbearer_token_refresh;
  unreachable_timeout_ms_ = o.unreachable_timeout_ms;
  bootstrap_ = redact_userinfo(o.bootstrap);
}

void KafkaHandle::release_hooks() {
  lua_State* L = rt_.lua();
  for (int* r : {&on_error_, &on_log_, &on_stats_, &on_token_refresh_}) {
    luaL_unref(L, LUA_REGISTRYINDEX, *r);
    *r = LUA_NOREF;
  }
}

std::string KafkaHandle::redact_secrets(std::string text) {
  if (!secret_values_read_ && rk_) {
    secret_values_read_ = true;
    size_t n = 0;
    const char** kv = rd_kafka_conf_dump(const_cast<rd_kafka_conf_t*>(rd_kafka_conf(rk_)), &n);
    for (size_t i = 0; i + 1 < n; i += 2)
      if (is_secret_property(kv[i]) && std::strlen(kv[i + 1]) >= 4) secret_values_.emplace_back(kv[i + 1]);
    rd_kafka_conf_dump_free(kv, n);
  }
  for (const auto& v : secret_values_) {
    for (size_t pos; (pos = text.find(v)) != std::string::npos;) text.replace(pos, v.size(), "***");
    // librdkafka also quotes a value from where it went wrong: the longest such tail (6 or more characters)
    for (size_t from = 1; from + 6 <= v.size(); ++from) {
      size_t pos = text.find(v.c_str() + from);
      if (pos == std::string::npos) continue;
      text.replace(pos, v.size() - from, "***");
      break;
    }
  }
  return text;
}

bool KafkaHandle::handle_common_event(rd_kafka_event_t* ev) {
  lua_State* L = rt_.lua();
  switch (rd_kafka_event_type(ev)) {
    case RD_KAFKA_EVENT_ERROR: {
      rd_kafka_resp_err_t code = rd_kafka_event_error(ev);
      // librdkafka repeats a bootstrap item verbatim, user information included.
      // A refused certificate: the cause OpenSSL gave (bindings/security.cpp).
      std::string msg = annotate_tls_error(rk_, redact_secrets(redact_userinfo(rd_kafka_event_error_string(ev))));
      ErrorSpec e = kafka_error(code, msg);
      e.op = kind_;
      if (rd_kafka_event_error_is_fatal(ev)) {
        char buf[512];
        rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk_, buf, sizeof buf);
        e = kafka_error(orig, redact_secrets(buf));
        e.fatal = true;
        e.op = kind_;
      }
      if (code == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
        // The broker's words for a failed PLAIN login ("Invalid username or password") do not say which
        // mechanism was tried; SCRAM's do. Name it (and the user, which is no secret) when missing.
        char mech[64] = "", user[256] = "";
        size_t ml = sizeof mech, ul = sizeof user;
        const rd_kafka_conf_t* conf = rd_kafka_conf(rk_);
        if (rd_kafka_conf_get(conf, "sasl.mechanism", mech, &ml) == RD_KAFKA_CONF_OK && *mech &&
            e.message.find(mech) == std::string::npos) {
          if (rd_kafka_conf_get(conf, "sasl.username", user, &ul) != RD_KAFKA_CONF_OK) *user = 0;
          e.message += *user ? fmt::format(" (SASL mechanism {}, user {})", mech, user)
                             : fmt::format(" (SASL mechanism {})", mech);
        }
      }
      // The default printer says each outage once: the first _ALL_BROKERS_DOWN (librdkafka
      // repeats it at every reconnect round) and each new connection error; none of them once
      // the client is closing or the script exiting (they would follow its last word).
      bool leaving = state_ != Open || rt_.exiting();
      bool quiet = false;
      if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        quiet = down_since_ != 0 || leaving;
        all_brokers_down_ = true;
        if (!down_since_) {
          down_since_ = uv_now(rt_.loop());
          causes_said_.clear();
        }
        seen_up_ = false;
        arm_reach_timer();
        on_all_brokers_down();
      } else {
        std::string before = last_cause_;
        if (note_connection_error(code, e.message))
          // librdkafka alternates two texts for one TLS failure (_SSL "SSL handshake failed: ..."
          // and _TRANSPORT "error:...: ..."): each cause is said once per outage.
          quiet = (down_since_ != 0 && (last_cause_ == before || !causes_said_.insert(last_cause_).second)) || leaving;
      }
      if (on_error_ != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, on_error_);
        push_error(L, e);
        call_hook(L, 1, 0);
      } else if (!quiet || e.fatal) {
        log::diagnostic(log::Level::error, fmt::format("{} error: {}: {}", kind_, e.name, e.message),
                        {{"client", rd_kafka_name(rk_)}, {"kind", kind_}, {"code", e.name}});
      }
      if (e.fatal) {
        fatal_ = e;
        on_fatal(e.message);
      }
      if (code == RD_KAFKA_RESP_ERR__AUTHENTICATION) {
        last_auth_error_ = e;
        on_authentication_error(e);
      }
      return true;
    }
    case RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH:
      serve_token_refresh(L, rk_, on_token_refresh_, ev);
      return true;
    case RD_KAFKA_EVENT_LOG: {
      const char *fac, *str;
      int level;
      rd_kafka_event_log(ev, &fac, &str, &level);
      std::string redacted = redact_secrets(std::strchr(str, '@') ? redact_userinfo(str) : std::string(str));
      str = redacted.c_str();
      if (on_log_ != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, on_log_);
        lua_createtable(L, 0, 3);
        lua_pushinteger(L, level);
        lua_setfield(L, -2, "level");
        lua_pushstring(L, fac);
        lua_setfield(L, -2, "facility");
        lua_pushstring(L, str);
        lua_setfield(L, -2, "message");
        call_hook(L, 1, 0);
      } else if (level <= 2 || level == 4 || level == 7 || rt_.config_value("debug")) {
        // Level 3 (errors) also arrive as ERROR events, printed above: don't say it twice. Level 7
        // lines exist only when `debug` was asked for (-d, or the client's own table).
        // Syslog levels: 0-3 error, 4 warn, 5-6 info, 7 debug. The lines `debug` asked for show
        // unless --log-level is warn or error.
        log::Level lv = level <= 3 ? log::Level::error : level == 4 ? log::Level::warn
                      : level <= 6 ? log::Level::info : log::Level::debug;
        if (log::enabled(lv) || log::enabled(log::Level::info)) {
          log::diagnostic_always(lv, str,
                          {{"logger", "librdkafka"}, {"client", rd_kafka_name(rk_)}, {"kind", kind_},
                           {"facility", fac}, {"syslog_level", std::to_string(level), true}},
                          fmt::format("klua: {} log {} [{}]: {}", kind_, level, fac, str));
        }
      }
      return true;
    }
    case RD_KAFKA_EVENT_STATS: {
      if (live_) {
        // Broker rtt and state for the built-in metrics (only the "brokers" object is read).
        const char* text = rd_kafka_event_stats(ev);
        uint64_t t0 = uv_hrtime();  // two clock reads per statistics interval: its cost, for bench/stats_decode
        client_metrics::decode_stats(text, std::strlen(text), metrics_->brokers);
        metrics_->stats_decode_ns += uv_hrtime() - t0;
        ++metrics_->stats_events;
      }
      if (on_stats_ != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, on_stats_);
        lua_getfield(L, LUA_REGISTRYINDEX, "klua.json.decode");
        const char* json = rd_kafka_event_stats(ev);
        lua_pushstring(L, json);
        if (lua_isfunction(L, -2)) {
          lua_call(L, 1, 1);
        } else {
          lua_remove(L, -2);
        }
        call_hook(L, 1, 0);
      }
      return true;
    }
    default:
      return false;
  }
}

int64_t check_offset(lua_State* L, int idx, const char* what, int arg, const std::string& item) {
  if (arg == 0 && idx > 0) arg = idx;
  auto bad = [&](const std::string& detail) {
    if (arg > 0) raise_bad_argument(L, arg, what, item + detail);
    raise_misuse(L, what, item + detail);
  };
  if (lua_type(L, idx) == LUA_TNUMBER) {
    double d = lua_tonumber(L, idx);
    if (!(d >= 0 && d < 9.2e18) || d != std::floor(d))
      bad(fmt::format("offset must be a whole number >= 0 or \"beginning\", \"end\", \"stored\", got {}", lua_tostring(L, idx)));
    return static_cast<int64_t>(d);
  }
  if (lua_type(L, idx) == LUA_TSTRING) {
    std::string s = lua_tostring(L, idx);
    if (s == "beginning") return RD_KAFKA_OFFSET_BEGINNING;
    if (s == "end") return RD_KAFKA_OFFSET_END;
    if (s == "stored") return RD_KAFKA_OFFSET_STORED;
    bad(fmt::format("unknown offset \"{}\" (use a number, \"beginning\", \"end\" or \"stored\")", s));
  }
  if (lua_isnoneornil(L, idx)) return RD_KAFKA_OFFSET_INVALID;
  bad(fmt::format("offset must be a number or a string, got {}", luaL_typename(L, idx)));
  return 0;
}

rd_kafka_topic_partition_list_t* check_partition_list(lua_State* L, int idx, const char* what, bool allow_message) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  if (!lua_istable(L, idx))
    raise_bad_argument(L, idx, what,
                       fmt::format("{} partition list expected, got {}", allow_message ? "a message or a" : "a",
                                   lua_isnone(L, idx) ? "no value" : luaL_typename(L, idx)));
  // A single message (or a single {topic, partition} record) stands for a list of one.
  lua_getfield(L, idx, "topic");
  bool single = !lua_isnil(L, -1);
  lua_pop(L, 1);
  int n = single ? 1 : static_cast<int>(lua_objlen(L, idx));
  auto* list = rd_kafka_topic_partition_list_new(n > 0 ? n : 1);
  // Owned by a userdata while it is built: a bad item raises (check_offset and the checks
  // below), and the garbage collector then frees the list instead of it leaking.
  auto** owner = static_cast<rd_kafka_topic_partition_list_t**>(lua_newuserdata(L, sizeof list));
  *owner = list;
  if (luaL_newmetatable(L, "klua.partition_list_owner")) {
    lua_pushcfunction(L, [](lua_State* L) {
      auto** o = static_cast<rd_kafka_topic_partition_list_t**>(lua_touserdata(L, 1));
      if (*o) rd_kafka_topic_partition_list_destroy(*o);
      *o = nullptr;
      return 0;
    });
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  int owner_idx = lua_gettop(L);
  for (int i = 1; i <= n; ++i) {
    if (single) lua_pushvalue(L, idx); else lua_rawgeti(L, idx, i);
    int item = lua_gettop(L);
    if (!lua_istable(L, item)) {
      raise_bad_argument(L, idx, what, fmt::format("partition list item {} must be a table {{topic=, partition=}}, got {}",
                                                   i, luaL_typename(L, item)));
    }
    lua_getfield(L, item, "topic");
    lua_getfield(L, item, "partition");
    if (!lua_isstring(L, -2) || !lua_isnumber(L, -1)) {
      raise_bad_argument(L, idx, what, fmt::format("partition list item {} needs a string topic and a numeric partition", i));
    }
    double pd = lua_tonumber(L, -1);
    if (!(pd >= 0 && pd <= 2147483647.0) || pd != std::floor(pd))
      raise_bad_argument(L, idx, what, fmt::format("{}partition must be a whole number from 0 to 2147483647, got {}",
                                                   single ? std::string() : fmt::format("partition list item {}: ", i),
                                                   lua_tostring(L, -1)));
    auto* tp = rd_kafka_topic_partition_list_add(list, lua_tostring(L, -2), static_cast<int32_t>(pd));
    lua_pop(L, 2);
    bool is_message = false;  // a message from poll carries the klua.message metatable
    if (allow_message && single && lua_getmetatable(L, item)) {
      luaL_getmetatable(L, "klua.message");
      is_message = lua_rawequal(L, -1, -2);
      lua_pop(L, 2);
    }
    lua_getfield(L, item, "offset");
    tp->offset = check_offset(L, -1, what, idx, single ? std::string() : fmt::format("partition list item {}: ", i));
    if (is_message) tp->offset += 1;  // a message: commit/store the offset after it
    lua_pop(L, 1);
    lua_getfield(L, item, "metadata");
    if (lua_isstring(L, -1)) {
      size_t len;
      const char* md = lua_tolstring(L, -1, &len);
      tp->metadata = malloc(len);
      memcpy(tp->metadata, md, len);
      tp->metadata_size = len;
    }
    lua_pop(L, 2);
  }
  *owner = nullptr;
  lua_remove(L, owner_idx);
  return list;
}

void push_partition_list(lua_State* L, const rd_kafka_topic_partition_list_t* list, bool end_as_string) {
  auto* copy = rd_kafka_topic_partition_list_copy(list);
  rd_kafka_topic_partition_list_sort(copy, nullptr, nullptr);
  lua_createtable(L, copy->cnt, 0);
  for (int i = 0; i < copy->cnt; ++i) {
    const auto& e = copy->elems[i];
    lua_createtable(L, 0, 3);
    lua_pushstring(L, e.topic);
    lua_setfield(L, -2, "topic");
    lua_pushinteger(L, e.partition);
    lua_setfield(L, -2, "partition");
    if (e.offset >= 0) {
      lua_pushnumber(L, static_cast<double>(e.offset));
      lua_setfield(L, -2, "offset");
    } else if (end_as_string && e.offset == RD_KAFKA_OFFSET_END) {
      // offsets_for_times' answer when no message is at or after the time: "end", which
      // assign and seek accept as is.
      lua_pushliteral(L, "end");
      lua_setfield(L, -2, "offset");
    }
    if (e.metadata && e.metadata_size) {
      lua_pushlstring(L, static_cast<const char*>(e.metadata), e.metadata_size);
      lua_setfield(L, -2, "metadata");
    }
    if (e.err) {
      ErrorSpec err = kafka_error(e.err);
      err.topic = e.topic;
      err.partition = e.partition;
      push_error(L, err);
      lua_setfield(L, -2, "error");
    }
    lua_rawseti(L, -2, i + 1);
  }
  rd_kafka_topic_partition_list_destroy(copy);
}

// ---- reachability ------------------------------------------------------------------

// Connection errors are the cause an unreachable-cluster error names: librdkafka's text without
// its "(after 0ms in state CONNECT, ...)" part (klua's "(SASL mechanism PLAIN, ...)" stays).
bool KafkaHandle::note_connection_error(rd_kafka_resp_err_t code, const std::string& message) {
  switch (code) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR__SSL:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
      break;
    default:
      return false;
  }
  std::string m = message;
  size_t tail = m.rfind(" (after ");
  if (tail != std::string::npos) {
    // Up to its matching parenthesis: "(after 0ms in state CONNECT, 1 identical error(s) suppressed)".
    int depth = 0;
    for (size_t i = tail + 1; i < m.size(); ++i) {
      if (m[i] == '(') ++depth;
      if (m[i] == ')' && --depth == 0) {
        m.erase(tail, i + 1 - tail);
        break;
      }
    }
  }
  last_cause_ = redact_userinfo(m);
  return true;
}

ErrorSpec KafkaHandle::unreachable_error(const std::string& op) const {
  std::string cause = last_cause_.empty() ? "no connection error was reported" : "last error: " + last_cause_;
  ErrorSpec e = kafka_error(RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
                            fmt::format("cannot reach the cluster at {}: every broker was down for {} ms "
                                        "({}); {}",
                                        bootstrap_.empty() ? "(no bootstrap servers)" : bootstrap_,
                                        static_cast<long long>(unreachable_timeout_ms_), UNREACHABLE_TIMEOUT_PROPERTY,
                                        cause));
  e.op = op;
  e.timeout_ms = unreachable_timeout_ms_;
  return e;
}

uint64_t KafkaHandle::watch_unreachable(const std::string& op, std::function<void(const ErrorSpec&)> fail) {
  if (state_ != Open && state_ != Closing) return 0;
  uint64_t id = next_watch_++;
  watches_.emplace(id, Watch{op, uv_now(rt_.loop()), std::move(fail)});
  if (down_since_) arm_reach_timer();
  return id;
}

void KafkaHandle::end_watch(uint64_t id) {
  if (id) watches_.erase(id);
}

bool KafkaHandle::broker_up_now() {
  if (!rk_) return false;
  // rd_kafka_metadata with no wait answers _TRANSPORT when no broker is up (usable); when one
  // is, it sends a brokers-only request (whose late answer librdkafka drops) and reports
  // _TIMED_OUT. librdkafka has no other public view of its brokers' states.
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk_, 0, nullptr, &md, 0);
  if (md) rd_kafka_metadata_destroy(md);
  return err != RD_KAFKA_RESP_ERR__TRANSPORT;
}

// While every broker is down: the timer fires at the next watched call's deadline (the bound
// after the later of its start and the outage's start), and at least once a second to notice a
// broker that came back (the default printer then reports the next outage again).
void KafkaHandle::arm_reach_timer() {
  if (!down_since_ || (state_ != Open && state_ != Closing)) return;
  if (!reach_timer_) {
    reach_timer_ = new uv_timer_t;
    uv_timer_init(rt_.loop(), reach_timer_);
    reach_timer_->data = this;
    uv_unref(reinterpret_cast<uv_handle_t*>(reach_timer_));
  }
  uint64_t now = uv_now(rt_.loop());
  uint64_t bound = static_cast<uint64_t>(unreachable_timeout_ms_);
  uint64_t due = now + 1000;
  for (const auto& [id, w] : watches_) due = std::min(due, std::max(w.started, down_since_) + bound);
  uv_timer_start(reach_timer_, [](uv_timer_t* h) { static_cast<KafkaHandle*>(h->data)->check_reach(); },
                 due > now ? due - now : 0, 0);
}

void KafkaHandle::check_reach() {
  if (!down_since_ || !rk_) return;
  if (broker_up_now()) {
    down_since_ = 0;
    causes_said_.clear();
    seen_up_ = true;
    all_brokers_down_ = false;
    return;
  }
  uint64_t now = uv_now(rt_.loop());
  uint64_t bound = static_cast<uint64_t>(unreachable_timeout_ms_);
  std::vector<Watch> due;
  for (auto it = watches_.begin(); it != watches_.end();) {
    if (std::max(it->second.started, down_since_) + bound <= now) {
      due.push_back(std::move(it->second));
      it = watches_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& w : due) w.fail(unreachable_error(w.op));
  arm_reach_timer();
}

std::shared_ptr<KafkaHandle::Gate> KafkaHandle::new_gate() {
  auto g = std::make_shared<Gate>();
  gates_.erase(std::remove_if(gates_.begin(), gates_.end(), [](const std::weak_ptr<Gate>& w) { return w.expired(); }),
               gates_.end());
  gates_.push_back(g);
  return g;
}

bool KafkaHandle::wait_for_broker(rd_kafka_t* rk, Gate& gate, double timeout_ms) {
  uint64_t end = uv_hrtime() + static_cast<uint64_t>(std::max(0.0, timeout_ms) * 1e6);
  while (!gate.abort.load()) {
    uint64_t now = uv_hrtime();
    if (now >= end) return false;
    // Waits up to a slice for a broker to be up (librdkafka wakes it at once when one is), then
    // asks that broker for the broker list: _TRANSPORT means none came up in the slice.
    int slice = static_cast<int>(std::min<uint64_t>((end - now) / 1000000 + 1, 100));
    const rd_kafka_metadata_t* md = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, nullptr, &md, slice);
    if (md) rd_kafka_metadata_destroy(md);
    if (err != RD_KAFKA_RESP_ERR__TRANSPORT) return true;
  }
  return false;
}

void KafkaHandle::abort_broker_waits() {
  for (auto& w : gates_)
    if (auto g = w.lock()) g->abort = true;
  gates_.clear();
}

void KafkaHandle::close_reachability() {
  abort_broker_waits();
  watches_.clear();
  down_since_ = 0;
  if (reach_timer_) {
    uv_close(reinterpret_cast<uv_handle_t*>(reach_timer_), [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    reach_timer_ = nullptr;
  }
}

void KafkaHandle::run_off_loop(std::function<void()> work, std::function<void()> done) {
  ++inflight_;
  rt_.executor().submit(std::move(work), [this, done = std::move(done)] {
    done();
    if (--inflight_ == 0) on_inflight_done();
  });
}

int KafkaHandle::run_blocking(lua_State* L, const char* op, double timeout_ms, std::function<void(int)> work,
                              std::function<int(lua_State*)> push, bool needs_broker) {
  WaitToken tok = rt_.scheduler().prepare_wait(L, op, timeout_ms + 1000);  // may raise: before allocating
  std::shared_ptr<Gate> gate = needs_broker && !seen_up_ ? new_gate() : nullptr;
  uint64_t watch = 0;
  if (needs_broker) {
    watch = watch_unreachable(op, [this, tok, gate](const ErrorSpec& e) {
      if (gate) gate->abort = true;
      Scheduler& s = rt_.scheduler();
      if (lua_State* co = s.wake_begin(tok)) s.wake_end(tok, nil_error(co, e));
    });
  }
  rd_kafka_t* rk = rk_;
  auto started = uv_hrtime();
  run_off_loop(
      [rk, gate, timeout_ms, started, work = std::move(work)] {
        if (!gate) return work(timeout_int(timeout_ms));
        gate->passed = wait_for_broker(rk, *gate, timeout_ms);
        double left = timeout_ms - static_cast<double>(uv_hrtime() - started) / 1e6;
        // No broker: librdkafka answers a zero timeout at once, with its own error.
        work(gate->passed ? std::max(1, timeout_int(left)) : 0);
      },
      [this, tok, watch, gate, push = std::move(push)] {
        end_watch(watch);
        if (gate && gate->passed) seen_up_ = true;
        Scheduler& s = rt_.scheduler();
        if (lua_State* co = s.wake_begin(tok)) {
          s.wake_end(tok, push(co));
        } else {
          // The task stopped waiting (timeout, cancellation, an unreachable cluster): push still
          // runs, onto the main state, so that it frees what the call allocated.
          lua_State* main = rt_.lua();
          int top = lua_gettop(main);
          push(main);
          lua_settop(main, top);
        }
      });
  return lua_yield(L, 0);
}

// ---- module ------------------------------------------------------------------------

static int l_librdkafka_version(lua_State* L) {
  lua_pushstring(L, rd_kafka_version_str());
  return 1;
}

void open_kafka_common(Runtime& rt, lua_State* L, int klua_table) {
  // klua.errors gets every librdkafka error, by name and number.
  lua_getfield(L, klua_table, "errors");
  const rd_kafka_err_desc* descs;
  size_t n;
  rd_kafka_get_err_descs(&descs, &n);
  for (size_t i = 0; i < n; ++i) {
    if (!descs[i].name) continue;
    register_error_code(L, -1, descs[i].name, descs[i].code, descs[i].desc ? descs[i].desc : "");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_librdkafka_version);
  lua_setfield(L, klua_table, "librdkafka_version");
}

void push_weak_keyed_table(lua_State* L) {
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
}

void push_private_table(lua_State* L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "klua.private");
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "klua.private");
}

void wake_close_waiters(Scheduler& s, std::vector<WaitToken> waiters) {
  for (WaitToken t : waiters) {
    if (lua_State* co = s.wake_begin(t)) {
      lua_pushboolean(co, 1);
      s.wake_end(t, 1);
    }
  }
}

}  // namespace klua
