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

// clamd.conf's "0 = no limit" does not carry over: a zero size would make
// every message limits_exceeded_action; a scan time past the watchdog's
// would make a slow message tempfail at every retry.
TEST(AntivirusConf, LimitsHaveNoZeroAndStayInsideEachOther) {
  AntivirusMilter m;
  const auto schema = milter::buildSchema(m);
  const auto check = [&](const std::string& engine) {
    config::Errors errors;
    // Beside the shipped templates, which template_dir defaults to.
    const auto values =
        config::Values::parse(schema, "[engine]\n" + engine, std::string(SEKIMORI_SOURCE_DIR) + "/conf/av.conf", errors);
    m.configure(values, errors, false);
    return errors.str();
  };
  EXPECT_EQ(check("max_scan_size = 100M\nmax_file_size = 100M\nmax_files = 1\nmax_scan_time = 1s\n"
                  "max_scan_memory = 64M\n"),
            "");
  std::string text =
      check("max_scan_size = 0\nmax_file_size = 0\nmax_files = 0\nmax_scan_time = 0s\nmax_scan_memory = 0\n");
  EXPECT_NE(text.find("av.conf:2: max_scan_size: must be between 1M and 2046M"), std::string::npos) << text;
  EXPECT_NE(text.find("av.conf:3: max_file_size: must be between 1K and max_scan_size (0)"), std::string::npos) << text;
  EXPECT_NE(text.find("av.conf:4: max_files: must be at least 1"), std::string::npos) << text;
  EXPECT_NE(text.find("av.conf:5: max_scan_time: must be at least 1s and shorter than scan_timeout (2m)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("av.conf:6: max_scan_memory: must be at least 64M"), std::string::npos) << text;
  text = check("max_scan_size = 2047M\nmax_file_size = 20M\nscan_timeout = 30s\nmax_scan_time = 30s\n");
  EXPECT_NE(text.find("av.conf:2: max_scan_size: must be between 1M and 2046M"), std::string::npos) << text;
  EXPECT_NE(text.find("av.conf:5: max_scan_time: must be at least 1s and shorter than scan_timeout (30s)"),
            std::string::npos)
      << text;
  text = check("max_scan_size = 10M\nmax_file_size = 25M\nscan_timeout = 0s\n");
  EXPECT_NE(text.find("av.conf:3: max_file_size: must be between 1K and max_scan_size (10M)"), std::string::npos)
      << text;
  EXPECT_NE(text.find("av.conf:4: scan_timeout: must be at least 1s"), std::string::npos) << text;
}

}  // namespace
}  // namespace sekimori::antivirus
