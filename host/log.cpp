#include "host/log.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <cmath>
#include <ctime>
#include <memory>
#include <mutex>

#include <fmt/format.h>

namespace klua::log {

namespace detail {
int threshold = static_cast<int>(Level::info);
}

namespace {

std::atomic<int> g_format{static_cast<int>(Format::text)};
std::mutex g_mutex;  // the sink and the secrets
std::shared_ptr<const Sink> g_sink;
std::vector<std::string> g_secrets;

const char* const LEVEL_NAMES[] = {"debug", "info", "warn", "error"};
const char* const LEVEL_TEXT[] = {"DEBUG", "INFO", "WARN", "ERROR"};

std::string_view lower_ascii(std::string_view s, std::string& buf) {
  buf.assign(s);
  std::transform(buf.begin(), buf.end(), buf.begin(), [](unsigned char c) { return std::tolower(c); });
  return buf;
}

// The length of the valid UTF-8 sequence at s[i] (RFC 3629: no overlongs, no surrogates, at most
// U+10FFFF), or 0.
size_t utf8_length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  auto cont = [&](size_t k) { return (b(k) & 0xC0) == 0x80; };
  unsigned c = b(0);
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    unsigned c1 = b(1);
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F)) return 0;
    return cont(1) && cont(2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    unsigned c1 = b(1);
    if ((c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F)) return 0;
    return cont(1) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

// The length of the maximal subpart of an ill-formed sequence at s[i] (one U+FFFD each, as Unicode
// recommends and klua.json.encode's invalid_utf8 = "replace" does): a lead byte and the
// continuation bytes that could still have completed it.
size_t invalid_length(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  unsigned c = b(0);
  size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 1;
  size_t k = 1;
  for (; k < need; ++k) {
    unsigned lo = 0x80, hi = 0xBF;
    if (k == 1) {
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    if (b(k) < lo || b(k) > hi) break;
  }
  return k;
}

// For the text format: control characters escaped so that a record stays one line.
void append_one_line(std::string& out, std::string_view s) {
  for (char ch : s) {
    unsigned char c = static_cast<unsigned char>(ch);
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c < 0x20 && c != '\t') out += fmt::format("\\x{:02x}", c);
    else out += ch;
  }
}

// logfmt: bare when the value has no space, quote, '=' or control character, else a JSON string.
void append_text_value(std::string& out, const Field& f) {
  bool bare = !f.value.empty() || f.json;
  if (!f.json)
    for (unsigned char c : f.value)
      if (c <= ' ' || c == '"' || c == '=' || c == 0x7f) {
        bare = false;
        break;
      }
  if (bare) append_one_line(out, f.value);
  else append_json_string(out, f.value);
}

void append_time(std::string& out, int64_t ms) {
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  out += fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
}

int64_t now_ms() {
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void write_stderr(std::string_view line) {
  // One write per line: lines of several threads (or processes sharing the pipe) never interleave.
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // stderr closed or a broken pipe: nothing else to tell
    p += n;
    left -= static_cast<size_t>(n);
  }
}

bool name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-'; }

// The value after pos: a quoted string's content or a token up to a separator.
std::pair<size_t, size_t> value_span(const std::string& s, size_t pos) {
  if (pos < s.size() && (s[pos] == '"' || s[pos] == '\'')) {
    char q = s[pos];
    size_t end = pos + 1;
    while (end < s.size() && s[end] != q) end += s[end] == '\\' ? 2 : 1;
    return {pos + 1, std::min(end, s.size())};
  }
  size_t end = pos;
  while (end < s.size() && !std::strchr(" \t\r\n,;&\"'})]", s[end])) ++end;
  return {pos, end};
}

// A small JSON checker, for a field's JSON value after masking (a masked number is no JSON).
struct JsonCheck {
  std::string_view s;
  size_t i = 0;
  int depth = 0;
  void ws() {
    while (i < s.size() && std::strchr(" \t\r\n", s[i])) ++i;
  }
  bool lit(const char* w) {
    size_t n = std::strlen(w);
    if (s.compare(i, n, w) != 0) return false;
    i += n;
    return true;
  }
  bool str() {
    if (i >= s.size() || s[i] != '"') return false;
    for (++i; i < s.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(s[i]);
      if (c == '\\') ++i;
      else if (c == '"') return ++i, true;
      else if (c < 0x20) return false;
      else if (c >= 0x80) {  // (a mask may have cut a character: the line must stay UTF-8)
        size_t n = utf8_length(s, i);
        if (n == 0) return false;
        i += n - 1;
      }
    }
    return false;
  }
  bool num() {
    size_t from = i;
    if (i < s.size() && s[i] == '-') ++i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || std::strchr(".eE+-", s[i]))) ++i;
    return i > from && std::isdigit(static_cast<unsigned char>(s[i - 1]));
  }
  bool value() {
    ws();
    if (i >= s.size() || ++depth > 200) return false;
    bool ok;
    char c = s[i];
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++i;
      ws();
      ok = true;
      if (i < s.size() && s[i] == close) ++i;
      else
        for (;;) {
          if (c == '{') {
            ws();
            if (!str()) return false;
            ws();
            if (i >= s.size() || s[i++] != ':') return false;
          }
          if (!value()) return false;
          ws();
          if (i < s.size() && s[i] == ',') { ++i; continue; }
          if (i < s.size() && s[i] == close) { ++i; break; }
          return false;
        }
    } else if (c == '"') {
      ok = str();
    } else {
      ok = lit("true") || lit("false") || lit("null") || num();
    }
    --depth;
    return ok;
  }
  bool whole() { return value() && (ws(), i == s.size()); }
};

