// bench/ratelimit_redis_bench.cpp — what a Redis-backed rate limit costs: the
// RedisStore::hit() checks per second that concurrent milter threads get from
// one redis-server, next to redis-benchmark GET/SET against the same server
// in the same run, over a unix socket and over TCP on 127.0.0.1.
//
// redis-benchmark does not pipeline by default (-P 1): one request, one
// round trip, as hit() does. So the ratio shows what the Lua script, the
// connection pool and the client code cost on top of the cheapest round trip
// Redis offers. Target: hit() within 2x of the faster of GET and SET.
//
//   cmake -S . -B build-bench -DCMAKE_BUILD_TYPE=Release -DSEKIMORI_TESTS=OFF
//   cmake --build build-bench --target sekimori-ratelimit-redis-bench -j2
//   build-bench/bench/sekimori-ratelimit-redis-bench [--threads 20] [--seconds 3] [--requests 200000] [--rounds 3]
//
// It starts its own redis-server (no persistence) in a /tmp directory that
// it removes at the end; redis-server and redis-benchmark come from PATH.
// Exit status: 0 when every target is met, 1 when one is not, 2 on a setup
// error. Not a test: nothing runs it in CI, and nothing installs it.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "common/log/log.h"
#include "milters/ratelimit/redis_store.h"
#include "tests/support/redis_server.h"

