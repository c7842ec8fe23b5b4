#include "common/config/values.h"

#include <gtest/gtest.h>

namespace sekimori::config {
namespace {

using policy::Direction;

const Option<Bytes> kSize{"limits.max_message_size", Bytes{20 * 1024 * 1024}, "Largest message.", Scope::Overridable};
const Option<Count> kHops{"limits.max_received_headers", Count{50}, "Most Received: headers."};
const Option<bool> kPartial{"limits.reject_partial", true, "Refuse message/partial."};
const Option<Duration> kWindow{"limits.window", Duration{std::chrono::seconds(300)}, "Window."};
const Option<std::string> kOnError{"milter.on_error", "tempfail", "On error.", Scope::Global,
                                   {"tempfail", "accept", "reject"}};
const Option<policy::Reply> kReply{"replies.size",
                                   policy::Reply{"552", "5.3.4", "Message size exceeds fixed maximum message size"},
                                   "Size reply."};

Schema schema() {
  Schema s("test");
  s.section("milter", "The daemon.");
  s.add(kOnError);
  s.section("limits", "Limits.");
  s.add(kSize);
  s.add(kHops);
  s.add(kPartial);
  s.add(kWindow);
  s.section("replies", "Replies.");
  s.add(kReply);
  return s;
}

TEST(Values, DefaultsWhenUnset) {
  const Schema s = schema();
  Errors errors;
  const Values v = Values::parse(s, "", "t.conf", errors);
  ASSERT_TRUE(errors.empty()) << errors.str();
  EXPECT_EQ(v.get(kSize).value, 20971520u);
  EXPECT_EQ(v.get(kHops).value, 50u);
  EXPECT_TRUE(v.get(kPartial));
  EXPECT_EQ(v.get(kOnError), "tempfail");
  EXPECT_EQ(v.get(kReply).code, "552");
}

TEST(Values, ReadsTypedValuesWithHashesInsideValues) {
  const Schema s = schema();
  Errors errors;
  const Values v = Values::parse(s,
                                 "# comment\n"
                                 "; another\n"
                                 "[limits]\n"
                                 "max_message_size = 30MB\n"
                                 "MAX_RECEIVED_HEADERS=10\n"
                                 "reject_partial = no\n"
                                 "window = 2h\n"
                                 "[replies]\n"
                                 "size = 552 5.3.4 Too big # really\n"
                                 "[milter]\n"
                                 "on_error = accept\n",
                                 "t.conf", errors);
  ASSERT_TRUE(errors.empty()) << errors.str();
  EXPECT_EQ(v.get(kSize).value, 30000000u);
  EXPECT_EQ(v.get(kHops).value, 10u);
  EXPECT_FALSE(v.get(kPartial));
  EXPECT_EQ(v.get(kWindow).value, std::chrono::hours(2));
  EXPECT_EQ(v.get(kReply).text, "Too big # really");
  EXPECT_EQ(v.get(kOnError), "accept");
  EXPECT_EQ(v.where("limits.window"), "t.conf:7");
  EXPECT_EQ(v.where("limits.reject_partial"), "t.conf:6");
}

TEST(Values, IndentedLinesContinueAValue) {
  Schema s("test");
  const Option<std::string> list{"policy.local_domains", "", "Domains."};
  s.add(list);
  Errors errors;
  const Values v = Values::parse(s, "[policy]\nlocal_domains = a.example,\n   b.example\n\tc.example\n", "t", errors);
  ASSERT_TRUE(errors.empty()) << errors.str();
  EXPECT_EQ(v.get(list), "a.example, b.example c.example");
}

TEST(Values, EveryErrorHasFileAndLine) {
  const Schema s = schema();
  struct Case {
    const char* label;
    const char* text;
    const char* want;  // the whole first error
  };
  const Case cases[] = {
      {"bad size", "[limits]\nmax_message_size = lots\n", "t.conf:2: max_message_size: not a size"},
      {"negative count", "[limits]\n\nmax_received_headers = -1\n", "t.conf:3: max_received_headers: not a whole number: '-1'"},
      {"bad bool", "[limits]\nreject_partial = perhaps\n",
       "t.conf:2: reject_partial: invalid value 'perhaps' (expected yes|no)"},
      // Boost's message template loops forever on its own placeholder.
      {"placeholder in a bad bool", "[limits]\nreject_partial = %value%\n",
       "t.conf:2: reject_partial: invalid value '%value%' (expected yes|no)"},
      {"unknown key", "[limits]\nmax_mesage_size = 1M\n", "t.conf:2: unknown key 'max_mesage_size' in [limits]"},
      {"unknown section", "[limts]\n", "t.conf:1: unknown section [limts]"},
      {"before section", "max_message_size = 1M\n", "t.conf:1: setting before the first [section]"},
      {"no equals", "[limits]\nmax_message_size 1M\n", "t.conf:2: expected 'key = value'"},
      {"twice", "[limits]\nmax_message_size = 1M\nmax_message_size = 2M\n",
       "t.conf:3: 'max_message_size' set twice in [limits] (first at line 2)"},
      {"bad choice", "[milter]\non_error = explode\n", "t.conf:2: on_error: 'explode' is not one of tempfail|accept|reject"},
      {"reply class", "[replies]\nsize = 552 4.3.4 Too big\n", "t.conf:2: size: enhanced code 4.3.4 does not match"},
      {"reply code", "[replies]\nsize = 250 2.0.0 fine\n", "t.conf:2: size: reply must start with a 4xx or 5xx code"},
      {"not overridable", "[outbound]\nmax_received_headers = 3\n",
       "t.conf:2: 'max_received_headers' cannot be overridden in [outbound]"},
      {"domain without name", "[domain ]\n", "t.conf:1: [domain NAME] needs one domain name"},
      {"control characters in a value", "[limits]\nmax_message_size = \x7f\x1b[2J10M\n",
       "t.conf:2: max_message_size: not a size (e.g. 20971520, 20M, 20MiB, 30MB): '\\x7f\\x1b[2J10M'"},
      {"control character in domain", "[domain a\x01" "b]\n", "t.conf:1: [domain NAME] needs one domain name, got 'a\\x01b'"},
      {"domain IDNA refuses", "[domain \xF0\x9F\x98\x80.jp]\n",
       "t.conf:1: [domain \\xf0\\x9f\\x98\\x80.jp]: not a valid internationalized domain name"},
      {"one domain in two spellings", "[domain xn--r8jz45g.jp]\n[domain \xE4\xBE\x8B\xE3\x81\x88.jp]\n",
       "t.conf:2: section [domain xn--r8jz45g.jp] appears twice (here as [domain \xE4\xBE\x8B\xE3\x81\x88.jp])"},
      {"unclosed section", "[limits\n", "t.conf:1: section header without closing ']'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    Errors errors;
    Values::parse(s, c.text, "t.conf", errors);
    ASSERT_FALSE(errors.empty());
    EXPECT_EQ(errors.list().front().str().rfind(c.want, 0), 0u) << errors.list().front().str();
  }
}

TEST(Values, ReportsEveryErrorNotJustTheFirst) {
  const Schema s = schema();
  Errors errors;
  Values::parse(s, "[limits]\nmax_message_size = x\nmax_received_headers = y\n[nope]\n", "t.conf", errors);
  EXPECT_EQ(errors.list().size(), 3u) << errors.str();
}

TEST(Values, LayeredOverridesMostSpecificWins) {
  const Schema s = schema();
  Errors errors;
  const Values v = Values::parse(s,
                                 "[limits]\nmax_message_size = 20M\n"
                                 "[outbound]\nmax_message_size = 25MB\n"
                                 "[Domain Example.JP]\nmax_message_size = 150MB\n",
                                 "t.conf", errors);
  ASSERT_TRUE(errors.empty()) << errors.str();
  const auto l = v.layered(kSize);
  EXPECT_EQ(l.get(Direction::Inbound, "other.example").value, 20971520u);
  EXPECT_EQ(l.get(Direction::Outbound, "other.example").value, 25000000u);
  EXPECT_EQ(l.get(Direction::Internal, "").value, 20971520u);
  EXPECT_EQ(l.get(Direction::Inbound, "example.jp").value, 150000000u);
  EXPECT_EQ(l.get(Direction::Outbound, "EXAMPLE.jp").value, 150000000u);
  const auto inbound = l.candidates(Direction::Inbound);
  EXPECT_EQ(inbound.size(), 2u);
}

TEST(Values, DomainSectionMatchesTheDomainInAnySpelling) {
  const Schema s = schema();
  Errors errors;
  const Values v = Values::parse(s,
                                 "[limits]\nmax_message_size = 20M\n"
                                 "[domain \xE4\xBE\x8B\xE3\x81\x88.jp.]\nmax_message_size = 150MB\n",  // 例え.jp.
                                 "t.conf", errors);
  ASSERT_TRUE(errors.empty()) << errors.str();
  const auto l = v.layered(kSize);
  EXPECT_EQ(l.get(Direction::Inbound, "xn--r8jz45g.jp").value, 150000000u);
  EXPECT_EQ(l.get(Direction::Inbound, "\xE4\xBE\x8B\xE3\x81\x88.JP").value, 150000000u);
  EXPECT_EQ(l.get(Direction::Inbound, "example.jp").value, 20971520u);
}

TEST(Values, CommandLineOverride) {
  const Schema s = schema();
  Errors errors;
  Values v = Values::parse(s, "[limits]\nmax_message_size = 1M\n", "t.conf", errors);
  EXPECT_TRUE(v.set("limits.max_message_size", "2M", errors));
  EXPECT_EQ(v.get(kSize).value, 2u << 20);
  EXPECT_EQ(v.where("limits.max_message_size"), "command line");
  EXPECT_FALSE(v.set("limits.max_message_size", "two", errors));
  EXPECT_FALSE(v.set("nope.key", "1", errors));
}

TEST(Values, MissingFileIsAnError) {
  const Schema s = schema();
  Errors errors;
  Values::load(s, "/nonexistent/sekimori.conf", errors);
  ASSERT_EQ(errors.list().size(), 1u);
  EXPECT_EQ(errors.list()[0].str().rfind("/nonexistent/sekimori.conf: cannot read", 0), 0u);
}

TEST(Schema, RendersEveryKeyWithItsDefault) {
  const Schema s = schema();
  const std::string conf = s.renderConf();
  EXPECT_NE(conf.find("[limits]\n"), std::string::npos);
  EXPECT_NE(conf.find("\nmax_message_size = 20M\n"), std::string::npos);
  EXPECT_NE(conf.find("\nsize = 552 5.3.4 Message size exceeds fixed maximum message size\n"), std::string::npos);
  EXPECT_NE(conf.find("Overridable per direction and domain."), std::string::npos);
  // What it renders parses back to the defaults.
  Errors errors;
  const Values v = Values::parse(s, conf, "rendered", errors);
  EXPECT_TRUE(errors.empty()) << errors.str();
  EXPECT_EQ(v.get(kSize).value, kSize.defaultValue.value);
}

}  // namespace
}  // namespace sekimori::config
