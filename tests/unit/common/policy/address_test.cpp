#include "common/policy/address.h"

#include <gtest/gtest.h>

#include <string>

namespace sekimori::policy {
namespace {

TEST(Address, ParsesEnvelopeForms) {
  struct Case {
    const char* label;
    std::string text;
    std::string local;
    std::string domain;
  };
  const Case cases[] = {
      {"bracketed", "<a@example.jp>", "a", "example.jp"},
      {"bare (macro form)", "a@example.jp", "a", "example.jp"},
      {"local case kept, domain lowered", "<Alice@Example.JP>", "Alice", "example.jp"},
      {"trailing dot dropped", "<a@example.jp.>", "a", "example.jp"},
      {"whitespace around", "  <a@example.jp>  ", "a", "example.jp"},
      {"whitespace inside brackets", "< a@example.jp >", "a", "example.jp"},
      {"source route dropped", "<@relay1.example,@relay2.example:a@example.jp>", "a", "example.jp"},
      {"single-hop route", "<@relay.example:a@example.jp>", "a", "example.jp"},
      {"white space after the route's colon", "<@relay.example:  a@example.jp>", "a", "example.jp"},
      {"no domain after '@', white space before it", "<postmaster @>", "postmaster", ""},
      {"white space and dots mixed at the end", "<a@example.jp\v.>", "a", "example.jp"},
      {"quoted local part with space", "\"a b\"@example.jp", "\"a b\"", "example.jp"},
      {"quoted local part bracketed", "<\"a b\"@example.jp>", "\"a b\"", "example.jp"},
      {"'@' inside quotes", "<\"a@b\"@example.jp>", "\"a@b\"", "example.jp"},
      {"'<>' inside quotes", "<\"<odd>\"@example.jp>", "\"<odd>\"", "example.jp"},
      {"escaped quote inside quotes", "<\"a\\\"b\"@example.jp>", "\"a\\\"b\"", "example.jp"},
      {"local part ends at last '@'", "a@b@example.jp", "a@b", "example.jp"},
      {"no domain (postmaster)", "<postmaster>", "postmaster", ""},
      {"'@' quoted, no domain", "<\"a@b\">", "\"a@b\"", ""},
      {"UTF-8 IDN to A-labels", "<u@\xE4\xBE\x8B\xE3\x81\x88.JP>", "u", "xn--r8jz45g.jp"},  // 例え.JP
      {"IDN that IDNA refuses left as is", "<u@\xF0\x9F\x98\x80.JP>", "u", "\xF0\x9F\x98\x80.jp"},  // emoji
      {"full-width '@' in the domain is not an '@'", "<u@x\xEF\xBC\xA0\xE4\xBE\x8B.jp>", "u",
       "x\xEF\xBC\xA0\xE4\xBE\x8B.jp"},
      {"A-label IDN lowered only", "<u@XN--R8JZ45G.jp>", "u", "xn--r8jz45g.jp"},
      {"UTF-8 local part kept", "<\xE5\xA4\xAA\xE9\x83\x8E@example.jp>", "\xE5\xA4\xAA\xE9\x83\x8E", "example.jp"},
      {"address literal", "<a@[192.0.2.1]>", "a", "[192.0.2.1]"},
      {"exactly 1024 bytes inside the brackets", "<" + std::string(1024 - 11, 'x') + "@example.jp>",
       std::string(1024 - 11, 'x'), "example.jp"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const auto a = parseAddress(c.text);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->local, c.local);
    EXPECT_EQ(a->domain, c.domain);
    EXPECT_FALSE(a->isNull());
  }
}

TEST(Address, BracketedIsTheEnvelopeForm) {
  EXPECT_EQ(parseAddress("Alice@Example.JP")->bracketed(), "<Alice@example.jp>");
  EXPECT_EQ(parseAddress("<>")->bracketed(), "<>");
}

TEST(Address, NullSender) {
  struct Case {
    const char* label;
    const char* text;
  };
  const Case cases[] = {
      {"angle brackets", "<>"},
      {"empty macro", ""},
      {"spaces inside", "< >"},
      {"only whitespace", "  "},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const auto a = parseAddress(c.text);
    ASSERT_TRUE(a.has_value());
    EXPECT_TRUE(a->isNull());
    EXPECT_EQ(a->str(), "");
    EXPECT_EQ(*a, Address{});
  }
}

TEST(Address, RefusesGarbage) {
  struct Case {
    const char* label;
    std::string text;
  };
  const Case cases[] = {
      {"unclosed <", "<a@example.jp"},
      {"unopened >", "a@example.jp>"},
      {"lone <", "<"},
      {"doubled brackets", "<<a@example.jp>>"},
      {"bracket in the middle", "a<b@example.jp"},
      {"two addresses", "<a@example.jp> <b@example.jp>"},
      {"CR", "<a@example.jp\r>"},
      {"LF", "a@exam\nple.jp"},
      {"NUL", std::string("<a@exa\0mple.jp>", 15)},
      {"unterminated quote", "<\"a b@example.jp>"},
      {"route without colon", "<@relay.example>"},
      {"route to nobody", "<@relay.example:>"},
      // Found by fuzz_policy: the mailbox after a route began with '@', so
      // what str() gave back read as a route without a colon.
      {"mailbox after a route starting with @", "<@route:@\",ax b\"@c>"},
      {"no domain after a local part ending in @", "<x@@>"},
      {"no domain after a local part with an @", "x@y@"},
      {"only dots after a local part with an @", "<x@y@.>"},
      {"1025 bytes inside the brackets", "<" + std::string(1025 - 11, 'x') + "@example.jp>"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_FALSE(parseAddress(c.text).has_value());
  }
}

TEST(Address, StrRoundTrips) {
  struct Case {
    const char* label;
    const char* text;
    const char* str;
  };
  const Case cases[] = {
      {"plain", "<Alice@Example.JP>", "Alice@example.jp"},
      {"quoted", "<\"a b\"@example.jp>", "\"a b\"@example.jp"},
      {"no domain", "<postmaster>", "postmaster"},
      {"null", "<>", ""},
      {"route dropped", "<@x,@y:a@b>", "a@b"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const auto a = parseAddress(c.text);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->str(), c.str);
    // The bracketed and the macro form of str() parse back to the same address.
    EXPECT_EQ(parseAddress(a->str()), a);
    EXPECT_EQ(parseAddress("<" + a->str() + ">"), a);
  }
}

TEST(Address, NormalizeDomain) {
  struct Case {
    const char* label;
    const char* in;
    const char* out;
  };
  const Case cases[] = {
      {"lowercase", "Example.JP", "example.jp"},
      {"trailing dot", "example.jp.", "example.jp"},
      {"several trailing dots", "example.jp..", "example.jp"},
      {"whitespace", " example.jp ", "example.jp"},
      {"U-label to A-label", "\xE4\xBE\x8B.JP", "xn--fsq.jp"},  // 例.JP
      {"U-labels and A-labels mixed", "\xE4\xBE\x8B\xE3\x81\x88.XN--ZCKZAH", "xn--r8jz45g.xn--zckzah"},
      // Full-width letters and full stop, as a Japanese input method types them.
      {"full-width ASCII mapped",
       "\xEF\xBC\xA5\xEF\xBC\xB8\xEF\xBC\xA1\xEF\xBC\xAD\xEF\xBC\xB0\xEF\xBC\xAC\xEF\xBC\xA5"
       "\xEF\xBC\x8E\xEF\xBD\x8A\xEF\xBD\x90",
       "example.jp"},
      {"ideographic full stop at the end", "\xE4\xBE\x8B\xE3\x81\x88.jp\xE3\x80\x82", "xn--r8jz45g.jp"},
      {"A-label lowered only", " XN--R8JZ45G.JP. ", "xn--r8jz45g.jp"},
      {"refused by IDNA: disallowed character", "\xF0\x9F\x98\x80.JP", "\xF0\x9F\x98\x80.jp"},
      {"refused by IDNA: not UTF-8", "\xFF.JP", "\xFF.jp"},
      {"ideographic space at the end", "\xE4\xBE\x8B.jp\xE3\x80\x80", "xn--fsq.jp"},
      // Full-width '@' and '<' map to ASCII ones, which would not read back.
      {"maps to '@'", "\xE4\xBE\x8B.j\xEF\xBC\xA0p", "\xE4\xBE\x8B.j\xEF\xBC\xA0p"},
      {"maps to '<'", "\xE4\xBE\x8B.j\xEF\xBC\x9Cp", "\xE4\xBE\x8B.j\xEF\xBC\x9Cp"},
      {"empty", "", ""},
      {"root only", ".", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_EQ(normalizeDomain(c.in), c.out);
    EXPECT_EQ(normalizeDomain(c.out), c.out);  // its own normal form
  }
}

TEST(Address, NormalizeDomainSaysWhyIdnaRefused) {
  std::string why;
  EXPECT_EQ(normalizeDomain("\xE4\xBE\x8B.jp", &why), "xn--fsq.jp");
  EXPECT_EQ(why, "");
  EXPECT_EQ(normalizeDomain("\xF0\x9F\x98\x80.jp", &why), "\xF0\x9F\x98\x80.jp");
  EXPECT_EQ(why, "not a valid internationalized domain name: string contains a disallowed character");
  why.clear();
  EXPECT_EQ(normalizeDomain("\xE4\xBE\x8B" + std::string(70, 'a') + ".jp", &why),
            "\xE4\xBE\x8B" + std::string(70, 'a') + ".jp");
  EXPECT_NE(why, "");  // a label over 63 bytes once encoded
  why.clear();
  EXPECT_EQ(normalizeDomain("Example.JP", &why), "example.jp");  // ASCII never goes to IDNA
  EXPECT_EQ(why, "");
}

}  // namespace
}  // namespace sekimori::policy
