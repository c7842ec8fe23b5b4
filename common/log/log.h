// common/log/log.h — one syslog line (facility LOG_MAIL) per decision.
//
// Postfix style: the queue ID first (NOQUEUE before Postfix has one), then
// key=value fields. Values from the wire are sanitised (util::sanitize) and
// quoted when they hold a space; nothing from the wire is ever used as a
// printf format.
//
//   log::Line(queueId).kv("milter", "sizelimit").kv("action", "reject")
//       .kv("reason", "size").kv("size", bytes).kv("limit", limit)
//       .kv("from", "<" + from + ">").emit(log::Level::Info);
//   // 4Xk2Lb1rTz: milter=sizelimit action=reject reason=size size=22020096 limit=20971520 from=<a@b>
//
//   log::message(log::Level::Notice, "reloaded config from /etc/sekimori/sizelimit.conf");
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace sekimori::log {

enum class Level { Error, Warning, Notice, Info, Debug };

// ident: "sekimori-sizelimit". toStderr: also write each line to stderr (-f).
void init(std::string_view ident, bool toStderr);
void setLevel(Level minimum);
bool enabled(Level level);
// "error", "warning", "notice", "info", "debug".
bool parseLevel(std::string_view text, Level& out);

// A free-form line (startup, reload, faults); not for wire data.
void message(Level level, std::string_view text);

class Line {
 public:
  // An empty queue ID is written as NOQUEUE.
  explicit Line(std::string_view queueId);
  Line& kv(std::string_view key, std::string_view value);
  Line& kv(std::string_view key, const char* value) { return kv(key, std::string_view(value)); }
  Line& kv(std::string_view key, const std::string& value) { return kv(key, std::string_view(value)); }
  Line& kv(std::string_view key, std::uint64_t value);
  Line& kv(std::string_view key, int value) { return kv(key, static_cast<std::uint64_t>(value < 0 ? 0 : value)); }
  Line& kv(std::string_view key, bool value) { return kv(key, value ? "yes" : "no"); }
  const std::string& text() const { return text_; }
  void emit(Level level) const;

 private:
  std::string text_;
};

}  // namespace sekimori::log
