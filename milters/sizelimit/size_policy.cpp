// milters/sizelimit/size_policy.cpp — see size_policy.h.
#include "milters/sizelimit/size_policy.h"

#include "common/util/strings.h"

namespace sekimori::sizelimit {

using policy::Direction;

bool SizeConfig::needsMime() const {
  return rejectPartial || maxAttachments.global().value != 0 || maxAttachments.hasDomainOverrides() ||
         maxArchiveExpansion.global().value != 0 || maxArchiveExpansion.hasDomainOverrides() ||
         [&] {
           for (const auto d : {Direction::Inbound, Direction::Outbound, Direction::Internal}) {
             if (maxAttachments.get(d, "").value != 0 || maxArchiveExpansion.get(d, "").value != 0) return true;
           }
           return false;
         }();
}

std::string_view toString(Reason r) {
  switch (r) {
    case Reason::None: return "none";
    case Reason::Size: return "size";
    case Reason::Hops: return "hops";
    case Reason::Partial: return "partial";
    case Reason::Archive: return "archive";
    case Reason::Recipients: return "recipients";
    case Reason::Attachments: return "attachments";
    case Reason::Structure: return "structure";
  }
  return "none";
}

const policy::Reply& Decision::reply(const Replies& r) const {
  switch (reason) {
    case Reason::Hops: return r.hops;
    case Reason::Partial: return r.partial;
    case Reason::Archive: return r.archive;
    case Reason::Recipients: return r.recipients;
    case Reason::Attachments: return r.attachments;
    case Reason::Structure: return r.structure;
    case Reason::Size:
    case Reason::None: break;
  }
  return r.size;
}

std::uint64_t sizeBoundAtMail(const SizeConfig& cfg, bool inside, const policy::Address& sender) {
  if (!inside) {
    std::uint64_t bound = 1;  // any real limit is >= 1; 0 would mean "no limit"
    bool first = true;
    for (const auto& c : cfg.maxMessageSize.candidates(Direction::Inbound)) {
      bound = first ? c.value : looser(bound, c.value);
      first = false;
    }
    return bound;
  }
  // From inside: outbound (judged by the sender's domain) or internal (by
  // any local recipient's domain).
  std::uint64_t bound = cfg.maxMessageSize.get(Direction::Outbound, sender.domain).value;
  for (const auto& c : cfg.maxMessageSize.candidates(Direction::Internal)) bound = looser(bound, c.value);
  return bound;
}

Decision decideDeclared(std::uint64_t limit, std::optional<std::uint64_t> declared) {
  if (limit == 0 || !declared || *declared <= limit) return {};
  return {Reason::Size, *declared, limit};
}

Decision decideSize(std::uint64_t limit, std::uint64_t bytes) {
  if (limit == 0 || bytes <= limit) return {};
  return {Reason::Size, bytes, limit};
}

Decision decideHops(std::uint64_t maxReceived, std::uint64_t received) {
  if (maxReceived == 0 || received <= maxReceived) return {};
  return {Reason::Hops, received, maxReceived};
}

Decision decideRecipients(std::uint64_t maxRecipients, std::uint64_t nth) {
  if (maxRecipients == 0 || nth <= maxRecipients) return {};
  return {Reason::Recipients, nth, maxRecipients};
}

Decision decideAttachments(std::uint64_t maxAttachments, std::uint64_t count) {
  if (maxAttachments == 0 || count <= maxAttachments) return {};
  return {Reason::Attachments, count, maxAttachments};
}

std::string mediaType(std::string_view value) {
  value = util::trim(value);
  const auto semi = value.find(';');
  const auto type = util::trim(value.substr(0, semi));
  if (type.empty()) return "text/plain";
  return util::toLowerAscii(type);
}

}  // namespace sekimori::sizelimit
