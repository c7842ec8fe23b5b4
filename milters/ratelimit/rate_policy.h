// milters/ratelimit/rate_policy.h — what sekimori-ratelimit counts, under
// which key, and which reply a refusal gets (R-RATE-1 … R-RATE-6). No
// libmilter, no I/O: the milter asks these functions for keys and limits and
// hands them to a Store.
//
// Counters and their keys (normalised: domain lowercased, local part as
// Postfix gave it, the null sender has no sender or domain key):
//
//   sender      "s:local@domain"  envelope recipients per window, at RCPT      (R-RATE-1)
//   recipient   "r:local@domain"  messages per window, at RCPT                 (R-RATE-2)
//   client      "c:203.0.113.5"   messages per window + penalty, at MAIL       (R-RATE-3)
//   user        "u:alice"         messages per window + penalty, at MAIL       (R-RATE-3)
//   domain      "d:example.jp"    messages per window + penalty, at MAIL       (R-RATE-3)
//   session     (in the connection) recipients per SMTP session, at RCPT      (R-RATE-4)
//   list loop   "l:list@domain <message-id>" remembered 24 h, at end of message (R-RATE-5)
//
// Each counter applies in the directions listed for it (R-DIR-1) and may be
// overridden per direction and per domain (the sender's domain for the
// sender-side counters, the recipient's for the recipient counter).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/config/units.h"
#include "common/config/values.h"
#include "common/policy/address.h"
#include "common/policy/cidr.h"
#include "common/policy/direction.h"
#include "common/policy/lists.h"
#include "common/policy/reply.h"
#include "milters/ratelimit/store.h"

namespace sekimori::ratelimit {

enum class Kind { Sender, Recipient, Client, User, Domain, Session, ListLoop };
inline constexpr std::size_t kCounterKinds = 5;  // Sender … Domain: the ones kept in a Store
std::string_view toString(Kind k);               // "sender", "recipient", ...

// A set of directions, parsed from "inbound outbound internal".
class Directions {
 public:
  constexpr Directions() = default;
  static Directions all() {
    Directions d;
    d.bits_ = 7;
    return d;
  }
  bool has(policy::Direction d) const { return (bits_ & (1u << static_cast<unsigned>(d))) != 0; }
  void add(policy::Direction d) { bits_ |= 1u << static_cast<unsigned>(d); }
  bool empty() const { return bits_ == 0; }
  std::string str() const;
  // nullopt and `error` set on an unknown word.
  static std::optional<Directions> parse(std::string_view text, std::string* error);

 private:
  unsigned bits_ = 0;
};

// One counter's settings. max and window may be overridden per direction and
// domain; a max of 0 turns the counter off there.
struct CounterConfig {
  config::Layered<config::Count> max;
  std::chrono::milliseconds window{std::chrono::minutes(5)};
  std::chrono::milliseconds penalty{0};
  Directions directions;

  // The store's limit for direction d and domain; max 0 when off.
  Limit limit(policy::Direction d, std::string_view domain) const;
};

struct Replies {
  policy::Reply sender{"451", "4.7.1", "Service unavailable - try again later"};
  policy::Reply recipient{"451", "4.0.0", "Rate limit exceeded"};
  // A milter cannot send the seed's bare "423 sorry, that message exceeds my
  // limit": replies must be 4xx/5xx with an enhanced code. 450 4.7.1 is the
  // closest: temporary, a policy reason.
  policy::Reply client{"450", "4.7.1", "Too many messages, try again later"};
  policy::Reply session{"452", "4.5.3", "Too many recipients"};
  policy::Reply loop{"554", "5.4.6", "Duplicate message to mailing list"};
};

struct Exemptions {
  policy::AddressList senders;   // addresses and domains
  policy::NetworkList networks;  // client networks
  policy::detail::StringSet users;  // {auth_authen} values, compared exactly

  bool sender(const policy::Address& a) const { return !a.isNull() && senders.find(a).found(); }
  bool client(const std::optional<policy::IpAddress>& ip) const { return ip && networks.contains(*ip); }
  bool user(std::string_view u) const { return !u.empty() && users.contains(u); }
};

struct RateConfig {
  // Indexed by Kind (Sender … Domain).
  std::array<CounterConfig, kCounterKinds> counters;
  std::uint64_t sessionRecipients = 100;  // 0: no limit
  policy::AddressList lists;              // mailing-list addresses for the loop guard
  std::chrono::milliseconds loopWindow{std::chrono::hours(24)};
  Exemptions exempt;
  Replies replies;

  const CounterConfig& counter(Kind k) const { return counters[static_cast<std::size_t>(k)]; }
  CounterConfig& counter(Kind k) { return counters[static_cast<std::size_t>(k)]; }
  const policy::Reply& reply(Kind k) const;
};

// Store keys. nullopt where the counter has nothing to count by (the null
// sender has no sender or domain key; a client without an IP address has no
// client key; an unauthenticated one no user key).
std::optional<std::string> senderKey(const policy::Address& sender);
std::optional<std::string> recipientKey(const policy::Address& rcpt);
std::optional<std::string> clientKey(const std::optional<policy::IpAddress>& client);
std::optional<std::string> userKey(std::string_view authUser);
std::optional<std::string> domainKey(const policy::Address& sender);
// The loop guard's key for one list address and one Message-ID (its angle
// brackets and surrounding whitespace removed, case kept: Message-IDs are
// compared exactly, RFC 5322 section 3.6.4).
std::optional<std::string> loopKey(const policy::Address& list, std::string_view messageId);

// "s:alice@example.jp" -> Kind::Sender, so the admin command can find the
// counter's limit for a key. nullopt for an unknown prefix.
std::optional<Kind> kindOfKey(std::string_view key);

}  // namespace sekimori::ratelimit
