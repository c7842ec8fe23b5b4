// tests/unit/milters/ratelimit/redis_store_test.cpp — RedisStore against a
// real redis-server that each test starts privately (tests/support: its own
// temp dir, unix socket, a 127.0.0.1 port when asked, no persistence) and
// kills by PID afterwards.
// Counting is checked with the injected clock to the millisecond, and
// against MemoryStore (both backends must answer alike); outages are real:
// the server is killed, stopped (SIGSTOP) and restarted under the store.
// Skipped when redis-server is not installed.
#include "milters/ratelimit/redis_store.h"

#include <signal.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/log/log.h"
#include "milters/ratelimit/memory_store.h"
#include "tests/support/redis_server.h"

namespace sekimori::ratelimit {
namespace {

using namespace std::chrono_literals;
using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

// A whole second, so bucket boundaries of the limits below are round numbers.
const TimePoint kT0{milliseconds(1'700'000'000'000)};

TimePoint at(std::int64_t ms) { return kT0 + milliseconds(ms); }

std::int64_t elapsedMs(Steady::time_point since) {
  return std::chrono::duration_cast<milliseconds>(Steady::now() - since).count();
}

using testsupport::findInPath;
using testsupport::RedisServer;

class RedisStoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // hiredis writes with write(2): a server that went away raises SIGPIPE.
    // The daemon ignores it (common/milter/daemon.cpp); so does this test.
    signal(SIGPIPE, SIG_IGN);
  }

  void SetUp() override {
    binary_ = findInPath("redis-server");
    if (binary_.empty()) GTEST_SKIP() << "redis-server not found in PATH: RedisStore needs a real server to test";
    server_ = startServer({});
    ASSERT_TRUE(server_);
  }

  // A running server, or null (and a failure saying why).
  std::unique_ptr<RedisServer> startServer(RedisServer::Config config) {
    auto s = std::make_unique<RedisServer>(binary_, std::move(config));
    if (const std::string error = s->start(); !error.empty()) {
      ADD_FAILURE() << error;
      return nullptr;
    }
    return s;
  }

  RedisOptions options(const RedisServer& s) const {
    RedisOptions o;
    o.address = s.address();
    o.connectTimeout = 300ms;
    o.ioTimeout = 300ms;
    o.retryInterval = 300ms;
    return o;
  }
  RedisOptions options() const { return options(*server_); }

  std::string binary_;
  std::unique_ptr<RedisServer> server_;
};

const Limit kPerMinute3{3, 60s, 0ms};  // 1 s buckets

TEST(RedisAddress, AcceptsTheDocumentedForms) {
  struct Case {
    const char* label;
    const char* address;
    bool valid;
  };
  const Case cases[] = {
      {"ipv4", "127.0.0.1:6379", true},
      {"name", "redis.example.jp:6379", true},
      {"ipv6", "[::1]:6379", true},
      {"ipv6 zone", "[fe80::1%eth0]:6379", true},
      {"unix", "unix:/run/redis/redis.sock", true},
      {"highest port", "localhost:65535", true},
      {"no port", "127.0.0.1", false},
      {"empty port", "127.0.0.1:", false},
      {"port 0", "127.0.0.1:0", false},
      {"port too big", "127.0.0.1:65536", false},
      {"port not a number", "127.0.0.1:redis", false},
      {"no host", ":6379", false},
      {"bare ipv6", "::1:6379", false},
      {"unclosed bracket", "[::1:6379", false},
      {"bracket without port", "[::1]", false},
      {"bracketed ipv4", "[127.0.0.1]:6379", false},
      {"relative socket", "unix:redis.sock", false},
      {"empty socket", "unix:", false},
      {"space in host", "red is:6379", false},
      {"empty", "", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    EXPECT_EQ(validRedisAddress(c.address), c.valid) << c.address;
  }
}

TEST_F(RedisStoreTest, AdmitsMaxAndRefusesOneMore) {
  RedisStore store(options());
  for (std::uint64_t i = 1; i <= 3; ++i) {
    const Check c = store.hit("c:192.0.2.1", kPerMinute3, 1, at(100 * static_cast<std::int64_t>(i)));
    EXPECT_TRUE(c.allowed) << i;
    EXPECT_EQ(c.count, i);
    EXPECT_FALSE(c.penaltyUntil);
  }
  const Check refused = store.hit("c:192.0.2.1", kPerMinute3, 1, at(400));
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.count, 3u);  // refused hits are not counted
  EXPECT_FALSE(refused.penaltyUntil);
  EXPECT_EQ(store.usage("c:192.0.2.1", kPerMinute3, at(500)).count, 3u);
  // Another key has its own count.
  EXPECT_TRUE(store.hit("c:192.0.2.2", kPerMinute3, 1, at(400)).allowed);
}

