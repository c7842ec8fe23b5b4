// common/mime/archive.cpp — see archive.h.
#include "common/mime/archive.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/mime/lzma.h"
#include "common/mime/sevenzip.h"
#include "common/mime/spool.h"
#include "common/util/bytes.h"

namespace sekimori::mime {
namespace {

using util::le16;
using util::le32;
using util::le64;

using ArchivePtr = std::unique_ptr<archive, decltype(&archive_read_free)>;
using Status = ExpansionResult::Status;

constexpr std::size_t kChunk = 64 * 1024;

constexpr std::string_view kZipLocalHeader("PK\x03\x04", 4);

// Where one level's bytes come from: the attachment (streamed, or copied
// for seeking) or the current entry of the level above.
class Source {
 public:
  virtual ~Source() = default;
  virtual la_ssize_t read(const void** buf) = 0;
  virtual bool seekable() const { return false; }
  virtual la_int64_t seek(la_int64_t, int) { return ARCHIVE_FATAL; }
};

// The attachment streamed.
class ContentSource final : public Source {
 public:
  explicit ContentSource(Content& c) : content_(c), buf_(kChunk) {}
  la_ssize_t read(const void** out) override {
    *out = buf_.data();
    return static_cast<la_ssize_t>(content_.read(buf_));
  }

 private:
  Content& content_;
  std::vector<std::byte> buf_;
};

// Bytes already read from `rest` to sniff it, then the rest of it.
class PrefixedSource final : public Source {
 public:
  PrefixedSource(Source& rest, std::vector<std::byte> prefix) : rest_(rest), prefix_(std::move(prefix)) {}
  la_ssize_t read(const void** out) override {
    if (!prefixDone_) {
      prefixDone_ = true;
      if (!prefix_.empty()) {
        *out = prefix_.data();
        return static_cast<la_ssize_t>(prefix_.size());
      }
    }
    return rest_.read(out);
  }

 private:
  Source& rest_;
  std::vector<std::byte> prefix_;
  bool prefixDone_ = false;
};

// At least the first `n` bytes of `src` (fewer only where it ends or fails).
std::vector<std::byte> readAtLeast(Source& src, std::size_t n) {
  std::vector<std::byte> head;
  while (head.size() < n) {
    const void* buf = nullptr;
    const la_ssize_t got = src.read(&buf);
    if (got <= 0) break;
    const auto* p = static_cast<const std::byte*>(buf);
    head.insert(head.end(), p, p + got);
  }
  return head;
}

// Bytes of a known size read with seeks (the formats that seek), or front
// to back where `seeks` is false.
class SeekableSource : public Source {
 public:
  explicit SeekableSource(bool seeks) : seeks_(seeks) {}
  bool seekable() const override { return seeks_; }
  la_int64_t seek(la_int64_t offset, int whence) override {
    const auto size = static_cast<la_int64_t>(this->size());
    la_int64_t base = 0;
    if (whence == SEEK_CUR) base = static_cast<la_int64_t>(pos_);
    if (whence == SEEK_END) base = size;
    const la_int64_t target = base + offset;
    if (target < 0) return ARCHIVE_FATAL;
    pos_ = static_cast<std::uint64_t>(std::min(target, size));
    return static_cast<la_int64_t>(pos_);
  }

 protected:
  virtual std::uint64_t size() const = 0;
  std::uint64_t pos_ = 0;

 private:
  bool seeks_;
};

// The attachment copied into a spool.
class SpoolSource final : public SeekableSource {
 public:
  explicit SpoolSource(const Spool& s, bool seeks = true) : SeekableSource(seeks), spool_(s), buf_(kChunk) {}
  la_ssize_t read(const void** out) override {
    *out = buf_.data();
    const std::size_t n = spool_.read(pos_, buf_);
    pos_ += n;
    return static_cast<la_ssize_t>(n);
  }

 private:
  std::uint64_t size() const override { return spool_.size(); }
  const Spool& spool_;
  std::vector<std::byte> buf_;
};

// Bytes in memory, handed to libarchive where they are.
class MemorySource final : public SeekableSource {
 public:
  explicit MemorySource(std::string_view bytes, bool seeks = true) : SeekableSource(seeks), bytes_(bytes) {}
  la_ssize_t read(const void** out) override {
    *out = bytes_.data() + pos_;
    const std::uint64_t n = bytes_.size() - pos_;
    pos_ = bytes_.size();
    return static_cast<la_ssize_t>(n);
  }

 private:
  std::uint64_t size() const override { return bytes_.size(); }
  std::string_view bytes_;
};

// A stream decoded from another: how much of it was read, and whether
// the decoding failed.
class DecodedSource : public Source {
 public:
  std::uint64_t consumed() const { return consumed_; }
  bool failed() const { return failed_; }

 protected:
  std::uint64_t consumed_ = 0;
  bool failed_ = false;
};

// The current entry of the parent archive, as a stream of its own.
class EntrySource final : public DecodedSource {
 public:
  explicit EntrySource(archive* parent) : parent_(parent), buf_(kChunk) {}
  la_ssize_t read(const void** out) override {
    *out = buf_.data();
    const la_ssize_t n = archive_read_data(parent_, buf_.data(), buf_.size());
    if (n < 0) {
      failed_ = true;
      return -1;
    }
    consumed_ += static_cast<std::uint64_t>(n);
    return n;
  }

