#include "common/config/units.h"

#include <gtest/gtest.h>

namespace sekimori::config {
namespace {

TEST(Units, ParsesSizes) {
  struct Case {
    const char* label;
    const char* text;
    std::uint64_t want;
  };
  const Case cases[] = {
      {"plain bytes", "20971520", 20971520},
      {"binary M", "20M", 20971520},
      {"binary MiB", "20MiB", 20971520},
      {"lowercase mib", "20mib", 20971520},
      {"decimal MB", "30MB", 30000000},
      {"kilo", "64k", 65536},
      {"KB decimal", "64KB", 64000},
      {"giga", "1G", 1073741824ULL},
      {"space before unit", "150 M", 150ULL << 20},
      {"surrounding blanks", "  7  ", 7},
      {"zero", "0", 0},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    std::string err;
    const auto b = parseBytes(c.text, &err);
    ASSERT_TRUE(b) << err;
    EXPECT_EQ(b->value, c.want);
  }
}

TEST(Units, RefusesBadSizesWithAReason) {
  const char* bad[] = {"", "M", "-1", "20X", "1.5M", "99999999999999999999", "18446744073709551615G"};
  for (const char* text : bad) {
    SCOPED_TRACE(text);
    std::string err;
    EXPECT_FALSE(parseBytes(text, &err));
    EXPECT_FALSE(err.empty());
  }
}

TEST(Units, ParsesDurations) {
  struct Case {
    const char* text;
    long long ms;
  };
  const Case cases[] = {{"300", 300000},   {"30s", 30000},    {"5m", 300000},       {"2h", 7200000},
                        {"1d", 86400000}, {"1w", 604800000}, {"500ms", 500}, {"0", 0}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    const auto d = parseDuration(c.text);
    ASSERT_TRUE(d);
    EXPECT_EQ(d->value.count(), c.ms);
  }
  EXPECT_FALSE(parseDuration("5 minutes please"));
  EXPECT_FALSE(parseDuration("-5m"));
}

TEST(Units, FormatsTheShortestExactSpelling) {
  EXPECT_EQ(formatBytes(Bytes{20971520}), "20M");
  EXPECT_EQ(formatBytes(Bytes{30000000}), "30MB");
  EXPECT_EQ(formatBytes(Bytes{1000}), "1000");
  EXPECT_EQ(formatBytes(Bytes{4096}), "4k");
  EXPECT_EQ(formatBytes(Bytes{0}), "0");
  EXPECT_EQ(formatDuration(Duration{std::chrono::seconds(300)}), "5m");
  EXPECT_EQ(formatDuration(Duration{std::chrono::seconds(7200)}), "2h");
  EXPECT_EQ(formatDuration(Duration{std::chrono::seconds(90)}), "90s");
  EXPECT_EQ(formatDuration(Duration{std::chrono::milliseconds(1500)}), "1500ms");
  EXPECT_EQ(formatDuration(Duration{std::chrono::milliseconds(0)}), "0s");
  // Round trip.
  for (std::uint64_t v : {1ULL, 1023ULL, 1024ULL, 20971520ULL, 150000000ULL}) {
    EXPECT_EQ(parseBytes(formatBytes(Bytes{v}))->value, v);
  }
}

}  // namespace
}  // namespace sekimori::config
