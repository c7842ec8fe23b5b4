// common/notify/issued.h — the Message-IDs of the notices this process sent,
// so that a notice coming back through the milter (the relay is often the
// same Postfix) can be told from a mail that only claims to be one: anyone
// can write an "X-Sekimori-Notice" header, nobody can guess a Message-ID
// that buildMessage() made (time, 64 random bits, a counter).
//
// Each id counts once (take() forgets it), at most `max` are held (the
// oldest go first) and none longer than `ttl`. What a miss costs is small
// by design: a notice not recognised (sent by an earlier run of the daemon,
// say) is scanned as any mail is; only a notice that is itself infected
// would then bring one more warning, about it, which is recognised.
//
//   notify::IssuedIds issued;
//   issued.add(msg.messageId);                // before it is submitted
//   ...
//   bool ours = issued.take(messageIdHeader);  // at end of message
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace sekimori::notify {

class IssuedIds {
 public:
  using Clock = std::chrono::steady_clock;

  // A notice comes back within seconds (minutes when the relay queues it),
  // or up to the outbox's retry limit (an hour by default) when the relay
  // turned it away for a while: two hours are ample; 20000 ids take about
  // 2-4 MB.
  explicit IssuedIds(std::size_t max = 20000, std::chrono::seconds ttl = std::chrono::hours(2))
      : max_(max), ttl_(ttl) {}

  void add(std::string id, Clock::time_point now = Clock::now());
  // True once for an id added within `ttl` (and not pushed out by newer ones).
  // Blanks around the id are ignored, as header values carry them.
  bool take(std::string_view id, Clock::time_point now = Clock::now());
  std::size_t size() const;        // ids held
  std::size_t bookkeeping() const; // entries of the age order (for tests: bounded)

 private:
  using Entry = std::pair<Clock::time_point, std::string>;
  // order_ also names ids already taken (or added again later): only an
  // entry whose time matches the map's is the live one.
  bool live(const Entry& e) const;
  void prune(Clock::time_point now);

  const std::size_t max_;
  const std::chrono::seconds ttl_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Clock::time_point> ids_;  // id -> when added
  std::deque<Entry> order_;  // oldest first; may name ids already taken
};

}  // namespace sekimori::notify
