// common/policy/direction.cpp — see direction.h.
#include "common/policy/direction.h"

#include "common/util/strings.h"

namespace sekimori::policy {

std::string_view toString(Direction d) {
  switch (d) {
    case Direction::Inbound: return "inbound";
    case Direction::Outbound: return "outbound";
    case Direction::Internal: return "internal";
  }
  return "inbound";
}

std::optional<Direction> directionFromString(std::string_view s) {
  s = util::trim(s);
  for (const auto d : {Direction::Inbound, Direction::Outbound, Direction::Internal}) {
    if (util::iequals(s, toString(d))) return d;
  }
  return std::nullopt;
}

bool isInside(const DirectionPolicy& p, bool authenticated, const std::optional<IpAddress>& client) {
  return authenticated || (client && p.internalNetworks.contains(*client));
}

bool isLocal(const DirectionPolicy& p, const Address& rcpt) {
  if (rcpt.isNull()) return false;
  if (rcpt.domain.empty()) return true;
  return p.localDomains.contains(rcpt.domain);
}

Direction classify(const DirectionPolicy& p, bool authenticated, const std::optional<IpAddress>& client,
                   std::span<const Address> recipients) {
  if (!isInside(p, authenticated, client)) return Direction::Inbound;
  for (const auto& r : recipients) {
    if (!isLocal(p, r)) return Direction::Outbound;
  }
  return recipients.empty() ? Direction::Outbound : Direction::Internal;
}

Direction recipientDirection(bool inside, bool recipientLocal) {
  if (!inside) return Direction::Inbound;
  return recipientLocal ? Direction::Internal : Direction::Outbound;
}

std::string_view overrideDomain(Direction d, const Address& sender, const Address& rcpt) {
  return d == Direction::Outbound ? std::string_view(sender.domain) : std::string_view(rcpt.domain);
}

}  // namespace sekimori::policy
