// tests/unit/common/milter/fake_mta.h — the MTA side of the milter
// protocol, faked: macros and a recorder of end-of-message changes. No
// GoogleTest in here, so the fuzz targets (tests/fuzz) use them too;
// fakes.h adds the GoogleTest helpers.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/milter/milter.h"

namespace sekimori::milter::testing {

class FakeMacros final : public MacroSource {
 public:
  std::map<std::string, std::string> values;
  std::optional<std::string_view> get(const char* name) const override {
    const auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return std::string_view(it->second);
  }
};

// Records every change a milter asks for at end of message.
class RecordingActions final : public MtaActions {
 public:
  struct Change {
    std::string name;
    int index;
    std::string value;  // "": deleted
  };
  std::vector<std::pair<std::string, std::string>> added;
  std::vector<Change> changed;
  std::string body;
  bool bodyReplaced = false;
  bool addHeader(std::string_view n, std::string_view v) override {
    added.emplace_back(n, v);
    return true;
  }
  bool insertHeader(int, std::string_view n, std::string_view v) override { return addHeader(n, v); }
  bool changeHeader(std::string_view n, int index, std::string_view v) override {
    changed.push_back({std::string(n), index, std::string(v)});
    return true;
  }
  bool replaceBody(std::span<const std::byte> chunk) override {
    bodyReplaced = true;
    body.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    return true;
  }
  bool addRecipient(std::string_view) override { return true; }
  bool deleteRecipient(std::string_view) override { return true; }
  bool quarantine(std::string_view) override { return true; }
  bool progress() override { return true; }
};

}  // namespace sekimori::milter::testing
