// common/config/schema.h — every config key declared once: name, type,
// default, help, and whether it may be overridden per direction or domain.
//
// The schema feeds the conf-file parser (values.h), the daemon's --help, and
// `--defaults`, which prints the documented conf file shipped in conf/ (a unit
// test keeps the two identical, so keys, defaults and docs cannot drift apart
// as they do in opendkim).
//
//   const config::Option<config::Bytes> kMaxSize{
//       "limits.max_message_size", 20_MiB,
//       "Largest message accepted, headers and body (0 = no limit). R-SIZE-1.",
//       config::Scope::Overridable};
//   config::Schema schema("sizelimit");
//   schema.section("limits", "Size and structure limits.");
//   schema.add(kMaxSize);
//
// Types: bool (yes/no/true/false/on/off/1/0), std::string (optionally one of
// `choices`), Count, Bytes, Duration, policy::Reply. Type conversion goes
// through Boost.Program_options (validate() overloads below), so the command
// line and the conf file accept the same spellings.
#pragma once

#include <boost/any.hpp>
#include <boost/program_options.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/config/units.h"
#include "common/policy/reply.h"

namespace sekimori::config {

// A non-negative whole number ("max_recipients = 100"). Its own type so that
// "-1" is refused instead of wrapping around as std::uint64_t would.
struct Count {
  std::uint64_t value = 0;
  friend bool operator==(Count, Count) = default;
};

enum class Scope {
  Global,       // only in its own section
  Overridable,  // may be set again in [inbound]/[outbound]/[internal]/[domain D]
};

template <class T>
struct Option {
  std::string key;  // "section.name"
  T defaultValue;
  std::string help;
  Scope scope = Scope::Global;
  std::vector<std::string> choices = {};  // std::string options only: allowed values
};

// Text of a value as it is written in a conf file.
std::string toText(bool v);
std::string toText(const std::string& v);
std::string toText(Count v);
std::string toText(Bytes v);
std::string toText(Duration v);
std::string toText(const policy::Reply& v);

// Boost.Program_options conversions (found by argument-dependent lookup).
void validate(boost::any& v, const std::vector<std::string>& values, Count*, int);
void validate(boost::any& v, const std::vector<std::string>& values, Bytes*, int);
void validate(boost::any& v, const std::vector<std::string>& values, Duration*, int);

class Schema {
 public:
  struct Entry {
    std::string key;      // "limits.max_message_size"
    std::string section;  // "limits"
    std::string name;     // "max_message_size"
    std::string help;
    std::string defaultText;
    std::string typeHint;  // "size", "duration", "yes|no", ...
    Scope scope = Scope::Global;
    std::vector<std::string> choices;
    std::shared_ptr<boost::program_options::option_description> desc;
  };

  explicit Schema(std::string program) : program_(std::move(program)) {}

  // Sections appear in --defaults in the order they are declared.
  void section(std::string name, std::string help);
  // A text printed after the last section of --defaults (override examples).
  void footer(std::string text) { footer_ = std::move(text); }

  template <class T>
  void add(const Option<T>& opt) {
    namespace po = boost::program_options;
    const std::string text = toText(opt.defaultValue);
    auto desc = std::make_shared<po::option_description>(
        opt.key.c_str(), po::value<T>()->default_value(opt.defaultValue, text), opt.help.c_str());
    addEntry(opt.key, opt.help, text, typeHint(static_cast<const T*>(nullptr)), opt.scope, opt.choices,
             std::move(desc));
  }

  const Entry* find(std::string_view key) const;
  // An overridable key by its name without section ("max_message_size").
  const Entry* findOverridable(std::string_view name) const;
  const std::vector<Entry>& entries() const { return entries_; }
  bool hasSection(std::string_view name) const;
  const std::string& program() const { return program_; }

  // The documented conf file: every key with its help and default.
  std::string renderConf() const;
  // One line per key for --help: "  limits.max_message_size = 20M  (size) help".
  std::string renderHelp() const;

 private:
  static std::string typeHint(const bool*) { return "yes|no"; }
  static std::string typeHint(const std::string*) { return "text"; }
  static std::string typeHint(const Count*) { return "number"; }
  static std::string typeHint(const Bytes*) { return "size"; }
  static std::string typeHint(const Duration*) { return "duration"; }
  static std::string typeHint(const policy::Reply*) { return "reply"; }

  void addEntry(const std::string& key, const std::string& help, const std::string& defaultText,
                std::string typeHint, Scope scope, std::vector<std::string> choices,
                std::shared_ptr<boost::program_options::option_description> desc);

  std::string program_;
  std::vector<std::pair<std::string, std::string>> sections_;
  std::vector<Entry> entries_;
  std::string footer_;
};

}  // namespace sekimori::config

namespace sekimori::policy {
void validate(boost::any& v, const std::vector<std::string>& values, Reply*, int);
}  // namespace sekimori::policy
