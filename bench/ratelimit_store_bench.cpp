// bench/ratelimit_store_bench.cpp — what MemoryStore::hit() costs: checks
// per second on one core against the target of 1 000 000, and the same
// with two threads. Not a test: nothing runs it but a person.
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSEKIMORI_TESTS=OFF
//   cmake --build build-bench --target sekimori-ratelimit-store-bench -j2
//   build-bench/bench/sekimori-ratelimit-store-bench [checks per run]
//
// Every check is a hit of 1 under 100 per 5 min (5 s buckets). The clock is
// simulated and advances 1 ms per check, a busy MX's pace, so buckets roll
// and keys age as they do in service instead of all hits landing in one
// bucket: the hot key is refused once it has its 100 (the read-only path),
// and each of the 100 000 round-robin keys comes back 100 s later to a ring
// 20 buckets behind (the advancing path). Exit status 1 when a one-thread
// run misses the target.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "milters/ratelimit/memory_store.h"

namespace {

using sekimori::ratelimit::Limit;
using sekimori::ratelimit::MemoryStore;
using sekimori::ratelimit::TimePoint;
using std::chrono::milliseconds;

constexpr double kTarget = 1'000'000;  // checks/s on one core
constexpr std::size_t kDistinctKeys = 100'000;
constexpr milliseconds kStep{1};  // simulated time per check
const Limit kLimit{100, std::chrono::minutes(5), milliseconds(0)};
const TimePoint kStart{milliseconds(1'700'000'000'000)};

struct Run {
  std::uint64_t checks = 0;
  std::uint64_t allowed = 0;
};

// `checks` hits on keys[first], keys[first + stride], ... round-robin, the
// simulated clock starting at `start`.
Run hits(MemoryStore& store, const std::vector<std::string>& keys, std::size_t first, std::size_t stride,
         std::uint64_t checks, TimePoint start) {
  Run r;
  std::size_t k = first;
  TimePoint now = start;
  for (std::uint64_t i = 0; i < checks; ++i) {
    if (store.hit(keys[k], kLimit, 1, now).allowed) ++r.allowed;
    k += stride;
    if (k >= keys.size()) k = first;
    now += kStep;
  }
  r.checks = checks;
  return r;
}

// Checks per second over `threads` threads, each taking every threads-th key
// (one hot key: all on the same one). The store is filled untimed first, so
// the run measures the steady state rather than the first inserts.
double measure(const std::vector<std::string>& keys, unsigned threads, std::uint64_t checksPerThread,
               std::uint64_t& allowed) {
  MemoryStore store;
  const std::size_t stride = keys.size() == 1 ? 1 : threads;
  std::vector<std::thread> pool;
  std::vector<Run> runs(threads);
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { hits(store, keys, keys.size() == 1 ? 0 : t, stride, keys.size() / stride, kStart); });
  }
  for (auto& th : pool) th.join();
  pool.clear();

  const TimePoint warm = kStart + kStep * static_cast<std::int64_t>(keys.size());
  const auto begin = std::chrono::steady_clock::now();
  for (unsigned t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      runs[t] = hits(store, keys, keys.size() == 1 ? 0 : t, stride, checksPerThread, warm);
    });
  }
  for (auto& th : pool) th.join();
  const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - begin;

  allowed = 0;
  std::uint64_t checks = 0;
  for (const auto& r : runs) {
    allowed += r.allowed;
    checks += r.checks;
  }
  return static_cast<double>(checks) / elapsed.count();
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t checks = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 5'000'000;
  if (checks == 0) {
    std::fprintf(stderr, "usage: %s [checks per run]\n", argv[0]);
    return 2;
  }
  const std::vector<std::string> hot{"c:192.0.2.1"};
  std::vector<std::string> many;
  many.reserve(kDistinctKeys);
  for (std::size_t i = 0; i < kDistinctKeys; ++i) many.push_back("s:user" + std::to_string(i) + "@example.jp");

  std::printf("limit 100 per 5 min, simulated clock +%lld ms per check, %llu checks per run\n",
              static_cast<long long>(kStep.count()), static_cast<unsigned long long>(checks));
  bool pass = true;
  struct Variant {
    const char* label;
    const std::vector<std::string>* keys;
  };
  const Variant variants[] = {{"1 key", &hot}, {"100000 keys round-robin", &many}};
  for (unsigned threads : {1u, 2u}) {
    for (const auto& v : variants) {
      std::uint64_t allowed = 0;
      const double rate = measure(*v.keys, threads, checks / threads, allowed);
      std::printf("memory hit()%s: %s: %.0f checks/s (%llu allowed)", threads == 1 ? "" : ", 2 threads", v.label,
                  rate, static_cast<unsigned long long>(allowed));
      if (threads == 1) {
        const bool ok = rate >= kTarget;
        pass = pass && ok;
        std::printf("  target >= %.0f checks/s on one core: %s", kTarget, ok ? "PASS" : "FAIL");
      }
      std::printf("\n");
    }
  }
  return pass ? 0 : 1;
}
