// tests/unit/common/milter/fakes.h — stand-ins for the MTA side of the
// milter protocol, for driving a Milter through milter::Driver in tests.
#pragma once

#include <map>
#include <string>
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
  std::vector<std::pair<std::string, std::string>> added;
  std::string body;
  bool bodyReplaced = false;
  bool addHeader(std::string_view n, std::string_view v) override {
    added.emplace_back(n, v);
    return true;
  }
  bool insertHeader(int, std::string_view n, std::string_view v) override { return addHeader(n, v); }
  bool changeHeader(std::string_view, int, std::string_view) override { return true; }
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

inline std::span<const std::byte> bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

}  // namespace sekimori::milter::testing
