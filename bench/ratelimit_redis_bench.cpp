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
//   build-bench/bench/sekimori-ratelimit-redis-bench [--threads 20] [--seconds 5] [--requests 200000]
//
// It starts its own redis-server (no persistence) in a /tmp directory that
// it removes at the end; redis-server and redis-benchmark come from PATH.
// Exit status: 0 when every target is met, 1 when one is not, 2 on a setup
// error. Not a test: nothing runs it in CI, and nothing installs it.
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <arpa/inet.h>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "common/log/log.h"
#include "milters/ratelimit/redis_store.h"

extern char** environ;

namespace {

using namespace std::chrono_literals;
using sekimori::ratelimit::Limit;
using sekimori::ratelimit::RedisOptions;
using sekimori::ratelimit::RedisStore;
using Steady = std::chrono::steady_clock;

struct Settings {
  int threads = 20;
  int seconds = 5;
  long requests = 200000;  // per redis-benchmark test
};

std::string findInPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/usr/sbin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = dir + "/" + name;
    if (!dir.empty() && access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

int freeTcpPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

// The private server: a unix socket and a 127.0.0.1 port.
class Server {
 public:
  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  bool start(const std::string& binary) {
    char dir[] = "/tmp/sekimori-redis-bench-XXXXXX";
    if (mkdtemp(dir) == nullptr) return false;
    dir_ = dir;
    port_ = freeTcpPort();
    std::vector<std::string> args{binary, "--port", std::to_string(port_), "--bind", "127.0.0.1",
                                  "--unixsocket", socket(), "--unixsocketperm", "700", "--save", "",
                                  "--appendonly", "no", "--dir", dir_, "--daemonize", "no",
                                  "--logfile", dir_ + "/redis.log"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, binary.c_str(), nullptr, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
      return false;
    }
    RedisOptions o;
    o.address = "unix:" + socket();
    o.retryInterval = 0ms;
    RedisStore probe(o);
    for (auto deadline = Steady::now() + 10s; Steady::now() < deadline; std::this_thread::sleep_for(20ms)) {
      try {
        probe.ping();
        return true;
      } catch (const sekimori::ratelimit::StoreUnavailable&) {
      }
    }
    return false;
  }

  std::string socket() const { return dir_ + "/redis.sock"; }
  int port() const { return port_; }

 private:
  std::string dir_;
  int port_ = 0;
  pid_t pid_ = -1;
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
    std::fprintf(stderr, "usage: %s [--threads N] [--seconds S] [--requests N]\n", argv[0]);
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
  Server server;
  if (!server.start(serverBin)) {
    std::fprintf(stderr, "cannot start a private redis-server\n");
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
      {"unix", "unix:" + server.socket(), benchmarkBin + " -s " + server.socket() + common},
      {"tcp", "127.0.0.1:" + std::to_string(server.port()),
       benchmarkBin + " -h 127.0.0.1 -p " + std::to_string(server.port()) + common},
  };

  std::printf("RedisStore::hit() vs redis-benchmark, %d threads / clients, %d s per hit() run, "
              "%ld requests per redis-benchmark test\n",
              s.threads, s.seconds, s.requests);
  // redis-cli, when installed, tells what the server spends per call.
  const std::string cliBin = findInPath("redis-cli");
  const std::string cli = cliBin.empty() ? "" : cliBin + " -s " + server.socket();
  auto resetStats = [&] {
    if (!cli.empty()) run(cli + " CONFIG RESETSTAT");
  };
  auto serverUs = [&](const char* command) { return cli.empty() ? 0.0 : serverUsPerCall(cli, command); };

  bool pass = true;
  for (const auto& t : transports) {
    std::printf("\n[%s] %s\n", t.name, t.benchmark.c_str());
    std::fflush(stdout);
    resetStats();
    const BenchmarkRates rb = runRedisBenchmark(t.benchmark);
    const double getUs = serverUs("get");
    const double setUs = serverUs("set");
    resetStats();
    const Result own = measureHits(t.address, s, false);
    const double ownUs = serverUs("evalsha");
    resetStats();
    const Result hot = measureHits(t.address, s, true);
    const double hotUs = serverUs("evalsha");
    const double floor = std::max(rb.get, rb.set);
    std::printf("  %-20s %9.0f /s  server %5.2f us/call\n", "redis-benchmark GET", rb.get, getUs);
    std::printf("  %-20s %9.0f /s  server %5.2f us/call\n", "redis-benchmark SET", rb.set, setUs);
    const std::tuple<const char*, const Result&, double> rows[] = {{"hit() own keys", own, ownUs},
                                                                   {"hit() one hot key", hot, hotUs}};
    for (const auto& [label, r, us] : rows) {
      const double ratio = floor > 0 ? r.perSecond / floor : 0;
      const bool ok = floor > 0 && r.errors == 0 && ratio >= 0.5;
      pass = pass && ok;
      std::printf("  %-20s %9.0f /s  server %5.2f us/call  p50 %4.0f us  p99 %5.0f us  errors %ld"
                  "  = %.2f x the faster of GET/SET [target >= 0.50: %s]\n",
                  label, r.perSecond, us, r.p50us, r.p99us, r.errors, ratio, ok ? "PASS" : "FAIL");
    }
    std::fflush(stdout);
  }
  std::printf("\n%s: RedisStore::hit() within 2x of redis-benchmark GET/SET\n", pass ? "PASS" : "FAIL");
  return pass ? 0 : 1;
}
