// common/policy/lists.h — domain and address lists (local_domains,
// exemptions, allow/deny lists), and the two-list decision with priority
// (R-SPAM-3, R-SPAM-4).
//
// Domains: "example.jp" matches exactly that domain; ".example.jp" matches
// any subdomain of it but not example.jp itself (Postfix with
// parent_domain_matches_subdomains=no: list both to get both). Entries and
// looked-up domains are compared in their normal form (normalizeDomain):
// case-insensitive, and an IDN matches in U-labels and A-labels alike
// ("例え.jp" in a list matches mail for xn--r8jz45g.jp); an entry that IDNA
// refuses is a config error.
//
// Addresses: "user@example.jp" is that one address, "user@" that local part
// at any domain, "@example.jp" or "example.jp" the whole domain and
// "@.example.jp" or ".example.jp" its subdomains. The local part is compared
// ASCII-case-insensitively: RFC 5321 lets a mailbox server treat "User" and
// "user" differently, but in practice every mail store folds case, and a
// deny entry that misses "Spammer@" for "spammer@" surprises administrators.
// Quotes are not removed: "\"a b\"@example.jp" matches only the quoted form.
//
//   policy::AddressList allow;
//   std::string why;
//   allow.add("boss@example.jp", &why);
//   allow.find(*policy::parseAddress("<Boss@EXAMPLE.jp>")).kind;   // Match::Kind::Address
//
// Lookups are hash-set based: cost grows with the number of labels in the
// domain, not with the size of the list.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>

#include "common/policy/address.h"

namespace sekimori::policy {

namespace detail {
// Lets the sets below be searched with a string_view, without building a
// std::string per lookup (C++20 heterogeneous lookup).
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using StringSet = std::unordered_set<std::string, StringHash, std::equal_to<>>;
}  // namespace detail

class DomainList {
 public:
  // Adds "example.jp" or ".example.jp" (whitespace around and a trailing dot
  // are ignored). On failure returns false and, when `error` is set, writes a
  // one-line reason for a config message.
  bool add(std::string_view entry, std::string* error);
  // `domain` need not be normalised (normalizeDomain is applied).
  bool contains(std::string_view domain) const { return !find(domain).empty(); }
  // The entry that matched, as stored ("example.jp" or ".example.jp"), or ""
  // when none did. An exact entry wins over a parent entry, and a nearer
  // parent over a farther one.
  std::string find(std::string_view domain) const;
  bool empty() const { return exact_.empty() && parents_.empty(); }
  std::size_t size() const { return exact_.size() + parents_.size(); }

 private:
  detail::StringSet exact_;
  detail::StringSet parents_;  // "example.jp" for the entry ".example.jp"
};

class AddressList {
 public:
  // How decide() settles an address-level match in one list against a
  // domain-level match in the other (R-SPAM-4).
  enum class Priority { AddressFirst, DomainFirst };

  struct Match {
    enum class Kind { None, Address, LocalPart, Domain };
    Kind kind = Kind::None;
    // The list entry that matched, normalised: "user@example.jp", "user@",
    // "example.jp" or ".example.jp". For log lines.
    std::string entry;

    bool found() const { return kind != Kind::None; }
    bool addressLevel() const { return kind == Kind::Address || kind == Kind::LocalPart; }
    friend bool operator==(const Match&, const Match&) = default;
  };

  // Adds one entry (see the file comment). On failure returns false and, when
  // `error` is set, writes a one-line reason for a config message.
  bool add(std::string_view entry, std::string* error);
  // The most specific match: Address, then LocalPart, then Domain. The null
  // sender matches nothing.
  Match find(const Address& a) const;
  bool empty() const { return size() == 0; }
  std::size_t size() const { return addresses_.size() + localParts_.size() + domains_.size(); }

 private:
  detail::StringSet addresses_;   // "user@example.jp", lowercased
  detail::StringSet localParts_;  // "user", lowercased
  DomainList domains_;
};

enum class ListVerdict { None, Allow, Deny };

std::string_view toString(ListVerdict v);  // "none" / "allow" / "deny"

// Which of an allow list and a deny list decides for `a` (R-SPAM-4).
// Only one list matches: that list. Both match at different levels:
// AddressFirst (the default) lets the address-level match (Address or
// LocalPart) win, DomainFirst the domain-level one — so "deny @example.jp,
// allow boss@example.jp" lets the boss through under AddressFirst only. Both
// match at the same level: Allow, because for a gateway a wrongly refused or
// deleted message (lost business mail, nobody can see it) costs more than a
// missed block (one more spam the recipient can still see and report).
ListVerdict decide(const AddressList& allow, const AddressList& deny, const Address& a, AddressList::Priority p);

}  // namespace sekimori::policy
