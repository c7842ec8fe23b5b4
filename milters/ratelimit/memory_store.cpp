// milters/ratelimit/memory_store.cpp — see memory_store.h and store.h.
//
// A key's counter is a ring of bucket counts plus the index of its newest
// bucket; the ring is moved forward lazily, when the key is next touched, so
// an idle key costs nothing and a hit allocates nothing. Keys live in
// power-of-two shards, each an unordered_map under its own mutex; a shard
// never holds more than its share of maxKeys, and drops expired keys in
// sweeps that cost O(1) amortised per new key.
#include "milters/ratelimit/memory_store.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <functional>
#include <limits>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/log/log.h"

namespace sekimori::ratelimit {
namespace {

using std::chrono::milliseconds;

// The buckets that overlap (now - window, now] are the current one, the
// kBuckets - 1 before it and the one that straddles now - window, counted
// whole (store.h): kBuckets + 1 of them. A ring of only kBuckets would forget
// that straddling bucket a bucket early and let up to 2 * max through within
// one window (max just before a bucket boundary, max again a window later).
constexpr std::int64_t kRing = std::int64_t{kBuckets} + 1;

constexpr TimePoint kNever = TimePoint::min();
constexpr std::int64_t kLogFullEveryMs = 60'000;

std::int64_t floorDiv(std::int64_t a, std::int64_t b) {  // b > 0
  const std::int64_t q = a / b;
  return (a % b != 0 && a < 0) ? q - 1 : q;
}

std::size_t slot(std::int64_t bucket) {
  const std::int64_t r = bucket % kRing;
  return static_cast<std::size_t>(r < 0 ? r + kRing : r);
}

std::int64_t toMs(TimePoint t) { return std::chrono::floor<milliseconds>(t.time_since_epoch()).count(); }
TimePoint fromMs(std::int64_t ms) { return TimePoint(milliseconds(ms)); }

// window / kBuckets, as Limit::bucketWidth(), but rounded up and at least
// 1 ms so that kBuckets buckets never span less than the window: with a
// window that is not a multiple of kBuckets ms (7 s: 116.67 ms) rounding down
// would make the counted buckets shorter than the window and break the
// guarantee. Every window that is a multiple of 60 ms (whole minutes, 3 s,
// ...) gets exactly Limit::bucketWidth().
std::int64_t widthMs(const Limit& l) {
  const std::int64_t window = std::max<std::int64_t>(l.window.count(), 1);
  return std::min<std::int64_t>((window + kBuckets - 1) / kBuckets, std::numeric_limits<std::uint32_t>::max());
}

// A limit's buckets as seen at one instant.
struct Frame {
  std::int64_t width = 1;    // ms per bucket
  std::int64_t current = 0;  // the bucket of now
  std::int64_t oldest = 0;   // the oldest bucket that overlaps (now - window, now]
};

Frame frameOf(const Limit& l, TimePoint now) {
  // Milliseconds floored: a bucket holds [b * width, (b + 1) * width), and
  // flooring now can only make `oldest` older, never newer.
  const std::int64_t nowMs = toMs(now);
  Frame f;
  f.width = widthMs(l);
  f.current = floorDiv(nowMs, f.width);
  f.oldest = floorDiv(nowMs - std::max<std::int64_t>(l.window.count(), 1), f.width);
  return f;
}

struct Entry {
  // Bucket b is counts[slot(b)], for newest - kRing < b <= newest.
  std::array<std::uint32_t, kRing> counts{};
  std::uint32_t width = 0;  // ms per bucket of the limit counted under; 0: no counter yet
  std::uint64_t total = 0;  // sum of counts, so a hit does not add up the ring
  std::int64_t newest = 0;
  TimePoint penaltyUntil = kNever;
  TimePoint rememberedUntil = kNever;
};

void resetCounter(Entry& e, std::int64_t width, std::int64_t bucket) {
  e.counts.fill(0);
  e.total = 0;
  e.width = static_cast<std::uint32_t>(width);
  e.newest = bucket;
}

// Makes `bucket` the newest, emptying the slots that rotate out. A caller
// whose `now` is behind the newest bucket (two threads that read the clock
// in one order and took the lock in the other, or a clock stepped back) moves
// nothing: its hit goes into the newest bucket, which expires later than its
// own would have, never earlier.
void advance(Entry& e, std::int64_t bucket) {
  if (bucket <= e.newest) return;
  if (bucket - e.newest >= kRing) {
    e.counts.fill(0);
    e.total = 0;
  } else {
    for (std::int64_t b = e.newest + 1; b <= bucket; ++b) {
      auto& c = e.counts[slot(b)];
      e.total -= c;
      c = 0;
    }
  }
  e.newest = bucket;
}

// Hits in buckets oldest … newest. Right after advance() to now's bucket
// with a window of exactly kBuckets buckets that is the whole ring.
std::uint64_t countFrom(const Entry& e, std::int64_t oldest) {
  if (e.width == 0 || oldest > e.newest) return 0;
  std::uint64_t sum = e.total;
  for (std::int64_t b = e.newest - kRing + 1; b < oldest; ++b) sum -= e.counts[slot(b)];
  return sum;
}

// When the entry stops mattering: its newest bucket has left every window it
// can be counted in (kBuckets * width >= the window), and no penalty or
// loop-guard entry is running.
TimePoint expiresAt(const Entry& e) {
  TimePoint t = std::max(e.penaltyUntil, e.rememberedUntil);
  if (e.width != 0 && e.total != 0) {
    const std::int64_t width = e.width;
    t = std::max(t, fromMs((e.newest + 1) * width + std::int64_t{kBuckets} * width));
  }
  return t;
}

// Transparent, so find() takes the caller's string_view without building a
// std::string.
struct KeyHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// On its own cache line: threads on neighbouring shards do not bounce each
// other's mutex.
struct alignas(64) Shard {
  std::mutex mutex;
  std::unordered_map<std::string, Entry, KeyHash, std::equal_to<>> entries;
  std::size_t cap = 0;
  std::size_t insertsSinceSweep = 0;
  // No entry expires before this (a lower bound, lowered whenever an entry
  // changes): a full shard of live keys is not swept again until it passes,
  // so a flood of new keys cannot make every miss a walk over the shard.
  TimePoint nextExpiry = kNever;

