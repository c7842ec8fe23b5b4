// common/policy/cidr.cpp — see cidr.h.
#include "common/policy/cidr.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "common/util/strings.h"

namespace sekimori::policy {
namespace {

constexpr std::array<std::uint8_t, 12> kMappedPrefix{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
constexpr int kV4Offset = 96;  // an IPv4 /n is an IPv6 /(96+n) inside ::ffff:0:0/96

// Clears every bit after the first `prefix` bits.
void maskTo(IpAddress::Bytes& b, int prefix) {
  for (int i = 0; i < 16; ++i) {
    const int keep = std::clamp(prefix - i * 8, 0, 8);
    b[static_cast<std::size_t>(i)] &= static_cast<std::uint8_t>((0xff00 >> keep) & 0xff);
  }
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  text = util::trim(text);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  if (util::istartsWith(text, "ipv6:")) text = text.substr(5);
  // INET6_ADDRSTRLEN is 46 with the NUL; anything longer is not an address,
  // and the fixed buffer keeps parsing allocation-free.
  char buf[INET6_ADDRSTRLEN];
  if (text.empty() || text.size() >= sizeof buf) return std::nullopt;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';

  IpAddress a;
  in_addr v4{};
  if (inet_pton(AF_INET, buf, &v4) == 1) {
    std::memcpy(a.bytes_.data(), kMappedPrefix.data(), kMappedPrefix.size());
    std::memcpy(a.bytes_.data() + 12, &v4, 4);
    return a;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, buf, &v6) == 1) {
    std::memcpy(a.bytes_.data(), &v6, 16);
    return a;
  }
  return std::nullopt;
}

bool IpAddress::isV4() const {
  return std::memcmp(bytes_.data(), kMappedPrefix.data(), kMappedPrefix.size()) == 0;
}

std::string IpAddress::str() const {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (isV4()) {
    inet_ntop(AF_INET, bytes_.data() + 12, buf, sizeof buf);
  } else {
    inet_ntop(AF_INET6, bytes_.data(), buf, sizeof buf);
  }
  return buf;
}

std::optional<Network> Network::parse(std::string_view text) {
  text = util::trim(text);
  const auto slash = text.find('/');
  const auto addrText = util::trim(text.substr(0, slash));
  const auto addr = IpAddress::parse(addrText);
  if (!addr) return std::nullopt;
  // The notation decides how the prefix counts, not the address value:
  // "::ffff:0:0/96" is written as IPv6 and means /96 in IPv6 terms.
  const bool v4Notation = addrText.find(':') == std::string_view::npos;
  const int max = v4Notation ? 32 : 128;
  int prefix = max;
  if (slash != std::string_view::npos) {
    const auto digits = util::trim(text.substr(slash + 1));
    if (digits.empty() || digits.size() > 3 || digits.front() < '0' || digits.front() > '9') return std::nullopt;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (ec != std::errc() || ptr != digits.data() + digits.size()) return std::nullopt;
    if (prefix < 0 || prefix > max) return std::nullopt;
  }
  if (v4Notation) prefix += kV4Offset;

  Network n;
  n.prefix_ = prefix;
  auto bytes = addr->bytes();
  maskTo(bytes, prefix);
  n.base_ = IpAddress::fromBytes(bytes);
  return n;
}

bool Network::contains(const IpAddress& a) const {
  const auto& x = a.bytes();
  const auto& b = base_.bytes();
  int bits = prefix_;
  for (std::size_t i = 0; i < 16 && bits > 0; ++i, bits -= 8) {
    const auto mask = static_cast<std::uint8_t>((0xff00 >> std::min(bits, 8)) & 0xff);
    if ((x[i] & mask) != b[i]) return false;
  }
  return true;
}

std::string Network::str() const {
  const int p = base_.isV4() && prefix_ >= kV4Offset ? prefix_ - kV4Offset : prefix_;
  return base_.str() + "/" + std::to_string(p);
}

bool NetworkList::add(std::string_view spec, std::string* error) {
  const auto n = Network::parse(spec);
  if (!n) {
    if (error) {
      *error = "not an IP address or network (like 192.0.2.0/24 or 2001:db8::/32): '" +
               util::sanitize(util::trim(spec), 80) + "'";
    }
    return false;
  }
  auto g = std::lower_bound(groups_.begin(), groups_.end(), n->prefixLength(),
                            [](const Group& x, int prefix) { return x.prefix > prefix; });
  if (g == groups_.end() || g->prefix != n->prefixLength()) g = groups_.insert(g, Group{n->prefixLength(), {}});
  const auto& base = n->base().bytes();
  const auto pos = std::lower_bound(g->bases.begin(), g->bases.end(), base);
  if (pos != g->bases.end() && *pos == base) return true;  // duplicate
  g->bases.insert(pos, base);
  ++size_;
  return true;
}

bool NetworkList::contains(const IpAddress& a) const {
  for (const auto& g : groups_) {
    auto masked = a.bytes();
    maskTo(masked, g.prefix);
    if (std::binary_search(g.bases.begin(), g.bases.end(), masked)) return true;
  }
  return false;
}

}  // namespace sekimori::policy
