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

TEST(Strings, SplitFieldsKeepsEmptyFieldsAsTheyAre) {
  EXPECT_EQ(splitFields("a\t\t b \t", '\t'), (std::vector<std::string>{"a", "", " b ", ""}));
  EXPECT_EQ(splitFields("", '\t'), (std::vector<std::string>{""}));
}

TEST(Strings, SanitizeEscapesControlAndQuotes) {
  EXPECT_EQ(sanitize("ok"), "ok");
  EXPECT_EQ(sanitize(std::string_view("a\r\nb\0", 5)), "a\\x0d\\x0ab\\x00");
  EXPECT_EQ(sanitize("say \"hi\""), "say \\x22hi\\x22");
  EXPECT_EQ(sanitize("abcdef", 3), "abc...");
}

TEST(Strings, Utf8LengthAndRepair) {
  EXPECT_EQ(utf8Length("a", 0), 1u);
  EXPECT_EQ(utf8Length("\xC3\xA9", 0), 2u);           // é
  EXPECT_EQ(utf8Length("\xE5\xB1\xB1", 0), 3u);       // 山
  EXPECT_EQ(utf8Length("\xF0\x9F\x98\x80", 0), 4u);   // U+1F600
  EXPECT_EQ(utf8Length("\xE5\xB1", 0), 0u);           // cut
  EXPECT_EQ(utf8Length("\xC0\xAF", 0), 0u);           // overlong '/'
  EXPECT_EQ(utf8Length("\xED\xA0\x80", 0), 0u);       // surrogate
  EXPECT_EQ(utf8Length("\xF4\x90\x80\x80", 0), 0u);   // above U+10FFFF
  EXPECT_EQ(utf8Length("\x80", 0), 0u);
  EXPECT_TRUE(isValidUtf8("山田 a"));
  EXPECT_FALSE(isValidUtf8("a\xFF"));
  EXPECT_EQ(repairUtf8("a\xFF\xE5\xB1" "b"), "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b");
}

TEST(Strings, SanitizeTextKeepsReadableUtf8Only) {
  EXPECT_EQ(sanitizeText("to=山田@example.jp 会議"), "to=山田@example.jp 会議");
  EXPECT_EQ(sanitizeText(std::string_view("a\r\nb\0\"", 6)), "a\\x0d\\x0ab\\x00\\x22");
  EXPECT_EQ(sanitizeText("bad \xFF\xE5\xB1"), "bad \\xff\\xe5\\xb1");
  // Characters that could make a line read other than it is.
  EXPECT_EQ(sanitizeText("x\xC2\x85y"), "x\\xc2\\x85y");                          // NEL (C1)
  EXPECT_EQ(sanitizeText("evil\xE2\x80\xAEgpj.exe"), "evil\\xe2\\x80\\xaegpj.exe");  // RIGHT-TO-LEFT OVERRIDE
  EXPECT_EQ(sanitizeText("a\xE2\x80\xA8" "b"), "a\\xe2\\x80\\xa8b");                  // LINE SEPARATOR
  EXPECT_EQ(sanitizeText("\xE2\x81\xA6x"), "\\xe2\\x81\\xa6x");                      // LEFT-TO-RIGHT ISOLATE
  EXPECT_EQ(sanitizeText("\xEF\xBB\xBFx"), "\\xef\\xbb\\xbfx");                      // BOM
  EXPECT_EQ(sanitizeText("\xE2\x80\x94"), "\xE2\x80\x94");                           // EM DASH is fine
  // Cut at `max` bytes, never inside a character.
  EXPECT_EQ(sanitizeText("山田太郎", 7), "山田...");
  EXPECT_EQ(sanitizeText("ab\x01", 5), "ab...");
}

TEST(Strings, DisplayTextKeepsQuotesNotLineBreaks) {
  EXPECT_EQ(displayText("Re: \"見積書\" C:\\tmp"), "Re: \"見積書\" C:\\tmp");
  EXPECT_EQ(displayText("a.exe\r\nscanned: clean"), "a.exe\\x0d\\x0ascanned: clean");
  EXPECT_EQ(displayText("evil\xE2\x80\xAEgpj.exe"), "evil\\xe2\\x80\\xaegpj.exe");
  EXPECT_EQ(displayText("x\xC2\x85y\xFF"), "x\\xc2\\x85y\\xff");
  EXPECT_EQ(displayText("山田太郎", 7), "山田...");
}

TEST(Strings, EscapeControlsKeepsEverythingElse) {
  EXPECT_EQ(escapeControls(std::string_view("a\r\n\x7f\0\"\xE4\xBE\x8B", 9)), "a\\x0d\\x0a\\x7f\\x00\"\xE4\xBE\x8B");
  EXPECT_TRUE(isAscii("Example.JP"));
  EXPECT_FALSE(isAscii("\xE4\xBE\x8B.jp"));
  EXPECT_TRUE(isControl('\t'));
  EXPECT_FALSE(isControl(' '));
}

TEST(Strings, PercentAndBase64DecodeForgivingly) {
  EXPECT_EQ(hexValue('7'), 7);
  EXPECT_EQ(hexValue('c'), 12);
  EXPECT_EQ(hexValue('F'), 15);
  EXPECT_EQ(hexValue('g'), -1);
  EXPECT_EQ(percentDecode("%3Cscript%3e%20x"), "<script> x");
  EXPECT_EQ(percentDecode("100% %4 %zz %"), "100% %4 %zz %");
  EXPECT_EQ(decodeBase64Lenient("PHNjcmlwdD4="), "<script>");
  EXPECT_EQ(decodeBase64Lenient("PHNj\r\ncmlw dD4"), "<script>");  // breaks and blanks skipped, no padding
  EXPECT_EQ(decodeBase64Lenient("YQ==YWJj"), "a");                 // stops at padding
  EXPECT_EQ(decodeBase64Lenient(""), "");
}

TEST(Strings, Base64EncodesAsRfc4648) {
  // Its test vectors, and back.
  const char* vectors[][2] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                              {"foo", "Zm9v"},   {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
                              {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(encodeBase64(plain), encoded);
    EXPECT_EQ(decodeBase64Lenient(encoded), plain);
  }
  EXPECT_EQ(encodeBase64(std::string("\xFF\xFE\x00", 3)), "//4A");
}

}  // namespace
}  // namespace sekimori::util
