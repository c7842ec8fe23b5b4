// common/config/values.cpp — see values.h.
#include "common/config/values.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/util/strings.h"

namespace sekimori::config {
namespace po = boost::program_options;

std::string Error::str() const {
  std::string s = file;
  if (line > 0) s.append(1, ':').append(std::to_string(line));  // not ":" + string: GCC 12 -Wrestrict (105651)
  return s + ": " + message;
}

void Errors::add(std::string file, int line, std::string message) {
  // Messages quote values from the file (and Boost's texts quote them too):
  // a control character there would end the log line or forge another.
  list_.push_back(Error{std::move(file), line, util::escapeControls(message)});
}

std::string Errors::str() const {
  std::string s;
  for (const auto& e : list_) s += e.str() + "\n";
  return s;
}

namespace {

// Converts raw text through the option's Boost semantic; on failure returns
// false with a reason that names the key.
bool convert(const Schema::Entry& e, std::string_view raw, boost::any& out, std::string& reason) {
  try {
    e.desc->semantic()->parse(out, {std::string(raw)}, true);
  } catch (const po::error_with_option_name&) {
    // Boost's own validators (yes|no): its what() fills placeholders in the
    // message with the value, and loops forever on a value that holds one
    // ("%value%"). Our words instead.
    reason = e.name + ": invalid value '" + util::sanitize(raw, 80) + "' (expected " + e.typeHint + ")";
    return false;
  } catch (const po::error& ex) {
    reason = e.name + ": " + ex.what();  // our validators' plain messages (schema.cpp)
    return false;
  } catch (const std::exception& ex) {
    reason = e.name + ": invalid value '" + util::sanitize(raw, 80) + "': " + ex.what();
    return false;
  }
  if (!e.choices.empty()) {
    const auto& s = boost::any_cast<const std::string&>(out);
    for (const auto& c : e.choices) {
      if (s == c) return true;
    }
    reason = e.name + ": '" + util::sanitize(s, 80) + "' is not one of " + e.typeHint;
    return false;
  }
  return true;
}

struct Line {
  int number;
  std::string key;
  std::string value;
};

}  // namespace

Values Values::load(const Schema& schema, const std::string& path, Errors& errors) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    errors.add(path, 0, std::string("cannot read: ") + std::strerror(errno));
    Values v;
    v.schema_ = &schema;
    v.file_ = path;
    return v;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse(schema, text.str(), path, errors);
}

