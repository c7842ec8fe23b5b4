// common/log/log.cpp — see log.h.
#include "common/log/log.h"

#include <syslog.h>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "common/util/strings.h"

namespace sekimori::log {
namespace {

std::atomic<int> gMinimum{static_cast<int>(Level::Info)};
std::atomic<bool> gStderr{false};
std::string gIdent = "sekimori";  // openlog keeps the pointer: must outlive it.
std::mutex gStderrMutex;

int priority(Level l) {
  switch (l) {
    case Level::Error: return LOG_ERR;
    case Level::Warning: return LOG_WARNING;
    case Level::Notice: return LOG_NOTICE;
    case Level::Info: return LOG_INFO;
    case Level::Debug: return LOG_DEBUG;
  }
  return LOG_INFO;
}

void write(Level level, std::string_view text) {
  if (!enabled(level)) return;
  syslog(LOG_MAIL | priority(level), "%.*s", static_cast<int>(text.size()), text.data());
  if (gStderr.load(std::memory_order_relaxed)) {
    // One fwrite per line under a lock so lines from threads never interleave.
    std::lock_guard lock(gStderrMutex);
    std::fprintf(stderr, "%s: %.*s\n", gIdent.c_str(), static_cast<int>(text.size()), text.data());
    std::fflush(stderr);
  }
}

}  // namespace

void init(std::string_view ident, bool toStderr) {
  gIdent = std::string(ident);
  gStderr = toStderr;
  openlog(gIdent.c_str(), LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void setLevel(Level minimum) { gMinimum = static_cast<int>(minimum); }
bool enabled(Level level) { return static_cast<int>(level) <= gMinimum.load(std::memory_order_relaxed); }

bool parseLevel(std::string_view text, Level& out) {
  static constexpr std::pair<std::string_view, Level> kNames[] = {
      {"error", Level::Error}, {"warning", Level::Warning}, {"notice", Level::Notice},
      {"info", Level::Info},   {"debug", Level::Debug},
  };
  for (const auto& [name, level] : kNames) {
    if (util::iequals(text, name)) {
      out = level;
      return true;
    }
  }
  return false;
}

void message(Level level, std::string_view text) { write(level, util::sanitizeText(text, 2000)); }

Line::Line(std::string_view queueId) {
  text_ = queueId.empty() ? std::string("NOQUEUE") : util::sanitize(queueId, 64);
  text_ += ":";
}

Line& Line::kv(std::string_view key, std::string_view value) {
  const std::string v = util::sanitizeText(value, 512);
  text_ += ' ';
  text_ += key;
  text_ += '=';
  if (v.empty() || v.find(' ') != std::string::npos) {
    text_ += '"';
    text_ += v;
    text_ += '"';
  } else {
    text_ += v;
  }
  return *this;
}

Line& Line::kv(std::string_view key, std::uint64_t value) { return kv(key, std::string_view(std::to_string(value))); }

void Line::emit(Level level) const { write(level, text_); }

}  // namespace sekimori::log