  // An entry changed: keep nextExpiry a lower bound.
  void touched(const Entry& e) { nextExpiry = std::min(nextExpiry, expiresAt(e)); }

  void sweep(TimePoint now) {
    TimePoint next = TimePoint::max();
    std::erase_if(entries, [&](const auto& kv) {
      const TimePoint t = expiresAt(kv.second);
      if (t <= now) return true;
      next = std::min(next, t);
      return false;
    });
    nextExpiry = next;
    insertsSinceSweep = 0;
  }
};

}  // namespace

struct MemoryStore::Impl {
  std::size_t maxKeys;
  std::size_t shardCount;
  int shardBits;
  std::size_t sweepEvery;
  std::unique_ptr<Shard[]> shards;
  std::atomic<std::int64_t> lastFullLogMs{std::numeric_limits<std::int64_t>::min()};

  explicit Impl(const MemoryStoreOptions& o) : maxKeys(o.maxKeys) {
    std::size_t n = std::bit_ceil(std::clamp<std::size_t>(o.shards, 1, std::size_t{1} << 16));
    // More shards than keys would leave some shards no room at all, and a
    // key's fate would depend on its hash.
    n = std::min(n, std::bit_floor(std::max<std::size_t>(maxKeys, 1)));
    shardCount = n;
    shardBits = std::countr_zero(n);
    shards = std::make_unique<Shard[]>(n);
    // The remainder spread over the first shards: together they hold
    // exactly maxKeys.
    for (std::size_t i = 0; i < n; ++i) shards[i].cap = maxKeys / n + (i < maxKeys % n ? 1 : 0);
    // A sweep walks the shard (at most cap entries); one every cap / 4
    // inserts is at most 4 entries looked at per insert.
    sweepEvery = std::max<std::size_t>(maxKeys / n / 4, 16);
  }

