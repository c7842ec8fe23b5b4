#include "common/policy/reply.h"

#include <gtest/gtest.h>

namespace sekimori::policy {
namespace {

TEST(Reply, ParsesValidReplies) {
  const auto r = Reply::parse("552 5.3.4 Message size exceeds fixed maximum message size");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->code, "552");
  EXPECT_EQ(r->xcode, "5.3.4");
  EXPECT_EQ(r->text, "Message size exceeds fixed maximum message size");
  EXPECT_FALSE(r->temporary());
  EXPECT_EQ(r->str(), "552 5.3.4 Message size exceeds fixed maximum message size");
  const auto t = Reply::parse("451 4.7.1 Service unavailable - try again later");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->temporary());
  EXPECT_TRUE(Reply::parse("550 5.123.999 ok with 100% certainty"));
}

TEST(Reply, RefusesInvalidReplies) {
  struct Case {
    const char* label;
    const char* text;
  };
  const Case cases[] = {
      {"2xx", "250 2.0.0 Ok"},
      {"no enhanced code", "552 Too big"},
      {"class mismatch", "552 4.3.4 Too big"},
      {"423 needs a 4.x.x code", "423 5.7.1 sorry"},
      {"no text", "552 5.3.4"},
      {"two-digit code", "55 5.3.4 x"},
      {"CR inside", "552 5.3.4 a\rb"},
      {"LF inside", "552 5.3.4 a\nb"},
      {"UTF-8", "552 5.3.4 \xE5\xA4\xA7\xE3\x81\x8D\xE3\x81\x84"},
      {"bad enhanced", "552 5.x.4 Too big"},
      {"enhanced too long", "552 5.3333.4 Too big"},
      {"empty", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    std::string err;
    EXPECT_FALSE(Reply::parse(c.text, &err));
    EXPECT_FALSE(err.empty());
  }
  EXPECT_FALSE(Reply::parse("552 5.3.4 " + std::string(401, 'a')));
  EXPECT_TRUE(Reply::parse("552 5.3.4 " + std::string(400, 'a')));
}

}  // namespace
}  // namespace sekimori::policy
