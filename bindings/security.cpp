#include "bindings/security.hpp"

#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/pem.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include <fmt/format.h>

#include "host/runtime.hpp"

namespace klua {

namespace {

// Why the last refused certificate of each handle was refused. Written by librdkafka's broker
// threads (the verify callback), read on the loop.
std::mutex tls_mu;
std::map<rd_kafka_t*, std::string> tls_causes;

std::string x509_subject(const X509* x) {
  char buf[256] = "";
  X509_NAME_oneline(X509_get_subject_name(x), buf, sizeof buf);
  return buf;
}

std::string asn1_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// librdkafka's ssl.certificate.verify_cb: OpenSSL's verdict (x509_error, 0 when fine) stands;
// a refusal is explained in errstr (librdkafka logs it) and remembered for the error event.
int verify_cb(rd_kafka_t* rk, const char* broker_name, int32_t broker_id, int* x509_error, int depth,
              const char* buf, size_t size, char* errstr, size_t errstr_size, void* opaque) {
  if (*x509_error == X509_V_OK) return 1;
  std::string cause = X509_verify_cert_error_string(*x509_error);
  const unsigned char* p = reinterpret_cast<const unsigned char*>(buf);
  if (X509* x = d2i_X509(nullptr, &p, static_cast<long>(size))) {
    cause += fmt::format(" ({} certificate {}", depth == 0 ? "the broker's" : "a CA", x509_subject(x));
    if (*x509_error == X509_V_ERR_CERT_HAS_EXPIRED) cause += ", valid until " + asn1_time(X509_get0_notAfter(x));
    if (*x509_error == X509_V_ERR_CERT_NOT_YET_VALID) cause += ", valid from " + asn1_time(X509_get0_notBefore(x));
    cause += ")";
    X509_free(x);
  }
  std::snprintf(errstr, errstr_size, "%s", cause.c_str());
  std::lock_guard<std::mutex> lock(tls_mu);
  tls_causes[rk] = cause;
  return 0;
}

// The client's own certificate (ssl.certificate.location or ssl.certificate.pem), when it is
// expired or not yet valid: what the broker's bare "certificate unknown" alert most often means.
std::string own_certificate_problem(rd_kafka_t* rk) {
  const rd_kafka_conf_t* conf = rd_kafka_conf(rk);
  char path[1024] = "";
  size_t n = sizeof path;
  X509* x = nullptr;
  if (rd_kafka_conf_get(conf, "ssl.certificate.location", path, &n) == RD_KAFKA_CONF_OK && *path) {
    if (FILE* f = std::fopen(path, "r")) {
      x = PEM_read_X509(f, nullptr, nullptr, nullptr);
      std::fclose(f);
    }
  }
  if (!x) return {};
  std::string problem;
  if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
    problem = fmt::format("the client certificate {} expired on {}", x509_subject(x), asn1_time(X509_get0_notAfter(x)));
  else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
    problem = fmt::format("the client certificate {} is not valid before {}", x509_subject(x),
                          asn1_time(X509_get0_notBefore(x)));
  X509_free(x);
  return problem;
}

// Never called: with a token function klua serves refreshes as events (setting a callback is
// what makes librdkafka emit RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH). Should librdkafka call it
// anyway, the refresh fails rather than hangs.
void unused_refresh_cb(rd_kafka_t* rk, const char*, void*) {
  rd_kafka_oauthbearer_set_token_failure(rk, "klua: token refresh outside the loop");
}

}  // namespace

void prepare_security(rd_kafka_conf_t* conf, bool has_token_function) {
  rd_kafka_conf_set_ssl_cert_verify_cb(conf, verify_cb);
  if (has_token_function) rd_kafka_conf_set_oauthbearer_token_refresh_cb(conf, unused_refresh_cb);
}

std::string annotate_tls_error(rd_kafka_t* rk, std::string message) {
  if (!rk) return message;
  if (message.find("certificate verify failed") != std::string::npos) {
    std::string cause;
    {
      std::lock_guard<std::mutex> lock(tls_mu);
      auto it = tls_causes.find(rk);
      if (it != tls_causes.end()) cause = it->second;
    }
    if (!cause.empty() && message.find(cause) == std::string::npos) message += ": " + cause;
  } else if (message.find("alert certificate") != std::string::npos ||
             message.find("alert bad certificate") != std::string::npos ||
             message.find("alert unknown ca") != std::string::npos ||
             message.find("alert handshake failure") != std::string::npos) {
    std::string problem = own_certificate_problem(rk);
    message += problem.empty() ? ": the broker refused the TLS handshake (is the client certificate one it trusts?)"
                               : ": the broker refused the client certificate: " + problem;
  }
  return message;
}

void forget_tls_errors(rd_kafka_t* rk) {
  std::lock_guard<std::mutex> lock(tls_mu);
  tls_causes.erase(rk);
}

void serve_token_refresh(lua_State* L, rd_kafka_t* rk, int fn_ref, rd_kafka_event_t* ev) {
  auto fail = [&](const std::string& why) {
    std::string msg = fmt::format("{}: {}", OAUTHBEARER_TOKEN_REFRESH_OPTION, why);
    rd_kafka_oauthbearer_set_token_failure(rk, msg.c_str());
  };
  if (fn_ref == LUA_NOREF || fn_ref == LUA_REFNIL) {
    rd_kafka_oauthbearer_set_token_failure(
        rk, "no token: sasl.mechanism OAUTHBEARER needs a token function (the client option "
            "oauthbearer_token_refresh), sasl.oauthbearer.method=oidc, or enable.sasl.oauthbearer.unsecure.jwt=true");
    return;
  }
  int top = lua_gettop(L);
  lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
  const char* cfg = rd_kafka_event_config_string(ev);
  if (cfg) lua_pushstring(L, cfg); else lua_pushnil(L);
  std::string tb;
  if (protected_call(L, 1, 2, &tb) != 0) {
    std::string err = to_display_string(L, -1);
    lua_settop(L, top);
    fail("raised: " + err);
    return;
  }
  // Returns a table {token=, lifetime_ms=, principal=, extensions=}, or nil, err.
  if (!lua_istable(L, -2)) {
    std::string why = lua_isnil(L, -2) ? (lua_isnil(L, -1) ? std::string("returned nil") : to_display_string(L, -1))
                                       : fmt::format("returned a {}, not a table", luaL_typename(L, -2));
    lua_settop(L, top);
    fail(why);
    return;
  }
  lua_pop(L, 1);
  int t = lua_gettop(L);
  auto str_field = [&](const char* k, std::string& out) {
    lua_getfield(L, t, k);
    bool ok = lua_type(L, -1) == LUA_TSTRING;
    if (ok) out.assign(lua_tostring(L, -1), lua_objlen(L, -1));
    lua_pop(L, 1);
    return ok;
  };
  std::string token, principal, problem;
  if (!str_field("token", token) || token.empty()) problem = "the table has no 'token' (a non-empty string)";
  if (problem.empty() && !str_field("principal", principal)) principal = "klua";
  double lifetime_ms = 0;
  if (problem.empty()) {
    lua_getfield(L, t, "lifetime_ms");
    if (lua_type(L, -1) == LUA_TNUMBER) lifetime_ms = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(lifetime_ms >= 1 && lifetime_ms <= 1e12)) problem = "'lifetime_ms' must be a number of milliseconds >= 1";
  }
  std::vector<std::string> ext;
  if (problem.empty()) {
    lua_getfield(L, t, "extensions");
    if (lua_istable(L, -1)) {
      lua_pushnil(L);
      while (lua_next(L, -2) != 0) {
        if (lua_type(L, -2) != LUA_TSTRING || !lua_isstring(L, -1)) {
          problem = "'extensions' must map strings to strings";
          lua_pop(L, 2);
          break;
        }
        ext.emplace_back(lua_tostring(L, -2));
        ext.emplace_back(lua_tostring(L, -1));
        lua_pop(L, 1);
      }
    } else if (!lua_isnil(L, -1)) {
      problem = "'extensions' must be a table";
    }
    lua_pop(L, 1);
  }
  lua_settop(L, top);
  if (!problem.empty()) {
    fail(problem);
    return;
  }
  std::vector<const char*> ext_ptrs;
  for (const auto& s : ext) ext_ptrs.push_back(s.c_str());
  int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  char errstr[512] = "";
  if (rd_kafka_oauthbearer_set_token(rk, token.c_str(), now_ms + static_cast<int64_t>(lifetime_ms), principal.c_str(),
                                     ext_ptrs.empty() ? nullptr : ext_ptrs.data(), ext_ptrs.size(), errstr,
                                     sizeof errstr) != RD_KAFKA_RESP_ERR_NO_ERROR)
    fail(errstr);
}

}  // namespace klua
