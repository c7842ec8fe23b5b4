#include "milters/antivirus/antivirus_milter.h"

#include <gtest/gtest.h>

#include "tests/unit/common/milter/fakes.h"

namespace sekimori::antivirus {
namespace {

TEST(AntivirusConf, ShippedConfIsTheGeneratedOne) {
  AntivirusMilter m;
  milter::testing::expectShippedConf(m);
}

TEST(AntivirusConf, BadValuesAreRefusedWithLines) {
  AntivirusMilter m;
  const auto schema = milter::buildSchema(m);
  config::Errors errors;
  const auto values = config::Values::parse(
      schema,
      "[engine]\nmax_recursion = 0\n[notify]\nadmin = a@example.jp, b@example.jp\ntemplate_dir = /nonexistent\n"
      "[replies]\nscan_failure = 554 5.7.1 no\n[notify]\nretry_after = 500ms\nspool_dir = var/outbox\n",
      "bad.conf", errors);
  EXPECT_FALSE(m.configure(values, errors, false));
  const std::string text = errors.str();
  EXPECT_NE(text.find("bad.conf:2: max_recursion: must be between 1 and 64"), std::string::npos) << text;
  // One address, checked as the warning mails will use it (not a list).
  EXPECT_NE(text.find("bad.conf:4: admin: invalid address <a@example.jp, b@example.jp>"), std::string::npos) << text;
  EXPECT_NE(text.find("bad.conf:5: template_dir: cannot read template /nonexistent/antivirus-warning.ja.txt"), std::string::npos)
      << text;
  EXPECT_NE(text.find("bad.conf:7: scan_failure: must be a 4xx reply"), std::string::npos) << text;
  // A retry every few milliseconds would hammer a relay that is down.
  EXPECT_NE(text.find("bad.conf:9: retry_after: must be at least 1s"), std::string::npos) << text;
  EXPECT_NE(text.find("bad.conf:10: spool_dir: must be an absolute path"), std::string::npos) << text;
}

}  // namespace
}  // namespace sekimori::antivirus