 private:
  archive* parent_;
  std::vector<std::byte> buf_;
};

// A .lzma file's decompressed bytes, by our decoder (lzma.h): every
// dictionary size xz takes, where libarchive's reader takes 4 KiB to
// 128 MiB only, and no larger a dictionary than `dictionaryCap`. Cut short
// or damaged data ends the stream after what was decoded, and failed()
// says so: libarchive, reading it, would drop the bytes it holds on a read
// error.
class LzmaAloneSource final : public DecodedSource {
 public:
  // `packed` starts with the header (lzmaAloneHeader); a cut one is
  // damaged data.
  LzmaAloneSource(Source& packed, std::uint64_t dictionaryCap)
      : packed_(packed),
        whole_(readHeader()),
        left_(whole_ ? le64(header_.data() + 5) : 0),
        decoder_(false, std::span(header_.data(), 5), std::min(left_, dictionaryCap)),
        buf_(kChunk) {
    done_ = failed_ = !whole_;
  }

  la_ssize_t read(const void** out) override {
    *out = buf_.data();
    if (done_) return 0;
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf_.size(), left_));
    std::span<unsigned char> free(buf_.data(), want);
    while (!free.empty() && !done_) {
      if (in_.empty()) {
        const void* p = nullptr;
        const la_ssize_t n = packed_.read(&p);
        if (n <= 0) {  // cut short (or the data below failed)
          done_ = failed_ = true;
          break;
        }
        in_ = std::span(static_cast<const unsigned char*>(p), static_cast<std::size_t>(n));
      }
      switch (decoder_.decode(in_, free)) {
        case LzmaDecoder::Step::More:
          break;
        case LzmaDecoder::Step::End:  // before the declared size: damaged
          done_ = true;
          failed_ = left_ != kLzmaAloneSizeUnknown && want - free.size() < left_;
          break;
        case LzmaDecoder::Step::Damaged:
          done_ = failed_ = true;
          break;
      }
    }
    const std::size_t n = want - free.size();
    if (left_ != kLzmaAloneSizeUnknown && (left_ -= n) == 0) done_ = true;
    consumed_ += n;
    return static_cast<la_ssize_t>(n);
  }

 private:
  // Reads the header into header_; in_ keeps what came after it in the
  // same read. False when `packed_` ends first.
  bool readHeader() {
    for (std::size_t got = 0; got < header_.size();) {
      const void* p = nullptr;
      const la_ssize_t n = packed_.read(&p);
      if (n <= 0) return false;
      const std::span<const unsigned char> read(static_cast<const unsigned char*>(p), static_cast<std::size_t>(n));
      const std::size_t take = std::min(read.size(), header_.size() - got);
      std::copy_n(read.begin(), take, header_.begin() + static_cast<std::ptrdiff_t>(got));
      got += take;
      in_ = read.subspan(take);
    }
    return true;
  }

  Source& packed_;
  std::array<unsigned char, kLzmaAloneHeaderSize> header_{};
  std::span<const unsigned char> in_;  // read from packed_, not decoded yet
  bool whole_;                         // the header came whole
  std::uint64_t left_;                 // bytes the header declares still to come, or kLzmaAloneSizeUnknown
  LzmaDecoder decoder_;
  std::vector<unsigned char> buf_;
  bool done_ = false;
};

// An .xz or .lz file's decompressed bytes, by our decoder (lzma.h:
// XzDecoder or LzipDecoder), with no larger a dictionary than
// `dictionaryCap`. Cut short or damaged data ends the stream after what was
// decoded, and failed() says so (as LzmaAloneSource).
template <class Decoder>
class FileSource final : public DecodedSource {
 public:
  FileSource(Source& packed, std::uint64_t dictionaryCap) : packed_(packed), decoder_(dictionaryCap), buf_(kChunk) {}

  la_ssize_t read(const void** out) override {
    *out = buf_.data();
    std::span<unsigned char> free(buf_);
    while (!free.empty() && !done_) {
      if (in_.empty() && !ended_) {
        const void* p = nullptr;
        const la_ssize_t n = packed_.read(&p);
        if (n < 0) {  // the data below failed
          done_ = failed_ = true;
          break;
        }
        ended_ = n == 0;
        in_ = std::span(static_cast<const unsigned char*>(p), static_cast<std::size_t>(n));
      }
      const std::size_t room = free.size();
      if (decoder_.decode(in_, free) == Decoder::Step::Damaged) {
        done_ = failed_ = true;
      } else if (ended_ && free.size() == room) {  // nothing more to come
        done_ = true;
        failed_ = !decoder_.complete();
      }
    }
    const std::size_t n = buf_.size() - free.size();
    consumed_ += n;
    return static_cast<la_ssize_t>(n);
  }

 private:
  Source& packed_;
  Decoder decoder_;
  std::vector<unsigned char> buf_;
  std::span<const unsigned char> in_;
  bool ended_ = false;
  bool done_ = false;
};

// The compressions decoded here rather than by libarchive: LZMA streams,
// whose declared dictionary is lowered (lzma.h). libarchive's xz and lzip
// readers allocate whatever a block or member declares (up to 4 GiB and
// 512 MiB), and its .lzma reader takes only some dictionary sizes (others
// it leaves as plain data).
enum class OwnCodec { None, Lzma, Xz, Lzip };

// Sniffed from the first kLzmaAloneHeaderSize bytes (or all there are).
OwnCodec ownCodec(std::span<const std::byte> head) {
  const std::span<const unsigned char> h(reinterpret_cast<const unsigned char*>(head.data()), head.size());
  if (xzMagic(h)) return OwnCodec::Xz;
  if (lzipHeader(h)) return OwnCodec::Lzip;
  if (lzmaAloneHeader(std::string_view(reinterpret_cast<const char*>(h.data()), h.size()))) return OwnCodec::Lzma;
  return OwnCodec::None;
}

const char* codecName(OwnCodec codec) {
  return codec == OwnCodec::Xz ? "xz" : codec == OwnCodec::Lzip ? "lzip" : "lzma";
}

