// Library messages: warnings (a fallback that costs speed, a calibration or auto-tune cache
// failure) and informational notes, sent to one handler.
//
// Without a handler (C++ use), warnings go to stderr. The Python module installs a handler that
// turns warnings into RuntimeWarning (warnings.warn: filters and `-W error` apply) and the other
// levels into records of the "lightning_core" logger (level from LC_LOG_LEVEL).
// The handler may throw (the Python one does when a warning filter says "error"): the message
// then becomes the calling op's exception. Code that cannot throw (destructors, noexcept) uses
// message_noexcept.
#pragma once

#include <functional>
#include <string>

namespace lc::log {

// Python's logging levels, so the handler passes them on unchanged.
enum class Level : int { debug = 10, info = 20, warning = 30, error = 40 };

using Handler = std::function<void(Level, const std::string&)>;

void set_handler(Handler h);

// The lowest level delivered (default: warning). Messages below it are dropped before their text
// is built when the caller checks enabled() first (one relaxed atomic load).
void set_threshold(Level lv);
bool enabled(Level lv);

void message(Level lv, const std::string& text);
void message_noexcept(Level lv, const std::string& text) noexcept;
inline void warn(const std::string& text) { message(Level::warning, text); }
inline void info(const std::string& text) { message(Level::info, text); }

}  // namespace lc::log
