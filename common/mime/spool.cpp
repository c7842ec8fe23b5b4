// common/mime/spool.cpp — see spool.h.
#include "common/mime/spool.h"

#include <fcntl.h>
#include <gmime/gmime.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/mime/detail.h"

namespace sekimori::mime {
namespace {

bool pwriteAll(int fd, const std::byte* p, std::size_t n, std::uint64_t offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (w == 0) {
      errno = EIO;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
    offset += static_cast<std::uint64_t>(w);
  }
  return true;
}

// A file with no name: O_TMPFILE where the filesystem has it, otherwise a
// mkstemp name removed before anything is written to it.
int openUnlinkedTemp(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  std::string tmpl = dir + "/sekimori-spool-XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  fd = ::mkostemp(name.data(), O_CLOEXEC);  // mode 0600 by definition
  if (fd < 0) return -1;
  ::unlink(name.data());
  return fd;
}

}  // namespace

void Spool::ByteArrayFree::operator()(GByteArray* a) const {
  if (a) g_byte_array_free(a, TRUE);
}

Spool::Spool(std::uint64_t memoryLimit, std::string tmpDir, std::uint64_t maxBytes)
    : memoryLimit_(memoryLimit), tmpDir_(std::move(tmpDir)), maxBytes_(maxBytes), memory_(g_byte_array_new()) {}

Spool::~Spool() {
  if (fd_ >= 0) ::close(fd_);
}

// All at once: the spool is memory or a file, never half of each, so that
// readers (and GMime) see one contiguous byte range.
bool Spool::moveToFile() {
  const int fd = openUnlinkedTemp(tmpDir_);
  if (fd < 0) return false;
  if (!pwriteAll(fd, reinterpret_cast<const std::byte*>(memory_->data), memory_->len, 0)) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return false;
  }
  fd_ = fd;
  memory_.reset();
  return true;
}

bool Spool::store(const std::byte* p, std::size_t n) {
  if (fd_ < 0 && size_ + n > memoryLimit_ && !moveToFile()) return false;
  // pwrite at our own size: GMime moves the shared offset of the dup'd
  // descriptor while it reads.
  if (fd_ >= 0) return pwriteAll(fd_, p, n, size_);
  // GByteArray lengths are guint; a spool that large belongs on disk anyway.
  if (static_cast<std::uint64_t>(memory_->len) + n > UINT32_MAX) {
    errno = EFBIG;
    return false;
  }
  g_byte_array_append(memory_.get(), reinterpret_cast<const guint8*>(p), static_cast<guint>(n));
  return true;
}

bool Spool::append(std::span<const std::byte> data) {
  if (failed_ || truncated_) return false;
  std::size_t n = data.size();
  const bool over = n > maxBytes_ - size_;
  if (over) n = static_cast<std::size_t>(maxBytes_ - size_);
  if (n > 0) {
    if (!store(data.data(), n)) {
      failed_ = true;
      return false;
    }
    size_ += n;
  }
  if (over) {
    truncated_ = true;
    return false;
  }
  return true;
}

std::size_t Spool::read(std::uint64_t offset, std::span<std::byte> buf) const {
  if (offset >= size_ || buf.empty()) return 0;
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size_ - offset));
  if (fd_ < 0) {
    std::memcpy(buf.data(), memory_->data + offset, n);
    return n;
  }
  while (true) {
    const ssize_t r = ::pread(fd_, buf.data(), n, static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    return r > 0 ? static_cast<std::size_t>(r) : 0;
  }
}

GMimeStream* Spool::openStream(std::uint64_t end) const {
  detail::initGMime();
  const auto bound = static_cast<gint64>(std::min(end, size_));
  if (fd_ < 0) {
    // Borrowed, not owned: the stream must not free the spool's buffer.
    GMimeStream* s = g_mime_stream_mem_new_with_byte_array(memory_.get());
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(s), FALSE);
    if (end < size_) g_mime_stream_set_bounds(s, 0, bound);
    return s;
  }
  const int fd = ::fcntl(fd_, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  // Bounded, from offset 0 whatever the shared file offset is; the stream
  // owns (closes) the dup.
  return g_mime_stream_fs_new_with_bounds(fd, 0, bound);
}

}  // namespace sekimori::mime