void emit(Level level, std::string_view message, const Fields& fields, bool diag, std::string_view text,
          bool always = false) {
  if (!always && !enabled(level)) return;
  Fields safe;
  safe.reserve(fields.size() + 1);
  if (diag && std::none_of(fields.begin(), fields.end(), [](const Field& f) { return f.key == "logger"; }))
    safe.push_back({"logger", "klua", false});
  for (const auto& f : fields) {
    if (is_secret_name(f.key)) {
      safe.push_back({f.key, "********", false});
      continue;
    }
    std::string v = redact(f.value);
    // A JSON value is checked (an embedder's may be anything; a masked number is no JSON any
    // more): what is not JSON is written as a string.
    // (A line break, even as JSON's whitespace, would split the line.)
    bool json = f.json && v.find_first_of("\r\n") == std::string::npos && JsonCheck{v}.whole();
    safe.push_back({f.key, std::move(v), json});
  }
  std::string msg = redact(message);
  Record r{level, msg, safe, diag, now_ms()};
  std::string line;
  if (!text.empty() && format() == Format::text) {
    line = redact(text);
    line += '\n';
  } else {
    line = format_line(r);
  }
  std::shared_ptr<const Sink> sink;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    sink = g_sink;
  }
  if (sink) (*sink)(r, line);
  else write_stderr(line);
}

}  // namespace

void set_level(Level l) { __atomic_store_n(&detail::threshold, static_cast<int>(l), __ATOMIC_RELAXED); }
Level level() { return static_cast<Level>(__atomic_load_n(&detail::threshold, __ATOMIC_RELAXED)); }
const int* threshold_address() { return &detail::threshold; }

void set_format(Format f) { g_format.store(static_cast<int>(f), std::memory_order_relaxed); }
Format format() { return static_cast<Format>(g_format.load(std::memory_order_relaxed)); }

std::optional<Level> parse_level(std::string_view name) {
  std::string buf;
  name = lower_ascii(name, buf);
  for (int i = 0; i < 4; ++i)
    if (name == LEVEL_NAMES[i]) return static_cast<Level>(i);
  if (name == "warning") return Level::warn;
  return std::nullopt;
}

std::optional<Format> parse_format(std::string_view name) {
  std::string buf;
  name = lower_ascii(name, buf);
  if (name == "text") return Format::text;
  if (name == "json") return Format::json;
  return std::nullopt;
}