TEST_F(RedisStoreTest, AdmitsAgainExactlyWhenTheOldestBucketLeavesTheWindow) {
  RedisStore store(options());
  // Buckets are 1 s wide; the hits land in buckets 0, 1 and 2 after kT0.
  ASSERT_TRUE(store.hit("s:a@example.jp", kPerMinute3, 1, at(500)).allowed);
  ASSERT_TRUE(store.hit("s:a@example.jp", kPerMinute3, 1, at(1'500)).allowed);
  ASSERT_TRUE(store.hit("s:a@example.jp", kPerMinute3, 1, at(2'999)).allowed);
  // Bucket 0 overlaps the window (now - 60 s, now] until now = 61 s: it is
  // counted whole until then, so nothing is admitted, however late.
  EXPECT_FALSE(store.hit("s:a@example.jp", kPerMinute3, 1, at(59'999)).allowed);
  EXPECT_FALSE(store.hit("s:a@example.jp", kPerMinute3, 1, at(60'999)).allowed);
  const Check again = store.hit("s:a@example.jp", kPerMinute3, 1, at(61'000));
  EXPECT_TRUE(again.allowed);
  EXPECT_EQ(again.count, 3u);  // buckets 1, 2 and 61
  // Bucket 1 leaves at 62 s, bucket 2 at 63 s.
  EXPECT_FALSE(store.hit("s:a@example.jp", kPerMinute3, 1, at(61'999)).allowed);
  EXPECT_TRUE(store.hit("s:a@example.jp", kPerMinute3, 1, at(62'000)).allowed);
  EXPECT_EQ(store.usage("s:a@example.jp", kPerMinute3, at(63'000)).count, 2u);
  // The running total the script keeps (so that a hit need not add up the
  // buckets) is that of the ring: buckets 2, 61 and 62.
  EXPECT_EQ(server_->raw({"HGET", "sekimori:rl:s:a@example.jp", "t"}), "3");
}

TEST_F(RedisStoreTest, BusyKeyStaysSmall) {
  RedisStore store(options());
  const Limit limit{100000, 60s, 0ms};
  // Ten minutes of a hit every 100 ms: the hash holds the ring of
  // kBuckets + 1 slots and its four other fields, never more.
  for (std::int64_t t = 0; t < 600'000; t += 100) ASSERT_TRUE(store.hit("d:busy.example", limit, 1, at(t)).allowed);
  EXPECT_EQ(server_->raw({"HLEN", "sekimori:rl:d:busy.example"}), ":" + std::to_string(kBuckets + 1 + 3));
  // 61 buckets of 10: those inside (now - 60 s, now] and the one that
  // straddles its start, counted whole.
  EXPECT_EQ(store.usage("d:busy.example", limit, at(599'900)).count, 610u);
  EXPECT_EQ(server_->raw({"HGET", "sekimori:rl:d:busy.example", "t"}), "610");
}

TEST_F(RedisStoreTest, CountsSeveralHitsAtOnce) {
  RedisStore store(options());
  const Limit limit{10, 60s, 0ms};
  EXPECT_EQ(store.hit("s:b@example.jp", limit, 4, at(0)).count, 4u);
  EXPECT_EQ(store.hit("s:b@example.jp", limit, 4, at(10)).count, 8u);
  const Check over = store.hit("s:b@example.jp", limit, 3, at(20));
  EXPECT_FALSE(over.allowed);
  EXPECT_EQ(over.count, 8u);
  const Check exact = store.hit("s:b@example.jp", limit, 2, at(30));
  EXPECT_TRUE(exact.allowed);
  EXPECT_EQ(exact.count, 10u);
  // More than max at once is refused even on an empty key.
  EXPECT_FALSE(store.hit("s:c@example.jp", limit, 11, at(0)).allowed);
  EXPECT_EQ(server_->raw({"EXISTS", "sekimori:rl:s:c@example.jp"}), ":0");
  // n = 0 looks without counting or creating anything.
  const Check look = store.hit("s:d@example.jp", limit, 0, at(0));
  EXPECT_TRUE(look.allowed);
  EXPECT_EQ(look.count, 0u);
  EXPECT_EQ(server_->raw({"EXISTS", "sekimori:rl:s:d@example.jp"}), ":0");
}

TEST_F(RedisStoreTest, GiveBackReturnsTheTicketsHits) {
  RedisStore store(options());
  const Limit limit{5, 60s, 0ms};
  Ticket first;
  Ticket second;
  ASSERT_TRUE(store.hit("r:x@example.jp", limit, 2, at(100), &first).allowed);
  ASSERT_TRUE(store.hit("r:x@example.jp", limit, 3, at(5'100), &second).allowed);
  EXPECT_EQ(first.key, "r:x@example.jp");
  EXPECT_EQ(first.n, 2u);
  EXPECT_EQ(first.bucket, 1'700'000'000);
  EXPECT_EQ(second.bucket, 1'700'000'005);
  EXPECT_FALSE(store.hit("r:x@example.jp", limit, 1, at(6'000)).allowed);

  store.giveBack(second, limit);
  EXPECT_EQ(store.usage("r:x@example.jp", limit, at(6'000)).count, 2u);
  // Never below zero: the same ticket twice takes nothing from other buckets.
  store.giveBack(second, limit);
  EXPECT_EQ(store.usage("r:x@example.jp", limit, at(6'000)).count, 2u);
  EXPECT_TRUE(store.hit("r:x@example.jp", limit, 3, at(6'000)).allowed);
  // A ticket whose bucket has left the window: harmless.
  store.giveBack(first, limit);
  EXPECT_EQ(store.usage("r:x@example.jp", limit, at(6'000)).count, 3u);
  store.giveBack(first, limit);
  EXPECT_EQ(store.usage("r:x@example.jp", limit, at(6'000)).count, 3u);
  // A refused hit's ticket holds nothing to give back.
  Ticket refused;
  EXPECT_FALSE(store.hit("r:x@example.jp", limit, 5, at(6'000), &refused).allowed);
  EXPECT_EQ(refused.n, 0u);
  store.giveBack(refused, limit);
  EXPECT_EQ(store.usage("r:x@example.jp", limit, at(6'000)).count, 3u);
  // Nothing to give back on a key that is gone.
  store.giveBack(Ticket{"r:gone@example.jp", 1'700'000'000, 1}, limit);
  EXPECT_EQ(server_->raw({"EXISTS", "sekimori:rl:r:gone@example.jp"}), ":0");
}

TEST_F(RedisStoreTest, PenaltyRefusesUntilItEndsAndIsNotExtended) {
  RedisStore store(options());
  const Limit limit{2, 60s, 300s};
  ASSERT_TRUE(store.hit("c:198.51.100.7", limit, 1, at(0)).allowed);
  ASSERT_TRUE(store.hit("c:198.51.100.7", limit, 1, at(0)).allowed);
  const Check refused = store.hit("c:198.51.100.7", limit, 1, at(1'000));
  EXPECT_FALSE(refused.allowed);
  ASSERT_TRUE(refused.penaltyUntil);
  EXPECT_EQ(*refused.penaltyUntil, at(301'000));
  // The window has emptied long ago; the penalty still refuses, and the
  // refusals during it do not move its end.
  const Check during = store.hit("c:198.51.100.7", limit, 1, at(200'000));
  EXPECT_FALSE(during.allowed);
  EXPECT_EQ(during.count, 0u);
  ASSERT_TRUE(during.penaltyUntil);
  EXPECT_EQ(*during.penaltyUntil, at(301'000));
  EXPECT_FALSE(store.hit("c:198.51.100.7", limit, 1, at(300'999)).allowed);
  const Usage u = store.usage("c:198.51.100.7", limit, at(300'999));
  ASSERT_TRUE(u.penaltyUntil);
  EXPECT_EQ(*u.penaltyUntil, at(301'000));
  // Over at its end.
  const Check after = store.hit("c:198.51.100.7", limit, 1, at(301'000));
  EXPECT_TRUE(after.allowed);
  EXPECT_FALSE(after.penaltyUntil);
  EXPECT_FALSE(store.usage("c:198.51.100.7", limit, at(301'000)).penaltyUntil);
  // The key lives in Redis as long as the penalty, not only the window.
  ASSERT_FALSE(store.hit("c:198.51.100.8", limit, 3, at(0)).allowed);
  const long pttl = std::stol(server_->raw({"PTTL", "sekimori:rl:c:198.51.100.8"}).substr(1));
  EXPECT_GT(pttl, 290'000);
  EXPECT_LE(pttl, 300'000);
}

TEST_F(RedisStoreTest, CounterKeysExpireAfterTheWindow) {
  RedisStore store(options());
  ASSERT_TRUE(store.hit("u:alice", kPerMinute3, 1, at(500)).allowed);
  // Bucket 0 counts until 61 s; one bucket more for a host whose clock is
  // behind: 62 s after the bucket's start, 61.5 s after now.
  const long pttl = std::stol(server_->raw({"PTTL", "sekimori:rl:u:alice"}).substr(1));
  EXPECT_GT(pttl, 60'000);
  EXPECT_LE(pttl, 61'500);
}

TEST_F(RedisStoreTest, NoLimitAllowsAndStoresNothing) {
  RedisStore store(options());
  Ticket t;
  for (int i = 0; i < 3; ++i) {
    const Check c = store.hit("d:example.jp", Limit{}, 1, at(0), &t);
    EXPECT_TRUE(c.allowed);
    EXPECT_EQ(c.count, 0u);
  }
  EXPECT_EQ(t.key, "d:example.jp");
  EXPECT_EQ(t.n, 0u);
  EXPECT_EQ(server_->raw({"DBSIZE"}), ":0");
  // No round trip at all: it answers even with no server behind it.
  RedisOptions nowhere = options();
  nowhere.address = "unix:/nonexistent/redis.sock";
  RedisStore none(nowhere);
  EXPECT_TRUE(none.hit("d:example.jp", Limit{}, 1, at(0)).allowed);
}

TEST_F(RedisStoreTest, RemembersForTheTtl) {
  RedisStore store(options());
  // Redis expires in real time; `now` plays no part here.
  EXPECT_TRUE(store.remember("l:list@example.jp <1@x>", 200ms, at(0)));
  EXPECT_FALSE(store.remember("l:list@example.jp <1@x>", 200ms, at(0)));
  EXPECT_TRUE(store.remembered("l:list@example.jp <1@x>", at(0)));
  EXPECT_FALSE(store.remembered("l:list@example.jp <2@x>", at(0)));
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(store.remembered("l:list@example.jp <1@x>", at(0)));
  EXPECT_TRUE(store.remember("l:list@example.jp <1@x>", 200ms, at(0)));
  // A TTL of zero remembers nothing.
  EXPECT_TRUE(store.remember("l:list@example.jp <3@x>", 0ms, at(0)));
  EXPECT_FALSE(store.remembered("l:list@example.jp <3@x>", at(0)));
}

TEST_F(RedisStoreTest, ResetRemovesCounterPenaltyAndRememberedEntry) {
  RedisStore store(options());
  const Limit limit{1, 60s, 600s};
  ASSERT_TRUE(store.hit("u:bob", limit, 1, at(0)).allowed);
  ASSERT_FALSE(store.hit("u:bob", limit, 1, at(0)).allowed);  // penalised now
  ASSERT_TRUE(store.remember("l:list@example.jp <9@x>", 60s, at(0)));

  EXPECT_TRUE(store.reset("u:bob"));
  const Usage u = store.usage("u:bob", limit, at(0));
  EXPECT_EQ(u.count, 0u);
  EXPECT_FALSE(u.penaltyUntil);
  EXPECT_TRUE(store.hit("u:bob", limit, 1, at(0)).allowed);

  EXPECT_TRUE(store.reset("l:list@example.jp <9@x>"));
  EXPECT_FALSE(store.remembered("l:list@example.jp <9@x>", at(0)));
  EXPECT_FALSE(store.reset("u:nobody"));
}

TEST_F(RedisStoreTest, UsageLooksWithoutCounting) {
  RedisStore store(options());
  const Limit limit{10, 60s, 0ms};
  EXPECT_EQ(store.usage("s:e@example.jp", limit, at(0)).count, 0u);
  ASSERT_TRUE(store.hit("s:e@example.jp", limit, 4, at(0)).allowed);
  ASSERT_TRUE(store.hit("s:e@example.jp", limit, 1, at(30'000)).allowed);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(store.usage("s:e@example.jp", limit, at(30'000)).count, 5u);
  EXPECT_EQ(store.usage("s:e@example.jp", limit, at(61'000)).count, 1u);
  // An admin's limit of another width (another direction's limit) reads the
  // key in its own width over kBuckets of its buckets.
  EXPECT_EQ(store.usage("s:e@example.jp", Limit{10, 3600s, 0ms}, at(30'000)).count, 5u);
  EXPECT_EQ(store.usage("s:e@example.jp", Limit{10, 3600s, 0ms}, at(61'000)).count, 1u);
}

TEST_F(RedisStoreTest, ChangedWindowStartsTheCountAfresh) {
  RedisStore store(options());
  ASSERT_TRUE(store.hit("d:f.example", Limit{3, 60s, 0ms}, 3, at(0)).allowed);
  // A reload made the window 6 s: the old 1 s buckets mean nothing in 100 ms
  // buckets (their indexes would read as buckets ten times further back).
  const Check c = store.hit("d:f.example", Limit{3, 6s, 0ms}, 1, at(10));
  EXPECT_TRUE(c.allowed);
  EXPECT_EQ(c.count, 1u);
  // And back: the 100 ms bucket (its index ten times too large, "in the
  // future") is dropped rather than counted for ever.
  const Check back = store.hit("d:f.example", Limit{3, 60s, 0ms}, 1, at(20));
  EXPECT_TRUE(back.allowed);
  EXPECT_EQ(back.count, 1u);
  EXPECT_EQ(server_->raw({"HLEN", "sekimori:rl:d:f.example"}), ":4");  // w, n, t and one slot
  // A longer window needs a longer TTL than the short one left on the key.
  ASSERT_TRUE(store.hit("d:g.example", Limit{3, 6s, 0ms}, 1, at(0)).allowed);
  ASSERT_TRUE(store.hit("d:g.example", Limit{3, 300s, 0ms}, 1, at(0)).allowed);
  EXPECT_GT(std::stol(server_->raw({"PTTL", "sekimori:rl:d:g.example"}).substr(1)), 300'000);
}

TEST_F(RedisStoreTest, TwoStoresShareOneLimit) {
  RedisStore mx1(options());
  RedisStore mx2(options());
  const Limit limit{5, 60s, 0ms};
  EXPECT_TRUE(mx1.hit("s:g@example.jp", limit, 2, at(0)).allowed);
  EXPECT_TRUE(mx2.hit("s:g@example.jp", limit, 2, at(1'000)).allowed);
  const Check c = mx1.hit("s:g@example.jp", limit, 1, at(2'000));
  EXPECT_TRUE(c.allowed);
  EXPECT_EQ(c.count, 5u);
  EXPECT_FALSE(mx2.hit("s:g@example.jp", limit, 1, at(3'000)).allowed);
  EXPECT_FALSE(mx1.hit("s:g@example.jp", limit, 1, at(3'000)).allowed);
  // A store with another prefix (another cluster on the same server) does not.
  RedisOptions other = options();
  other.prefix = "othercluster:";
  RedisStore mx3(other);
  EXPECT_TRUE(mx3.hit("s:g@example.jp", limit, 5, at(3'000)).allowed);
  EXPECT_EQ(server_->raw({"EXISTS", "othercluster:s:g@example.jp"}), ":1");
}

TEST_F(RedisStoreTest, AnswersAsMemoryStoreDoes) {
  // The same pseudo-random calls on both backends must get the same
  // answers: a milter behaves alike whichever store it is configured with.
  // Time mostly moves on by less than a second, sometimes steps back (two
  // hosts' clocks, or two threads that read the clock in one order and
  // counted in the other) and sometimes jumps past whole windows; now and
  // then a key is hit under another limit (a reload, or another direction's
  // limit), which changes the bucket width under it.
  const Limit limits[] = {{5, 60s, 0ms}, {3, 7s, 2s}, {20, 300s, 600s}, {2, 1s, 0ms}};
  const char* keys[] = {"s:a", "s:b", "c:1", "u:z"};
  for (const unsigned seed : {12345u, 1u, 7u}) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    RedisOptions o = options();
    o.prefix = "seed" + std::to_string(seed) + ":";
    RedisStore redis(o);
    MemoryStore memory;
    std::mt19937 rng(seed);
    std::int64_t now = 0;
    std::vector<std::pair<Ticket, Limit>> tickets;
    // The last calls per key, printed when the backends disagree.
    std::map<std::string, std::deque<std::string>> history;
    auto note = [&](const std::string& key, std::string what) {
      auto& h = history[key];
      h.push_back(std::move(what));
      if (h.size() > 30) h.pop_front();
    };
    auto story = [&](const std::string& key) {
      std::string out = "recent calls on " + key + ":\n";
      for (const auto& line : history[key]) out += "  " + line + "\n";
      return out;
    };
    int refusals = 0;
    int penalties = 0;
    int givenBack = 0;
    for (int i = 0; i < 6000; ++i) {
      const auto step = rng() % 100;
      if (step < 85) {
        now += std::uniform_int_distribution<std::int64_t>(0, 900)(rng);
      } else if (step < 97) {
        now = std::max<std::int64_t>(0, now - std::uniform_int_distribution<std::int64_t>(0, 3'000)(rng));
      } else {
        now += std::uniform_int_distribution<std::int64_t>(0, 400'000)(rng);
      }
      const std::size_t k = rng() % 4;
      const std::string key = keys[k];
      const Limit& limit = rng() % 10 == 0 ? limits[rng() % 4] : limits[k];
      const std::string call = "t=" + std::to_string(now) + " window=" + std::to_string(limit.window.count());
      const auto what = rng() % 10;
      if (what < 7) {
        const auto n = static_cast<std::uint32_t>(rng() % 3);
        Ticket tr;
        Ticket tm;
        const Check r = redis.hit(key, limit, n, at(now), &tr);
        const Check m = memory.hit(key, limit, n, at(now), &tm);
        note(key, "hit " + call + " n=" + std::to_string(n) + ": redis " + std::to_string(r.allowed) + "/" +
                      std::to_string(r.count) + " memory " + std::to_string(m.allowed) + "/" +
                      std::to_string(m.count));
        ASSERT_EQ(r.allowed, m.allowed) << story(key);
        ASSERT_EQ(r.count, m.count) << story(key);
        ASSERT_EQ(r.penaltyUntil, m.penaltyUntil) << story(key);
        ASSERT_EQ(tr.n, tm.n) << story(key);
        ASSERT_EQ(tr.bucket, tm.bucket) << story(key);
        if (tr.n > 0) tickets.emplace_back(tr, limit);
        refusals += r.allowed ? 0 : 1;
        penalties += r.penaltyUntil ? 1 : 0;
      } else if (what < 8 && !tickets.empty()) {
        const auto& [t, l] = tickets[rng() % tickets.size()];
        redis.giveBack(t, l);
        memory.giveBack(t, l);
        note(t.key, "giveBack " + call + " bucket=" + std::to_string(t.bucket) + " n=" + std::to_string(t.n));
        ++givenBack;
      } else {
        const Usage r = redis.usage(key, limit, at(now));
        const Usage m = memory.usage(key, limit, at(now));
        note(key, "usage " + call + ": redis " + std::to_string(r.count) + " memory " + std::to_string(m.count));
        ASSERT_EQ(r.count, m.count) << story(key);
        ASSERT_EQ(r.penaltyUntil, m.penaltyUntil) << story(key);
      }
    }
    // The sequence did reach the interesting cases.
    EXPECT_GT(refusals, 300);
    EXPECT_GT(penalties, 60);
    EXPECT_GT(givenBack, 150);
  }
}

TEST_F(RedisStoreTest, RunsItsScriptsAgainAfterScriptFlush) {
  RedisStore store(options());
  ASSERT_TRUE(store.hit("s:h@example.jp", kPerMinute3, 1, at(0)).allowed);
  ASSERT_EQ(server_->raw({"SCRIPT", "FLUSH"}), "+OK");
  // NOSCRIPT on the pooled connection: EVAL instead, on the same connection.
  const Check c = store.hit("s:h@example.jp", kPerMinute3, 1, at(0));
  EXPECT_TRUE(c.allowed);
  EXPECT_EQ(c.count, 2u);
  EXPECT_EQ(store.usage("s:h@example.jp", kPerMinute3, at(0)).count, 2u);
}

TEST_F(RedisStoreTest, WorksOverTcp) {
  auto tcp = startServer({.tcp = true, .password = ""});
  ASSERT_TRUE(tcp);
  RedisStore store(options(*tcp));
  store.ping();
  Ticket t;
  EXPECT_TRUE(store.hit("c:203.0.113.5", kPerMinute3, 3, at(0), &t).allowed);
  EXPECT_FALSE(store.hit("c:203.0.113.5", kPerMinute3, 1, at(0)).allowed);
  store.giveBack(t, kPerMinute3);
  EXPECT_TRUE(store.hit("c:203.0.113.5", kPerMinute3, 1, at(0)).allowed);
  EXPECT_EQ(tcp->raw({"HGET", "sekimori:rl:c:203.0.113.5", "t"}), "1");
}

TEST_F(RedisStoreTest, AuthenticatesAndSelectsTheDatabase) {
  auto secured = startServer({.tcp = false, .password = "s3cret"});
  ASSERT_TRUE(secured);
  RedisOptions o = options(*secured);
  o.password = "s3cret";
  o.database = 3;
  RedisStore store(o);
  store.ping();
  EXPECT_TRUE(store.hit("u:carol", kPerMinute3, 1, at(0)).allowed);
  EXPECT_EQ(secured->raw({"EXISTS", "sekimori:rl:u:carol"}, 3), ":1");
  EXPECT_EQ(secured->raw({"EXISTS", "sekimori:rl:u:carol"}, 0), ":0");

  // AUTH with an ACL user name (Redis 6+: "default" is the requirepass user).
  o.username = "default";
  RedisStore withUser(o);
  EXPECT_EQ(withUser.usage("u:carol", kPerMinute3, at(0)).count, 1u);

  o.username.clear();
  o.password = "wrong";
  RedisStore refused(o);
  try {
    refused.ping();
    ADD_FAILURE() << "AUTH with a wrong password succeeded";
  } catch (const StoreUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find("AUTH"), std::string::npos) << e.what();
  }
  // Without a password at all the scripts cannot even be loaded.
  o.password.clear();
  RedisStore anonymous(o);
  EXPECT_THROW(anonymous.hit("u:carol", kPerMinute3, 1, at(0)), StoreUnavailable);
}

TEST_F(RedisStoreTest, NoServerFailsQuickly) {
  RedisOptions o = options();
  o.address = "unix:" + server_->socketPath() + ".none";
  RedisStore store(o);
  const auto start = Steady::now();
  try {
    store.ping();
    ADD_FAILURE() << "ping succeeded without a server";
  } catch (const StoreUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find("connect"), std::string::npos) << e.what();
  }
  EXPECT_LT(elapsedMs(start), 100);
}

TEST_F(RedisStoreTest, KilledServerFailsFastUntilRetryThenRecovers) {
  RedisOptions o = options();
  o.retryInterval = 2000ms;
  RedisStore store(o);
  ASSERT_TRUE(store.hit("c:192.0.2.9", kPerMinute3, 1, at(0)).allowed);  // a pooled connection

  server_->kill();
  auto start = Steady::now();
  EXPECT_THROW(store.hit("c:192.0.2.9", kPerMinute3, 1, at(0)), StoreUnavailable);
  EXPECT_LT(elapsedMs(start), o.ioTimeout.count() + 100);
  const auto outage = Steady::now();

  // During retryInterval: no network at all, so even a server that is back
  // is not asked; every call fails at once.
  ASSERT_EQ(server_->start(), "");
  for (int i = 0; i < 100; ++i) {
    start = Steady::now();
    try {
      store.hit("c:192.0.2.9", kPerMinute3, 1, at(0));
      ADD_FAILURE() << "answered during retryInterval";
    } catch (const StoreUnavailable& e) {
      EXPECT_NE(std::string(e.what()).find("unavailable"), std::string::npos) << e.what();
    }
    EXPECT_LT(elapsedMs(start), 50);  // no network: far below ioTimeout even on a busy machine
  }
  EXPECT_THROW(store.ping(), StoreUnavailable);
  ASSERT_LT(elapsedMs(outage), 1900) << "restarting redis-server took too long to test the retry interval";

  std::this_thread::sleep_until(outage + o.retryInterval + 50ms);
  const Check c = store.hit("c:192.0.2.9", kPerMinute3, 1, at(0));
  EXPECT_TRUE(c.allowed);
  EXPECT_EQ(c.count, 1u);  // the killed server kept nothing
  store.ping();
}

TEST_F(RedisStoreTest, HungServerTimesOut) {
  RedisStore store(options());
  ASSERT_TRUE(store.hit("c:192.0.2.10", kPerMinute3, 1, at(0)).allowed);

  server_->pause();
  auto start = Steady::now();
  try {
    store.hit("c:192.0.2.10", kPerMinute3, 1, at(0));
    ADD_FAILURE() << "a stopped server answered";
  } catch (const StoreUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
  }
  const auto took = elapsedMs(start);
  EXPECT_GE(took, 250);
  EXPECT_LT(took, 300 + 200);
  // Within retryInterval the next calls do not wait at all.
  start = Steady::now();
  EXPECT_THROW(store.usage("c:192.0.2.10", kPerMinute3, at(0)), StoreUnavailable);
  EXPECT_LT(elapsedMs(start), 50);

  // A new connection to the stopped server: the handshake times out too.
  std::this_thread::sleep_for(350ms);
  start = Steady::now();
  EXPECT_THROW(store.ping(), StoreUnavailable);
  EXPECT_LT(elapsedMs(start), 300 + 300 + 200);

  server_->resume();
  std::this_thread::sleep_for(350ms);
  store.ping();
  // The hit that timed out reached the server and ran when it woke: a
  // refusal to wait is not a rollback.
  EXPECT_EQ(store.usage("c:192.0.2.10", kPerMinute3, at(0)).count, 2u);
}

TEST_F(RedisStoreTest, ConcurrentHitsAdmitExactlyMax) {
  RedisOptions o = options();
  o.maxConnections = 3;  // fewer than threads: callers wait for a connection
  o.ioTimeout = 2000ms;
  RedisStore store(o);
  const Limit limit{1000, 60s, 0ms};
  std::atomic<int> admitted{0};
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        try {
          if (store.hit("s:hot@example.jp", limit, 1, at(t * 10 + i)).allowed) ++admitted;
        } catch (const StoreUnavailable&) {
          ++errors;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(admitted.load(), 1000);
  EXPECT_EQ(store.usage("s:hot@example.jp", limit, at(3'000)).count, 1000u);
}

TEST_F(RedisStoreTest, OutageUnderLoadNeverBlocksAndRecovers) {
  RedisOptions o = options();
  o.maxConnections = 3;
  o.retryInterval = 200ms;
  RedisStore store(o);
  const Limit limit{1'000'000, 60s, 0ms};
  log::init("redis_store_test", true);
  testing::internal::CaptureStderr();
  std::atomic<bool> stop{false};
  std::atomic<long> ok{0};
  std::atomic<long> failed{0};
  std::atomic<std::int64_t> slowest{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        const auto start = Steady::now();
        bool answered = true;
        try {
          store.hit("c:load" + std::to_string(t), limit, 1, at(i));
          ++ok;
        } catch (const StoreUnavailable&) {
          ++failed;
          answered = false;
        }
        const auto took = elapsedMs(start);
        for (auto s = slowest.load(); took > s && !slowest.compare_exchange_weak(s, took);) {
        }
        if (!answered) std::this_thread::sleep_for(1ms);  // no busy loop while Redis is down
      }
    });
  }
  std::this_thread::sleep_for(300ms);
  server_->kill();
  std::this_thread::sleep_for(500ms);
  const long failedDuringOutage = failed;
  ASSERT_EQ(server_->start(), "");
  std::this_thread::sleep_for(500ms);
  const long okBeforeEnd = ok;
  std::this_thread::sleep_for(300ms);
  stop = true;
  for (auto& th : threads) th.join();

  const std::string err = testing::internal::GetCapturedStderr();
  log::init("sekimori", false);

  EXPECT_GT(failedDuringOutage, 0);
  EXPECT_GT(ok.load(), okBeforeEnd) << "no call succeeded after the restart";
  // Every call, in the outage or not, within the connect plus I/O timeouts.
  EXPECT_LT(slowest.load(), (o.connectTimeout + o.ioTimeout).count() + 150);
  store.ping();
  // Hundreds of failed calls and two failed reconnects (every 200 ms for
  // 500 ms), but one line when the outage starts and one when it ends.
  auto count = [&](const std::string& text) {
    std::size_t n = 0;
    for (auto at = err.find(text); at != std::string::npos; at = err.find(text, at + 1)) ++n;
    return n;
  };
  const std::string name = "redis " + o.address;
  EXPECT_EQ(count(name + " unavailable: "), 1u) << err;
  EXPECT_EQ(count(name + " reachable again"), 1u) << err;
  EXPECT_EQ(count("\n"), 2u) << err;
}

}  // namespace
}  // namespace sekimori::ratelimit
