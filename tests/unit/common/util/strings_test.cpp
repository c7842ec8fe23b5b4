#include "common/util/strings.h"

#include <gtest/gtest.h>

namespace sekimori::util {
namespace {

TEST(Strings, TrimAndLower) {
  EXPECT_EQ(trim("  a b \t\r\n"), "a b");
  EXPECT_EQ(trim(""), "");
  EXPECT_EQ(toLowerAscii("Example.JP"), "example.jp");
  // Non-ASCII bytes are left untouched.
  EXPECT_EQ(toLowerAscii("\xE4\xBE\x8B.JP"), "\xE4\xBE\x8B.jp");
  EXPECT_TRUE(iequals("Received", "RECEIVED"));
  EXPECT_FALSE(iequals("Received", "Receive"));
  EXPECT_TRUE(istartsWith("Content-Type", "content-"));
}

TEST(Strings, SplitDropsEmptyPieces) {
  EXPECT_EQ(split("a, b ,,c ", ','), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(splitList("a, b  c,\td"), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_TRUE(splitList(" , ").empty());
}

TEST(Strings, SanitizeEscapesControlAndQuotes) {
  EXPECT_EQ(sanitize("ok"), "ok");
  EXPECT_EQ(sanitize(std::string_view("a\r\nb\0", 5)), "a\\x0d\\x0ab\\x00");
  EXPECT_EQ(sanitize("say \"hi\""), "say \\x22hi\\x22");
  EXPECT_EQ(sanitize("abcdef", 3), "abc...");
}

TEST(Strings, EscapeControlsKeepsEverythingElse) {
  EXPECT_EQ(escapeControls(std::string_view("a\r\n\x7f\0\"\xE4\xBE\x8B", 9)), "a\\x0d\\x0a\\x7f\\x00\"\xE4\xBE\x8B");
  EXPECT_TRUE(isAscii("Example.JP"));
  EXPECT_FALSE(isAscii("\xE4\xBE\x8B.jp"));
  EXPECT_TRUE(isControl('\t'));
  EXPECT_FALSE(isControl(' '));
}

}  // namespace
}  // namespace sekimori::util