  Shard& shardOf(std::string_view key) {
    if (shardBits == 0) return shards[0];
    // The map inside the shard takes the same hash modulo a prime; the shard
    // comes from the top bits of the hash times 2^64/phi so the two choices
    // do not correlate.
    const std::uint64_t h = static_cast<std::uint64_t>(KeyHash{}(key)) * 0x9E3779B97F4A7C15ull;
    return shards[static_cast<std::size_t>(h >> (64 - shardBits))];
  }

  // Room for a new key: nullptr when the shard is full of live keys. The
  // caller holds the shard's lock.
  Entry* insert(Shard& s, std::string_view key, TimePoint now) {
    const bool full = s.entries.size() >= s.cap;
    if (++s.insertsSinceSweep >= sweepEvery || (full && now >= s.nextExpiry)) s.sweep(now);
    if (s.entries.size() >= s.cap) return nullptr;
    return &s.entries.emplace(std::string(key), Entry{}).first->second;
  }

  // A key went untracked: say so, at most once a minute per store (called
  // without a shard lock: syslog may block).
  void reportFull(TimePoint now) {
    const std::int64_t ms = toMs(now);
    std::int64_t last = lastFullLogMs.load(std::memory_order_relaxed);
    if (last != std::numeric_limits<std::int64_t>::min() && ms - last < kLogFullEveryMs) return;
    if (!lastFullLogMs.compare_exchange_strong(last, ms, std::memory_order_relaxed)) return;
    log::message(log::Level::Warning, "ratelimit memory store full (" + std::to_string(maxKeys) +
                                          " keys); new keys are not limited until old ones expire; "
                                          "raise memory_max_keys");
  }