// What `packed` (compressed with `codec`, from its first byte) decodes
// to, with no larger a dictionary than `dictionaryCap`.
std::unique_ptr<DecodedSource> ownDecoded(OwnCodec codec, Source& packed, std::uint64_t dictionaryCap) {
  switch (codec) {
    case OwnCodec::Lzma:
      return std::make_unique<LzmaAloneSource>(packed, dictionaryCap);
    case OwnCodec::Xz:
      return std::make_unique<FileSource<XzDecoder>>(packed, dictionaryCap);
    case OwnCodec::Lzip:
      return std::make_unique<FileSource<LzipDecoder>>(packed, dictionaryCap);
    case OwnCodec::None:
      break;
  }
  return nullptr;
}

// The bytes of a stream, with the dictionary size of each ZIP member
// compressed with LZMA (method 14) lowered to `cap` where it declares
// more. libarchive reads a member's method and the start of its data from
// the local header, and has liblzma allocate the dictionary the data's
// properties declare, up to 4 GiB for a member of a few bytes (libarchive
// 3.6; later versions refuse more than 576 MiB, and then the member is
// not measured). A match never reaches back further than the bytes
// already written, and `cap` is more than is ever counted (dictionaryCap),
// so the measured size is the same.
//
// Every local header signature in the stream is taken for one, wherever
// it lies: that is where a reader by local headers (a streamed nested
// ZIP) or by the central directory (the attachment) may go. Where the
// signature lies inside another member's data, lowering four bytes there
// changes no size (stored) or makes that data damaged (Unreadable), which
// the sender could have done anyway. Bytes are held back from a signature
// until its header, name, extra field and the LZMA properties have come:
// at most 30 + 2 x 65535 + 9 bytes.
class ZipLzmaDictionaryCap {
 public:
  explicit ZipLzmaDictionaryCap(std::uint32_t cap) : cap_(cap) {}

  void push(std::span<const std::byte> in) { buf_.insert(buf_.end(), in.begin(), in.end()); }

  // The bytes that are final (patched where needed), until take(): all of
  // them once `ended`.
  std::span<const std::byte> ready(bool ended) {
    for (;;) {
      const std::size_t hit = find(scanned_);
      if (hit == kNone) {
        // A signature may begin in the last three bytes.
        scanned_ = ended ? buf_.size() : std::max(scanned_, buf_.size() - std::min<std::size_t>(buf_.size(), 3));
        break;
      }
      scanned_ = hit;
      if (!patch(hit) && !ended) break;  // its header or properties are still to come
      scanned_ = hit + 4;
    }
    return std::span<const std::byte>(buf_).first(ended ? buf_.size() : scanned_);
  }

  // Drops the first `n` ready bytes.
  void take(std::size_t n) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(n));
    scanned_ -= n;
  }

 private:
  static constexpr std::size_t kNone = ~std::size_t{0};

  std::size_t find(std::size_t from) const {
    const std::string_view v(reinterpret_cast<const char*>(buf_.data()), buf_.size());
    const std::size_t hit = v.find(kZipLocalHeader, from);
    return hit == std::string_view::npos ? kNone : hit;
  }

  // Lowers the dictionary of the member whose local header is at `h`, if
  // it is an LZMA member declaring more than the cap. False when the bytes
  // needed have not all come.
  bool patch(std::size_t h) {
    auto* p = reinterpret_cast<unsigned char*>(buf_.data());
    const std::size_t field = zipLzmaDictionaryField(std::span(p + h, buf_.size() - h));
    if (field == kZipLzmaNeedsMore) return false;
    if (field != kNoZipLzma && le32(p + h + field) > cap_) {
      for (int i = 0; i < 4; ++i) p[h + field + i] = static_cast<unsigned char>(cap_ >> (8 * i));
    }
    return true;
  }

  std::uint32_t cap_;
  std::vector<std::byte> buf_;
  std::size_t scanned_ = 0;  // signatures before this are dealt with
};

// `src` through a ZipLzmaDictionaryCap.
class ZipLzmaCappedSource final : public DecodedSource {
 public:
  ZipLzmaCappedSource(Source& src, std::uint32_t cap) : src_(src), cap_(cap) {}
  la_ssize_t read(const void** out) override {
    cap_.take(given_);
    given_ = 0;
    std::span<const std::byte> ready = cap_.ready(ended_);
    while (ready.empty() && !ended_) {
      const void* p = nullptr;
      const la_ssize_t n = src_.read(&p);
      ended_ = n <= 0;
      if (n < 0) {
        failed_ = true;  // after the bytes held back
      } else {
        cap_.push(std::span(static_cast<const std::byte*>(p), static_cast<std::size_t>(n)));
      }
      ready = cap_.ready(ended_);
    }
    if (ready.empty() && failed_) return -1;
    *out = ready.data();
    given_ = ready.size();
    consumed_ += given_;
    return static_cast<la_ssize_t>(given_);
  }

 private:
  Source& src_;
  ZipLzmaDictionaryCap cap_;
  std::size_t given_ = 0;
  bool ended_ = false;
};

la_ssize_t readCallback(archive*, void* data, const void** buf) { return static_cast<Source*>(data)->read(buf); }

la_int64_t seekCallback(archive*, void* data, la_int64_t offset, int whence) {
  return static_cast<Source*>(data)->seek(offset, whence);
}

la_int64_t skipCallback(archive*, void* data, la_int64_t request) {
  auto* src = static_cast<Source*>(data);
  const la_int64_t here = src->seek(0, SEEK_CUR);
  const la_int64_t there = src->seek(request, SEEK_CUR);
  return here < 0 || there < 0 ? 0 : there - here;
}

