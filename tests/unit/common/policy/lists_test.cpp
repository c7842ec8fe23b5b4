#include "common/policy/lists.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sekimori::policy {
namespace {

using Kind = AddressList::Match::Kind;
using Priority = AddressList::Priority;

Address addr(std::string_view text) {
  auto a = parseAddress(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(Address{});
}

DomainList domains(std::initializer_list<const char*> entries) {
  DomainList l;
  for (const char* e : entries) EXPECT_TRUE(l.add(e, nullptr)) << e;
  return l;
}

AddressList addresses(std::initializer_list<const char*> entries) {
  AddressList l;
  for (const char* e : entries) EXPECT_TRUE(l.add(e, nullptr)) << e;
  return l;
}

TEST(DomainList, ExactAndSubdomainEntries) {
  const auto list = domains({"example.jp", ".sub.example.com", "Mixed.Case.JP.", " spaced.jp "});
  struct Case {
    const char* label;
    const char* domain;
    const char* entry;  // "" = no match
  };
  const Case cases[] = {
      {"exact", "example.jp", "example.jp"},
      {"exact, other case", "EXAMPLE.JP", "example.jp"},
      {"exact, trailing dot", "example.jp.", "example.jp"},
      {"subdomain of exact entry does not match", "mail.example.jp", ""},
      {"parent of exact entry does not match", "jp", ""},
      {"subdomain entry: child", "a.sub.example.com", ".sub.example.com"},
      {"subdomain entry: grandchild", "x.y.sub.example.com", ".sub.example.com"},
      {"subdomain entry: the domain itself does not match", "sub.example.com", ""},
      {"suffix that is not a label boundary", "xsub.example.com", ""},
      {"entry was normalised", "mixed.case.jp", "mixed.case.jp"},
      {"entry was trimmed", "spaced.jp", "spaced.jp"},
      {"empty domain", "", ""},
      {"root only", ".", ""},
      {"unrelated", "example.com", ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_EQ(list.find(c.domain), c.entry);
    EXPECT_EQ(list.contains(c.domain), std::string(c.entry) != "");
  }
  EXPECT_EQ(list.size(), 4u);
}

TEST(DomainList, BothEntriesForDomainAndSubdomains) {
  const auto list = domains({"example.jp", ".example.jp", ".mail.example.jp"});
  EXPECT_EQ(list.find("example.jp"), "example.jp");
  EXPECT_EQ(list.find("a.example.jp"), ".example.jp");
  EXPECT_EQ(list.find("x.mail.example.jp"), ".mail.example.jp");  // the nearer parent
}

TEST(DomainList, IdnMatchesInULabelsAndALabels) {
  // 例え.JP, and the A-labels of ドメイン名例.テスト
  const auto list = domains({"\xE4\xBE\x8B\xE3\x81\x88.JP", "xn--eckwd4c7cu47r2wf.xn--zckzah",
                             ".\xE4\xBE\x8B.jp"});  // .例.jp
  EXPECT_TRUE(list.contains("\xE4\xBE\x8B\xE3\x81\x88.jp"));
  EXPECT_TRUE(list.contains("xn--r8jz45g.jp"));
  EXPECT_EQ(list.find("XN--R8JZ45G.JP."), "xn--r8jz45g.jp");
  EXPECT_TRUE(list.contains("XN--ECKWD4C7CU47R2WF.XN--ZCKZAH"));
  EXPECT_TRUE(list.contains("\xE3\x83\x89\xE3\x83\xA1\xE3\x82\xA4\xE3\x83\xB3\xE5\x90\x8D\xE4\xBE\x8B."
                            "\xE3\x83\x86\xE3\x82\xB9\xE3\x83\x88"));
  EXPECT_EQ(list.find("mail.xn--fsq.jp"), ".xn--fsq.jp");
  EXPECT_EQ(list.find("mail.\xE4\xBE\x8B.jp"), ".xn--fsq.jp");
  EXPECT_FALSE(list.contains("xn--fsq.jp"));  // a parent entry only
}

TEST(AddressList, IdnAddressMatchesInULabelsAndALabels) {
  AddressList list;
  std::string why;
  ASSERT_TRUE(list.add("boss@\xE4\xBE\x8B\xE3\x81\x88.jp", &why)) << why;  // boss@例え.jp
  ASSERT_TRUE(list.add("xn--fsq.jp", &why)) << why;                            // 例.jp
  EXPECT_EQ(list.find(*parseAddress("<Boss@XN--R8JZ45G.jp>")).entry, "boss@xn--r8jz45g.jp");
  EXPECT_EQ(list.find(*parseAddress("<boss@\xE4\xBE\x8B\xE3\x81\x88.jp>")).entry, "boss@xn--r8jz45g.jp");
  EXPECT_EQ(list.find(*parseAddress("<anyone@\xE4\xBE\x8B.jp>")).entry, "xn--fsq.jp");
}

TEST(DomainList, RefusesDomainsIdnaRefuses) {
  DomainList list;
  std::string why;
  EXPECT_FALSE(list.add("\xF0\x9F\x98\x80.jp", &why));  // an emoji
  EXPECT_EQ(why, "bad domain '\\xf0\\x9f\\x98\\x80.jp': not a valid internationalized domain name: "
                 "string contains a disallowed character");
  AddressList addresses;
  EXPECT_FALSE(addresses.add("user@\xF0\x9F\x98\x80.jp", &why));
  EXPECT_TRUE(list.empty());
}

TEST(DomainList, RefusesBadEntries) {
  struct Case {
    const char* label;
    const char* entry;
    const char* error;
  };
  const Case cases[] = {
      {"empty", "", "bad domain '': empty domain"},
      {"dot only", ".", "bad domain '.': empty domain"},
      {"double leading dot", "..example.jp", "bad domain '..example.jp': empty label in domain"},
      {"empty label", "a..example.jp", "bad domain 'a..example.jp': empty label in domain"},
      {"wildcard", "*.example.jp",
       "bad domain '*.example.jp': wildcards are not supported (write .example.jp for the subdomains of example.jp)"},
      {"space inside", "exa mple.jp", "bad domain 'exa mple.jp': space or control character in domain"},
      {"address", "a@example.jp", "bad domain 'a@example.jp': character '@' not allowed in a domain"},
      {"comma", "a.jp,b.jp", "bad domain 'a.jp,b.jp': character ',' not allowed in a domain"},
      {"address literal", "[192.0.2.1]", "bad domain '[192.0.2.1]': character '[' not allowed in a domain"},
      {"too long", nullptr, "bad domain '"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    DomainList list;
    std::string why;
    const std::string entry = c.entry ? c.entry : std::string(250, 'a') + ".jp.x";
    EXPECT_FALSE(list.add(entry, &why));
    if (c.entry) {
      EXPECT_EQ(why, c.error);
    } else {
      EXPECT_EQ(why.rfind(c.error, 0), 0u) << why;
      EXPECT_NE(why.find("domain longer than 253 bytes"), std::string::npos) << why;
    }
    EXPECT_TRUE(list.empty());
  }
}

TEST(AddressList, FindsMostSpecificMatch) {
  const auto list = addresses(
      {"Boss@Example.JP", "postmaster@", "@example.jp", "partner.example", "@.sub.example.com", ".ext.example"});
  struct Case {
    const char* label;
    const char* address;
    Kind kind;
    const char* entry;
  };
  const Case cases[] = {
      {"exact address", "<boss@example.jp>", Kind::Address, "boss@example.jp"},
      {"local part case folded", "<BOSS@example.jp>", Kind::Address, "boss@example.jp"},
      {"domain case folded", "<boss@EXAMPLE.jp.>", Kind::Address, "boss@example.jp"},
      {"address beats local part and domain", "<boss@example.jp>", Kind::Address, "boss@example.jp"},
      {"local part at any domain", "<postmaster@elsewhere.example>", Kind::LocalPart, "postmaster@"},
      {"local part beats domain", "<Postmaster@example.jp>", Kind::LocalPart, "postmaster@"},
      {"local part without domain", "<postmaster>", Kind::LocalPart, "postmaster@"},
      {"whole domain via @", "<clerk@example.jp>", Kind::Domain, "example.jp"},
      {"whole domain without @", "<x@partner.example>", Kind::Domain, "partner.example"},
      {"subdomains via @.", "<x@a.sub.example.com>", Kind::Domain, ".sub.example.com"},
      {"subdomains via .", "<x@deep.a.ext.example>", Kind::Domain, ".ext.example"},
      {"subdomain entry skips the domain itself", "<x@ext.example>", Kind::None, ""},
      {"exact domain entry skips subdomains", "<x@mail.example.jp>", Kind::None, ""},
      {"address at other domain", "<boss@example.com>", Kind::None, ""},
      {"null sender matches nothing", "<>", Kind::None, ""},
      {"no domain, unlisted local part", "<clerk>", Kind::None, ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const auto m = list.find(addr(c.address));
    EXPECT_EQ(m.kind, c.kind);
    EXPECT_EQ(m.entry, c.entry);
    EXPECT_EQ(m.found(), c.kind != Kind::None);
  }
}

TEST(AddressList, QuotedLocalPartsMatchAsWritten) {
  const auto list = addresses({"\"John Doe\"@example.jp"});
  EXPECT_EQ(list.find(addr("<\"john doe\"@example.jp>")).kind, Kind::Address);
  EXPECT_EQ(list.find(addr("<john.doe@example.jp>")).kind, Kind::None);
}

TEST(AddressList, RefusesBadEntries) {
  struct Case {
    const char* label;
    const char* entry;
    const char* error;
  };
  const Case cases[] = {
      {"empty", "  ", "bad address '': empty entry"},
      {"only @", "@", "bad address '@': neither local part nor domain"},
      {"subdomain after a local part", "a@.example.jp",
       "bad address 'a@.example.jp': an address takes an exact domain (for a whole subdomain tree, list "
       ".example.jp alone)"},
      {"angle brackets", "<a@example.jp>", "bad address '<a@example.jp>': write the address without <>"},
      {"control character", "a\x01@example.jp", "bad address 'a\\x01@example.jp': control character in entry"},
      {"bad domain of address", "a@exa mple.jp", "bad address 'a@exa mple.jp': space or control character in domain"},
      {"bad domain entry", "@*.example.jp",
       "bad domain '*.example.jp': wildcards are not supported (write .example.jp for the subdomains of example.jp)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    AddressList list;
    std::string why;
    EXPECT_FALSE(list.add(c.entry, &why));
    EXPECT_EQ(why, c.error);
    EXPECT_TRUE(list.empty());
    EXPECT_FALSE(list.add(c.entry, nullptr));
  }
}

TEST(AddressList, DecideWithPriority) {
  struct Case {
    const char* label;
    std::vector<const char*> allow;
    std::vector<const char*> deny;
    const char* address;
    Priority priority;
    ListVerdict verdict;
  };
  const Case cases[] = {
      {"no list matches", {"a@example.jp"}, {"spam.example"}, "<b@example.jp>", Priority::AddressFirst,
       ListVerdict::None},
      {"empty lists", {}, {}, "<b@example.jp>", Priority::AddressFirst, ListVerdict::None},
      {"only allow matches", {"example.jp"}, {"spam.example"}, "<b@example.jp>", Priority::AddressFirst,
       ListVerdict::Allow},
      {"only deny matches", {"example.jp"}, {"spam.example"}, "<b@spam.example>", Priority::DomainFirst,
       ListVerdict::Deny},
      {"address-first: allowed address in denied domain", {"boss@example.jp"}, {"example.jp"},
       "<boss@example.jp>", Priority::AddressFirst, ListVerdict::Allow},
      {"domain-first: allowed address in denied domain", {"boss@example.jp"}, {"example.jp"},
       "<boss@example.jp>", Priority::DomainFirst, ListVerdict::Deny},
      {"address-first: denied address in allowed domain", {"example.jp"}, {"spammer@example.jp"},
       "<spammer@example.jp>", Priority::AddressFirst, ListVerdict::Deny},
      {"domain-first: denied address in allowed domain", {"example.jp"}, {"spammer@example.jp"},
       "<spammer@example.jp>", Priority::DomainFirst, ListVerdict::Allow},
      {"address-first: local part counts as address level", {".example.jp"}, {"info@"}, "<info@a.example.jp>",
       Priority::AddressFirst, ListVerdict::Deny},
      {"domain-first: local part loses to domain", {".example.jp"}, {"info@"}, "<info@a.example.jp>",
       Priority::DomainFirst, ListVerdict::Allow},
      {"tie at address level: allow wins", {"x@example.jp"}, {"x@example.jp"}, "<x@example.jp>",
       Priority::AddressFirst, ListVerdict::Allow},
      {"tie address vs local part: same level, allow wins", {"x@"}, {"x@example.jp"}, "<x@example.jp>",
       Priority::AddressFirst, ListVerdict::Allow},
      {"tie at domain level: allow wins", {"example.jp"}, {".jp"}, "<x@example.jp>", Priority::DomainFirst,
       ListVerdict::Allow},
      {"null sender never listed", {"example.jp", "x@"}, {".jp"}, "<>", Priority::AddressFirst, ListVerdict::None},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    AddressList allow;
    AddressList deny;
    for (const char* e : c.allow) ASSERT_TRUE(allow.add(e, nullptr)) << e;
    for (const char* e : c.deny) ASSERT_TRUE(deny.add(e, nullptr)) << e;
    EXPECT_EQ(decide(allow, deny, addr(c.address), c.priority), c.verdict);
  }
  EXPECT_EQ(toString(ListVerdict::None), "none");
  EXPECT_EQ(toString(ListVerdict::Allow), "allow");
  EXPECT_EQ(toString(ListVerdict::Deny), "deny");
}

TEST(AddressList, HundredsOfEntries) {
  // R-SPAM-3: at least 300 entries per list; hash lookups do not care.
  AddressList list;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(list.add("user" + std::to_string(i) + "@example.jp", nullptr));
    ASSERT_TRUE(list.add(".d" + std::to_string(i) + ".example", nullptr));
  }
  EXPECT_EQ(list.size(), 2000u);
  EXPECT_EQ(list.find(addr("<User999@example.jp>")).kind, Kind::Address);
  EXPECT_EQ(list.find(addr("<x@a.d500.example>")).entry, ".d500.example");
  EXPECT_EQ(list.find(addr("<user1000@example.jp>")).kind, Kind::None);
}

}  // namespace
}  // namespace sekimori::policy
