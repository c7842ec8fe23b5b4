#include "milters/ratelimit/rate_policy.h"

#include <gtest/gtest.h>

namespace sekimori::ratelimit {
namespace {

policy::Address addr(std::string_view text) { return *policy::parseAddress(text); }

TEST(RateKeys, AreNormalised) {
  EXPECT_EQ(*senderKey(addr("<Alice@Example.JP>")), "s:Alice@example.jp");
  EXPECT_EQ(*recipientKey(addr("bob@EXAMPLE.net.")), "r:bob@example.net");
  EXPECT_EQ(*domainKey(addr("<a@Sub.Example.JP>")), "d:sub.example.jp");
  EXPECT_EQ(*clientKey(policy::IpAddress::parse("2001:DB8::1")), "c:2001:db8::1");
  EXPECT_EQ(*userKey("alice"), "u:alice");
}

TEST(RateKeys, OneIdnDomainIsOneCounterInEitherSpelling) {
  // 例え.jp in UTF-8 (SMTPUTF8) and in A-labels: not two counters to split a
  // sender's mail across.
  EXPECT_EQ(*domainKey(addr("<a@\xE4\xBE\x8B\xE3\x81\x88.JP>")), "d:xn--r8jz45g.jp");
  EXPECT_EQ(*domainKey(addr("<a@xn--r8jz45g.jp>")), "d:xn--r8jz45g.jp");
  EXPECT_EQ(*senderKey(addr("<a@\xE4\xBE\x8B\xE3\x81\x88.jp>")), *senderKey(addr("<a@XN--R8JZ45G.JP>")));
}

TEST(RateKeys, NullSenderHasNoSenderOrDomainKey) {
  EXPECT_FALSE(senderKey(addr("<>")));
  EXPECT_FALSE(domainKey(addr("<>")));
  EXPECT_FALSE(domainKey(addr("<postmaster>")));
  EXPECT_FALSE(userKey(""));
  EXPECT_FALSE(clientKey(std::nullopt));
}

TEST(RateKeys, LoopKeyStripsBracketsAndKeepsCase) {
  EXPECT_EQ(*loopKey(addr("List@Example.JP"), " <ABC.123@x.example> "), "l:List@example.jp ABC.123@x.example");
  EXPECT_FALSE(loopKey(addr("list@example.jp"), "<>"));
  EXPECT_FALSE(loopKey(addr("list@example.jp"), ""));
}

TEST(RateKeys, KindOfKey) {
  EXPECT_EQ(kindOfKey("s:a@b"), Kind::Sender);
  EXPECT_EQ(kindOfKey("r:a@b"), Kind::Recipient);
  EXPECT_EQ(kindOfKey("c:1.2.3.4"), Kind::Client);
  EXPECT_EQ(kindOfKey("u:x"), Kind::User);
  EXPECT_EQ(kindOfKey("d:x"), Kind::Domain);
  EXPECT_FALSE(kindOfKey("x:y"));
  EXPECT_FALSE(kindOfKey("s:"));
}

TEST(RateDirections, ParseAndPrint) {
  std::string why;
  auto d = Directions::parse("outbound internal", &why);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->has(policy::Direction::Outbound));
  EXPECT_TRUE(d->has(policy::Direction::Internal));
  EXPECT_FALSE(d->has(policy::Direction::Inbound));
  EXPECT_EQ(d->str(), "outbound internal");
  EXPECT_EQ(Directions::parse("all", &why)->str(), "inbound outbound internal");
  EXPECT_TRUE(Directions::parse("none", &why)->empty());
  EXPECT_FALSE(Directions::parse("sideways", &why));
  EXPECT_NE(why.find("sideways"), std::string::npos);
}

TEST(RateCounter, LimitIsOffOutsideItsDirectionsAndFollowsOverrides) {
  CounterConfig c;
  c.max = config::Layered<config::Count>(config::Count{100});
  c.max.setDirection(policy::Direction::Outbound, config::Count{200});
  c.max.setDomain("bulk.example.jp", config::Count{5000});
  c.directions.add(policy::Direction::Outbound);
  EXPECT_EQ(c.limit(policy::Direction::Inbound, "").max, 0u);
  EXPECT_EQ(c.limit(policy::Direction::Outbound, "example.jp").max, 200u);
  EXPECT_EQ(c.limit(policy::Direction::Outbound, "bulk.example.jp").max, 5000u);
  EXPECT_EQ(c.limit(policy::Direction::Outbound, "").window, std::chrono::minutes(5));
}

TEST(RateReplies, DefaultsAreTheSpecs) {
  RateConfig cfg;
  EXPECT_EQ(cfg.reply(Kind::Sender).str(), "451 4.7.1 Service unavailable - try again later");
  EXPECT_EQ(cfg.reply(Kind::Recipient).str(), "451 4.0.0 Rate limit exceeded");
  EXPECT_EQ(cfg.reply(Kind::Client).str(), "450 4.7.1 Too many messages, try again later");
  EXPECT_EQ(cfg.reply(Kind::Session).str(), "452 4.5.3 Too many recipients");
  EXPECT_EQ(cfg.reply(Kind::ListLoop).str(), "554 5.4.6 Duplicate message to mailing list");
}

}  // namespace
}  // namespace sekimori::ratelimit
