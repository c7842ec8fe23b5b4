// common/store/quarantine.cpp — see quarantine.h.
#include "common/store/quarantine.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <random>

#include "common/util/strings.h"

namespace sekimori::store {

namespace {

std::string errnoText(const std::string& what) { return what + ": " + std::strerror(errno); }

bool writeAll(int fd, const char* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, data, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

// Index fields are tab-separated: no tabs or line breaks inside.
std::string field(std::string_view s) {
  std::string out = util::sanitize(s, 2048);
  for (char& c : out) {
    if (c == '\t') c = ' ';
  }
  return out;
}

}  // namespace

bool Quarantine::prepare(std::string* error) const {
  if (dir_.empty() || dir_[0] != '/') {
    *error = "quarantine directory must be an absolute path: '" + dir_ + "'";
    return false;
  }
  struct stat existing {};
  if (stat(dir_.c_str(), &existing) != 0) {
    // Parents as mkdir -p would make them; the quarantine itself 0700.
    std::error_code ec;
    const auto parent = std::filesystem::path(dir_).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec || (mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST)) {
      *error = ec ? "cannot create " + parent.string() + ": " + ec.message()
                  : errnoText("cannot create quarantine directory " + dir_);
      return false;
    }
  }
  struct stat st {};
  if (stat(dir_.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    *error = "quarantine path is not a directory: " + dir_;
    return false;
  }
  if ((st.st_mode & 0077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
    *error = "quarantine directory " + dir_ + " is accessible to other users (mode " + mode + "); chmod 0700 it";
    return false;
  }
  return true;
}

std::optional<std::string> Quarantine::store(const mime::Spool& message, const QuarantineEntry& e,
                                             std::string* error) const {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char rnd[17];
  std::snprintf(rnd, sizeof rnd, "%016llx", static_cast<unsigned long long>(rng()));
  std::string qid;
  for (const char c : e.queueId) {
    if (std::isalnum(static_cast<unsigned char>(c))) qid += c;
  }
  const std::string id = std::string(stamp) + "-" + (qid.empty() ? "NOQUEUE" : qid) + "-" + rnd + ".eml";
  const std::string path = dir_ + "/" + id;

  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    *error = errnoText("cannot create " + path);
    return std::nullopt;
  }
  std::array<std::byte, 64 * 1024> buf{};
  std::uint64_t off = 0;
  bool ok = true;
  for (;;) {
    const std::size_t n = message.read(off, buf);
    if (n == 0) break;
    if (!writeAll(fd, reinterpret_cast<const char*>(buf.data()), n)) {
      ok = false;
      break;
    }
    off += n;
  }
  if (ok && fsync(fd) != 0) ok = false;
  if (close(fd) != 0) ok = false;
  if (!ok || off != message.size()) {
    *error = errnoText("cannot write " + path);
    unlink(path.c_str());
    return std::nullopt;
  }

  std::string line = std::string(stamp) + "\t" + id + "\t" + field(e.queueId) + "\t" + field(e.direction) + "\t" +
                     field(e.reason) + "\t" + field(e.sender) + "\t";
  for (std::size_t i = 0; i < e.recipients.size(); ++i) line += (i ? "," : "") + field(e.recipients[i]);
  line += "\n";
  const std::string index = dir_ + "/index.tsv";
  const int ifd = ::open(index.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (ifd < 0) {
    *error = errnoText("cannot open " + index) + " (the message is kept as " + path + ")";
    return std::nullopt;
  }
  flock(ifd, LOCK_EX);  // one line per writer, also across processes
  const bool written = writeAll(ifd, line.data(), line.size());
  flock(ifd, LOCK_UN);
  close(ifd);
  if (!written) {
    *error = errnoText("cannot append to " + index) + " (the message is kept as " + path + ")";
    return std::nullopt;
  }
  return id;
}

}  // namespace sekimori::store