  Check hitLocked(Shard& s, std::string_view key, const Limit& limit, std::uint32_t n, TimePoint now,
                  Ticket* ticket, bool& full) {
    const Frame f = frameOf(limit, now);
    Check c;
    Entry* e = nullptr;
    std::uint32_t inBucket = 0;  // already in the bucket this hit would go to
    if (auto it = s.entries.find(key); it != s.entries.end()) {
      e = &it->second;
      // A key is counted under one limit; if it is not (a reload changed the
      // window), its old buckets mean nothing at the new width. A penalty or
      // loop-guard entry (width 0) gets its counter here too.
      if (e->width != f.width) resetCounter(*e, f.width, f.current);
      // Read without moving the ring: only a counted hit advances it, so
      // `newest` stays the bucket of the last counted hit and the key
      // expires a window after that, however often it is refused since.
      c.count = countFrom(*e, f.oldest);
      if (f.current <= e->newest) inBucket = e->counts[slot(e->newest)];
      // Refused hits while penalised do not extend the penalty: it runs a
      // fixed time from the refusal that started it, then the window alone
      // decides again (and a client still over the limit starts a new one).
      // Extending it would lock out for good a client that retries every
      // few minutes, as every MTA does.
      if (now < e->penaltyUntil) {
        c.allowed = false;
        c.penaltyUntil = e->penaltyUntil;
        return c;
      }
    }

    // XXX: a bucket holds at most 2^32 - 1 hits; a hit that would overflow
    // it (only possible with max above that) is refused like one over the
    // limit.
    const bool fits = n <= limit.max && c.count <= limit.max - n &&
                      inBucket <= std::numeric_limits<std::uint32_t>::max() - n;
    if (!fits) {
      c.allowed = false;
      if (limit.penalty.count() > 0) {
        if (e == nullptr) e = insert(s, key, now);
        if (e == nullptr) {
          full = true;  // refused all the same, but the penalty cannot be kept
        } else {
          e->penaltyUntil = now + limit.penalty;
          c.penaltyUntil = e->penaltyUntil;
          s.touched(*e);
        }
      }
      return c;
    }
    if (n == 0) return c;  // a look, not a hit: nothing to count or to create

    if (e == nullptr) {
      e = insert(s, key, now);
      if (e == nullptr) {
        full = true;
        c.count = n;
        return c;
      }
      resetCounter(*e, f.width, f.current);
    }
    advance(*e, f.current);
    e->counts[slot(e->newest)] += n;
    e->total += n;
    c.count += n;
    s.touched(*e);
    if (ticket != nullptr) {
      ticket->bucket = e->newest;
      ticket->n = n;
    }
    return c;
  }
};

MemoryStore::MemoryStore(MemoryStoreOptions options) : impl_(std::make_unique<Impl>(options)) {}
MemoryStore::~MemoryStore() = default;

Check MemoryStore::hit(std::string_view key, const Limit& limit, std::uint32_t n, TimePoint now, Ticket* ticket) {
  if (ticket != nullptr) {
    ticket->key.assign(key);  // reuses the caller's buffer
    ticket->bucket = 0;
    ticket->n = 0;
  }
  if (limit.max == 0) return Check{};

  Shard& s = impl_->shardOf(key);
  bool full = false;
  Check c;
  {
    std::lock_guard lock(s.mutex);
    c = impl_->hitLocked(s, key, limit, n, now, ticket, full);
  }
  if (full) impl_->reportFull(now);
  return c;
}

void MemoryStore::giveBack(const Ticket& ticket, const Limit& limit) {
  if (ticket.n == 0) return;
  const std::int64_t width = widthMs(limit);
  Shard& s = impl_->shardOf(ticket.key);
  std::lock_guard lock(s.mutex);
  auto it = s.entries.find(std::string_view(ticket.key));
  if (it == s.entries.end()) return;
  Entry& e = it->second;
  // Only while the ticket's bucket is still in the ring: once it has rotated
  // out its slot holds a newer bucket's hits.
  if (e.width != width || ticket.bucket > e.newest || ticket.bucket <= e.newest - kRing) return;
  auto& c = e.counts[slot(ticket.bucket)];
  const std::uint32_t back = std::min(c, ticket.n);
  c -= back;
  e.total -= back;
  s.touched(e);
}

bool MemoryStore::remember(std::string_view key, std::chrono::milliseconds ttl, TimePoint now) {
  Shard& s = impl_->shardOf(key);
  bool full = false;
  {
    std::lock_guard lock(s.mutex);
    auto it = s.entries.find(key);
    Entry* e = it == s.entries.end() ? nullptr : &it->second;
    if (e != nullptr && now < e->rememberedUntil) return false;
    if (ttl.count() <= 0) return true;  // remembered for no time at all
    if (e == nullptr) e = impl_->insert(s, key, now);
    if (e == nullptr) {
      // Unguarded rather than refused: a full store must not stop mail.
      full = true;
    } else {
      e->rememberedUntil = now + ttl;
      s.touched(*e);
    }
  }
  if (full) impl_->reportFull(now);
  return true;
}

bool MemoryStore::remembered(std::string_view key, TimePoint now) {
  Shard& s = impl_->shardOf(key);
  std::lock_guard lock(s.mutex);
  auto it = s.entries.find(key);
  return it != s.entries.end() && now < it->second.rememberedUntil;
}

Usage MemoryStore::usage(std::string_view key, const Limit& limit, TimePoint now) {
  Shard& s = impl_->shardOf(key);
  std::lock_guard lock(s.mutex);
  auto it = s.entries.find(key);
  if (it == s.entries.end()) return {};
  const Entry& e = it->second;
  Usage u;
  if (now < e.penaltyUntil) u.penaltyUntil = e.penaltyUntil;
  if (e.width != 0) {
    // The admin's limit may not be the one the key was counted under (limits
    // differ per direction and domain); the buckets are read in their own
    // width, over the limit's window when it has that width and over
    // kBuckets of them otherwise.
    const std::int64_t width = e.width;
    const std::int64_t window = widthMs(limit) == width && limit.window.count() > 0
                                    ? limit.window.count()
                                    : std::int64_t{kBuckets} * width;
    u.count = countFrom(e, floorDiv(toMs(now) - window, width));
  }
  return u;
}

bool MemoryStore::reset(std::string_view key) {
  Shard& s = impl_->shardOf(key);
  std::lock_guard lock(s.mutex);
  auto it = s.entries.find(key);
  if (it == s.entries.end()) return false;
  s.entries.erase(it);
  return true;
}

std::size_t MemoryStore::size() const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < impl_->shardCount; ++i) {
    std::lock_guard lock(impl_->shards[i].mutex);
    n += impl_->shards[i].entries.size();
  }
  return n;
}

}  // namespace sekimori::ratelimit