namespace {

using namespace std::chrono_literals;
using sekimori::ratelimit::Limit;
using sekimori::ratelimit::RedisOptions;
using sekimori::ratelimit::RedisStore;
using Steady = std::chrono::steady_clock;
using sekimori::testsupport::findInPath;
using sekimori::testsupport::RedisServer;

struct Settings {
  int threads = 20;
  int seconds = 3;          // per hit() run
  long requests = 200000;   // per redis-benchmark test
  int rounds = 3;           // interleaved; medians are reported
};

struct Result {
  double perSecond = 0;
  double p50us = 0;
  double p99us = 0;
  long errors = 0;
};

// `threads` threads call hit() for `seconds`; each thread cycles through its
// own 1000 keys, or all share one hot key. The limit is never reached: an
// admitted hit is the expensive path (it writes and sets the TTL).
Result measureHits(const std::string& address, const Settings& s, bool hotKey) {
  RedisOptions o;
  o.address = address;
  o.maxConnections = static_cast<std::size_t>(s.threads);
  RedisStore store(o);
  const Limit limit{1'000'000'000'000, 300s, 0ms};

  // Fill the hot key's 60 buckets first, as a key hit all the time has them:
  // the script then reads a full hash on every hit.
  if (hotKey) {
    const auto now = sekimori::ratelimit::Clock::now();
    for (int b = 0; b < 60; ++b) store.hit("bench:hot", limit, 1, now - b * limit.bucketWidth());
  }

  // 0: wait, 1: warm up (a connection per thread, not counted), 2: measure, 3: stop.
  std::atomic<int> phase{0};
  std::vector<std::vector<std::uint32_t>> latencies(static_cast<std::size_t>(s.threads));
  std::vector<long> errors(static_cast<std::size_t>(s.threads), 0);
  std::vector<std::thread> workers;
  for (int t = 0; t < s.threads; ++t) {
    workers.emplace_back([&, t] {
      std::vector<std::string> keys;
      for (int i = 0; i < 1000; ++i) keys.push_back("bench:t" + std::to_string(t) + ":k" + std::to_string(i));
      const std::string hot = "bench:hot";
      auto& lat = latencies[static_cast<std::size_t>(t)];
      lat.reserve(500000);
      while (phase.load(std::memory_order_acquire) == 0) std::this_thread::yield();
      for (std::size_t i = 0;; ++i) {
        const int p = phase.load(std::memory_order_relaxed);
        if (p == 3) break;
        const auto begin = Steady::now();
        try {
          store.hit(hotKey ? hot : keys[i % keys.size()], limit, 1, sekimori::ratelimit::Clock::now());
        } catch (const sekimori::ratelimit::StoreUnavailable&) {
          ++errors[static_cast<std::size_t>(t)];
          continue;
        }
        if (p == 2) {
          lat.push_back(static_cast<std::uint32_t>(
              std::chrono::duration_cast<std::chrono::microseconds>(Steady::now() - begin).count()));
        }
      }
    });
  }
  phase.store(1, std::memory_order_release);
  std::this_thread::sleep_for(1s);
  phase.store(2);
  const auto begin = Steady::now();
  std::this_thread::sleep_for(std::chrono::seconds(s.seconds));
  phase.store(3);
  const auto end = Steady::now();
  for (auto& w : workers) w.join();

  std::vector<std::uint32_t> all;
  for (const auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  Result r;
  for (long e : errors) r.errors += e;
  if (all.empty()) return r;
  r.perSecond = static_cast<double>(all.size()) / std::chrono::duration<double>(end - begin).count();
  std::sort(all.begin(), all.end());
  r.p50us = all[all.size() / 2];
  r.p99us = all[all.size() * 99 / 100];
  return r;
}

std::string run(const std::string& command);

struct BenchmarkRates {
  double get = 0;
  double set = 0;
};

BenchmarkRates runRedisBenchmark(const std::string& command) {
  BenchmarkRates r;
  const std::string out = run(command);
  // -q prints progress lines ending in \r, then "SET: 91240.88 requests per
  // second, p50=0.111 msec"; the last match per test is the result.
  static const std::regex line(R"((GET|SET): ([0-9.]+) requests per second)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), line); it != std::sregex_iterator(); ++it) {
    ((*it)[1] == "GET" ? r.get : r.set) = std::stod((*it)[2]);
  }
  return r;
}

std::string run(const std::string& command) {
  std::string out;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  for (std::size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  pclose(p);
  return out;
}

// Server time per call of `command` since the last CONFIG RESETSTAT, from
// INFO commandstats: what Redis itself spends, apart from the network and
// the client.
double serverUsPerCall(const std::string& cli, const std::string& command) {
  const std::string out = run(cli + " INFO commandstats");
  const std::regex re("cmdstat_" + command + ":calls=[0-9]+,usec=[0-9]+,usec_per_call=([0-9.]+)");
  std::smatch m;
  return std::regex_search(out, m, re) ? std::stod(m[1]) : 0;
}

bool parseArgs(int argc, char** argv, Settings& s) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return false;
    const long v = std::strtol(argv[++i], nullptr, 10);
    if (v <= 0) return false;
    if (a == "--threads") {
      s.threads = static_cast<int>(v);
    } else if (a == "--seconds") {
      s.seconds = static_cast<int>(v);
    } else if (a == "--requests") {
      s.requests = v;
    } else if (a == "--rounds") {
      s.rounds = static_cast<int>(v);
    } else {
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  if (!parseArgs(argc, argv, s)) {
    std::fprintf(stderr, "usage: %s [--threads N] [--seconds S] [--requests N] [--rounds N]\n", argv[0]);
    return 2;
  }
  // hiredis writes with write(2); the daemon ignores SIGPIPE and so do we.
  signal(SIGPIPE, SIG_IGN);
  sekimori::log::init("sekimori-ratelimit-redis-bench", true);

  const std::string serverBin = findInPath("redis-server");
  const std::string benchmarkBin = findInPath("redis-benchmark");
  if (serverBin.empty() || benchmarkBin.empty()) {
    std::fprintf(stderr, "redis-server and redis-benchmark must be in PATH\n");
    return 2;
  }
  RedisServer server(serverBin, {.tcp = true, .password = ""});
  if (const std::string error = server.start(); !error.empty()) {
    std::fprintf(stderr, "cannot start a private redis-server: %s\n", error.c_str());
    return 2;
  }

  struct Transport {
    const char* name;
    std::string address;
    std::string benchmark;
  };
  const std::string common = " -c " + std::to_string(s.threads) + " -n " + std::to_string(s.requests) +
                             " -t get,set -q";
  const Transport transports[] = {
      {"unix", server.unixAddress(), benchmarkBin + " -s " + server.socketPath() + common},
      {"tcp", server.tcpAddress(),
       benchmarkBin + " -h 127.0.0.1 -p " + std::to_string(server.port()) + common},
  };

  std::printf("RedisStore::hit() vs redis-benchmark, %d threads / clients, %d s per hit() run, "
              "%ld requests per redis-benchmark test, %d rounds\n",
              s.threads, s.seconds, s.requests, s.rounds);
  // redis-cli, when installed, tells what the server spends per call.
  const std::string cliBin = findInPath("redis-cli");
  const std::string cli = cliBin.empty() ? "" : cliBin + " -s " + server.socketPath();
  auto resetStats = [&] {
    if (!cli.empty()) run(cli + " CONFIG RESETSTAT");
  };
  auto serverUs = [&](const char* command) { return cli.empty() ? 0.0 : serverUsPerCall(cli, command); };

  // A row of the table: one rate and the server's time per call, per round.
  struct Row {
    std::vector<double> rate, serverUs, p50, p99;
    long errors = 0;
    void add(double r, double us, const Result* res = nullptr) {
      rate.push_back(r);
      serverUs.push_back(us);
      if (res != nullptr) {
        p50.push_back(res->p50us);
        p99.push_back(res->p99us);
        errors += res->errors;
      }
    }
  };
  auto median = [](std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  auto rounds = [](const std::vector<double>& v) {
    std::string out;
    for (double x : v) {
      if (!out.empty()) out += ' ';
      out += std::to_string(static_cast<long>(x));
    }
    return out;
  };

  bool pass = true;
  for (const auto& t : transports) {
    std::printf("\n[%s] %s\n", t.name, t.benchmark.c_str());
    std::fflush(stdout);
    // Rounds interleave the two clients, so that whatever else the machine
    // does at one moment weighs on both.
    Row get, set, own, hot;
    for (int round = 0; round < s.rounds; ++round) {
      resetStats();
      const BenchmarkRates rb = runRedisBenchmark(t.benchmark);
      get.add(rb.get, serverUs("get"));
      set.add(rb.set, serverUs("set"));
      resetStats();
      const Result o = measureHits(t.address, s, false);
      own.add(o.perSecond, serverUs("evalsha"), &o);
      resetStats();
      const Result h = measureHits(t.address, s, true);
      hot.add(h.perSecond, serverUs("evalsha"), &h);
    }
    const double floor = std::max(median(get.rate), median(set.rate));
    std::printf("  %-20s %9s  %-15s  (each round /s)\n", "", "median/s", "server us/call");
    for (const auto& [label, row] : {std::pair{"redis-benchmark GET", &get}, std::pair{"redis-benchmark SET", &set}}) {
      std::printf("  %-20s %9.0f  %8.2f         (%s)\n", label, median(row->rate), median(row->serverUs),
                  rounds(row->rate).c_str());
    }
    for (const auto& [label, row] : {std::pair{"hit() own keys", &own}, std::pair{"hit() one hot key", &hot}}) {
      const double ratio = floor > 0 ? median(row->rate) / floor : 0;
      const bool ok = floor > 0 && row->errors == 0 && ratio >= 0.5;
      pass = pass && ok;
      std::printf("  %-20s %9.0f  %8.2f         (%s)  p50 %.0f us  p99 %.0f us  errors %ld\n", label,
                  median(row->rate), median(row->serverUs), rounds(row->rate).c_str(), median(row->p50),
                  median(row->p99), row->errors);
      std::printf("  %-20s = %.2f x the faster of GET/SET  [target >= 0.50: %s]\n", "", ratio, ok ? "PASS" : "FAIL");
    }
    std::fflush(stdout);
  }
  std::printf("\n%s: RedisStore::hit() within 2x of redis-benchmark GET/SET\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
