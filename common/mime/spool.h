// common/mime/spool.h — the raw message of one transaction, held with
// bounded memory.
//
// The milter writes the header block it reconstructs from the header
// callbacks, then each body chunk. Bytes stay in memory up to `memoryLimit`;
// the append that would cross it moves everything to a private temp file in
// `tmpDir`: opened with O_TMPFILE (or mkstemp and an immediate unlink), mode
// 0600, so it has no name from the first moment and can never be left
// behind, whatever happens to the process. The descriptor is closed by RAII.
// `maxBytes` is a hard cap: the spool keeps the first maxBytes bytes and
// says truncated().
//
// GMime reads the spool in place (openStream): the memory buffer itself or
// the file through a dup of the descriptor, so parsing never copies the
// message (message.h).
//
//   mime::Spool spool(1 << 20, "/var/spool/sekimori", 50 << 20);
//   spool.append(headerBlock);          // "Name: value\r\n"... "\r\n"
//   spool.append(bodyChunk);            // as libmilter delivers it
//   mime::walk(spool, {}, visitor);     // message.h
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

// GLib/GMime types, declared so this header does not pull in <gmime/gmime.h>.
typedef struct _GByteArray GByteArray;
typedef struct _GMimeStream GMimeStream;

namespace sekimori::mime {

class Spool {
 public:
  static constexpr std::uint64_t kUnlimited = UINT64_MAX;

  explicit Spool(std::uint64_t memoryLimit, std::string tmpDir = "/tmp", std::uint64_t maxBytes = kUnlimited);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Appends bytes. False on a write error (errno says which; failed() then
  // stays true and nothing more is stored) or when the cap is reached: the
  // bytes up to maxBytes are kept, truncated() becomes true, and every later
  // append returns false.
  bool append(std::span<const std::byte> data);
  bool append(std::string_view data) {
    return append(std::span<const std::byte>(reinterpret_cast<const std::byte*>(data.data()), data.size()));
  }

  std::uint64_t size() const { return size_; }
  std::uint64_t memoryLimit() const { return memoryLimit_; }
  const std::string& tmpDir() const { return tmpDir_; }
  bool inMemory() const { return fd_ < 0; }
  bool truncated() const { return truncated_; }
  bool failed() const { return failed_; }

  // Copies up to buf.size() bytes starting at `offset` (pread or memcpy;
  // no shared file offset is moved). Returns the count, 0 at the end or on
  // an error.
  std::size_t read(std::uint64_t offset, std::span<std::byte> buf) const;

  // A new GMime stream over the content up to `end` (all of it by
  // default), for the caller to g_object_unref. Nothing is copied: the
  // memory stream borrows the spool's buffer, the fs stream reads a dup of
  // the descriptor (GMime seeks before every read, so sharing the file
  // offset is harmless; appends use pwrite). The spool must outlive the
  // stream and everything parsed from it. Null on failure (errno set).
  GMimeStream* openStream(std::uint64_t end = kUnlimited) const;

 private:
  struct ByteArrayFree {
    void operator()(GByteArray* a) const;
  };

  bool moveToFile();
  bool store(const std::byte* p, std::size_t n);

  std::uint64_t memoryLimit_;
  std::string tmpDir_;
  std::uint64_t maxBytes_;
  // A GByteArray rather than a std::string: GMime's memory stream can
  // borrow it as it is (openStream), so a parse never copies the message.
  std::unique_ptr<GByteArray, ByteArrayFree> memory_;  // while inMemory()
  int fd_ = -1;
  std::uint64_t size_ = 0;
  bool truncated_ = false;
  bool failed_ = false;
};

}  // namespace sekimori::mime