ArchivePtr open(ArchivePtr a, Source& src) {
  archive* r = a.get();
  archive_read_set_callback_data(r, &src);
  archive_read_set_read_callback(r, readCallback);
  if (src.seekable()) {
    archive_read_set_seek_callback(r, seekCallback);
    archive_read_set_skip_callback(r, skipCallback);
  }
  if (archive_read_open1(r) != ARCHIVE_OK) a.reset();
  return a;
}

// Each level is read by two readers. The first only undoes compression:
// its "raw" format hands out the decompressed bytes as one entry, whatever
// they are. The second reads an archive format from those bytes. So the
// decompressed size is always known, also when the format inside stops
// early: a .gz of zeros (which the tar reader takes for an empty tar) or a
// .tar.gz with gigabytes after the end-of-archive blocks is counted in
// full, as gunzip would write it. A compression layer is not a nesting
// level: a .tar.gz is one archive.
//
// Filters are enabled one by one: one whose library libarchive was built
// without would fall back to running an external program, a fork per
// attachment.
ArchivePtr openDecompressor(Source& src) {
  ArchivePtr a(archive_read_new(), &archive_read_free);
  if (!a) return a;
  archive* r = a.get();
  if (archive_zlib_version() != nullptr) archive_read_support_filter_gzip(r);
  if (archive_bzlib_version() != nullptr) archive_read_support_filter_bzip2(r);
  if (archive_liblzma_version() != nullptr) {
    // Not xz nor lzip: they are ours (OwnCodec). The .lzma reader only
    // takes dictionaries up to 128 MiB; ours takes the files xz does first.
    archive_read_support_filter_lzma(r);
  }
  if (archive_libzstd_version() != nullptr) archive_read_support_filter_zstd(r);
  if (archive_liblz4_version() != nullptr) archive_read_support_filter_lz4(r);
  archive_read_support_filter_compress(r);
  archive_read_support_format_raw(r);
  return open(std::move(a), src);
}

// Formats one by one too: "all" would bring mtree (whose reader opens
// files the archive names, on our own disk) and xar (an XML parser for an
// attacker's table of contents). ISO 9660 only for an uncompressed image at
// the top: its reader holds every directory record of a directory at once,
// and compressed directory records cost nothing to send.
ArchivePtr openFormats(Source& src, bool iso9660) {
  ArchivePtr a(archive_read_new(), &archive_read_free);
  if (!a) return a;
  archive* r = a.get();
  archive_read_support_format_zip(r);
  archive_read_support_format_tar(r);
  archive_read_support_format_cpio(r);
  archive_read_support_format_7zip(r);
  archive_read_support_format_rar(r);
  archive_read_support_format_rar5(r);
  archive_read_support_format_lha(r);
  archive_read_support_format_cab(r);
  archive_read_support_format_ar(r);
  if (iso9660) archive_read_support_format_iso9660(r);
  return open(std::move(a), src);
}

struct State {
  const ExpansionLimits& limits;
  ExpansionResult& result;
  bool encrypted = false;
  bool unreadable = false;

  // False once the total is over the limit.
  bool add(std::uint64_t n) {
    result.totalUncompressed += n;
    return result.totalUncompressed <= limits.maxTotal;
  }
};

// The largest LZMA dictionary a level is decoded with: twice what may be
// counted (a match reaching past it would make the data Damaged, and the
// output is stopped just past maxTotal).
std::uint32_t dictionaryCap(const ExpansionLimits& limits) {
  return static_cast<std::uint32_t>(
      std::min<std::uint64_t>(std::min<std::uint64_t>(limits.maxTotal, 1ULL << 40) * 2 + kChunk, 0xFFFFFFFFu));
}

bool terminal(Status s) { return s == Status::TooLarge || s == Status::TooDeep || s == Status::TooManyEntries; }

// Reads the rest of `src`, counting it as leaf bytes.
Status drainCounting(Source& src, State& st) {
  while (true) {
    const void* buf = nullptr;
    const la_ssize_t n = src.read(&buf);
    if (n == 0) return Status::Ok;
    if (n < 0) {
      st.unreadable = true;
      return Status::Unreadable;
    }
    if (!st.add(static_cast<std::uint64_t>(n))) return Status::TooLarge;
  }
}

bool encryptedSomewhere(archive* a) { return archive_read_has_encrypted_entries(a) > 0; }

Status measureLevel(Source& src, int level, State& st, const char* filter = nullptr, int layers = 0);

// Reads the archive format in `src` at `level` and counts its entries.
// NotArchive when there is no format, or no entry in it.
Status measureFormat(Source& src, int level, const char* filter, bool iso9660, State& st) {
  ArchivePtr a = openFormats(src, iso9660);
  if (!a) return Status::NotArchive;
  archive_entry* entry = nullptr;
  int rc = archive_read_next_header(a.get(), &entry);
  if (rc == ARCHIVE_EOF) return Status::NotArchive;  // an empty zip, or zeros taken for an empty tar
  if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN && archive_format(a.get()) == 0) return Status::NotArchive;

  st.result.deepestLevel = std::max(st.result.deepestLevel, level);
  if (level > st.limits.maxDepth) return Status::TooDeep;
  if (level == 1) {
    const char* name = archive_format_name(a.get());
    st.result.format = name ? name : "";
    if (filter) st.result.format += std::string(" (") + filter + ")";
  }

  for (; rc != ARCHIVE_EOF && rc != ARCHIVE_FATAL; rc = archive_read_next_header(a.get(), &entry)) {
    if (++st.result.entries > st.limits.maxEntries) return Status::TooManyEntries;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      // ARCHIVE_FAILED/RETRY: this header is lost, the next may be fine.
      st.unreadable = true;
      continue;
    }
    if (archive_entry_is_encrypted(entry)) {
      st.encrypted = true;
      // The data cannot be read: count what the archive declares.
      if (archive_entry_size_is_set(entry) && archive_entry_size(entry) > 0 &&
          !st.add(static_cast<std::uint64_t>(archive_entry_size(entry)))) {
        return Status::TooLarge;
      }
      continue;  // the next header call skips the data
    }
    if (archive_entry_filetype(entry) != AE_IFREG) continue;

    // Is the entry itself an archive (or compressed)? Measure it, reading
    // from here; the attempt's bytes and the rest of the entry are counted
    // by measureLevel or, for plain data, here.
    EntrySource nested(a.get());
    const Status ns = measureLevel(nested, level + 1, st);
    if (terminal(ns)) return ns;
    if (ns == Status::NotArchive && !st.add(nested.consumed())) return Status::TooLarge;
    if (nested.failed()) {
      st.unreadable = true;
      continue;
    }
    if (ns == Status::NotArchive) {
      if (const Status ds = drainCounting(nested, st); terminal(ds)) return ds;
    }
    // Otherwise measureLevel has read the entry to its end.
  }
  if (rc == ARCHIVE_FATAL) {
    if (encryptedSomewhere(a.get())) {
      st.encrypted = true;  // e.g. 7-Zip or RAR with encrypted headers
      return Status::Encrypted;
    }
    st.unreadable = true;
    return Status::Unreadable;
  }
  return Status::Ok;
}

