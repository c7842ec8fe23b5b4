// milters/sizelimit/size_policy.h — the decisions of sekimori-sizelimit
// (R-SIZE-1 … R-SIZE-6) as pure functions: no libmilter, no syslog, no I/O,
// so unit tests drive every boundary directly.
//
// Which limit applies: each recipient has a direction (R-DIR-1: from inside
// to a local domain is internal, from inside to elsewhere outbound, from
// outside inbound) and a domain (the sender's for outbound, the recipient's
// otherwise); the limit is the most specific of domain, direction, global.
// A message must fit the limit of every recipient it is accepted for: at
// RCPT a declared SIZE= refuses just that recipient; at end of message the
// smallest limit among the recipients decides, so no recipient ever gets a
// message over its own limit and none is silently dropped.
//
//   SizeConfig cfg = ...;                        // built from the conf file
//   auto d = decideDeclared(cfg.maxMessageSize.get(Direction::Outbound, "example.jp"), 25'000'000);
//   if (d.refused()) reply(cfg.replies.size);
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/config/units.h"
#include "common/config/values.h"
#include "common/policy/address.h"
#include "common/policy/direction.h"
#include "common/policy/reply.h"

namespace sekimori::sizelimit {

struct Replies {
  policy::Reply size{"552", "5.3.4", "Message size exceeds fixed maximum message size"};
  policy::Reply partial{"554", "5.6.1", "Partial messages are not accepted"};
  policy::Reply hops{"554", "5.4.6", "Too many hops"};
  policy::Reply archive{"552", "5.3.4", "Attachment expands beyond the permitted size"};
  policy::Reply recipients{"452", "4.5.3", "Too many recipients"};
  policy::Reply attachments{"552", "5.3.4", "Too many attachments"};
  policy::Reply structure{"554", "5.6.0", "Message structure too complex"};
};

// The whole config of one load; immutable once built. 0 means "no limit"
// for every limit below.
struct SizeConfig {
  config::Layered<config::Bytes> maxMessageSize{config::Bytes{20 * 1024 * 1024}};
  config::Layered<config::Count> maxRecipients;
  config::Layered<config::Count> maxAttachments;
  config::Layered<config::Bytes> maxArchiveExpansion{config::Bytes{100 * 1024 * 1024}};
  std::uint64_t maxReceived = 50;
  bool rejectPartial = true;
  int maxArchiveDepth = 8;
  bool rejectDeepArchives = true;
  int maxMimeDepth = 32;
  std::uint64_t maxMimeParts = 1000;
  std::uint64_t spoolMemory = 1024 * 1024;
  std::string spoolDir = "/tmp";
  Replies replies;

  // True when the body must be read as MIME at all (else only counted).
  bool needsMime() const;
};

enum class Reason { None, Size, Hops, Partial, Archive, Recipients, Attachments, Structure };
std::string_view toString(Reason r);  // "size", "hops", ... for log lines

struct Decision {
  Reason reason = Reason::None;
  std::uint64_t value = 0;  // what was measured
  std::uint64_t limit = 0;  // what it was measured against
  std::string_view what = {};  // what value and limit count, when the reason does not say
  bool refused() const { return reason != Reason::None; }
  const policy::Reply& reply(const Replies& r) const;
};

// 0 is "no limit": the larger of two limits, and the smaller.
constexpr std::uint64_t looser(std::uint64_t a, std::uint64_t b) { return (a == 0 || b == 0) ? 0 : (a > b ? a : b); }
constexpr std::uint64_t stricter(std::uint64_t a, std::uint64_t b) { return a == 0 ? b : (b == 0 ? a : (a < b ? a : b)); }

// The largest size limit any recipient of this message could have, known at
// MAIL FROM (before the recipients): a declared SIZE= over it is refused at once.
std::uint64_t sizeBoundAtMail(const SizeConfig& cfg, bool inside, const policy::Address& sender);

// The smallest of the recipients' values of a layered limit (0 = no limit);
// with no recipients, the sender side's value.
template <class T>
std::uint64_t strictestFor(const config::Layered<T>& limit, bool inside, const policy::Address& sender,
                           std::span<const policy::Address> recipients,
                           const std::function<bool(const policy::Address&)>& isLocal) {
  if (recipients.empty()) {
    const auto d = inside ? policy::Direction::Outbound : policy::Direction::Inbound;
    return limit.get(d, sender.domain).value;
  }
  std::uint64_t out = 0;
  for (const auto& r : recipients) {
    const auto d = policy::recipientDirection(inside, isLocal(r));
    out = stricter(out, limit.get(d, policy::overrideDomain(d, sender, r)).value);
  }
  return out;
}

// Declared SIZE= against a limit. No SIZE= (nullopt) never refuses.
Decision decideDeclared(std::uint64_t limit, std::optional<std::uint64_t> declared);
// Bytes actually received against a limit.
Decision decideSize(std::uint64_t limit, std::uint64_t bytes);
// Received: headers seen (the receiving MTA's own included) against the maximum.
Decision decideHops(std::uint64_t maxReceived, std::uint64_t received);
// The n-th recipient (1-based) of one message against the maximum.
Decision decideRecipients(std::uint64_t maxRecipients, std::uint64_t nth);
Decision decideAttachments(std::uint64_t maxAttachments, std::uint64_t count);

// "type/subtype" of a Content-Type header value ("text/plain" when empty),
// lowercased, without parameters.
std::string mediaType(std::string_view contentTypeValue);

}  // namespace sekimori::sizelimit
