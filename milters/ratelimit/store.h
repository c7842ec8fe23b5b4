// milters/ratelimit/store.h — where rate-limit counters live.
//
// Every limit is a sliding window of `window` divided into kBuckets equal
// buckets (5 s buckets for a 5 min window). A hit counts into the bucket of
// `now`; the usage of a key is the sum of the buckets that overlap
// (now - window, now], the oldest one counted whole. Hence:
//
//   * never more than `max` hits are admitted in ANY interval of length
//     `window` (the oldest bucket is over-counted, never under-counted);
//   * a refused key is admitted again at most one bucket (window/kBuckets)
//     later than an exact sliding log would admit it.
//
// A fixed window (one counter reset every 5 minutes) would admit 2 * max
// around its boundary; this does not.
//
// Penalty: a limit with penalty > 0 that refuses a hit puts the key in a
// penalty until now + penalty; while penalised every hit is refused, even if
// the window has emptied. Hits refused are never counted.
//
// Two implementations: MemoryStore (one host, sharded, bounded) and
// RedisStore (shared by every MX host; one round trip per call). Both take
// `now` from the caller so tests inject a clock; Redis users keep their
// hosts' clocks in NTP sync (a bucket is seconds wide, skew below that is
// harmless).
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sekimori::ratelimit {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;

// Buckets per window. 60 keeps the error under 2 % of the window and an
// in-memory key under 300 bytes.
inline constexpr std::uint32_t kBuckets = 60;

struct Limit {
  std::uint64_t max = 0;                  // 0: no limit (hit() always allows, counts nothing)
  std::chrono::milliseconds window{0};    // > 0 when max > 0
  std::chrono::milliseconds penalty{0};   // 0: no penalty period

  std::chrono::milliseconds bucketWidth() const { return window / kBuckets; }
};

struct Check {
  bool allowed = true;
  // Usage of the key in the window after this hit (when allowed) or as it
  // stands (when refused).
  std::uint64_t count = 0;
  // Set while the key is penalised (including a penalty this hit started).
  std::optional<TimePoint> penaltyUntil;
};

// Where a counted hit went, so a transaction that aborts can give it back.
struct Ticket {
  std::string key;
  std::int64_t bucket = 0;  // bucket index: ms since epoch / bucketWidth
  std::uint32_t n = 0;
};

struct Usage {
  std::uint64_t count = 0;                 // in the window ending now
  std::optional<TimePoint> penaltyUntil;   // if penalised now
};

// A backend that cannot answer (Redis down, timeout). The milter maps it to
// redis_failure = accept|tempfail; stores never hang longer than their
// configured timeouts.
class StoreUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Store {
 public:
  virtual ~Store() = default;

  // Counts `n` hits for `key` at `now` if usage + n <= limit.max and the key
  // is not penalised; otherwise counts nothing, starts the penalty if the
  // limit has one, and refuses. `ticket` (if given) receives where the hit
  // was counted. Thread-safe.
  virtual Check hit(std::string_view key, const Limit& limit, std::uint32_t n, TimePoint now,
                    Ticket* ticket = nullptr) = 0;

  // Takes back a counted hit (an aborted transaction). Harmless if the
  // bucket has already expired.
  virtual void giveBack(const Ticket& ticket, const Limit& limit) = 0;

  // Loop guard: remembers `key` for `ttl` and returns true if it was not
  // already remembered; returns false (and changes nothing) if it was.
  virtual bool remember(std::string_view key, std::chrono::milliseconds ttl, TimePoint now) = 0;
  // Whether `key` is remembered (without remembering it).
  virtual bool remembered(std::string_view key, TimePoint now) = 0;

  // Admin: the usage of a counter key under `limit`, and its removal
  // (counter, penalty and remembered entries alike). reset returns whether
  // anything was removed.
  virtual Usage usage(std::string_view key, const Limit& limit, TimePoint now) = 0;
  virtual bool reset(std::string_view key) = 0;

  // "memory" or "redis", for logs.
  virtual std::string_view kind() const = 0;
};

}  // namespace sekimori::ratelimit