// Measures the decompressed stream `data` of a level: an archive format
// in it, or its bytes as leaves (`filter`: its compression, or null when
// it is not compressed).
Status measureDecompressed(DecodedSource& data, const char* filter, int level, State& st) {
  Status s = measureFormat(data, level, filter, false, st);
  if (terminal(s)) return s;
  if (s == Status::NotArchive) {
    if (filter == nullptr) return Status::NotArchive;  // plain data: the caller counts it
    // A compressed file of plain data: a level of its own, its
    // decompressed bytes are leaves.
    st.result.deepestLevel = std::max(st.result.deepestLevel, level);
    if (level > st.limits.maxDepth) return Status::TooDeep;
    if (level == 1) st.result.format = filter;
    if (!st.add(data.consumed())) return Status::TooLarge;
    s = Status::Ok;
  } else if (s == Status::Unreadable) {
    // A damaged archive: its bytes count as data too, on top of what it
    // yielded. Over-counting is the safe side of a size guard, and a
    // broken archive whose entries overlap must not count as nothing.
    if (!st.add(data.consumed())) return Status::TooLarge;
  }
  if (data.failed()) {
    st.unreadable = true;
    return Status::Unreadable;
  }
  // What follows the archive's end in the decompressed stream: padding, a
  // central directory, or gigabytes of appended zeros. gunzip would write
  // them; they are counted, and never decompressed for free.
  if (const Status ds = drainCounting(data, st); terminal(ds)) return ds;
  return s;
}

// The bytes read from another source, counted.
class CountingSource final : public DecodedSource {
 public:
  explicit CountingSource(Source& src) : src_(src) {}
  la_ssize_t read(const void** out) override {
    const la_ssize_t n = src_.read(out);
    if (n < 0) failed_ = true;
    if (n > 0) consumed_ += static_cast<std::uint64_t>(n);
    return n;
  }

 private:
  Source& src_;
};

// Compressions nested deeper than maxDepth (one more layer in `layers`).
bool tooManyLayers(int& layers, int level, State& st) {
  if (++layers <= st.limits.maxDepth) return false;
  st.result.deepestLevel = std::max(st.result.deepestLevel, level);
  return true;
}

// Inside another compression (`filter` not null), a compressed layer's own
// bytes count as data too (`sniffed` read before `counted`, then the rest
// of `counted`), so that compressions nested in compressions cost no more
// work than the limit, whatever they hold (an .xz stream may be gigabytes
// of padding, or of empty streams, that decode to nothing). `s`: what the
// layer held.
Status countLayerBytes(Status s, const char* filter, std::uint64_t sniffed, CountingSource& counted, State& st) {
  if (terminal(s) || filter == nullptr) return s;
  if (!st.add(sniffed + counted.consumed())) return Status::TooLarge;
  if (const Status ds = drainCounting(counted, st); terminal(ds)) return ds;
  return s;
}

Status measureOwnCodec(OwnCodec codec, std::vector<std::byte> head, Source& packed, int level, State& st,
                       const char* filter, int layers);

// Measures what `src` holds at `level` (1 = the attachment): compressed
// or not, an archive or not. NotArchive when it is neither compressed nor
// an archive: the caller counts those bytes as data. Otherwise every byte
// of `src` has been read and counted. `filter`: the compression `src` was
// decompressed from at this level, the innermost (null: none); `layers`:
// how many compressions were undone to get `src` (libarchive's, which its
// reader undoes one inside the other, count as one), no more than
// maxDepth.
Status measureLevel(Source& src, int level, State& st, const char* filter, int layers) {
  std::vector<std::byte> head = readAtLeast(src, kLzmaAloneHeaderSize);
  if (const OwnCodec codec = ownCodec(head); codec != OwnCodec::None) {
    return measureOwnCodec(codec, std::move(head), src, level, st, filter, layers);
  }
  const std::uint64_t sniffed = head.size();
  CountingSource counted(src);
  PrefixedSource whole(counted, std::move(head));
  ArchivePtr raw = openDecompressor(whole);
  if (!raw) return Status::NotArchive;
  archive_entry* entry = nullptr;
  if (const int rc = archive_read_next_header(raw.get(), &entry); rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
    return Status::NotArchive;  // nothing at all
  }
  EntrySource decompressed(raw.get());
  if (archive_filter_code(raw.get(), 0) != ARCHIVE_FILTER_NONE) {
    // libarchive undoes every compression of its own it finds, one inside
    // the other; one of ours may be inside (a .xz in a .gz), or around.
    const char* name = archive_filter_name(raw.get(), 0);  // the innermost, as libarchive names them
    if (tooManyLayers(layers, level, st)) return Status::TooDeep;
    std::vector<std::byte> inner = readAtLeast(decompressed, kLzmaAloneHeaderSize);
    Status s;
    if (const OwnCodec codec = ownCodec(inner); codec != OwnCodec::None) {
      s = measureOwnCodec(codec, std::move(inner), decompressed, level, st, name, layers);
    } else {
      PrefixedSource rest(decompressed, std::move(inner));
      ZipLzmaCappedSource data(rest, dictionaryCap(st.limits));
      s = measureDecompressed(data, name, level, st);
      if (decompressed.failed() && !terminal(s)) {  // the sniffing read failed
        st.unreadable = true;
        s = Status::Unreadable;
      }
    }
    return countLayerBytes(s, filter, sniffed, counted, st);  // inside one of ours
  }
  ZipLzmaCappedSource data(decompressed, dictionaryCap(st.limits));
  return measureDecompressed(data, filter, level, st);
}

