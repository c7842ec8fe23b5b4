#include "common/policy/direction.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sekimori::policy {
namespace {

DirectionPolicy makePolicy() {
  DirectionPolicy p;
  std::string why;
  EXPECT_TRUE(p.localDomains.add("example.jp", &why)) << why;
  EXPECT_TRUE(p.localDomains.add(".example.jp", &why)) << why;
  EXPECT_TRUE(p.internalNetworks.add("10.0.0.0/8", &why)) << why;
  EXPECT_TRUE(p.internalNetworks.add("2001:db8:1::/48", &why)) << why;
  return p;
}

std::vector<Address> rcpts(std::initializer_list<const char*> texts) {
  std::vector<Address> out;
  for (const char* t : texts) {
    auto a = parseAddress(t);
    EXPECT_TRUE(a.has_value()) << t;
    out.push_back(a.value_or(Address{}));
  }
  return out;
}

TEST(Direction, StringsRoundTrip) {
  struct Case {
    const char* label;
    Direction d;
    const char* text;
  };
  const Case cases[] = {
      {"inbound", Direction::Inbound, "inbound"},
      {"outbound", Direction::Outbound, "outbound"},
      {"internal", Direction::Internal, "internal"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_EQ(toString(c.d), c.text);
    EXPECT_EQ(directionFromString(c.text), c.d);
  }
  EXPECT_EQ(directionFromString("Outbound"), Direction::Outbound);
  EXPECT_EQ(directionFromString(" INBOUND "), Direction::Inbound);
  EXPECT_EQ(directionFromString("in"), std::nullopt);
  EXPECT_EQ(directionFromString(""), std::nullopt);
  EXPECT_EQ(directionFromString("outgoing"), std::nullopt);
}

TEST(Direction, InsideWhenAuthenticatedOrInternal) {
  const auto p = makePolicy();
  struct Case {
    const char* label;
    bool authenticated;
    std::optional<IpAddress> client;
    bool inside;
  };
  const Case cases[] = {
      {"internal v4", false, IpAddress::parse("10.1.2.3"), true},
      {"internal v4 seen as mapped v6", false, IpAddress::parse("::ffff:10.1.2.3"), true},
      {"internal v6", false, IpAddress::parse("2001:db8:1::25"), true},
      {"external, not authenticated", false, IpAddress::parse("192.0.2.7"), false},
      {"external v6, not authenticated", false, IpAddress::parse("2001:db8:2::25"), false},
      {"external, authenticated", true, IpAddress::parse("192.0.2.7"), true},
      {"no address, not authenticated", false, std::nullopt, false},
      {"no address, authenticated", true, std::nullopt, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_EQ(isInside(p, c.authenticated, c.client), c.inside);
  }
}

TEST(Direction, LocalRecipients) {
  const auto p = makePolicy();
  struct Case {
    const char* label;
    const char* rcpt;
    bool local;
  };
  const Case cases[] = {
      {"local domain", "<a@example.jp>", true},
      {"local domain, any case", "<a@EXAMPLE.JP>", true},
      {"local subdomain", "<a@branch.example.jp>", true},
      {"remote", "<a@example.com>", false},
      {"suffix but not subdomain", "<a@badexample.jp>", false},
      {"no domain (postmaster)", "<postmaster>", true},
      {"null address", "<>", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const auto a = parseAddress(c.rcpt);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(isLocal(p, *a), c.local);
  }
  DirectionPolicy empty;
  EXPECT_FALSE(isLocal(empty, *parseAddress("<a@example.jp>")));
}

TEST(Direction, ClassifiesTransactions) {
  const auto p = makePolicy();
  const auto inside = IpAddress::parse("10.1.2.3");
  const auto outside = IpAddress::parse("192.0.2.7");
  struct Case {
    const char* label;
    bool authenticated;
    std::optional<IpAddress> client;
    std::vector<Address> recipients;
    Direction direction;
  };
  const Case cases[] = {
      {"outside to local", false, outside, rcpts({"<a@example.jp>"}), Direction::Inbound},
      {"outside to several local", false, outside, rcpts({"<a@example.jp>", "<b@x.example.jp>"}),
       Direction::Inbound},
      {"outside to remote only (relay attempt is Postfix's)", false, outside, rcpts({"<a@example.com>"}),
       Direction::Inbound},
      {"outside, no recipients yet", false, outside, {}, Direction::Inbound},
      {"no client address, not authenticated", false, std::nullopt, rcpts({"<a@example.com>"}),
       Direction::Inbound},
      {"internal network to remote", false, inside, rcpts({"<a@example.com>"}), Direction::Outbound},
      {"internal network to local", false, inside, rcpts({"<a@example.jp>"}), Direction::Internal},
      {"internal network to all local", false, inside, rcpts({"<a@example.jp>", "<b@branch.example.jp>"}),
       Direction::Internal},
      {"internal network, one remote among local", false, inside,
       rcpts({"<a@example.jp>", "<b@example.com>", "<c@example.jp>"}), Direction::Outbound},
      {"internal network, no recipients yet", false, inside, {}, Direction::Outbound},
      {"authenticated outside to remote", true, outside, rcpts({"<a@example.com>"}), Direction::Outbound},
      {"authenticated outside to local", true, outside, rcpts({"<a@example.jp>"}), Direction::Internal},
      {"authenticated, no address, to local", true, std::nullopt, rcpts({"<a@example.jp>"}),
       Direction::Internal},
      {"internal to postmaster without domain", false, inside, rcpts({"<postmaster>"}), Direction::Internal},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_EQ(classify(p, c.authenticated, c.client, c.recipients), c.direction);
  }
}

TEST(Direction, EnumValuesIndexTables) {
  EXPECT_EQ(static_cast<std::size_t>(Direction::Inbound), 0u);
  EXPECT_EQ(static_cast<std::size_t>(Direction::Outbound), 1u);
  EXPECT_EQ(static_cast<std::size_t>(Direction::Internal), 2u);
  EXPECT_EQ(kDirectionCount, 3u);
}

TEST(Direction, PerRecipientDirectionAndOverrideDomain) {
  EXPECT_EQ(recipientDirection(false, true), Direction::Inbound);
  EXPECT_EQ(recipientDirection(false, false), Direction::Inbound);
  EXPECT_EQ(recipientDirection(true, true), Direction::Internal);
  EXPECT_EQ(recipientDirection(true, false), Direction::Outbound);
  const auto sender = *parseAddress("<a@Customer.example.jp>");
  const auto rcpt = *parseAddress("<b@Remote.example>");
  EXPECT_EQ(overrideDomain(Direction::Outbound, sender, rcpt), "customer.example.jp");
  EXPECT_EQ(overrideDomain(Direction::Inbound, sender, rcpt), "remote.example");
  EXPECT_EQ(overrideDomain(Direction::Internal, sender, rcpt), "remote.example");
}

}  // namespace
}  // namespace sekimori::policy
