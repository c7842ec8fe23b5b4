// tests/unit/common/mime/text_test.cpp — common/mime/text.cpp: charsets,
// RFC 2047 words and RFC 2231 parameters as Japanese mailers write them.
#include "common/mime/text.h"

#include <gtest/gtest.h>

#include <string>

namespace sekimori::mime {
namespace {

struct Case {
  const char* label;
  std::string in;
  std::string want;
};

TEST(Text, DecodeHeader) {
  const Case cases[] = {
      {"plain ascii", "Hello world", "Hello world"},
      {"utf-8 base64", "=?UTF-8?B?5pel5pys6Kqe?=", "日本語"},
      {"q with underscore", "=?iso-8859-1?q?caf=E9_au_lait?=", "café au lait"},
      {"text around words", "Re: =?UTF-8?B?5pel5pys6Kqe?= (fwd)", "Re: 日本語 (fwd)"},
      {"space between words dropped", "=?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab"},
      {"folded between words", "=?UTF-8?Q?a?=\r\n =?UTF-8?Q?b?=", "ab"},
      {"character split across words", "=?UTF-8?B?5pel5g==?= =?UTF-8?B?nKzoqp4=?=", "日本語"},
      {"iso-2022-jp with NEC row 13", "=?ISO-2022-JP?B?GyRCMnE1RC0hJE4kKkNOJGkkOxsoQg==?=", "会議①のお知らせ"},
      {"lowercase charset", "=?iso-2022-jp?b?GyRCMnE1RC0hJE4kKkNOJGkkOxsoQg==?=", "会議①のお知らせ"},
      {"shift_jis as cp932", "=?Shift_JIS?B?jKmQz4+Rh0CBYC54bHN4?=", "見積書①～.xlsx"},
      {"euc-jp", "=?EUC-JP?B?uKvA0b3xLnhsc3g=?=", "見積書.xlsx"},
      {"charset with language", "=?UTF-8*ja?B?5pel5pys6Kqe?=", "日本語"},
      {"word glued to text", "=?UTF-8?B?5pel5pys6Kqe?=.txt", "日本語.txt"},
      {"bad base64 characters skipped", "=?UTF-8?B?5pel!!5pys6Kqe?=", "日本語"},
      {"not a word", "=?broken and 50% =? off", "=?broken and 50% =? off"},
      {"raw shift_jis", "\x8C\xA9\x90\xCF\x8F\x91\x87@\x81`.xlsx", "見積書①～.xlsx"},
      {"raw euc-jp", "\xB8\xAB\xC0\xD1\xBD\xF1.xlsx", "見積書.xlsx"},
      {"raw iso-2022-jp", "\x1B$B8+@Q=q\x1B(B.xlsx", "見積書.xlsx"},
      {"raw utf-8", "日本語", "日本語"},
      {"half-width katakana", "\x1B(I123\x1B(B", "ｱｲｳ"},
      {"unknown charset guessed", "=?x-nonsense?B?5pel5pys6Kqe?=", "日本語"},
      {"empty", "", ""},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(decodeHeader(c.in), c.want) << c.label;
  }
}

TEST(Text, HeaderParameter) {
  const Case cases[] = {
      {"quoted", "attachment; filename=\"report 1.pdf\"", "report 1.pdf"},
      {"bare token", "attachment; filename=report.pdf", "report.pdf"},
      {"escaped quote", "attachment; filename=\"a\\\"b.txt\"", "a\"b.txt"},
      {"case-insensitive name", "attachment; FileName=\"x.txt\"", "x.txt"},
      {"rfc 2047 inside quotes", "attachment; filename=\"=?ISO-2022-JP?B?GyRCMnE1RC0hJE4kKkNOJGkkOxsoQg==?=.doc\"",
       "会議①のお知らせ.doc"},
      {"rfc 2231 utf-8", "attachment; filename*=UTF-8''%E6%97%A5%E6%9C%AC%E8%AA%9E.txt", "日本語.txt"},
      {"rfc 2231 iso-2022-jp", "attachment; filename*=ISO-2022-JP''%1B%24B8%2B%40Q%3Dq-%21%21A%1B%28B.xlsx",
       "見積書①～.xlsx"},
      {"rfc 2231 shift_jis with language", "attachment; filename*=shift_jis'ja'%8C%A9%90%CF%8F%91%87%40%81%60.xlsx",
       "見積書①～.xlsx"},
      {"rfc 2231 continuations, folded and out of order",
       "attachment;\r\n filename*1*=%9C%AC%E8%AA%9E%E3%81%AE%E3%83%95%E3%82%A1%E3%82%A4%E3%83%AB%E5%90%8D%E3%81%A7%E3%81%99."
       "pdf;\r\n filename*0*=UTF-8''%E9%95%B7%E3%81%84%E6%97%A5%E6",
       "長い日本語のファイル名です.pdf"},
      {"continuation pieces plain", "attachment; filename*0=\"long\"; filename*1=\"name.txt\"", "longname.txt"},
      {"rfc 2231 wins over plain", "attachment; filename=\"fallback.txt\"; filename*=UTF-8''real.txt", "real.txt"},
      {"raw shift_jis bytes", "attachment; filename=\"\x8C\xA9\x90\xCF\x8F\x91\x87@\x81`.xlsx\"", "見積書①～.xlsx"},
      {"raw iso-2022-jp bytes", "attachment; filename=\"\x1B$B8+@Q=q\x1B(B.xlsx\"", "見積書.xlsx"},
      {"loose token up to semicolon", "attachment; filename=my file.txt; size=3", "my file.txt"},
      {"content-type name", "application/octet-stream; name=\"a.zip\"", "a.zip"},
  };
  for (const Case& c : cases) {
    const char* name = std::string_view(c.label) == "content-type name" ? "name" : "filename";
    const auto got = headerParameter(c.in, name);
    ASSERT_TRUE(got.has_value()) << c.label;
    EXPECT_EQ(*got, c.want) << c.label;
  }
}

TEST(Text, HeaderParameterAbsent) {
  EXPECT_FALSE(headerParameter("attachment", "filename"));
  EXPECT_FALSE(headerParameter("attachment; name=\"x\"", "filename"));
  // "filename" is not a continuation of "name".
  EXPECT_FALSE(headerParameter("application/x; filename=\"x\"", "name"));
  EXPECT_FALSE(headerParameter("text/plain; charset=\"us-ascii\"", "filename"));
  EXPECT_EQ(headerParameter("text/plain; charset=\"us-ascii\"", "charset"), "us-ascii");
}

TEST(Text, ToUtf8NeverFails) {
  const std::string fffd = "\xEF\xBF\xBD";
  EXPECT_EQ(toUtf8("caf\xE9", "ISO-8859-1"), "café");
  EXPECT_EQ(toUtf8("a\xFF" "b", "utf-8"), "a" + fffd + "b");
  EXPECT_EQ(toUtf8("\x8C\xA9", "SJIS"), "見");
  EXPECT_EQ(toUtf8("\x8C", "shift_jis"), fffd);             // truncated pair
  EXPECT_EQ(toUtf8("\x1B$B8", "iso-2022-jp"), fffd);        // odd byte in a kanji run
  EXPECT_EQ(toUtf8("\x1B$(DB!", "iso-2022-jp-2"), fffd);    // JIS X 0212: no mapping
  EXPECT_EQ(toUtf8("abc", "x-no-such-charset"), "abc");
  EXPECT_EQ(toUtf8("\xC4\xE3\xBA\xC3", "gb2312"), "你好");  // iconv for everything else
}

}  // namespace
}  // namespace sekimori::mime