// Measures what the stream in `packed` decompresses to, compressed with
// `codec` (`head`: its first bytes, already read from it); inside another
// compression (`filter` not null), its compressed bytes too
// (countLayerBytes).
Status measureOwnCodec(OwnCodec codec, std::vector<std::byte> head, Source& packed, int level, State& st,
                       const char* filter, int layers) {
  if (tooManyLayers(layers, level, st)) return Status::TooDeep;
  const char* name = codecName(codec);
  const std::uint64_t sniffed = head.size();
  CountingSource counted(packed);
  PrefixedSource whole(counted, std::move(head));
  const std::unique_ptr<DecodedSource> decoded = ownDecoded(codec, whole, dictionaryCap(st.limits));
  const auto inside = [&] {
    Status s = measureLevel(*decoded, level, st, name, layers);
    if (terminal(s)) return s;
    if (s == Status::NotArchive) {
      // Nothing libarchive could open (an empty stream, or one damaged
      // from the start): its bytes, if any, are data.
      st.result.deepestLevel = std::max(st.result.deepestLevel, level);
      if (level == 1) st.result.format = name;
      if (!st.add(decoded->consumed())) return Status::TooLarge;
      if (const Status ds = drainCounting(*decoded, st); terminal(ds)) return ds;
      s = Status::Ok;
    }
    if (decoded->failed()) {
      st.unreadable = true;
      return Status::Unreadable;
    }
    return s;
  };
  return countLayerBytes(inside(), filter, sniffed, counted, st);
}

// The number of entries a ZIP's end-of-central-directory record declares
// (zip64 included), or 0 when there is none. libarchive reads the whole
// central directory into memory before the first header, a few hundred
// bytes per record: a ZIP declaring millions of tiny entries is refused
// from this count before libarchive allocates for it.
// `copy` is anything with size() and read(offset, span) (a Spool, Bytes).
template <class Copy>
std::uint64_t zipDeclaredEntries(const Copy& copy) {
  constexpr std::size_t kEocd = 22;
  const std::uint64_t size = copy.size();
  if (size < kEocd) return 0;
  const std::uint64_t tailLen = std::min<std::uint64_t>(size, kEocd + 65535);
  std::vector<std::byte> tailBytes(static_cast<std::size_t>(tailLen));
  const std::uint64_t tailStart = size - tailLen;
  if (copy.read(tailStart, tailBytes) != tailBytes.size()) return 0;
  const auto* tail = reinterpret_cast<const unsigned char*>(tailBytes.data());
  for (std::size_t i = static_cast<std::size_t>(tailLen - kEocd) + 1; i-- > 0;) {
    if (std::memcmp(tail + i, "PK\x05\x06", 4) != 0) continue;
    const std::uint64_t eocdAt = tailStart + i;
    std::uint64_t entries = le16(tail + i + 10);
    std::uint64_t cdSize = le32(tail + i + 12);
    // Zip64: a locator just before the record points at the real one.
    if (i >= 20 && std::memcmp(tail + i - 20, "PK\x06\x07", 4) == 0) {
      const std::uint64_t at = le64(tail + i - 20 + 8);
      std::array<std::byte, 56> z64{};
      if (copy.read(at, z64) == z64.size()) {
        const auto* z = reinterpret_cast<const unsigned char*>(z64.data());
        if (std::memcmp(z, "PK\x06\x06", 4) == 0) {
          entries = le64(z + 32);
          cdSize = le64(z + 40);
        }
      }
    }
    // libarchive stops at the records really present, each at least 46
    // bytes before the end record; a "PK\5\6" that is not one (four bytes
    // inside some .exe) cannot claim more than the file holds.
    return std::min(entries, std::min(cdSize, eocdAt) / 46);
  }
  return 0;
}

// Bytes in memory read as a Spool is.
struct Bytes {
  std::string_view bytes;
  std::uint64_t size() const { return bytes.size(); }
  std::size_t read(std::uint64_t offset, std::span<std::byte> buf) const {
    if (offset >= bytes.size()) return 0;
    const std::size_t n = std::min<std::size_t>(buf.size(), bytes.size() - static_cast<std::size_t>(offset));
    std::memcpy(buf.data(), bytes.data() + offset, n);
    return n;
  }
};

bool startsWith(const std::vector<std::byte>& prefix, std::string_view magic) {
  return prefix.size() >= magic.size() && std::memcmp(prefix.data(), magic.data(), magic.size()) == 0;
}

constexpr std::string_view kSevenZipMagic("7z\xBC\xAF\x27\x1C", 6);

