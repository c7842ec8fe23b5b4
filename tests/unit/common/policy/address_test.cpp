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
      {"UTF-8 IDN left as is", "<u@\xE4\xBE\x8B\xE3\x81\x88.JP>", "u", "\xE4\xBE\x8B\xE3\x81\x88.jp"},
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
      {"non-ASCII untouched", "\xE4\xBE\x8B.JP", "\xE4\xBE\x8B.jp"},
      {"empty", "", ""},
      {"root only", ".", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_EQ(normalizeDomain(c.in), c.out);
  }
}

}  // namespace
}  // namespace sekimori::policy
