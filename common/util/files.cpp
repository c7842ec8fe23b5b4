// common/util/files.cpp — see files.h.
#include "common/util/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace sekimori::util {

std::string errnoText(std::string_view what) { return std::string(what) + ": " + std::strerror(errno); }

bool writeAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t w = write(fd, data.data(), data.size());
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(w));
  }
  return true;
}

bool readWhole(int fd, std::string* text) {
  char buf[64 * 1024];
  off_t at = 0;
  for (;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, at);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    text->append(buf, static_cast<std::size_t>(n));
    at += n;
  }
}

bool preparePrivateDir(const std::string& dir, std::string_view what, std::string* error) {
  const std::string name(what);
  if (dir.empty() || dir[0] != '/') {
    *error = name + " must be an absolute path: '" + dir + "'";
    return false;
  }
  struct stat existing {};
  if (stat(dir.c_str(), &existing) != 0) {
    std::error_code ec;
    const auto parent = std::filesystem::path(dir).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    if (ec || (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)) {
      *error = ec ? "cannot create " + parent.string() + ": " + ec.message() : errnoText("cannot create " + name + " " + dir);
      return false;
    }
  }
  struct stat st {};
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    *error = name + " " + dir + " exists but is not a directory";
    return false;
  }
  if ((st.st_mode & 0077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", static_cast<unsigned>(st.st_mode & 0777));
    *error = name + " " + dir + " is accessible to other users (mode " + mode + "); chmod 0700 it";
    return false;
  }
  return true;
}

bool replaceFile(const std::string& path, std::string_view data, std::string* error) {
  const std::filesystem::path p(path);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  const std::string temp = dir + "/." + p.filename().string() + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    *error = errnoText("cannot create " + temp);
    return false;
  }
  bool ok = writeAll(fd, data) && fsync(fd) == 0;
  int saved = errno;
  if (close(fd) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (ok && rename(temp.c_str(), path.c_str()) != 0) {
    ok = false;
    saved = errno;
  }
  if (!ok) {
    unlink(temp.c_str());
    errno = saved;
    *error = errnoText("cannot write " + path);
    return false;
  }
  // The rename itself on disk: without it a power cut could bring the
  // directory back without the new name.
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return true;
}

}  // namespace sekimori::util
