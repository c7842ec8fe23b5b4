// common/config/values.h — a conf file read against a Schema, with the file
// and line of every setting so errors read `file:line: reason`.
//
// Syntax (INI, one setting per line):
//   # comment            a line whose first non-blank character is # or ;
//   [limits]             a section declared by the schema
//   key = value          the value is the rest of the line: a # inside it is
//                        part of the value (reply texts and patterns need it)
//       more value       an indented line continues the value above (joined
//                        with one space), for long lists
//   [outbound]           per-direction overrides: [inbound] [outbound] [internal]
//   [domain example.jp]  per-domain overrides (the domain exactly, case-insensitive)
// Only keys declared Scope::Overridable may appear in override sections, by
// their name without the section ("max_message_size = 25M").
//
//   config::Errors errors;
//   auto values = config::Values::load(schema, "/etc/sekimori/sizelimit.conf", errors);
//   if (!errors.empty()) { for (auto& e : errors.list()) puts(e.str().c_str()); return 1; }
//   config::Layered<config::Bytes> max = values.layered(kMaxSize);
//   max.get(policy::Direction::Outbound, "example.jp");
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/config/schema.h"
#include "common/policy/address.h"
#include "common/policy/direction.h"

namespace sekimori::config {

struct Error {
  std::string file;
  int line = 0;  // 0: not tied to a line
  std::string message;
  std::string str() const;  // "file:line: message"
};

class Errors {
 public:
  // Control characters in `message` are written as \xNN: one error, one line.
  void add(std::string file, int line, std::string message);
  bool empty() const { return list_.empty(); }
  const std::vector<Error>& list() const { return list_; }
  std::string str() const;  // one error per line

 private:
  std::vector<Error> list_;
};

// A value with per-direction and per-domain overrides; the most specific wins:
// domain, then direction, then the global value.
template <class T>
class Layered {
 public:
  Layered() = default;
  explicit Layered(T global) : global_(std::move(global)) {}

  const T& get(policy::Direction d, std::string_view domain) const {
    if (!domain_.empty() && !domain.empty()) {
      const auto it = domain_.find(policy::normalizeDomain(domain));
      if (it != domain_.end()) return it->second;
    }
    const auto& byDir = direction_[static_cast<std::size_t>(d)];
    return byDir ? *byDir : global_;
  }
  const T& global() const { return global_; }
  void setDirection(policy::Direction d, T v) { direction_[static_cast<std::size_t>(d)] = std::move(v); }
  void setDomain(std::string_view domain, T v) { domain_[policy::normalizeDomain(domain)] = std::move(v); }
  bool hasDomainOverrides() const { return !domain_.empty(); }
  // Every value that can apply in direction d: the direction's own (or the
  // global one) and each domain's. For "the largest limit any recipient may
  // get" before the recipients are known.
  std::vector<T> candidates(policy::Direction d) const {
    const auto& byDir = direction_[static_cast<std::size_t>(d)];
    std::vector<T> out{byDir ? *byDir : global_};
    for (const auto& [domain, v] : domain_) out.push_back(v);
    return out;
  }

 private:
  T global_{};
  std::array<std::optional<T>, 3> direction_{};
  std::unordered_map<std::string, T> domain_;
};

class Values {
 public:
  struct Setting {
    boost::any value;
    std::string raw;
    int line = 0;
  };

  // Reads and checks a whole file; every problem goes to `errors`.
  static Values load(const Schema& schema, const std::string& path, Errors& errors);
  static Values parse(const Schema& schema, std::string_view text, std::string file, Errors& errors);

  // Sets a global key from the command line (e.g. -p SOCKET). Errors name "command line".
  bool set(std::string_view key, std::string_view raw, Errors& errors);

  template <class T>
  T get(const Option<T>& opt) const {
    const auto it = global_.find(opt.key);
    return it == global_.end() ? opt.defaultValue : boost::any_cast<T>(it->second.value);
  }

  template <class T>
  Layered<T> layered(const Option<T>& opt) const {
    Layered<T> out(get(opt));
    const std::string name = opt.key.substr(opt.key.find('.') + 1);
    for (const auto& [section, settings] : overrides_) {
      const auto it = settings.find(name);
      if (it == settings.end()) continue;
      T v = boost::any_cast<T>(it->second.value);
      if (const auto dir = policy::directionFromString(section)) {
        out.setDirection(*dir, std::move(v));
      } else {
        out.setDomain(section.substr(section.find(' ') + 1), std::move(v));
      }
    }
    return out;
  }

  // "file:line" of a key's setting, or the file name alone when it has its default.
  std::string where(std::string_view key) const;
  int line(std::string_view key) const;
  const std::string& file() const { return file_; }

 private:
  const Schema* schema_ = nullptr;
  std::string file_;
  std::map<std::string, Setting, std::less<>> global_;
  // Section ("outbound", "domain example.jp") -> name -> setting.
  std::map<std::string, std::map<std::string, Setting, std::less<>>> overrides_;
};

}  // namespace sekimori::config
