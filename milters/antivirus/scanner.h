// milters/antivirus/scanner.h — libclamav scanning, isolated from the milter.
//
// The engine is loaded and compiled once per generation of signatures, in
// an engine process started by a supervisor process that the milter forks
// before libmilter starts any thread; the engine process forks a small pool
// of worker processes that share the compiled engine copy-on-write. A
// milter thread hands one scan to a worker as a file descriptor (a sealed
// memfd, ScanFile, which the worker maps) over a private unix socket and
// gets a verdict line back. A worker that crashes or hangs inside libclamav
// costs that one scan (ScanResult::Error, the milter tempfails it) and is
// replaced. A worker bounds each scan with its own alarm (scan timeout), so
// a hang kills only that worker.
//
// Signature updates: the supervisor stats the database directory every
// dbCheckInterval (and on reload()); on a change it starts a new engine
// process beside the old one, and once that one has loaded, compiled and
// forked its workers, the old one retires (each old worker exits after its
// current scan). A database that fails to load, or crashes libclamav's
// loader, keeps the old engine and is logged. An engine process killed
// under the pool (OOM killer) is replaced by a fresh load.
//
//   ScannerPool pool;
//   ScannerOptions o;  o.engine.databaseDir = "/var/lib/clamav";
//   if (!pool.start(o, &why)) exit(2);       // before libmilter's threads exist
//   ScanFile f;  f.write(bytes, n);  f.seal();
//   ScanResult r = pool.scan(f.fd());        // from any thread
//   if (r.status == ScanResult::Status::Infected) ... r.name ...
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

namespace sekimori::antivirus {

// Set explicitly, never left to libclamav's defaults: a scan that hits one
// of these is a verdict of its own (LimitsExceeded, "Heuristics.Limits.Exceeded"),
// never silently clean.
// maxRecursion counts archive levels: an archive nested maxRecursion deep is
// scanned, one level deeper is LimitsExceeded. libclamav counts the outer file
// as a level too, so the engine gets CL_ENGINE_MAX_RECURSION = maxRecursion + 1.
// maxFileSize bounds each file inside what is scanned (attachment, archive
// member); the workers apply it themselves, as libclamav cuts a longer zip
// member short and calls it clean. The file handed to scan() is bounded by
// maxScanSize; libclamav's CL_ENGINE_MAX_FILESIZE is 1 MiB above it, so that
// a member libclamav cut short is still longer than maxScanSize.
// libclamav scans no file of 2 GiB or more: kLargestScanSize is the most
// maxScanSize can be with that margin.
// A worker also unpacks, with libarchive, containers libclamav cannot (RAR,
// Zstandard, zip members compressed with LZMA...; signed OpenPGP files with
// its own reader, openpgp.h) and scans what they hold
// under the same limits: each file within maxFileSize, levels within
// maxRecursion, and all of it, with what libclamav unpacks from it, within
// one more maxScanSize and maxFiles.
struct EngineLimits {
  std::uint64_t maxScanSize = 100ULL * 1024 * 1024;  // CL_ENGINE_MAX_SCANSIZE
  std::uint64_t maxFileSize = 25ULL * 1024 * 1024;   // each file inside, checked by the workers
  std::uint32_t maxFiles = 10000;                    // CL_ENGINE_MAX_FILES
  std::uint32_t maxRecursion = 8;                    // CL_ENGINE_MAX_RECURSION (R-AV-2: archives 8 deep)
  std::chrono::milliseconds maxScanTime{120000};     // CL_ENGINE_MAX_SCANTIME
  // Memory one scan may take in its worker on top of what the worker holds
  // when the scan starts (RLIMIT_DATA, set for the scan): past it the scan
  // is "Heuristics.Limits.Exceeded.MaxScanMemory". 0: none.
  std::uint64_t maxScanMemory = 1ULL << 30;
};
constexpr std::uint64_t kLargestScanSize = 2046ULL * 1024 * 1024;

struct EngineSettings {
  std::string databaseDir = "/var/lib/clamav";
  // Where libclamav writes the temp files of a scan (decoded attachments,
  // archive members). Empty: chosen by scanTempBase (below).
  std::string tempDir;
  EngineLimits limits;
};

struct ScanResult {
  enum class Status {
    Clean,
    Infected,        // name: the signature, e.g. "Eicar-Signature"
    LimitsExceeded,  // name: "Heuristics.Limits.Exceeded..." (the limit hit)
    Encrypted,       // name: "Heuristics.Encrypted.Zip" etc.: cannot be scanned
    Unscanned,       // clean as far as it went, but a container neither libclamav nor the
                     // worker (libarchive) could unpack was inside; name: what, e.g.
                     // "ACE archive" (libclamav backend only)
    Error,           // error: why (worker crashed, timeout, no engine, I/O)
  };
  Status status = Status::Error;
  std::string name;
  std::string error;
  // "1.4.6/27100" style: libclamav version / database version the worker
  // scanned with (for X-Virus-Scanned); empty on Error.
  std::string versions;
  // An HTML file inside an archive or compressed file holds script or
  // plug-ins (active_html.h), whatever the status: what html_script_action
  // acts on, as for an HTML part. libclamav backend only.
  bool activeHtml = false;
  // Status::Error with `why`: a scan that could not be done.
  static ScanResult failure(std::string why) {
    ScanResult r;
    r.error = std::move(why);
    return r;
  }
};

std::string_view toString(ScanResult::Status s);  // "clean", "infected", ...

struct ScannerOptions {
  EngineSettings engine;
  int workers = 4;
  std::chrono::milliseconds scanTimeout{120000};   // per scan, watchdog in the worker
  std::chrono::milliseconds dbCheckInterval{60000};
  // Private directory for the worker socket (created 0700). Empty: a new
  // directory under /tmp, removed at stop().
  std::string runDir;
};

// The directory the workers' temp directories go under (ScannerPool::start
// resolves it once): engine.tempDir if set, else $TMPDIR if set, else
// `shm` when it is a tmpfs this process may write with room for twice what
// all workers may write at once (workers x (max scan size + 1 MiB)), else
// /tmp. libclamav writes every decoded attachment and archive member of a
// scan to a file and removes it: on a disk file system creating and
// removing those files costs more CPU than scanning small mail does
// (README, Performance); a container's 64 MiB /dev/shm has no such room.
std::string scanTempBase(const ScannerOptions& o, const std::string& shm = "/dev/shm");

// What ScannerPool::start warns of when every worker taking its
// max_scan_memory at once would need more than `machineMemory` (bytes of
// RAM) or `cgroupMemory` (the memory limit of the daemon's cgroup, 0:
// none): the limit then no longer keeps the kernel's OOM killer from
// picking its own victim (the milter, Postfix; or, in a cgroup, the whole
// service). Empty when it fits, or with no limit.
std::string scanMemoryWarning(const ScannerOptions& o, std::uint64_t machineMemory, std::uint64_t cgroupMemory = 0);

// The lowest memory limit set on the cgroup `procCgroup` (the text of
// /proc/self/cgroup) names, or on one above it, under `root` (where
// cgroups are mounted): cgroup v2's memory.max (systemd's MemoryMax=), or
// v1's memory.limit_in_bytes. 0 when there is none, or it cannot be read.
std::uint64_t cgroupMemoryLimit(std::string_view procCgroup, const std::string& root = "/sys/fs/cgroup");

// The bytes of one scan in a memfd (no name, no disk): written, then sealed
// against writing, shrinking and growing before it is handed to
// Scanner::scan(). A worker maps a sealed file instead of reading it a page
// at a time; any other fd works too and is read through pread().
class ScanFile {
 public:
  ScanFile();  // fd() < 0, errno set, when there is no memfd to be had
  ~ScanFile();
  ScanFile(const ScanFile&) = delete;
  ScanFile& operator=(const ScanFile&) = delete;
  int fd() const { return fd_; }
  // Appends; false (errno set) on a write error or once sealed.
  bool write(const void* data, std::size_t size);
  // No change after this; false (errno set) if the seals cannot be set.
  bool seal();