bool isSevenZip(const std::vector<std::byte>& prefix) { return startsWith(prefix, kSevenZipMagic); }

// Room for a 7-Zip header of `maxEntries` files with long names.
std::uint64_t sevenZipHeaderRoom(std::uint64_t maxEntries) {
  return std::max<std::uint64_t>(1 << 20, maxEntries * 256);
}

constexpr std::size_t kIsoMagicAt = 32769;

bool isIso9660(const std::vector<std::byte>& prefix) {
  return prefix.size() >= kIsoMagicAt + 5 && std::memcmp(prefix.data() + kIsoMagicAt, "CD001", 5) == 0;
}

bool needsSeeking(const std::vector<std::byte>& prefix) {
  return startsWith(prefix, "PK") ||  // zip: read by the central directory
         isSevenZip(prefix) ||         // 7-Zip: its header is at the end
         startsWith(prefix, "MZ") ||   // self-extracting zip/7z/rar/cab
         isIso9660(prefix);            // ISO 9660 only here (see openFormats)
}

// --- unpackEntries ----------------------------------------------------------

using UStatus = UnpackResult::Status;

// Reads `src` (an entry, or a decompressed stream) whole into `out`,
// within the limits (`total`: what the entries before it took).
UStatus readEntry(DecodedSource& src, const UnpackLimits& limits, std::uint64_t total, std::string& out) {
  out.clear();
  for (;;) {
    const void* buf = nullptr;
    const la_ssize_t n = src.read(&buf);
    if (n < 0) return UStatus::Unreadable;
    if (n == 0) return src.failed() ? UStatus::Unreadable : UStatus::Ok;
    out.append(static_cast<const char*>(buf), static_cast<std::size_t>(n));
    if (out.size() > limits.maxEntrySize) return UStatus::EntryTooLarge;
    if (total + out.size() > limits.maxTotal) return UStatus::TooLarge;
  }
}

// The entries of the archive format `a` is open on.
void unpackFormat(archive* a, const UnpackLimits& limits, const EntryHandler& onEntry, UnpackResult& result) {
  std::string data;
  bool unreadable = false;
  std::uint64_t seen = 0;
  archive_entry* entry = nullptr;
  int rc = archive_read_next_header(a, &entry);
  if (rc == ARCHIVE_EOF || (rc != ARCHIVE_OK && rc != ARCHIVE_WARN && archive_format(a) == 0)) {
    result.status = UStatus::NotArchive;
    return;
  }
  for (; rc != ARCHIVE_EOF && rc != ARCHIVE_FATAL; rc = archive_read_next_header(a, &entry)) {
    if (++seen > limits.maxEntries) {
      result.status = UStatus::TooManyEntries;
      return;
    }
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      unreadable = true;  // this header is lost, the next may be fine
      continue;
    }
    if (archive_entry_is_encrypted(entry)) {
      result.encrypted = true;
      continue;
    }
    if (archive_entry_filetype(entry) != AE_IFREG) continue;
    EntrySource entrySource(a);
    const UStatus es = readEntry(entrySource, limits, result.totalSize, data);
    if (es == UStatus::Unreadable) {
      unreadable = true;  // what was read before the damage is still handed over
      if (data.empty()) continue;
    } else if (es != UStatus::Ok) {
      result.status = es;
      return;
    }
    const char* name = archive_entry_pathname(entry);
    ++result.entries;
    result.totalSize += data.size();
    if (!onEntry(name != nullptr ? name : "", data)) {
      result.status = UStatus::Stopped;
      return;
    }
  }
  if (rc == ARCHIVE_FATAL) {
    if (encryptedSomewhere(a)) {
      result.encrypted = true;  // e.g. RAR with encrypted headers
    } else {
      unreadable = true;
    }
  }
  result.status = unreadable ? UStatus::Unreadable : UStatus::Ok;
}

}  // namespace

const char* toString(ExpansionResult::Status s) {
  switch (s) {
    case Status::NotArchive: return "not-archive";
    case Status::Ok: return "ok";
    case Status::TooLarge: return "too-large";
    case Status::TooDeep: return "too-deep";
    case Status::TooManyEntries: return "too-many-entries";
    case Status::Encrypted: return "encrypted";
    case Status::Unreadable: return "unreadable";
  }
  return "unknown";
}

