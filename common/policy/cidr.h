// common/policy/cidr.h — IPv4 and IPv6 client addresses and networks, for
// internal_networks and network exemption lists.
//
// IPv4 is stored as IPv4-mapped IPv6 (::ffff:a.b.c.d), so "192.0.2.1" and
// "::ffff:192.0.2.1" are the same client and one matcher serves both. The
// mapped prefix is the family flag: isV4() is true exactly for mapped
// addresses, which is what a dual-stack socket reports for an IPv4 peer.
//
//   policy::NetworkList nets;
//   std::string why;
//   if (!nets.add("10.0.0.0/8", &why)) complain(why);
//   nets.add("[2001:db8::]/32", &why);                      // Postfix mynetworks spelling
//   nets.contains(*policy::IpAddress::parse("10.1.2.3"));    // true
//
// Parsing uses inet_pton, so only the canonical spellings are accepted (no
// "10.1" shorthand, no octal "010.0.0.1", no zone IDs "fe80::1%eth0").
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sekimori::policy {

class IpAddress {
 public:
  using Bytes = std::array<std::uint8_t, 16>;

  // "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" (the v4 address),
  // "[::1]", Postfix's "IPv6:2001:db8::1" and "[IPv6:2001:db8::1]".
  // Surrounding whitespace is ignored. nullopt for anything else.
  static std::optional<IpAddress> parse(std::string_view text);
  // Network byte order, IPv4 as ::ffff:a.b.c.d.
  static IpAddress fromBytes(const Bytes& b) {
    IpAddress a;
    a.bytes_ = b;
    return a;
  }

  bool isV4() const;
  // "192.0.2.1" for IPv4 (also when parsed from "::ffff:192.0.2.1"),
  // RFC 5952 form for IPv6 ("2001:db8::1").
  std::string str() const;
  const Bytes& bytes() const { return bytes_; }
  friend auto operator<=>(const IpAddress&, const IpAddress&) = default;

 private:
  Bytes bytes_{};  // "::" until set
};

class Network {
 public:
  // "10.0.0.0/8", "2001:db8::/32", "[2001:db8::]/32"; a bare address is a
  // host network (/32 or /128). The prefix counts in the notation used: an
  // IPv4 prefix is 0-32, an IPv6 prefix 0-128 (also for "::ffff:0:0/96").
  // Host bits set below the prefix ("10.1.2.3/8") are masked off, as Postfix
  // does after warning; config loading may compare str() with the input to
  // warn likewise. nullopt for a bad address or prefix.
  static std::optional<Network> parse(std::string_view text);

  // Allocation-free.
  bool contains(const IpAddress& a) const;
  // "10.0.0.0/8"; IPv4 networks in IPv4 notation.
  std::string str() const;
  const IpAddress& base() const { return base_; }
  // In IPv6 terms: an IPv4 /8 is 104.
  int prefixLength() const { return prefix_; }
  friend bool operator==(const Network&, const Network&) = default;

 private:
  IpAddress base_;    // host bits already cleared
  int prefix_ = 128;  // 0-128, IPv6 terms
};

// A set of networks, answering "is this client in any of them?".
//
// Matching: networks are grouped by prefix length, each group a sorted
// vector of network bases. contains() masks the address once per distinct
// prefix length and binary-searches that group, so the cost is
// O(L * log n) for L distinct prefix lengths (at most 129, usually a handful)
// and stays flat for lists of thousands of entries, without allocating. A
// trie would be faster for many distinct lengths but is more code to get
// right; a plain scan would be as fast for a dozen entries but not for 5000.
// add() keeps the groups sorted (O(n) per insert), which is fine at
// config-load time.
class NetworkList {
 public:
  // Adds one network spec (see Network::parse). On failure returns false and,
  // when `error` is set, writes a one-line reason for a config message.
  // A network already present is accepted and not stored twice.
  bool add(std::string_view spec, std::string* error);
  bool contains(const IpAddress& a) const;
  bool empty() const { return size_ == 0; }
  // Distinct networks stored.
  std::size_t size() const { return size_; }

 private:
  struct Group {
    int prefix;                            // IPv6 terms
    std::vector<IpAddress::Bytes> bases;   // sorted, masked to `prefix`
  };
  std::vector<Group> groups_;  // sorted by prefix, longest first
  std::size_t size_ = 0;
};

}  // namespace sekimori::policy
