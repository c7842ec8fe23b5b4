// milters/ratelimit/rate_policy.cpp — see rate_policy.h.
#include "milters/ratelimit/rate_policy.h"

#include "common/util/strings.h"

namespace sekimori::ratelimit {

std::string_view toString(Kind k) {
  switch (k) {
    case Kind::Sender: return "sender";
    case Kind::Recipient: return "recipient";
    case Kind::Client: return "client";
    case Kind::User: return "user";
    case Kind::Domain: return "domain";
    case Kind::Session: return "session";
    case Kind::ListLoop: return "list";
  }
  return "?";
}

std::string Directions::str() const {
  std::string out;
  for (const auto d : {policy::Direction::Inbound, policy::Direction::Outbound, policy::Direction::Internal}) {
    if (!has(d)) continue;
    if (!out.empty()) out += ' ';
    out += policy::toString(d);
  }
  return out.empty() ? "none" : out;
}

std::optional<Directions> Directions::parse(std::string_view text, std::string* error) {
  Directions out;
  for (const auto& word : util::splitList(text)) {
    if (util::iequals(word, "none")) continue;
    if (util::iequals(word, "all")) {
      out = all();
      continue;
    }
    const auto d = policy::directionFromString(word);
    if (!d) {
      if (error) *error = "unknown direction '" + word + "' (inbound, outbound, internal, all, none)";
      return std::nullopt;
    }
    out.add(*d);
  }
  return out;
}

Limit CounterConfig::limit(policy::Direction d, std::string_view domain) const {
  Limit l;
  if (!directions.has(d)) return l;
  l.max = max.get(d, domain).value;
  l.window = window;
  l.penalty = penalty;
  return l;
}

const policy::Reply& RateConfig::reply(Kind k) const {
  switch (k) {
    case Kind::Sender: return replies.sender;
    case Kind::Recipient: return replies.recipient;
    case Kind::Client:
    case Kind::User:
    case Kind::Domain: return replies.client;
    case Kind::Session: return replies.session;
    case Kind::ListLoop: return replies.loop;
  }
  return replies.client;
}

namespace {

std::optional<std::string> addressKey(char prefix, const policy::Address& a) {
  if (a.isNull()) return std::nullopt;
  std::string key{prefix, ':'};
  key += a.str();
  return key;
}

}  // namespace

std::optional<std::string> senderKey(const policy::Address& sender) { return addressKey('s', sender); }
std::optional<std::string> recipientKey(const policy::Address& rcpt) { return addressKey('r', rcpt); }

std::optional<std::string> clientKey(const std::optional<policy::IpAddress>& client) {
  if (!client) return std::nullopt;
  return "c:" + client->str();
}

std::optional<std::string> userKey(std::string_view authUser) {
  if (authUser.empty()) return std::nullopt;
  return "u:" + std::string(authUser);
}

std::optional<std::string> domainKey(const policy::Address& sender) {
  if (sender.isNull() || sender.domain.empty()) return std::nullopt;
  return "d:" + sender.domain;
}

std::optional<std::string> loopKey(const policy::Address& list, std::string_view messageId) {
  std::string_view id = util::trim(messageId);
  if (id.size() >= 2 && id.front() == '<' && id.back() == '>') id = util::trim(id.substr(1, id.size() - 2));
  if (id.empty() || list.isNull()) return std::nullopt;
  return "l:" + list.str() + " " + util::sanitize(id);
}

std::optional<Kind> kindOfKey(std::string_view key) {
  if (key.size() < 3 || key[1] != ':') return std::nullopt;
  switch (key[0]) {
    case 's': return Kind::Sender;
    case 'r': return Kind::Recipient;
    case 'c': return Kind::Client;
    case 'u': return Kind::User;
    case 'd': return Kind::Domain;
    case 'l': return Kind::ListLoop;
    default: return std::nullopt;
  }
}

}  // namespace sekimori::ratelimit
