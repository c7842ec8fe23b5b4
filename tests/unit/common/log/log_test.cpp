#include "common/log/log.h"

#include <gtest/gtest.h>

namespace sekimori::log {
namespace {

TEST(Log, QueueIdFirstThenKeyValues) {
  const auto line = Line("4Xk2Lb1rTz").kv("milter", "sizelimit").kv("action", "reject").kv("size", std::uint64_t{22020096});
  EXPECT_EQ(line.text(), "4Xk2Lb1rTz: milter=sizelimit action=reject size=22020096");
}

TEST(Log, NoQueueIdIsNoqueue) { EXPECT_EQ(Line("").kv("a", "b").text(), "NOQUEUE: a=b"); }

TEST(Log, WireDataIsSanitisedAndQuoted) {
  const auto line = Line("Q").kv("reply", "552 5.3.4 Too big").kv("from", "<a\r\nX-Evil: 1@b>").kv("empty", "");
  EXPECT_EQ(line.text().find('\r'), std::string::npos);
  EXPECT_EQ(line.text().find('\n'), std::string::npos);
  EXPECT_NE(line.text().find("reply=\"552 5.3.4 Too big\""), std::string::npos);
  EXPECT_NE(line.text().find("empty=\"\""), std::string::npos);
  // UTF-8 stays readable; a right-to-left override does not.
  EXPECT_EQ(Line("Q").kv("to", "山田@example.jp").kv("file", "evil\xE2\x80\xAEgpj.exe").text(),
            "Q: to=山田@example.jp file=evil\\xe2\\x80\\xaegpj.exe");
  // A % is data, never a format.
  EXPECT_NE(Line("Q").kv("subject", "100%s %n").text().find("100%s"), std::string::npos);
}

TEST(Log, LevelNames) {
  Level l = Level::Info;
  EXPECT_TRUE(parseLevel("debug", l));
  EXPECT_EQ(l, Level::Debug);
  EXPECT_TRUE(parseLevel("WARNING", l));
  EXPECT_EQ(l, Level::Warning);
  EXPECT_FALSE(parseLevel("loud", l));
}

}  // namespace
}  // namespace sekimori::log