 private:
  int fd_;
};

// What the milter scans with: the in-process pool below, or clamd
// (clamd.h) for sites that already run it.
class Scanner {
 public:
  virtual ~Scanner() = default;
  // Scans what `fd` holds from offset 0. Thread-safe, bounded in time,
  // never throws: problems are Status::Error.
  virtual ScanResult scan(int fd) = 0;
  // Signature databases may have changed (SIGUSR1).
  virtual void reload() {}
  virtual void stop() {}
  // For X-Virus-Scanned when a scan brings no versions, and for logs.
  virtual std::string versions() const = 0;
};

class ScannerPool final : public Scanner {
 public:
  ScannerPool();
  ~ScannerPool() override;  // stop()
  ScannerPool(const ScannerPool&) = delete;
  ScannerPool& operator=(const ScannerPool&) = delete;

  // Checks libclamav >= 1.4 (LZH support), forks the supervisor, and waits
  // until its engine process has loaded and compiled the engine from
  // options.engine.databaseDir and forked the workers. False with `error`
  // set (clear, for the admin) when there is no loadable database, loading
  // it crashed libclamav, or libclamav is too old. Call while the process
  // has one thread.
  bool start(const ScannerOptions& options, std::string* error);

  // Scans what `fd` holds (read from offset 0; the caller keeps the fd).
  // Thread-safe. Waits at most scanTimeout plus the time to get a worker.
  ScanResult scan(int fd) override;

  // Asks the supervisor to check the database directory now.
  void reload() override;

  // Stops the supervisor and workers (by PID) and removes the socket dir.
  void stop() override;

  // Calls `onDeath` once, from a thread of its own, if the supervisor and
  // its workers die while no stop() is under way (killed by the admin or
  // the OOM killer): the pool can no longer scan, and every scan would
  // fail until the daemon is restarted. Call after start(), from the
  // process that will scan (the daemon starts it after detaching).
  void watch(std::function<void()> onDeath);

  // The supervisor's process id; -1 when not started.
  pid_t supervisorPid() const;

  // libclamav's version string, e.g. "1.4.6".
  static std::string libraryVersion();
  std::string versions() const override { return libraryVersion(); }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace sekimori::antivirus
