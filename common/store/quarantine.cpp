// common/store/quarantine.cpp — see quarantine.h.
#include "common/store/quarantine.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <map>
#include <random>

#include "common/util/files.h"
#include "common/util/strings.h"

namespace sekimori::store {

namespace {

using util::errnoText;
using util::readWhole;
using util::writeAll;

// Index fields are tab-separated: no tabs or line breaks inside.
std::string field(std::string_view s) {
  std::string out = util::sanitize(s, 2048);
  for (char& c : out) {
    if (c == '\t') c = ' ';
  }
  return out;
}

constexpr std::size_t kStampLength = 16;  // 20261124T093000Z

// Whether `s` starts with a stamp as Quarantine::stamp() writes it.
bool startsWithStamp(std::string_view s) {
  if (s.size() < kStampLength || s[8] != 'T' || s[15] != 'Z') return false;
  for (std::size_t i = 0; i < 15; ++i) {
    if (i != 8 && !std::isdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

// An entry's file name: STAMP-QUEUEID-RANDOM.eml, letters, digits and '-'
// between stamp and suffix (no '/', no "..": a name, never a path).
bool isEntryName(std::string_view name) {
  if (!startsWithStamp(name) || name.size() <= kStampLength + 5 || name[kStampLength] != '-' || !name.ends_with(".eml")) {
    return false;
  }
  const auto middle = name.substr(kStampLength, name.size() - kStampLength - 4);
  return std::all_of(middle.begin(), middle.end(),
                     [](char c) { return c == '-' || std::isalnum(static_cast<unsigned char>(c)); });
}

// index.tsv opened for appending and locked, the one at its path now: a
// writer that opened the file just before expire() renamed a new one over
// it would otherwise add its line to the replaced file. Each time that
// happens it opens the new one; it gives up (EAGAIN) only when removers
// have replaced the index again and again for kIndexPatience, not after a
// number of tries that a busy host and a remover in a loop can use up
// (seen: 1 store in 600 failing under 6 busy loops). -1 on failure.
constexpr auto kIndexPatience = std::chrono::seconds(10);

int openLockedIndex(const std::string& index) {
  const auto deadline = std::chrono::steady_clock::now() + kIndexPatience;
  for (;;) {
    const int fd = ::open(index.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return -1;
    flock(fd, LOCK_EX);  // one writer at a time, also across processes
    struct stat held {}, now {};
    if (fstat(fd, &held) == 0 && stat(index.c_str(), &now) == 0 && held.st_ino == now.st_ino &&
        held.st_dev == now.st_dev) {
      return fd;
    }
    close(fd);  // replaced meanwhile: open the new one
    if (std::chrono::steady_clock::now() >= deadline) {
      errno = EAGAIN;
      return -1;
    }
  }
}

// Calls f with each line of `text`, its '\n' included (the last may lack one).
template <class F>
void forEachLine(std::string_view text, F&& f) {
  for (std::size_t pos = 0; pos < text.size();) {
    const std::size_t nl = text.find('\n', pos);
    const std::size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    f(text.substr(pos, end - pos));
    pos = end;
  }
}

// An index line's entry id: its second field ("" if it has none).
std::string_view lineId(std::string_view line) {
  const std::size_t a = line.find('\t');
  if (a == std::string_view::npos) return {};
  const std::size_t b = line.find_first_of("\t\n", a + 1);
  return line.substr(a + 1, b == std::string_view::npos ? std::string_view::npos : b - a - 1);
}

}  // namespace

std::string Quarantine::stamp(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[32];
  std::strftime(out, sizeof out, "%Y%m%dT%H%M%SZ", &tm);
  return out;
}

bool Quarantine::prepare(std::string* error) const {
  return util::preparePrivateDir(dir_, "quarantine directory", error);
}

std::optional<std::string> Quarantine::store(const mime::Spool& message, const QuarantineEntry& e,
                                             std::string* error) const {
  const std::string now = stamp(std::time(nullptr));
  thread_local std::mt19937_64 rng{std::random_device{}()};
  char rnd[17];
  std::snprintf(rnd, sizeof rnd, "%016llx", static_cast<unsigned long long>(rng()));
  std::string qid;
  for (const char c : e.queueId) {
    if (std::isalnum(static_cast<unsigned char>(c))) qid += c;
  }
  const std::string id = now + "-" + (qid.empty() ? "NOQUEUE" : qid) + "-" + rnd + ".eml";
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
    if (!writeAll(fd, std::string_view(reinterpret_cast<const char*>(buf.data()), n))) {
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

  std::string line = now + "\t" + id + "\t" + field(e.queueId) + "\t" + field(e.direction) + "\t" +
                     field(e.reason) + "\t" + field(e.sender) + "\t";
  for (std::size_t i = 0; i < e.recipients.size(); ++i) {
    if (i > 0) line += ',';
    line += field(e.recipients[i]);
  }
  line += "\n";
  const std::string index = dir_ + "/index.tsv";
  const int ifd = openLockedIndex(index);
  if (ifd < 0) {
    *error = errnoText("cannot open " + index) + " (the message is kept as " + path + ")";
    return std::nullopt;
  }
  const bool written = writeAll(ifd, line);
  flock(ifd, LOCK_UN);
  close(ifd);
  if (!written) {
    *error = errnoText("cannot append to " + index) + " (the message is kept as " + path + ")";
    return std::nullopt;
  }
  return id;
}

std::optional<std::size_t> Quarantine::expire(std::chrono::seconds keep, std::time_t now, std::string* error) const {
  const std::string cutoff = stamp(now - static_cast<std::time_t>(keep.count()));
  return removeWhere([&](std::string_view id) { return id.substr(0, kStampLength) < cutoff; }, error);
}

std::optional<std::size_t> Quarantine::remove(const std::set<std::string>& ids, std::string* error) const {
  for (const auto& id : ids) {
    if (!isEntryId(id)) {
      *error = "not a quarantine entry id: '" + util::sanitize(id, 200) + "'";
      return std::nullopt;
    }
  }
  return removeWhere([&](std::string_view id) { return ids.count(std::string(id)) > 0; }, error);
}

std::optional<Quarantine::Trimmed> Quarantine::trim(std::uint64_t maxBytes, std::uint64_t downTo,
                                                     std::string* error) const {
  const auto all = list(error);
  if (!all) return std::nullopt;
  Trimmed t;
  for (const auto& r : *all) t.bytesLeft += r.size;
  if (t.bytesLeft <= maxBytes) return t;
  std::set<std::string> oldest;
  for (const auto& r : *all) {  // oldest first
    if (t.bytesLeft <= std::min(downTo, maxBytes)) break;
    if (!r.held) continue;
    oldest.insert(r.id);
    t.bytesLeft -= r.size;
  }
  if (oldest.empty()) return t;
  const auto removed = remove(oldest, error);
  if (!removed) return std::nullopt;
  t.removed = *removed;
  return t;
}

bool Quarantine::isEntryId(std::string_view name) { return isEntryName(name); }

std::optional<std::size_t> Quarantine::removeWhere(const std::function<bool(std::string_view id)>& drop,
                                                   std::string* error) const {
  // The files first, without holding the index: a writer at end of data
  // never waits for a directory walk.
  std::size_t removed = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename();
    if (!isEntryName(name) || !drop(name)) continue;
    if (unlink(it->path().c_str()) == 0) {
      ++removed;
    } else if (errno != ENOENT) {
      *error = errnoText("cannot remove " + it->path().string());
      return std::nullopt;
    }
  }
  if (ec) {
    *error = "cannot read " + dir_ + ": " + ec.message();
    return std::nullopt;
  }

  const std::string index = dir_ + "/index.tsv";
  const int fd = openLockedIndex(index);
  if (fd < 0) {
    *error = errnoText("cannot open " + index);
    return std::nullopt;
  }
  std::string text;
  const bool read = readWhole(fd, &text);
  std::string kept;
  bool dropped = false;
  forEachLine(text, [&](std::string_view line) {
    const auto id = lineId(line);
    if (isEntryName(id) && drop(id)) {
      dropped = true;
    } else {
      kept.append(line);
    }
  });
  bool ok = read;
  if (ok && dropped) {
    // The new index keeps the old one's owner: root running the admin
    // command must not leave the milter's user an index it cannot append to.
    struct stat old {};
    const std::string fresh = index + ".new";
    const int nfd = ::open(fresh.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    ok = nfd >= 0 && fstat(fd, &old) == 0 && fchown(nfd, old.st_uid, old.st_gid) == 0 &&
         writeAll(nfd, kept) && fsync(nfd) == 0;
    if (nfd >= 0 && close(nfd) != 0) ok = false;
    if (ok) ok = rename(fresh.c_str(), index.c_str()) == 0;
    if (!ok) {
      *error = errnoText("cannot rewrite " + index);
      unlink(fresh.c_str());
    }
  } else if (!ok) {
    *error = errnoText("cannot read " + index);
  }
  close(fd);  // the lock goes with it, after the rename: writers then open the new file
  if (!ok) return std::nullopt;
  return removed;
}

std::optional<std::vector<QuarantineRecord>> Quarantine::list(std::string* error) const {
  std::vector<QuarantineRecord> out;
  std::map<std::string, std::size_t, std::less<>> byId;  // -> index in out
  const std::string index = dir_ + "/index.tsv";
  const int fd = ::open(index.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    flock(fd, LOCK_SH);  // no half-written line from a writer
    std::string text;
    const bool read = readWhole(fd, &text);
    close(fd);
    if (!read) {
      *error = errnoText("cannot read " + index);
      return std::nullopt;
    }
    forEachLine(text, [&](std::string_view line) {
      if (line.ends_with('\n')) line.remove_suffix(1);
      auto f = util::splitFields(line, '\t');  // empty fields kept: the null sender is one
      if (f.size() < 7 || !isEntryName(f[1]) || byId.count(f[1])) return;  // not a line store() wrote
      QuarantineRecord r;
      r.id = f[1];
      r.stamp = f[1].substr(0, kStampLength);
      r.indexed = true;
      r.entry = {std::move(f[2]), std::move(f[3]), std::move(f[4]), std::move(f[5]), util::split(f[6], ',')};
      byId.emplace(r.id, out.size());
      out.push_back(std::move(r));
    });
  } else if (errno != ENOENT) {
    *error = errnoText("cannot open " + index);
    return std::nullopt;
  }

  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename();
    if (!isEntryName(name)) continue;
    struct stat st {};
    if (lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    auto found = byId.find(name);
    if (found == byId.end()) {
      QuarantineRecord r;
      r.id = name;
      r.stamp = name.substr(0, kStampLength);
      found = byId.emplace(name, out.size()).first;
      out.push_back(std::move(r));
    }
    out[found->second].held = true;
    out[found->second].size = static_cast<std::uint64_t>(st.st_size);
  }
  if (ec) {
    *error = "cannot read " + dir_ + ": " + ec.message();
    return std::nullopt;
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const QuarantineRecord& a, const QuarantineRecord& b) { return a.stamp < b.stamp; });
  return out;
}

}  // namespace sekimori::store