ExpansionResult measureExpansion(Content& content, const ExpansionLimits& limits) {
  ExpansionResult result;
  State st{limits, result};

  // Sniff the first bytes to decide between streaming and a seekable copy
  // (far enough for an ISO 9660 volume descriptor at 32769).
  std::vector<std::byte> prefix(kIsoMagicAt + 5);
  std::size_t have = 0;
  while (have < prefix.size()) {
    const std::size_t n = content.read(std::span<std::byte>(prefix).subspan(have));
    if (n == 0) break;
    have += n;
  }
  prefix.resize(have);

  Status s;
  if (needsSeeking(prefix)) {
    // The copy with ZIP LZMA dictionaries no larger than a nested level's.
    Spool copy(limits.copyMemoryLimit, limits.tmpDir);
    ZipLzmaDictionaryCap capped(dictionaryCap(limits));
    capped.push(prefix);
    std::vector<std::byte> buf(kChunk);
    bool ok = true;
    for (bool ended = false; ok && !ended;) {
      const std::size_t n = content.read(buf);
      ended = n == 0;
      capped.push(std::span<const std::byte>(buf).first(n));
      const std::span<const std::byte> ready = capped.ready(ended);
      ok = ready.empty() || copy.append(ready);
      capped.take(ready.size());
    }
    if (!ok) {
      result.status = Status::Unreadable;
      return result;
    }
    // Formats whose reader allocates for every declared entry before the
    // first one comes back: count what they declare first.
    const auto refuse = [&](Status status, std::uint64_t entries, const char* format) {
      result.status = status;
      result.entries = entries;
      result.deepestLevel = 1;
      result.format = format;
      return result;
    };
    if (const std::uint64_t declared = zipDeclaredEntries(copy); declared > limits.maxEntries) {
      return refuse(Status::TooManyEntries, declared, "ZIP");
    }
    if (isSevenZip(prefix)) {
      const SevenZipProbe probe = probeSevenZip(copy, sevenZipHeaderRoom(limits.maxEntries));
      switch (probe.kind) {
        case SevenZipProbe::Kind::Files:
          if (probe.files > limits.maxEntries) return refuse(Status::TooManyEntries, probe.files, "7-Zip");
          break;
        case SevenZipProbe::Kind::Encrypted:
          return refuse(Status::Encrypted, 0, "7-Zip");
        case SevenZipProbe::Kind::Unknown:
          // Not handed to libarchive unchecked.
          return refuse(Status::Unreadable, 0, "7-Zip");
      }
    }
    SpoolSource src(copy);
    s = measureFormat(src, 1, nullptr, isIso9660(prefix), st);
    if (result.entries == 0 && (s == Status::Unreadable || s == Status::NotArchive) &&
        startsWith(prefix, kZipLocalHeader)) {
      // A ZIP whose central directory libarchive cannot read (damaged, or
      // misplaced by its end record): its members by their local headers,
      // front to back, as 7-Zip then extracts them.
      result = ExpansionResult{};
      st.encrypted = st.unreadable = false;
      SpoolSource streamed(copy, false);
      s = measureFormat(streamed, 1, nullptr, false, st);
    }
  } else {
    ContentSource rest(content);
    PrefixedSource src(rest, std::move(prefix));
    s = measureLevel(src, 1, st);
  }

  if (terminal(s) || s == Status::NotArchive) {
    result.status = s;
  } else if (st.encrypted) {
    result.status = Status::Encrypted;
  } else if (st.unreadable) {
    result.status = Status::Unreadable;
  } else {
    result.status = Status::Ok;
  }
  return result;
}

const char* toString(UnpackResult::Status s) {
  switch (s) {
    case UStatus::NotArchive: return "not-archive";
    case UStatus::Ok: return "ok";
    case UStatus::EntryTooLarge: return "entry-too-large";
    case UStatus::TooLarge: return "too-large";
    case UStatus::TooManyEntries: return "too-many-entries";
    case UStatus::Unreadable: return "unreadable";
    case UStatus::Stopped: return "stopped";
  }
  return "unknown";
}

UnpackResult unpackEntries(std::string_view bytes, const UnpackLimits& limits, const EntryHandler& onEntry) {
  UnpackResult result;
  // Readers that allocate for every declared entry: as measureExpansion.
  if (zipDeclaredEntries(Bytes{bytes}) > limits.maxEntries) {
    result.status = UStatus::TooManyEntries;
    return result;
  }
  if (bytes.starts_with(kSevenZipMagic)) {
    const SevenZipProbe probe = probeSevenZip(bytes, sevenZipHeaderRoom(limits.maxEntries));
    switch (probe.kind) {
      case SevenZipProbe::Kind::Files:
        if (probe.files <= limits.maxEntries) break;
        result.status = UStatus::TooManyEntries;
        return result;
      case SevenZipProbe::Kind::Encrypted:
        result.status = UStatus::Ok;
        result.encrypted = true;
        return result;
      case SevenZipProbe::Kind::Unknown:
        result.status = UStatus::Unreadable;  // not handed to libarchive unchecked
        return result;
    }
  }
  // Compressed: one entry, the decompressed bytes. A .lzma, .xz or .lz
  // file by us, whatever dictionary it declares (lzma.h).
  const auto decompressed = [&](DecodedSource& data) {
    std::string out;
    const UStatus es = readEntry(data, limits, 0, out);
    if (es != UStatus::Ok && (es != UStatus::Unreadable || out.empty())) {
      result.status = es;
      return result;
    }
    // Cut short or damaged: what was decompressed is still handed over.
    result.entries = 1;
    result.totalSize = out.size();
    result.status = !onEntry("", out) ? UStatus::Stopped : es;
    return result;
  };
  const std::uint64_t dictionary = std::min(limits.maxEntrySize, limits.maxTotal) + 1 + kChunk;  // what readEntry reads
  if (const OwnCodec codec = ownCodec(std::as_bytes(std::span(bytes.data(), bytes.size()))); codec != OwnCodec::None) {
    MemorySource packed(bytes);
    return decompressed(*ownDecoded(codec, packed, dictionary));
  }
  {
    MemorySource src(bytes);
    ArchivePtr raw = openDecompressor(src);
    archive_entry* entry = nullptr;
    if (raw && archive_filter_code(raw.get(), 0) != ARCHIVE_FILTER_NONE &&
        archive_read_next_header(raw.get(), &entry) == ARCHIVE_OK) {
      EntrySource data(raw.get());
      return decompressed(data);
    }
  }
  MemorySource src(bytes);
  ArchivePtr a = openFormats(src, false);
  if (!a) return result;  // NotArchive
  unpackFormat(a.get(), limits, onEntry, result);
  if (result.entries == 0 && !result.encrypted &&
      (result.status == UStatus::Unreadable || result.status == UStatus::NotArchive) &&
      bytes.starts_with(kZipLocalHeader)) {
    // As measureExpansion: a ZIP by its local headers when its central
    // directory cannot be read.
    result = UnpackResult{};
    MemorySource streamed(bytes, false);
    if (ArchivePtr z = openFormats(streamed, false)) unpackFormat(z.get(), limits, onEntry, result);
  }
  return result;
}

}  // namespace sekimori::mime
