// klua's log: one record a line on stderr, as text (for terminals) or JSON (one object a line, for
// log shippers), with a level threshold. klua's own diagnostics (librdkafka's log lines, delivery
// failures, an uncaught error), klua.log in scripts and an embedding program all write through it.
//
// The settings are the process's (stderr is): a program embedding several runtimes sets them once.
// A sink replaces stderr: an embedding program that has a logger of its own takes each record there.
//
//   klua::log::set_format(klua::log::Format::json);
//   klua::log::set_sink([](const klua::log::Record& r, std::string_view line) { my_logger(line); });
//   klua::log::write(klua::log::Level::info, "started", {{"port", "8080", true}});
#pragma once
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace klua::log {

enum class Level : int { debug = 0, info = 1, warn = 2, error = 3 };
enum class Format { text, json };

// A field of a record. value is text (JSON: a string), or JSON itself when json is true (a number,
// true/false, an object or array: written as is in JSON and bare in text).
struct Field {
  std::string key;
  std::string value;
  bool json = false;
};
using Fields = std::vector<Field>;

struct Record {
  Level level;
  std::string_view message;
  const Fields& fields;
  // klua's own diagnostic (its text line keeps the "klua: ..." shape), not a klua.log record.
  bool diagnostic;
  int64_t time_ms;  // epoch milliseconds
};

// Records below the threshold are dropped before anything is formatted. Default info.
void set_level(Level level);
Level level();
inline bool enabled(Level l);

void set_format(Format format);
Format format();

// "debug" | "info" | "warn" | "error" (also "warning"), "text" | "json"; nullopt for another word.
std::optional<Level> parse_level(std::string_view name);
std::optional<Format> parse_format(std::string_view name);
const char* level_name(Level level);

// Where the formatted lines go (line ends in '\n', secrets already masked). An empty function:
// stderr again, one write(2) per line so that lines of several threads never interleave. The sink
// is called on the thread that logs (the loop's for nearly everything klua logs; the embedded mock
// cluster's rare errors come from its own thread) and must not log itself.
using Sink = std::function<void(const Record& record, std::string_view line)>;
void set_sink(Sink sink);

// A record of the program's own (what klua.log.info writes).
void write(Level level, std::string_view message, const Fields& fields = {});

namespace detail {
extern int threshold;  // read by enabled() and by klua.log's JIT-compiled level check
}
inline bool enabled(Level l) { return static_cast<int>(l) >= __atomic_load_n(&detail::threshold, __ATOMIC_RELAXED); }

}  // namespace klua::log
