// tests/unit/common/milter/fakes.h — stand-ins for the MTA side of the
// milter protocol, for driving a Milter through milter::Driver in tests.
#pragma once

#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "common/config/values.h"
#include "common/milter/daemon.h"
#include "common/milter/driver.h"
#include "common/milter/milter.h"
#include "tests/unit/common/milter/fake_mta.h"

namespace sekimori::milter::testing {

inline std::span<const std::byte> bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// A milter configured from conf-file text, and a session to drive it.
template <class M>
struct DriverHarness {
  M milter;
  std::shared_ptr<const CommonConfig> common;
  FakeMacros macros;
  Driver driver{milter};
  std::unique_ptr<Session> session;
  template <class... Args>
  explicit DriverHarness(const std::string& conf, const char* client = "203.0.113.5", Args&&... args)
      : milter(std::forward<Args>(args)...) {
    const auto schema = buildSchema(milter);
    config::Errors errors;
    const auto values = config::Values::parse(schema, conf, "test.conf", errors);
    common = buildCommon(milter, values, errors);
    EXPECT_TRUE(milter.configure(values, errors, true));
    EXPECT_TRUE(errors.empty()) << errors.str();
    macros.values["i"] = "ABC123";
    session = std::make_unique<Session>(macros, common);
    driver.connect(*session, "client.example", policy::IpAddress::parse(client));
  }
  Verdict mail(std::initializer_list<std::string_view> argv) { return driver.mail(*session, common, argv); }
  Verdict rcpt(std::string_view r) { return driver.rcpt(*session, r); }
  Verdict header(std::string_view n, std::string_view v) { return driver.header(*session, n, v); }
  Verdict eoh() { return driver.eoh(*session); }
  Verdict body(std::string_view b) { return driver.body(*session, bytes(b)); }
  Verdict eom() {
    RecordingActions mta;
    return driver.eom(*session, mta);
  }
  // A whole message: headers "Name: value" lines, then body; returns the
  // first verdict that is not Continue (or the end-of-message one).
  Verdict message(const std::vector<std::pair<std::string, std::string>>& headers, const std::string& b,
                  std::initializer_list<std::string_view> rcpts = {"<u@example.net>"}) {
    if (auto v = mail({"<s@example.org>"}); !v.isContinue()) return v;
    for (auto r : rcpts) rcpt(r);
    for (const auto& [n, v] : headers) header(n, " " + v);
    if (auto v = eoh(); !v.isContinue()) return v;
    for (std::size_t i = 0; i < b.size(); i += 65535) body(std::string_view(b).substr(i, 65535));
    return eom();
  }
};

// conf/NAME.conf is exactly what `sekimori-NAME --defaults` prints, names
// every key, and parses without errors.
inline void expectShippedConf(Milter& m) {
  const std::string name(m.name());
  const auto schema = buildSchema(m);
  std::ifstream in(std::string(SEKIMORI_SOURCE_DIR) + "/conf/" + name + ".conf");
  ASSERT_TRUE(in) << "conf/" << name << ".conf missing";
  std::stringstream shipped;
  shipped << in.rdbuf();
  EXPECT_EQ(shipped.str(), schema.renderConf()) << "regenerate with: build/milters/" << name << "/sekimori-" << name
                                                << " --defaults > conf/" << name << ".conf";
  for (const auto& e : schema.entries()) {
    EXPECT_NE(shipped.str().find("\n" + e.name + " ="), std::string::npos) << e.key;
  }
  config::Errors errors;
  config::Values::parse(schema, shipped.str(), "conf/" + name + ".conf", errors);
  EXPECT_TRUE(errors.empty()) << errors.str();
}

}  // namespace sekimori::milter::testing
