// klua's log (the public part is include/klua/log.hpp), and what klua's own code uses besides:
// diagnostics in the "klua: ..." shape, the secrets every record is masked against, the JSON
// string escaping. host/ knows no Kafka: bindings/ register their clients' secret values here.
#pragma once
#include <string>
#include <string_view>

#include "klua/log.hpp"

namespace klua::log {

// klua's own diagnostic. The text format prints `text` when given (today's lines, a traceback on the
// lines below), else "klua: " + message; the JSON format the message and the fields, with
// "logger":"klua" unless the fields name a logger.
void diagnostic(Level level, std::string_view message, const Fields& fields = {}, std::string_view text = {});
// The same, written whatever the threshold (librdkafka's debug lines that -d asked for).
void diagnostic_always(Level level, std::string_view message, const Fields& fields, std::string_view text = {});

// A secret value (a password of the configuration, a client's sasl.password): masked as "***" in
// every record from now on. Values shorter than 4 bytes are ignored (they would mask words).
void add_secret(std::string_view value);

// Whether a field's key names a secret: klua.secrets.is_secret's rule (password, secret, token,
// key, ...) and the HTTP headers that carry credentials (authorization, cookie).
bool is_secret_name(std::string_view key);

// text with the secrets masked: the registered values, a URL's user information
// (scheme://user:pass@host -> scheme://***@host), `name=value` and `"name":"value"` whose name is a
// secret, and the value of an Authorization/Cookie header.
std::string redact(std::string_view text);

// Appends s as a JSON string, quotes included: valid JSON whatever the bytes (control characters
// escaped, invalid UTF-8 as U+FFFD).
void append_json_string(std::string& out, std::string_view s);

// The formatted line (with its '\n') for a record, in the current format (for tests).
std::string format_line(const Record& r);

// A record formatted without allocating, locking or calling anything a signal handler may not
// (for the line SIGINT/SIGTERM write from the handler): "klua: message\n" or the JSON object.
// message is klua's own constant text. Returns the length written (at most cap), 0 when the
// level is below the threshold.
size_t signal_safe_line(char* buf, size_t cap, Level level, const char* message);

// The address of the threshold, for klua.log's FFI level check.
const int* threshold_address();

}  // namespace klua::log
