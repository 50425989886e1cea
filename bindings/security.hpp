// TLS and SASL/OAUTHBEARER support shared by every client (bindings/security.cpp):
//  - a certificate-verify callback that keeps OpenSSL's verdict but remembers why a certificate
//    was refused ("certificate has expired", "unable to get local issuer certificate", ...), so a
//    failed handshake names its cause instead of librdkafka's generic "certificate verify failed";
//  - the `oauthbearer_token_refresh` option: a Lua function librdkafka's token refresh asks for
//    a token, called on the loop (the refresh arrives as an event on the handle's queue, never on
//    a librdkafka thread).
#pragma once
#include <librdkafka/rdkafka.h>

#include <string>

#include <lua.hpp>

namespace klua {

class KafkaHandle;

// The constructor option naming the token function.
inline constexpr const char* OAUTHBEARER_TOKEN_REFRESH_OPTION = "oauthbearer_token_refresh";

// Called by build_client_options once the configuration is complete: installs the verify
// callback, and with a token function makes librdkafka deliver token refreshes as events.
void prepare_security(rd_kafka_conf_t* conf, bool has_token_function);

// An error text of rk with the remembered cause of a refused certificate added (the server's,
// or the client's own when the broker refused it); the text unchanged otherwise.
std::string annotate_tls_error(rd_kafka_t* rk, std::string message);

// Forgets what was remembered for rk (called once it is destroyed).
void forget_tls_errors(rd_kafka_t* rk);

// Serves a RD_KAFKA_EVENT_OAUTHBEARER_TOKEN_REFRESH event: calls the function (registry ref
// fn_ref) with sasl.oauthbearer.config and sets the token it returns, or reports the failure
// through rd_kafka_oauthbearer_set_token_failure (librdkafka then raises an _AUTHENTICATION
// error event and asks again later).
void serve_token_refresh(lua_State* L, rd_kafka_t* rk, int fn_ref, rd_kafka_event_t* ev);

}  // namespace klua
