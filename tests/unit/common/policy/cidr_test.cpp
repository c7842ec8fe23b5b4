#include "common/policy/cidr.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace sekimori::policy {
namespace {

TEST(IpAddress, ParsesV4AndV6) {
  struct Case {
    const char* label;
    const char* text;
    bool v4;
    const char* str;
  };
  const Case cases[] = {
      {"v4", "192.0.2.1", true, "192.0.2.1"},
      {"v4 with spaces", " 192.0.2.1 ", true, "192.0.2.1"},
      {"v4 bracketed", "[192.0.2.1]", true, "192.0.2.1"},
      {"v6", "2001:db8::1", false, "2001:db8::1"},
      {"v6 uppercase, long form", "2001:0DB8:0:0:0:0:0:1", false, "2001:db8::1"},
      {"v6 loopback bracketed", "[::1]", false, "::1"},
      {"Postfix IPv6: prefix", "IPv6:2001:db8::1", false, "2001:db8::1"},
      {"Postfix IPv6: prefix bracketed", "[IPv6:2001:db8::1]", false, "2001:db8::1"},
      {"v4-mapped is the v4 address", "::ffff:192.0.2.1", true, "192.0.2.1"},
      {"v4-mapped in hex", "::ffff:c000:201", true, "192.0.2.1"},
      {"v4-compatible is v6", "::192.0.2.1", false, "::192.0.2.1"},
      {"unspecified", "::", false, "::"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const auto a = IpAddress::parse(c.text);
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->isV4(), c.v4);
    EXPECT_EQ(a->str(), c.str);
  }
  EXPECT_EQ(IpAddress::parse("::ffff:192.0.2.1"), IpAddress::parse("192.0.2.1"));
}

TEST(IpAddress, RefusesGarbage) {
  struct Case {
    const char* label;
    const char* text;
  };
  const Case cases[] = {
      {"empty", ""},
      {"hostname", "mx.example.jp"},
      {"short v4", "10.1"},
      {"octet out of range", "192.0.2.256"},
      {"leading zero (octal in inet_aton)", "010.0.0.1"},
      {"network, not address", "10.0.0.0/8"},
      {"zone id", "fe80::1%eth0"},
      {"two double colons", "2001::db8::1"},
      {"unclosed bracket", "[::1"},
      {"Postfix prefix alone", "IPv6:"},
      {"too long", "0000:0000:0000:0000:0000:0000:0000:0000:0000:0000"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_FALSE(IpAddress::parse(c.text).has_value());
  }
}

TEST(Network, ParsesAndMasks) {
  struct Case {
    const char* label;
    const char* text;
    const char* str;
  };
  const Case cases[] = {
      {"v4 /8", "10.0.0.0/8", "10.0.0.0/8"},
      {"v4 host bits masked", "10.1.2.3/8", "10.0.0.0/8"},
      {"v4 odd prefix masked", "192.0.2.255/25", "192.0.2.128/25"},
      {"v4 bare address is /32", "192.0.2.1", "192.0.2.1/32"},
      {"v4 /0", "0.0.0.0/0", "0.0.0.0/0"},
      {"v6 /32", "2001:db8::/32", "2001:db8::/32"},
      {"v6 host bits masked", "2001:db8:ffff::1/32", "2001:db8::/32"},
      {"v6 bare address is /128", "::1", "::1/128"},
      {"Postfix mynetworks bracket form", "[2001:db8::]/32", "2001:db8::/32"},
      {"bracketed v6 host", "[::1]", "::1/128"},
      {"v6 /0", "::/0", "::/0"},
      {"v4-mapped in v6 notation counts in v6 terms", "::ffff:10.0.0.0/104", "10.0.0.0/8"},
      {"whole mapped range", "::ffff:0:0/96", "0.0.0.0/0"},
      {"spaces around", " 10.0.0.0/8 ", "10.0.0.0/8"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const auto n = Network::parse(c.text);
    ASSERT_TRUE(n.has_value());
    EXPECT_EQ(n->str(), c.str);
  }
}

TEST(Network, RefusesBadSpecs) {
  struct Case {
    const char* label;
    const char* text;
  };
  const Case cases[] = {
      {"v4 prefix too long", "10.0.0.0/33"},
      {"v6 prefix too long", "2001:db8::/129"},
      {"negative prefix", "10.0.0.0/-1"},
      {"plus sign", "10.0.0.0/+8"},
      {"empty prefix", "10.0.0.0/"},
      {"prefix not a number", "10.0.0.0/eight"},
      {"trailing junk", "10.0.0.0/8x"},
      {"netmask notation", "10.0.0.0/255.0.0.0"},
      {"huge prefix", "10.0.0.0/99999999999"},
      {"bad address", "10.0.0/8"},
      {"hostname", "localhost"},
      {"empty", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_FALSE(Network::parse(c.text).has_value());
  }
}

TEST(Cidr, MatchesIpv4AndIpv6) {
  struct Case {
    const char* label;
    const char* network;
    const char* address;
    bool contained;
  };
  const Case cases[] = {
      {"v4 inside /8", "10.0.0.0/8", "10.255.1.2", true},
      {"v4 outside /8", "10.0.0.0/8", "11.0.0.1", false},
      {"v4 inside /25 upper half", "192.0.2.128/25", "192.0.2.200", true},
      {"v4 outside /25 lower half", "192.0.2.128/25", "192.0.2.127", false},
      {"v4 host equal", "192.0.2.1", "192.0.2.1", true},
      {"v4 host other", "192.0.2.1", "192.0.2.2", false},
      {"v4 /0 takes every v4", "0.0.0.0/0", "203.0.113.9", true},
      {"v4 /0 does not take v6", "0.0.0.0/0", "2001:db8::1", false},
      {"v4 network takes mapped client", "10.0.0.0/8", "::ffff:10.1.2.3", true},
      {"mapped network takes v4 client", "::ffff:10.0.0.0/104", "10.9.9.9", true},
      {"v6 inside /32", "2001:db8::/32", "2001:db8:1234::5", true},
      {"v6 outside /32", "2001:db8::/32", "2001:db9::1", false},
      {"v6 inside /127 boundary", "2001:db8::/127", "2001:db8::1", true},
      {"v6 outside /127 boundary", "2001:db8::/127", "2001:db8::2", false},
      {"v6 /0 takes every v6", "::/0", "2001:db8::1", true},
      {"v6 /0 takes v4 too (mapped)", "::/0", "192.0.2.1", true},
      {"v6 loopback", "::1/128", "::1", true},
      {"v6 loopback is not v4 loopback", "::1/128", "127.0.0.1", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const auto n = Network::parse(c.network);
    const auto a = IpAddress::parse(c.address);
    ASSERT_TRUE(n.has_value());
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(n->contains(*a), c.contained);
    NetworkList list;
    ASSERT_TRUE(list.add(c.network, nullptr));
    EXPECT_EQ(list.contains(*a), c.contained);
  }
}

TEST(NetworkList, AddsAndReportsErrors) {
  NetworkList list;
  EXPECT_TRUE(list.empty());
  EXPECT_FALSE(list.contains(*IpAddress::parse("127.0.0.1")));
  std::string why;
  EXPECT_TRUE(list.add("127.0.0.0/8", &why));
  EXPECT_TRUE(list.add("::1/128", &why));
  EXPECT_TRUE(list.add("127.1.2.3/8", &why));  // the same network again, masked
  EXPECT_EQ(list.size(), 2u);
  EXPECT_FALSE(list.add("10.0.0.0/33", &why));
  EXPECT_EQ(why, "not an IP address or network (like 192.0.2.0/24 or 2001:db8::/32): '10.0.0.0/33'");
  EXPECT_FALSE(list.add("bad\r\nnet", &why));
  EXPECT_EQ(why, "not an IP address or network (like 192.0.2.0/24 or 2001:db8::/32): 'bad\\x0d\\x0anet'");
  EXPECT_FALSE(list.add("x", nullptr));  // no error text wanted
  EXPECT_EQ(list.size(), 2u);
  EXPECT_FALSE(list.empty());
  EXPECT_TRUE(list.contains(*IpAddress::parse("127.0.0.1")));
  EXPECT_TRUE(list.contains(*IpAddress::parse("::1")));
  EXPECT_FALSE(list.contains(*IpAddress::parse("::2")));
  EXPECT_FALSE(list.contains(*IpAddress::parse("128.0.0.1")));
}

TEST(NetworkList, MixedPrefixesMatchLikeALinearScan) {
  // Many networks of several prefix lengths, checked against Network::contains
  // one by one: the grouped lookup must agree with the obvious scan.
  std::vector<Network> nets;
  NetworkList list;
  for (int i = 0; i < 256; i += 3) {
    for (const auto& spec : {"10." + std::to_string(i) + ".0.0/16", "172.16." + std::to_string(i) + ".0/24",
                             "192.0.2." + std::to_string(i) + "/32",
                             "2001:db8:" + std::to_string(i) + "::/48"}) {
      ASSERT_TRUE(list.add(spec, nullptr)) << spec;
      nets.push_back(*Network::parse(spec));
    }
  }
  ASSERT_TRUE(list.add("198.51.100.0/22", nullptr));
  nets.push_back(*Network::parse("198.51.100.0/22"));
  EXPECT_EQ(list.size(), nets.size());
  int hits = 0;
  for (int i = 0; i < 256; ++i) {
    for (const auto& text : {"10." + std::to_string(i) + ".7.7", "172.16." + std::to_string(i) + ".9",
                             "192.0.2." + std::to_string(i), "2001:db8:" + std::to_string(i) + "::42",
                             "198.51." + std::to_string(100 + i % 8) + ".1"}) {
      const auto a = IpAddress::parse(text);
      ASSERT_TRUE(a.has_value()) << text;
      bool scan = false;
      for (const auto& n : nets) scan = scan || n.contains(*a);
      EXPECT_EQ(list.contains(*a), scan) << text;
      hits += scan ? 1 : 0;
    }
  }
  EXPECT_GT(hits, 0);
}

TEST(NetworkList, ThousandsOfEntriesStayFast) {
  NetworkList list;
  for (int i = 0; i < 5000; ++i) {
    const std::string spec = std::to_string(1 + i / 256) + "." + std::to_string(i % 256) + ".0.0/16";
    ASSERT_TRUE(list.add(spec, nullptr)) << spec;
  }
  for (int i = 0; i < 5000; ++i) {
    ASSERT_TRUE(list.add("2001:db8:" + std::to_string(i) + "::/48", nullptr));
  }
  EXPECT_EQ(list.size(), 10000u);
  const auto in = *IpAddress::parse("19.135.1.1");  // entry 18*256+135
  const auto out = *IpAddress::parse("203.0.113.1");
  const auto start = std::chrono::steady_clock::now();
  int found = 0;
  for (int i = 0; i < 100000; ++i) found += list.contains(in) + list.contains(out);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(found, 100000);
  // 200k lookups over 10k networks: a linear scan needs ~2e9 comparisons; the
  // grouped search a few million. Generous bound for a loaded shared machine.
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}

}  // namespace
}  // namespace sekimori::policy
