// tests/unit/common/mime/spool_test.cpp — common/mime/spool.cpp: memory
// then an unnamed 0600 temp file, the hard cap, streams for GMime.
#include "common/mime/spool.h"

#include <dirent.h>
#include <gmime/gmime.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <string>
#include <vector>

namespace sekimori::mime {
namespace {

// A private directory, removed at the end (it must be empty by then).
class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/sekimori-spool-test-XXXXXX";
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { ::rmdir(path_.c_str()); }
  const std::string& path() const { return path_; }
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    if (DIR* d = ::opendir(path_.c_str())) {
      while (dirent* e = ::readdir(d)) {
        const std::string n = e->d_name;
        if (n != "." && n != "..") out.push_back(n);
      }
      ::closedir(d);
    }
    return out;
  }

 private:
  std::string path_;
};

std::string readAll(const Spool& s) {
  std::string out;
  std::vector<std::byte> buf(7);  // odd size: exercises offsets
  for (std::uint64_t off = 0;;) {
    const std::size_t n = s.read(off, buf);
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(buf.data()), n);
    off += n;
  }
  return out;
}

std::string readStream(GMimeStream* stream) {
  std::string out;
  char buf[5];
  ssize_t n;
  while ((n = g_mime_stream_read(stream, buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  return out;
}

// The descriptors of this process that point into `dir`.
std::vector<int> fdsInto(const std::string& dir) {
  std::vector<int> out;
  for (int fd = 0; fd < 1024; ++fd) {
    char link[64], target[PATH_MAX];
    std::snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    const ssize_t n = ::readlink(link, target, sizeof target - 1);
    if (n <= 0) continue;
    target[n] = '\0';
    if (std::string(target).starts_with(dir + "/")) out.push_back(fd);
  }
  return out;
}

TEST(Spool, StaysInMemoryUpToTheLimit) {
  Spool s(16);
  EXPECT_TRUE(s.append("0123456789"));
  EXPECT_TRUE(s.append("abcdef"));  // exactly 16
  EXPECT_TRUE(s.inMemory());
  EXPECT_EQ(s.size(), 16u);
  EXPECT_EQ(readAll(s), "0123456789abcdef");
  EXPECT_FALSE(s.truncated());
  EXPECT_FALSE(s.failed());
}

TEST(Spool, MovesToAnUnnamedPrivateFileAndLeavesNothingBehind) {
  TempDir dir;
  {
    Spool s(10, dir.path());
    ASSERT_TRUE(s.append("0123456"));
    ASSERT_TRUE(s.append("789abc"));  // crosses the limit
    EXPECT_FALSE(s.inMemory());
    EXPECT_EQ(s.size(), 13u);
    EXPECT_EQ(readAll(s), "0123456789abc");
    // No name in the directory at any time after the move...
    EXPECT_TRUE(dir.entries().empty());
    // ...and the open file is 0600.
    const std::vector<int> fds = fdsInto(dir.path());
    ASSERT_EQ(fds.size(), 1u);
    struct stat st {};
    ASSERT_EQ(::fstat(fds[0], &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    EXPECT_EQ(st.st_nlink, 0u);
  }
  // RAII closed it.
  EXPECT_TRUE(fdsInto(dir.path()).empty());
}

TEST(Spool, HardCapKeepsThePrefixAndSaysTruncated) {
  struct Case {
    const char* label;
    std::uint64_t memoryLimit;
  };
  for (const Case& c : {Case{"memory", 100}, Case{"file", 4}}) {
    SCOPED_TRACE(c.label);
    Spool s(c.memoryLimit, "/tmp", 10);
    EXPECT_TRUE(s.append("012345"));
    EXPECT_FALSE(s.append("6789ab"));
    EXPECT_TRUE(s.truncated());
    EXPECT_FALSE(s.failed());
    EXPECT_EQ(s.size(), 10u);
    EXPECT_EQ(readAll(s), "0123456789");
    EXPECT_FALSE(s.append("x"));  // and nothing more
    EXPECT_EQ(s.size(), 10u);
  }
}

TEST(Spool, WriteErrorIsReportedWithErrno) {
  Spool s(4, "/nonexistent-sekimori-dir");
  EXPECT_TRUE(s.append("abc"));
  errno = 0;
  EXPECT_FALSE(s.append("defgh"));
  EXPECT_EQ(errno, ENOENT);
  EXPECT_TRUE(s.failed());
  EXPECT_FALSE(s.append("x"));
  EXPECT_EQ(s.size(), 3u);
}

TEST(Spool, StreamsReadTheContentInPlace) {
  for (const std::uint64_t limit : {std::uint64_t{1024}, std::uint64_t{8}}) {
    SCOPED_TRACE(limit);
    Spool s(limit);
    ASSERT_TRUE(s.append("Subject: hi\r\n\r\nbody\r\n"));
    GMimeStream* stream = s.openStream();
    ASSERT_NE(stream, nullptr);
    EXPECT_EQ(readStream(stream), "Subject: hi\r\n\r\nbody\r\n");
    // Appending after GMime moved the shared file offset still lands at
    // the end.
    ASSERT_TRUE(s.append("more\r\n"));
    EXPECT_EQ(readAll(s), "Subject: hi\r\n\r\nbody\r\nmore\r\n");
    g_object_unref(stream);
    GMimeStream* again = s.openStream();
    EXPECT_EQ(readStream(again), "Subject: hi\r\n\r\nbody\r\nmore\r\n");
    g_object_unref(again);
  }
}

TEST(Spool, ReadPastTheEndGivesNothing) {
  Spool s(4);
  ASSERT_TRUE(s.append("abcdef"));
  std::vector<std::byte> buf(4);
  EXPECT_EQ(s.read(6, buf), 0u);
  EXPECT_EQ(s.read(100, buf), 0u);
  EXPECT_EQ(s.read(4, buf), 2u);
}

}  // namespace
}  // namespace sekimori::mime
