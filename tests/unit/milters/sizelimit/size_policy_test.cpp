#include "milters/sizelimit/size_policy.h"

#include <gtest/gtest.h>

namespace sekimori::sizelimit {
namespace {

using policy::Address;
using policy::Direction;

TEST(SizePolicy, DeclaredSizeBoundary) {
  struct Case {
    const char* label;
    std::uint64_t limit;
    std::optional<std::uint64_t> declared;
    bool refused;
  };
  const Case cases[] = {
      {"no SIZE=", 100, std::nullopt, false},  {"limit-1", 100, 99, false}, {"exactly limit", 100, 100, false},
      {"limit+1", 100, 101, true},             {"no limit", 0, UINT64_MAX, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const auto d = decideDeclared(c.limit, c.declared);
    EXPECT_EQ(d.refused(), c.refused);
    if (c.refused) {
      EXPECT_EQ(d.reason, Reason::Size);
      EXPECT_EQ(d.value, *c.declared);
      EXPECT_EQ(d.limit, c.limit);
    }
  }
}

TEST(SizePolicy, ReceivedBytesBoundary) {
  EXPECT_FALSE(decideSize(20971520, 20971519).refused());
  EXPECT_FALSE(decideSize(20971520, 20971520).refused());
  EXPECT_TRUE(decideSize(20971520, 20971521).refused());
  EXPECT_FALSE(decideSize(0, UINT64_MAX).refused());
}

TEST(SizePolicy, FiftyHopsPassFiftyOneDoNot) {
  EXPECT_FALSE(decideHops(50, 50).refused());
  const auto d = decideHops(50, 51);
  EXPECT_TRUE(d.refused());
  EXPECT_EQ(d.reason, Reason::Hops);
  EXPECT_FALSE(decideHops(0, 1000).refused());
}

TEST(SizePolicy, RecipientAndAttachmentCounts) {
  EXPECT_FALSE(decideRecipients(100, 100).refused());
  EXPECT_TRUE(decideRecipients(100, 101).refused());
  EXPECT_FALSE(decideRecipients(0, 100000).refused());
  EXPECT_FALSE(decideAttachments(3, 3).refused());
  EXPECT_TRUE(decideAttachments(3, 4).refused());
}

TEST(SizePolicy, RepliesAreTheSpecDefaults) {
  const Replies r;
  EXPECT_EQ(Decision{Reason::Size}.reply(r).str(), "552 5.3.4 Message size exceeds fixed maximum message size");
  EXPECT_EQ(Decision{Reason::Partial}.reply(r).str(), "554 5.6.1 Partial messages are not accepted");
  EXPECT_EQ(Decision{Reason::Hops}.reply(r).str(), "554 5.4.6 Too many hops");
  EXPECT_EQ(Decision{Reason::Archive}.reply(r).str(), "552 5.3.4 Attachment expands beyond the permitted size");
  EXPECT_EQ(Decision{Reason::Recipients}.reply(r).str(), "452 4.5.3 Too many recipients");
}

TEST(SizePolicy, LooserAndStricterTreatZeroAsNoLimit) {
  EXPECT_EQ(looser(0, 5), 0u);
  EXPECT_EQ(looser(3, 5), 5u);
  EXPECT_EQ(stricter(0, 5), 5u);
  EXPECT_EQ(stricter(3, 5), 3u);
  EXPECT_EQ(stricter(0, 0), 0u);
}

SizeConfig overrides() {
  SizeConfig c;
  c.maxMessageSize = config::Layered<config::Bytes>(config::Bytes{20'000'000});
  c.maxMessageSize.setDirection(Direction::Outbound, config::Bytes{25'000'000});
  c.maxMessageSize.setDomain("big.example", config::Bytes{150'000'000});
  return c;
}

TEST(SizePolicy, LimitPerRecipientDirectionAndDomain) {
  const SizeConfig c = overrides();
  const Address sender{"a", "example.jp"};
  const Address local{"u", "example.net"}, big{"u", "big.example"}, remote{"r", "remote.example"};
  const auto isLocal = [](const Address& a) { return a.domain == "example.net" || a.domain == "big.example"; };
  const std::vector<Address> one{local}, bigOnly{big}, both{local, big}, out{remote};
  // Inbound: each recipient's domain; a message must fit them all.
  EXPECT_EQ(strictestFor(c.maxMessageSize, false, sender, one, isLocal), 20'000'000u);
  EXPECT_EQ(strictestFor(c.maxMessageSize, false, sender, bigOnly, isLocal), 150'000'000u);
  EXPECT_EQ(strictestFor(c.maxMessageSize, false, sender, both, isLocal), 20'000'000u);
  // Outbound: the sender's domain and the outbound override.
  EXPECT_EQ(strictestFor(c.maxMessageSize, true, sender, out, isLocal), 25'000'000u);
  EXPECT_EQ(strictestFor(c.maxMessageSize, true, Address{"a", "big.example"}, out, isLocal), 150'000'000u);
  // From inside to a local recipient: internal, which has no override here.
  EXPECT_EQ(strictestFor(c.maxMessageSize, true, sender, one, isLocal), 20'000'000u);
}

TEST(SizePolicy, BoundAtMailIsTheLargestAnyRecipientCouldHave) {
  const SizeConfig c = overrides();
  // From outside any local domain might be the recipient: big.example's 150 MB.
  EXPECT_EQ(sizeBoundAtMail(c, false, Address{"a", "example.org"}), 150'000'000u);
  // From inside: outbound by the sender's domain, or internal to big.example.
  EXPECT_EQ(sizeBoundAtMail(c, true, Address{"a", "example.jp"}), 150'000'000u);
  SizeConfig plain;
  plain.maxMessageSize = config::Layered<config::Bytes>(config::Bytes{20'000'000});
  EXPECT_EQ(sizeBoundAtMail(plain, false, Address{"a", "example.org"}), 20'000'000u);
  plain.maxMessageSize.setDirection(Direction::Outbound, config::Bytes{25'000'000});
  EXPECT_EQ(sizeBoundAtMail(plain, true, Address{"a", "example.org"}), 25'000'000u);
  plain.maxMessageSize.setDirection(Direction::Inbound, config::Bytes{0});
  EXPECT_EQ(sizeBoundAtMail(plain, false, Address{"a", "example.org"}), 0u) << "0 is no limit";
}

TEST(SizePolicy, MediaType) {
  EXPECT_EQ(mediaType(" Multipart/Mixed; boundary=x"), "multipart/mixed");
  EXPECT_EQ(mediaType(""), "text/plain");
  EXPECT_EQ(mediaType(" message/partial;id=1"), "message/partial");
}

}  // namespace
}  // namespace sekimori::sizelimit