const char* level_name(Level l) { return LEVEL_NAMES[static_cast<int>(l) & 3]; }

void set_sink(Sink sink) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_sink = sink ? std::make_shared<const Sink>(std::move(sink)) : nullptr;
}

void write(Level level, std::string_view message, const Fields& fields) { emit(level, message, fields, false, {}); }

void diagnostic(Level level, std::string_view message, const Fields& fields, std::string_view text) {
  emit(level, message, fields, true, text);
}

void diagnostic_always(Level level, std::string_view message, const Fields& fields, std::string_view text) {
  emit(level, message, fields, true, text, true);
}

void add_secret(std::string_view value) {
  if (value.size() < 4) return;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (std::find(g_secrets.begin(), g_secrets.end(), value) != g_secrets.end()) return;
  g_secrets.emplace_back(value);
  // The longest first, so that a secret containing another is masked whole.
  std::sort(g_secrets.begin(), g_secrets.end(), [](const auto& a, const auto& b) { return a.size() > b.size(); });
}

bool is_secret_name(std::string_view key) {
  std::string buf;
  std::string_view k = lower_ascii(key, buf);
  // klua.secrets.is_secret's words (scripts/klua/secrets.lua; bindings' is_secret_property)
  static const char* words[] = {"pass", "pasw", "pwd", "secret", "token", "jaas", "credential", "private",
                                "oauthbearer.config", "key.pem", "key_", "key-", "user.info", "userinfo",
                                // and the HTTP headers that carry credentials
                                "authorization", "cookie"};
  // a bare "key" is a Kafka message's key, which logs name often: not a secret here
  if (k == "key") return false;
  if (k.size() >= 3 && k.substr(k.size() - 3) == "key") return true;
  return std::any_of(std::begin(words), std::end(words), [&](const char* w) { return k.find(w) != std::string_view::npos; });
}

std::string redact(std::string_view text) {
  std::string s(text);
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (const auto& v : g_secrets)
      for (size_t pos = 0; (pos = s.find(v, pos)) != std::string::npos;) s.replace(pos, v.size(), "***"), pos += 3;
  }
  // scheme://user:pass@host
  for (size_t pos = 0; (pos = s.find("://", pos)) != std::string::npos;) {
    size_t from = pos + 3, end = from;
    while (end < s.size() && !std::strchr("/@ \t\r\n\"'?#", s[end])) ++end;
    if (end < s.size() && s[end] == '@' && end > from) s.replace(from, end - from, "***"), end = from + 3;
    pos = end;
  }
  // name=value, "name": "value", Authorization: Bearer xyz
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c != '=' && c != ':') continue;
    size_t name_end = i;
    bool quoted = name_end > 0 && s[name_end - 1] == '"';  // a JSON member (not 'a Lua name': x)
    if (quoted) --name_end;
    size_t name_from = name_end;
    while (name_from > 0 && name_char(s[name_from - 1])) --name_from;
    if (name_from == name_end) continue;
    std::string_view name(s.data() + name_from, name_end - name_from);
    std::string lname;
    lower_ascii(name, lname);
    bool header = lname == "authorization" || lname == "proxy-authorization" || lname == "cookie" ||
                  lname == "set-cookie";
    // name=value anywhere; name: value only as a JSON member or a credential header (a word before
    // a colon is mostly prose: "token refresh: failed")
    if (c == ':' && !quoted && !header) continue;
    if (!is_secret_name(name)) continue;
    size_t v = i + 1;
    while (v < s.size() && (s[v] == ' ' || s[v] == '\t')) ++v;
    auto [from, to] = value_span(s, v);
    if (header) {
      // "Bearer xyz", "Basic xyz": the scheme stays, the credential goes
      std::string scheme = s.substr(from, to - from);
      std::string ls;
      lower_ascii(scheme, ls);
      if ((ls == "bearer" || ls == "basic") && to < s.size() && s[to] == ' ') {
        from = to + 1;
        to = value_span(s, from).second;
      }
    }
    if (to > from && s.compare(from, to - from, "***") != 0 && s.compare(from, to - from, "********") != 0) {
      // a JSON member's bare value (a number, true) becomes a string, so that the JSON stays JSON
      const char* mask = quoted && from == v ? "\"***\"" : "***";
      s.replace(from, to - from, mask);
      to = from + std::strlen(mask);
    }
    i = std::max(i, to);
  }
  return s;
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          if (c < 0x20 || c == 0x7f) out += fmt::format("\\u{:04x}", c);
          else out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    size_t n = utf8_length(s, i);
    if (n == 0) {
      out += "\\ufffd";
      i += invalid_length(s, i);
    } else {
      out.append(s.data() + i, n);
      i += n;
    }
  }
  out += '"';
}

