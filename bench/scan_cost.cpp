// bench/scan_cost.cpp — what one scan costs in sekimori-antivirus's scanner
// pool, apart from Postfix and libmilter: the CPU time of the pool's
// processes (supervisor, engine process, worker) and the wall time per
// file, files scanned one after the other by one worker, each handed over in
// a sealed memfd as the milter does.
//
//   sekimori-scan-cost DBDIR TEMPDIR FILE...
//
// bench/scan_cost.py makes the message sets and the database and runs it.
// Prints: "files N  cpu_ms_per_scan X  wall_ms_per_scan Y  verdicts clean=..".
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "milters/antivirus/scanner.h"

namespace {

// utime + stime, in clock ticks, of every process below `root` (not root).
long long descendantsCpu(pid_t root) {
  std::map<pid_t, pid_t> parent;
  std::map<pid_t, long long> ticks;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(e.path() / "stat");
    std::string stat;
    if (!std::getline(in, stat)) continue;
    // pid (comm) state ppid ... field 14 utime, 15 stime; comm may hold spaces.
    std::istringstream rest(stat.substr(stat.rfind(')') + 2));
    std::vector<std::string> f;
    for (std::string w; rest >> w && f.size() < 13;) f.push_back(w);
    if (f.size() < 13) continue;
    const pid_t pid = std::stoi(name);
    parent[pid] = std::stoi(f[1]);
    ticks[pid] = std::stoll(f[11]) + std::stoll(f[12]);
  }
  long long sum = 0;
  for (const auto& [pid, t] : ticks) {
    for (pid_t p = parent[pid]; p > 1; p = parent.count(p) ? parent[p] : 0) {
      if (p == root) {
        sum += t;
        break;
      }
    }
  }
  return sum;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace sekimori::antivirus;
  if (argc < 4) {
    std::fprintf(stderr, "usage: %s DBDIR TEMPDIR FILE...\n", argv[0]);
    return 2;
  }
  ScannerOptions o;
  o.engine.databaseDir = argv[1];
  o.engine.tempDir = argv[2];
  o.workers = 1;
  ScannerPool pool;
  std::string error;
  if (!pool.start(o, &error)) {
    std::fprintf(stderr, "scanner: %s\n", error.c_str());
    return 2;
  }
  // Each file in a sealed memfd, as the milter hands a message over.
  std::vector<std::unique_ptr<ScanFile>> files;
  for (int i = 3; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::perror(argv[i]);
      return 2;
    }
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto f = std::make_unique<ScanFile>();
    if (!f->write(bytes.data(), bytes.size()) || !f->seal()) {
      std::perror("memfd");
      return 2;
    }
    files.push_back(std::move(f));
  }
  std::map<std::string, int> verdicts;
  const long long cpu0 = descendantsCpu(getpid());
  const auto t0 = std::chrono::steady_clock::now();
  for (const auto& f : files) ++verdicts[std::string(toString(pool.scan(f->fd()).status))];
  const auto wall = std::chrono::steady_clock::now() - t0;
  const long long cpu = descendantsCpu(getpid()) - cpu0;
  pool.stop();
  const double n = static_cast<double>(files.size());
  std::printf("files %zu  cpu_ms_per_scan %.2f  wall_ms_per_scan %.2f  verdicts", files.size(),
              1000.0 * static_cast<double>(cpu) / static_cast<double>(sysconf(_SC_CLK_TCK)) / n,
              std::chrono::duration<double, std::milli>(wall).count() / n);
  for (const auto& [v, c] : verdicts) std::printf(" %s=%d", v.c_str(), c);
  std::printf("\n");
  return 0;
}
