// common/policy/direction.h — inbound, outbound or internal (R-DIR-1).
//
// The client is inside when SMTP AUTH succeeded ({auth_authen} set) or its
// address is in internal_networks. From inside, a message whose recipients
// are all local (domain in local_domains) is internal, otherwise outbound.
// From outside it is inbound, also when no recipient is local: refusing relay
// is Postfix's job (smtpd_relay_restrictions), and this library must not
// pretend to do it.
//
//   policy::DirectionPolicy p;
//   std::string why;
//   p.localDomains.add("example.jp", &why);
//   p.internalNetworks.add("10.0.0.0/8", &why);
//   policy::classify(p, /*authenticated=*/false, policy::IpAddress::parse("10.1.2.3"),
//                    recipients);                         // Internal or Outbound
//   policy::toString(policy::Direction::Inbound);         // "inbound", for logs and config sections
//
// Pure functions: the caller passes what it knows at the current stage, so the
// answer may change from Outbound to Internal as RCPTs arrive (classify once
// per transaction at end of message, or per stage knowingly).
#pragma once

#include <cstddef>
#include <optional>
#include <span>
#include <string_view>

#include "common/policy/address.h"
#include "common/policy/cidr.h"
#include "common/policy/lists.h"

namespace sekimori::policy {

// The values index per-direction config tables (config::Layered): keep them
// 0, 1, 2.
enum class Direction { Inbound = 0, Outbound = 1, Internal = 2 };
inline constexpr std::size_t kDirectionCount = 3;

std::string_view toString(Direction d);  // "inbound" / "outbound" / "internal"
// The inverse of toString, ASCII-case-insensitive, whitespace around ignored.
std::optional<Direction> directionFromString(std::string_view s);

struct DirectionPolicy {
  DomainList localDomains;      // local_domains
  NetworkList internalNetworks; // internal_networks
};

// Authenticated, or the client address is in internalNetworks. A client
// without an IP address (nullopt: a local socket or the pickup path) is inside
// only when authenticated: list the loopback addresses to trust local
// submission.
bool isInside(const DirectionPolicy& p, bool authenticated, const std::optional<IpAddress>& client);
// The recipient's domain is in localDomains. A recipient without a domain
// (RCPT TO:<postmaster>, which RFC 5321 requires a server to accept) is local
// too: Postfix completes it with $myorigin and delivers it here. The null
// address is never local.
bool isLocal(const DirectionPolicy& p, const Address& rcpt);
// Inside and every recipient local: Internal; inside and any recipient not
// local: Outbound; outside: Inbound. With no recipients yet (MAIL stage):
// Outbound from inside, Inbound from outside.
Direction classify(const DirectionPolicy& p, bool authenticated, const std::optional<IpAddress>& client,
                   std::span<const Address> recipients);

// The direction one recipient puts a message in: what per-recipient limits
// and overrides go by, before the whole message is classified.
Direction recipientDirection(bool inside, bool recipientLocal);

// The domain whose [domain NAME] overrides apply to one recipient: the
// sender's for outbound mail (the site's own customer), the recipient's
// otherwise.
std::string_view overrideDomain(Direction d, const Address& sender, const Address& rcpt);

}  // namespace sekimori::policy