size_t signal_safe_line(char* buf, size_t cap, Level level, const char* message) {
  if (!enabled(level) || cap == 0) return 0;
  size_t n = 0;
  auto put = [&](const char* s) {
    while (*s && n < cap) buf[n++] = *s++;
  };
  auto put_num = [&](long v, int width) {
    char d[24];
    int k = 0;
    do d[k++] = static_cast<char>('0' + v % 10), v /= 10;
    while (v > 0 || k < width);
    while (k > 0 && n < cap) buf[n++] = d[--k];
  };
  if (format() == Format::text) {
    put("klua: ");
    put(message);
    put("\n");
    return n;
  }
  struct timespec ts {};
  clock_gettime(CLOCK_REALTIME, &ts);  // async-signal-safe (POSIX); gmtime_r is not listed
  // days since 1970-01-01 to a civil date (H. Hinnant's algorithm)
  long z = ts.tv_sec / 86400 + 719468, secs = ts.tv_sec % 86400;
  long era = z / 146097, doe = z - era * 146097;
  long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  long doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
  long day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9, year = yoe + era * 400 + (month <= 2);
  put("{\"time\":\"");
  put_num(year, 4), put("-"), put_num(month, 2), put("-"), put_num(day, 2), put("T");
  put_num(secs / 3600, 2), put(":"), put_num(secs / 60 % 60, 2), put(":"), put_num(secs % 60, 2), put(".");
  put_num(ts.tv_nsec / 1000000, 3);
  put("Z\",\"level\":\"");
  put(level_name(level));
  put("\",\"message\":\"");
  for (const char* p = message; *p && n < cap; ++p) {
    if (*p == '"' || *p == '\\') buf[n++] = '\\';
    if (n < cap) buf[n++] = static_cast<unsigned char>(*p) < 0x20 ? ' ' : *p;
  }
  put("\",\"fields\":{\"logger\":\"klua\"}}\n");
  return n;
}

std::string format_line(const Record& r) {
  std::string out;
  out.reserve(64 + r.message.size());
  if (format() == Format::json) {
    out += "{\"time\":\"";
    append_time(out, r.time_ms);
    out += "\",\"level\":\"";
    out += level_name(r.level);
    out += "\",\"message\":";
    append_json_string(out, r.message);
    out += ",\"fields\":{";
    bool first = true;
    for (const auto& f : r.fields) {
      if (!first) out += ',';
      first = false;
      append_json_string(out, f.key);
      out += ':';
      if (f.json && !f.value.empty()) out += f.value;
      else append_json_string(out, f.value);
    }
    out += "}}\n";
    return out;
  }
  if (r.diagnostic) {
    out += "klua: ";
    out += r.message;  // as klua always printed it (an error's message may hold its own traceback)
  } else {
    append_time(out, r.time_ms);
    out += ' ';
    out += LEVEL_TEXT[static_cast<int>(r.level) & 3];
    out += ' ';
    append_one_line(out, r.message);
  }
  // (a diagnostic's message names its context: its fields are for the JSON format)
  for (const auto& f : r.fields) {
    if (r.diagnostic) break;
    out += ' ';
    append_one_line(out, f.key);
    out += '=';
    append_text_value(out, f);
  }
  out += '\n';
  return out;
}

}  // namespace klua::log