Values Values::parse(const Schema& schema, std::string_view text, std::string file, Errors& errors) {
  Values v;
  v.schema_ = &schema;
  v.file_ = file;

  std::string section;         // current section, "" before the first
  bool sectionIsOverride = false;
  std::map<std::string, Setting, std::less<>>* target = nullptr;
  std::optional<Line> pending;  // a key line that may still be continued

  const auto flush = [&] {
    if (!pending) return;
    const Line l = std::move(*pending);
    pending.reset();
    const Schema::Entry* e = nullptr;
    std::string storeKey;
    if (sectionIsOverride) {
      e = schema.findOverridable(l.key);
      if (e == nullptr) {
        const bool known = schema.find(l.key) != nullptr || [&] {
          for (const auto& entry : schema.entries()) {
            if (entry.name == l.key) return true;
          }
          return false;
        }();
        errors.add(file, l.number,
                   known ? "'" + l.key + "' cannot be overridden in [" + section + "]"
                         : "unknown key '" + util::sanitize(l.key, 80) + "' in [" + section + "]");
        return;
      }
      storeKey = e->name;
    } else {
      storeKey = section + "." + l.key;
      e = schema.find(storeKey);
      if (e == nullptr) {
        errors.add(file, l.number, "unknown key '" + util::sanitize(l.key, 80) + "' in [" + section + "]");
        return;
      }
    }
    if (const auto it = target->find(storeKey); it != target->end()) {
      errors.add(file, l.number,
                 "'" + l.key + "' set twice in [" + section + "] (first at line " + std::to_string(it->second.line) + ")");
      return;
    }
    Setting s;
    s.raw = l.value;
    s.line = l.number;
    std::string reason;
    if (!convert(*e, l.value, s.value, reason)) {
      errors.add(file, l.number, reason);
      return;
    }
    target->emplace(storeKey, std::move(s));
  };

  int number = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view raw = text.substr(pos, end - pos);
    pos = end + 1;
    ++number;
    const std::string_view line = util::trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;

    // An indented line continues the value of the key line above it.
    if ((raw[0] == ' ' || raw[0] == '\t') && pending) {
      pending->value += pending->value.empty() ? "" : " ";
      pending->value += line;
      continue;
    }
    flush();

    if (line[0] == '[') {
      if (line.back() != ']') {
        errors.add(file, number, "section header without closing ']'");
        target = nullptr;
        continue;
      }
      const std::string name = util::toLowerAscii(util::trim(line.substr(1, line.size() - 2)));
      section = name;
      sectionIsOverride = false;
      if (policy::directionFromString(name)) {
        sectionIsOverride = true;
        target = &v.overrides_[name];
      } else if (name == "domain" || util::istartsWith(name, "domain ") || util::istartsWith(name, "domain\t")) {
        const std::string domain{util::trim(std::string_view(name).substr(6))};
        if (domain.empty() || std::any_of(domain.begin(), domain.end(), util::isControl) ||
            domain.find_first_of(" \t,@[]") != std::string::npos) {
          errors.add(file, number, "[domain NAME] needs one domain name, got '" + util::sanitize(domain, 80) + "'");
          target = nullptr;
          continue;
        }
        // Kept under the domain's normal form, so that [domain 例え.jp] and
        // [domain xn--r8jz45g.jp] are found to be one section.
        std::string idna;
        const std::string normal = policy::normalizeDomain(domain, &idna);
        if (!idna.empty()) {
          errors.add(file, number, "[domain " + util::sanitize(domain, 80) + "]: " + idna);
          target = nullptr;
          continue;
        }
        section = "domain " + domain;  // for messages: as written
        sectionIsOverride = true;
        const std::string key = "domain " + normal;
        if (v.overrides_.count(key) != 0) {
          errors.add(file, number,
                     "section [" + key + "] appears twice" + (normal == domain ? "" : " (here as [" + section + "])"));
        }
        target = &v.overrides_[key];
      } else if (schema.hasSection(name)) {
        target = &v.global_;
      } else {
        errors.add(file, number, "unknown section [" + util::sanitize(name, 80) + "]");
        target = nullptr;
      }
      continue;
    }

    const auto eq = line.find('=');
    if (eq == std::string_view::npos) {
      errors.add(file, number, "expected 'key = value', got '" + util::sanitize(line, 80) + "'");
      continue;
    }
    if (target == nullptr) {
      if (section.empty()) errors.add(file, number, "setting before the first [section]");
      continue;  // an error about the section was given already
    }
    const std::string key = util::toLowerAscii(util::trim(line.substr(0, eq)));
    if (key.empty()) {
      errors.add(file, number, "missing key before '='");
      continue;
    }
    pending = Line{number, key, std::string(util::trim(line.substr(eq + 1)))};
  }
  flush();
  return v;
}

bool Values::set(std::string_view key, std::string_view raw, Errors& errors) {
  const auto* e = schema_->find(key);
  if (e == nullptr) {
    errors.add("command line", 0, "unknown key '" + std::string(key) + "'");
    return false;
  }
  Setting s;
  s.raw = std::string(raw);
  std::string reason;
  if (!convert(*e, raw, s.value, reason)) {
    errors.add("command line", 0, reason);
    return false;
  }
  global_[std::string(key)] = std::move(s);
  return true;
}

std::string Values::where(std::string_view key) const {
  const auto it = global_.find(key);
  if (it == global_.end()) return file_;
  if (it->second.line == 0) return "command line";
  return file_ + ":" + std::to_string(it->second.line);
}

int Values::line(std::string_view key) const {
  const auto it = global_.find(key);
  return it == global_.end() ? 0 : it->second.line;
}

}  // namespace sekimori::config
