#include "milters/ratelimit/memory_store.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/log/log.h"

namespace sekimori::ratelimit {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;

// 2023-11-14 22:13:20 UTC: a multiple of every bucket width used below, so
// offsets from it are offsets within a bucket.
const TimePoint kT0{milliseconds(1'700'000'000'000)};

TimePoint at(std::int64_t ms) { return kT0 + milliseconds(ms); }

const Limit k100Per5Min{100, minutes(5), milliseconds(0)};

MemoryStore oneShard(std::size_t maxKeys = 1000) { return MemoryStore({.maxKeys = maxKeys, .shards = 1}); }

TEST(MemoryStore, AdmitsMaxHitsAndRefusesTheNext) {
  MemoryStore store;
  for (std::uint64_t i = 1; i <= 100; ++i) {
    const Check c = store.hit("c:192.0.2.1", k100Per5Min, 1, at(static_cast<std::int64_t>(i) * 100));
    ASSERT_TRUE(c.allowed) << "hit " << i;
    EXPECT_EQ(c.count, i);
    EXPECT_FALSE(c.penaltyUntil);
  }
  const Check refused = store.hit("c:192.0.2.1", k100Per5Min, 1, at(10'001));
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.count, 100u);
  EXPECT_FALSE(refused.penaltyUntil);
  // Refused hits are not counted, and other keys are not affected.
  EXPECT_EQ(store.usage("c:192.0.2.1", k100Per5Min, at(10'001)).count, 100u);
  EXPECT_TRUE(store.hit("c:192.0.2.2", k100Per5Min, 1, at(10'001)).allowed);
}

// 5 min window: 5 s buckets. The bucket of the hits, [0, 5 s), overlaps
// (now - 300 s, now] until now reaches 305 s: it is counted whole until then.
// An exact sliding log would admit again at hit + 300 s; the store admits
// one bucket width minus the hits' offset within their bucket later.
TEST(MemoryStore, OldestBucketCountsUntilItLeavesTheWindow) {
  struct Case {
    const char* label;
    std::int64_t offset;  // of the 100 hits within their bucket, ms
  };
  const Case cases[] = {{"at the bucket's start", 0}, {"inside the bucket", 1234}, {"at its last ms", 4999}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    MemoryStore store;
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(store.hit("k", k100Per5Min, 1, at(c.offset)).allowed);

    const std::int64_t exactLogAdmits = c.offset + 300'000;
    const std::int64_t admitted = exactLogAdmits + (5'000 - c.offset);
    EXPECT_EQ(admitted, 305'000);
    EXPECT_LE(admitted - exactLogAdmits, 5'000);  // at most one bucket late (store.h)

    EXPECT_FALSE(store.hit("k", k100Per5Min, 1, at(c.offset + 299'999)).allowed);
    EXPECT_FALSE(store.hit("k", k100Per5Min, 1, at(admitted - 1)).allowed);
    EXPECT_FALSE(store.hit("k", k100Per5Min, 1, at(admitted) - nanoseconds(1)).allowed);
    EXPECT_EQ(store.usage("k", k100Per5Min, at(admitted - 1)).count, 100u);
    EXPECT_EQ(store.usage("k", k100Per5Min, at(admitted)).count, 0u);
    const Check again = store.hit("k", k100Per5Min, 1, at(admitted));
    EXPECT_TRUE(again.allowed);
    EXPECT_EQ(again.count, 1u);
  }
}

// The two promises of store.h, checked against a log of every admitted hit:
// no interval of length window admits more than max, and a refusal is
// justified by the hits of the window stretched back by one bucket.
TEST(MemoryStore, NeverMoreThanMaxInAnyWindow) {
  struct Case {
    const char* label;
    Limit limit;
    std::int64_t meanStepNs;
  };
  const Case cases[] = {
      {"1 per minute", {1, minutes(1), milliseconds(0)}, 700'000'000},
      {"10 per 5 min", {10, minutes(5), milliseconds(0)}, 9'000'000'000},
      {"100 per 5 min, bursts", {100, minutes(5), milliseconds(0)}, 1'000'000'000},
      {"7 per 7 s (width rounds up to 117 ms)", {7, seconds(7), milliseconds(0)}, 400'000'000},
      {"3 per hour", {3, hours(1), milliseconds(0)}, 300'000'000'000},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    MemoryStore store;
    std::mt19937_64 rng(20231114);
    std::exponential_distribution<double> gap(1.0 / static_cast<double>(c.meanStepNs));
    std::uniform_int_distribution<std::uint32_t> count(1, 3);
    std::bernoulli_distribution burst(0.3);
    const std::int64_t window = std::chrono::duration_cast<nanoseconds>(c.limit.window).count();
    const std::int64_t width = (c.limit.window.count() + kBuckets - 1) / kBuckets * 1'000'000;

    struct Admitted {
      std::int64_t t;
      std::uint32_t n;
    };
    std::vector<Admitted> log;
    std::int64_t t = 0;
    int refusals = 0;
    for (int i = 0; i < 20000; ++i) {
      if (!burst(rng)) t += static_cast<std::int64_t>(gap(rng));
      const std::uint32_t n = c.limit.max == 1 ? 1 : count(rng);
      const Check check = store.hit("k", c.limit, n, kT0 + nanoseconds(t));
      if (check.allowed) {
        log.push_back({t, n});
        continue;
      }
      ++refusals;
      // Hits in (t - window - width - 1 ms, t]: the extra millisecond is the
      // store's flooring of sub-millisecond times.
      std::uint64_t recent = 0;
      for (auto it = log.rbegin(); it != log.rend() && it->t > t - window - width - 1'000'000; ++it) recent += it->n;
      ASSERT_GT(recent + n, c.limit.max) << "refused without cause at " << t << " ns";
    }
    EXPECT_GT(refusals, 100);  // the limit was actually pressed

    // Every interval (a - window, a] ending at an admitted hit a: the
    // largest intervals, since counts only grow at admitted hits.
    std::size_t first = 0;
    std::uint64_t inWindow = 0;
    for (std::size_t i = 0; i < log.size(); ++i) {
      inWindow += log[i].n;
      while (log[first].t <= log[i].t - window) inWindow -= log[first++].n;
      ASSERT_LE(inWindow, c.limit.max) << "at " << log[i].t << " ns";
    }
  }
}

TEST(MemoryStore, CountsSeveralHitsAtOnce) {
  const Limit tenPerMinute{10, minutes(1), milliseconds(0)};
  MemoryStore store;
  struct Step {
    const char* label;
    std::uint32_t n;
    bool allowed;
    std::uint64_t count;
  };
  const Step steps[] = {
      {"4 of 10", 4, true, 4},  {"8 of 10", 4, true, 8},          {"11 would exceed", 3, false, 8},
      {"exactly 10", 2, true, 10}, {"a zero-hit look", 0, true, 10}, {"one more", 1, false, 10},
  };
  for (const auto& s : steps) {
    SCOPED_TRACE(s.label);
    const Check c = store.hit("s:a@example.jp", tenPerMinute, s.n, at(1'000));
    EXPECT_EQ(c.allowed, s.allowed);
    EXPECT_EQ(c.count, s.count);
  }
  const Check tooBig = store.hit("s:b@example.jp", tenPerMinute, 11, at(1'000));
  EXPECT_FALSE(tooBig.allowed);
  EXPECT_EQ(tooBig.count, 0u);
  EXPECT_EQ(store.size(), 1u);  // neither the refusal nor the look created a key
  EXPECT_TRUE(store.hit("s:c@example.jp", tenPerMinute, 0, at(1'000)).allowed);
  EXPECT_EQ(store.size(), 1u);
}

TEST(MemoryStore, GiveBackReturnsACountedHit) {
  const Limit twoPerMinute{2, minutes(1), milliseconds(0)};  // 1 s buckets
  MemoryStore store;
  Ticket first;
  Ticket second;
  Ticket refused;
  ASSERT_TRUE(store.hit("r:x@example.jp", twoPerMinute, 1, at(1'500), &first).allowed);
  EXPECT_EQ(first.key, "r:x@example.jp");
  EXPECT_EQ(first.bucket, (1'700'000'000'000 + 1'500) / 1'000);
  EXPECT_EQ(first.n, 1u);
  ASSERT_TRUE(store.hit("r:x@example.jp", twoPerMinute, 1, at(2'500), &second).allowed);
  EXPECT_EQ(second.bucket, first.bucket + 1);
  EXPECT_FALSE(store.hit("r:x@example.jp", twoPerMinute, 1, at(3'000), &refused).allowed);
  EXPECT_EQ(refused.n, 0u);

  store.giveBack(refused, twoPerMinute);  // counted nothing: gives back nothing
  EXPECT_EQ(store.usage("r:x@example.jp", twoPerMinute, at(3'000)).count, 2u);
  store.giveBack(first, twoPerMinute);
  EXPECT_EQ(store.usage("r:x@example.jp", twoPerMinute, at(3'000)).count, 1u);
  // A ticket given back twice cannot take the bucket below zero or take
  // another bucket's hit.
  store.giveBack(first, twoPerMinute);
  EXPECT_EQ(store.usage("r:x@example.jp", twoPerMinute, at(3'000)).count, 1u);
  EXPECT_TRUE(store.hit("r:x@example.jp", twoPerMinute, 1, at(3'000)).allowed);
  EXPECT_FALSE(store.hit("r:x@example.jp", twoPerMinute, 1, at(3'000)).allowed);

  // Long after, the ticket's bucket has rotated out of the ring and its slot
  // (the ring holds kBuckets + 1 buckets) holds newer hits: giving it back
  // is harmless.
  Ticket late;
  ASSERT_TRUE(store.hit("r:x@example.jp", twoPerMinute, 1, at(611'500), &late).allowed);
  EXPECT_EQ((late.bucket - first.bucket) % (kBuckets + 1), 0);
  store.giveBack(second, twoPerMinute);
  store.giveBack(first, twoPerMinute);
  EXPECT_EQ(store.usage("r:x@example.jp", twoPerMinute, at(611'500)).count, 1u);
  store.giveBack(late, twoPerMinute);
  EXPECT_EQ(store.usage("r:x@example.jp", twoPerMinute, at(611'500)).count, 0u);
  // Unknown key, or a ticket read under another limit: nothing happens.
  store.giveBack(Ticket{"r:nobody@example.jp", late.bucket, 1}, twoPerMinute);
  store.giveBack(late, k100Per5Min);
  EXPECT_EQ(store.size(), 1u);
}

TEST(MemoryStore, PenaltyRefusesUntilItEndsEvenWithAnEmptyWindow) {
  const Limit limit{2, minutes(1), minutes(10)};
  MemoryStore store;
  ASSERT_TRUE(store.hit("c:198.51.100.7", limit, 1, at(0)).allowed);
  ASSERT_TRUE(store.hit("c:198.51.100.7", limit, 1, at(10)).allowed);

  const Check started = store.hit("c:198.51.100.7", limit, 1, at(20));
  EXPECT_FALSE(started.allowed);
  EXPECT_EQ(started.count, 2u);
  ASSERT_TRUE(started.penaltyUntil);
  EXPECT_EQ(*started.penaltyUntil, at(20) + minutes(10));

  struct Probe {
    const char* label;
    TimePoint now;
    bool allowed;
  };
  const Probe probes[] = {
      {"window still full", at(30'000), false},
      {"window empty", at(120'000), false},
      {"window empty, last ms of the penalty", at(20 + 600'000 - 1), false},
  };
  for (const auto& p : probes) {
    SCOPED_TRACE(p.label);
    const Check c = store.hit("c:198.51.100.7", limit, 1, p.now);
    EXPECT_EQ(c.allowed, p.allowed);
    // Refusals during the penalty do not extend it.
    EXPECT_EQ(c.penaltyUntil, started.penaltyUntil);
    EXPECT_EQ(store.usage("c:198.51.100.7", limit, p.now).penaltyUntil, started.penaltyUntil);
  }
  EXPECT_EQ(store.usage("c:198.51.100.7", limit, at(120'000)).count, 0u);

  const Check after = store.hit("c:198.51.100.7", limit, 1, *started.penaltyUntil);
  EXPECT_TRUE(after.allowed);
  EXPECT_EQ(after.count, 1u);
  EXPECT_FALSE(after.penaltyUntil);
  EXPECT_FALSE(store.usage("c:198.51.100.7", limit, *started.penaltyUntil).penaltyUntil);

  // Over the limit again: a new penalty from that refusal.
  ASSERT_TRUE(store.hit("c:198.51.100.7", limit, 1, at(700'000)).allowed);
  ASSERT_TRUE(store.hit("c:198.51.100.7", limit, 1, at(700'000)).allowed);
  const Check again = store.hit("c:198.51.100.7", limit, 1, at(700'001));
  EXPECT_FALSE(again.allowed);
  EXPECT_EQ(again.penaltyUntil, at(700'001) + minutes(10));
}

TEST(MemoryStore, PenaltyForAHitLargerThanTheLimitOnANewKey) {
  const Limit limit{5, minutes(1), minutes(1)};
  MemoryStore store;
  const Check c = store.hit("u:alice", limit, 6, at(0));
  EXPECT_FALSE(c.allowed);
  EXPECT_EQ(c.penaltyUntil, at(60'000));
  EXPECT_FALSE(store.hit("u:alice", limit, 1, at(1)).allowed);
  EXPECT_TRUE(store.hit("u:alice", limit, 1, at(60'000)).allowed);
}

TEST(MemoryStore, ZeroMaxAllowsAndCountsNothing) {
  const Limit off{0, minutes(5), minutes(10)};
  MemoryStore store;
  Ticket ticket;
  for (int i = 0; i < 1000; ++i) {
    const Check c = store.hit("d:example.jp", off, 3, at(i), &ticket);
    ASSERT_TRUE(c.allowed);
    EXPECT_EQ(c.count, 0u);
    EXPECT_FALSE(c.penaltyUntil);
  }
  EXPECT_EQ(ticket.n, 0u);
  EXPECT_EQ(store.size(), 0u);
}

TEST(MemoryStore, RemembersUntilTheTtlEnds) {
  MemoryStore store;
  const std::string key = "l:list@example.jp <20231114.1@example.jp>";
  EXPECT_FALSE(store.remembered(key, at(0)));
  EXPECT_TRUE(store.remember(key, hours(24), at(0)));
  EXPECT_TRUE(store.remembered(key, at(0)));
  EXPECT_FALSE(store.remember(key, hours(24), at(1'000)));  // a loop: already seen
  EXPECT_TRUE(store.remembered(key, at(86'400'000 - 1)));   // the refused remember did not extend it
  EXPECT_FALSE(store.remember(key, hours(24), at(86'400'000 - 1)));
  EXPECT_FALSE(store.remembered(key, at(86'400'000)));
  EXPECT_TRUE(store.remember(key, hours(24), at(86'400'000)));
  EXPECT_TRUE(store.remembered(key, at(2 * 86'400'000 - 1)));

  EXPECT_FALSE(store.remembered("l:list@example.jp <other@example.jp>", at(0)));
  EXPECT_TRUE(store.remember("l:zero", milliseconds(0), at(0)));  // for no time at all
  EXPECT_FALSE(store.remembered("l:zero", at(0)));
  EXPECT_EQ(store.size(), 1u);
}

TEST(MemoryStore, ResetRemovesCounterPenaltyAndRememberedEntry) {
  const Limit limit{1, minutes(1), hours(1)};
  MemoryStore store;
  ASSERT_TRUE(store.hit("c:203.0.113.9", limit, 1, at(0)).allowed);
  ASSERT_FALSE(store.hit("c:203.0.113.9", limit, 1, at(1)).allowed);
  ASSERT_TRUE(store.remember("c:203.0.113.9", hours(1), at(1)));
  ASSERT_TRUE(store.usage("c:203.0.113.9", limit, at(2)).penaltyUntil);

  EXPECT_TRUE(store.reset("c:203.0.113.9"));
  const Usage u = store.usage("c:203.0.113.9", limit, at(2));
  EXPECT_EQ(u.count, 0u);
  EXPECT_FALSE(u.penaltyUntil);
  EXPECT_FALSE(store.remembered("c:203.0.113.9", at(2)));
  EXPECT_TRUE(store.hit("c:203.0.113.9", limit, 1, at(2)).allowed);
  EXPECT_EQ(store.size(), 1u);

  EXPECT_TRUE(store.reset("c:203.0.113.9"));
  EXPECT_FALSE(store.reset("c:203.0.113.9"));
  EXPECT_FALSE(store.reset("c:never-seen"));
  EXPECT_EQ(store.size(), 0u);
}

TEST(MemoryStore, UsageFollowsTheWindowWithoutChangingIt) {
  const Limit limit{10, minutes(1), milliseconds(0)};  // 1 s buckets
  MemoryStore store;
  ASSERT_TRUE(store.hit("s:a@example.jp", limit, 3, at(0)).allowed);
  ASSERT_TRUE(store.hit("s:a@example.jp", limit, 2, at(30'000)).allowed);
  struct Probe {
    const char* label;
    std::int64_t ms;
    std::uint64_t count;
  };
  const Probe probes[] = {
      {"both", 30'000, 5},       {"both, first bucket's last moment", 60'999, 5},
      {"the first has left", 61'000, 2}, {"the second's last moment", 90'999, 2},
      {"both have left", 91'000, 0},      {"long after", 10'000'000, 0},
  };
  for (const auto& p : probes) {
    SCOPED_TRACE(p.label);
    EXPECT_EQ(store.usage("s:a@example.jp", limit, at(p.ms)).count, p.count);
  }
  // usage() moved nothing: the hit at 30 s still counts at 30 s.
  EXPECT_EQ(store.usage("s:a@example.jp", limit, at(30'000)).count, 5u);
  EXPECT_EQ(store.usage("s:unknown@example.jp", limit, at(0)).count, 0u);
  EXPECT_EQ(store.size(), 1u);
}

TEST(MemoryStore, ClockBehindTheNewestBucketCountsConservatively) {
  const Limit limit{2, minutes(1), milliseconds(0)};
  MemoryStore store;
  Ticket newer;
  Ticket older;
  ASSERT_TRUE(store.hit("k", limit, 1, at(10'000), &newer).allowed);
  // Another thread read the clock 3 s earlier but took the lock later.
  const Check c = store.hit("k", limit, 1, at(7'000), &older);
  ASSERT_TRUE(c.allowed);
  EXPECT_EQ(c.count, 2u);
  EXPECT_EQ(older.bucket, newer.bucket);  // counted in the newest bucket: expires later, never earlier
  EXPECT_FALSE(store.hit("k", limit, 1, at(70'999)).allowed);
  EXPECT_TRUE(store.hit("k", limit, 1, at(71'000)).allowed);
}

TEST(MemoryStore, AnotherWindowForTheSameKeyStartsAfresh) {
  MemoryStore store;
  const Limit perMinute{5, minutes(1), milliseconds(0)};
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store.hit("k", perMinute, 1, at(0)).allowed);
  ASSERT_FALSE(store.hit("k", perMinute, 1, at(0)).allowed);
  const Check c = store.hit("k", k100Per5Min, 1, at(1));
  EXPECT_TRUE(c.allowed);
  EXPECT_EQ(c.count, 1u);
}

TEST(MemoryStore, FullStoreLeavesNewKeysUntrackedUntilOldOnesExpire) {
  const Limit limit{1, minutes(1), milliseconds(0)};  // a key expires 61 s after its bucket starts
  MemoryStore store = oneShard(3);
  log::init("memory_store_test", true);
  testing::internal::CaptureStderr();

  ASSERT_TRUE(store.hit("a", limit, 1, at(0)).allowed);
  ASSERT_TRUE(store.hit("b", limit, 1, at(0)).allowed);
  ASSERT_TRUE(store.remember("c", minutes(10), at(0)));
  EXPECT_EQ(store.size(), 3u);

  // Full of live keys: a new key is allowed, every time, and not kept.
  for (int i = 0; i < 5; ++i) {
    const Check c = store.hit("d", limit, 1, at(1'000 + i));
    EXPECT_TRUE(c.allowed);
    EXPECT_EQ(c.count, 1u);
  }
  EXPECT_TRUE(store.remember("e", minutes(10), at(2'000)));
  EXPECT_FALSE(store.remembered("e", at(2'000)));
  EXPECT_EQ(store.size(), 3u);
  // Known keys are still limited.
  EXPECT_FALSE(store.hit("a", limit, 1, at(2'000)).allowed);

  // "a" and "b" expire; "c" is remembered for 10 min and stays.
  EXPECT_TRUE(store.hit("d", limit, 1, at(61'000)).allowed);
  EXPECT_FALSE(store.hit("d", limit, 1, at(61'001)).allowed);
  EXPECT_EQ(store.size(), 2u);
  EXPECT_TRUE(store.remembered("c", at(61'001)));
  // Room again for one more.
  EXPECT_TRUE(store.hit("f", limit, 1, at(61'002)).allowed);
  EXPECT_FALSE(store.hit("f", limit, 1, at(61'003)).allowed);
  EXPECT_EQ(store.size(), 3u);
  // Full again: one more log line, a minute after the first.
  EXPECT_TRUE(store.hit("g", limit, 1, at(61'004)).allowed);
  EXPECT_TRUE(store.hit("g", limit, 1, at(61'005)).allowed);

  const std::string err = testing::internal::GetCapturedStderr();
  log::init("sekimori", false);
  const std::string line =
      "ratelimit memory store full (3 keys); new keys are not limited until old ones expire; raise memory_max_keys";
  std::size_t lines = 0;
  for (auto pos = err.find(line); pos != std::string::npos; pos = err.find(line, pos + 1)) ++lines;
  EXPECT_EQ(lines, 2u) << err;
}

TEST(MemoryStore, CapIsExactAcrossShards) {
  const Limit limit{1, minutes(1), milliseconds(0)};
  MemoryStore store({.maxKeys = 100, .shards = 8});
  int untracked = 0;
  for (int i = 0; i < 1000; ++i) {
    const std::string key = "s:user" + std::to_string(i) + "@example.jp";
    ASSERT_TRUE(store.hit(key, limit, 1, at(0)).allowed);
    if (store.hit(key, limit, 1, at(0)).allowed) ++untracked;
  }
  EXPECT_EQ(store.size(), 100u);
  EXPECT_EQ(untracked, 900);

  // Fewer keys than shards: every key still has a place.
  MemoryStore tiny({.maxKeys = 3, .shards = 64});
  for (int i = 0; i < 50; ++i) tiny.hit("k" + std::to_string(i), limit, 1, at(0));
  EXPECT_EQ(tiny.size(), 3u);
}

TEST(MemoryStore, ExpiredKeysAreSweptWithoutPressure) {
  const Limit limit{1, minutes(1), milliseconds(0)};
  MemoryStore store = oneShard(100000);
  for (int i = 0; i < 10; ++i) store.hit("old" + std::to_string(i), limit, 1, at(0));
  ASSERT_EQ(store.size(), 10u);
  // Far from the cap; new keys an hour later sweep the expired ones out.
  for (int i = 0; i < 30000; ++i) store.hit("new" + std::to_string(i), limit, 1, at(3'600'000));
  EXPECT_EQ(store.size(), 30000u);
}

TEST(MemoryStore, ConcurrentHitsOnOneKeyAdmitExactlyMax) {
  const Limit limit{5000, minutes(5), milliseconds(0)};
  MemoryStore store;
  constexpr int kThreads = 8;
  constexpr int kHitsPerThread = 2000;
  std::atomic<int> admitted{0};
  std::atomic<int> admittedOther{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kHitsPerThread; ++i) {
        // Clocks of threads interleave: each one's time runs a little
        // differently, all within the window.
        const TimePoint now = at(i * 10 + t);
        if (store.hit("c:192.0.2.200", limit, 1, now).allowed) ++admitted;
        if (store.hit("c:192.0.2." + std::to_string(i % 100), limit, 1, now).allowed) ++admittedOther;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(admitted.load(), 5000);
  EXPECT_EQ(store.usage("c:192.0.2.200", limit, at(kHitsPerThread * 10)).count, 5000u);
  EXPECT_EQ(admittedOther.load(), kThreads * kHitsPerThread);
  EXPECT_EQ(store.size(), 101u);
}

}  // namespace
}  // namespace sekimori::ratelimit
