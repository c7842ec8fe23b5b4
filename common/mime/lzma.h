// common/mime/lzma.h — LZMA data decoded with a dictionary no larger than
// the output can use, for the legacy .lzma format (xz --format=lzma,
// 7-Zip, the LZMA SDK), .xz files, .lz files and 7-Zip's coders
// (archive.cpp and sevenzip.cpp read them with these).
//
// Why: an LZMA stream declares its dictionary size, up to 4 GiB, and
// liblzma (as libarchive and libclamav call it) allocates what is declared
// before it writes a byte. A few kilobytes of input that declare 3 GiB then
// cost 3 GiB of address space, or fail where memory is limited (a scanner
// worker under max_scan_memory), whatever they hold. A match never reaches
// further back than the bytes already written, so a dictionary as large as
// the output we accept decodes exactly what the declared one would.
//
// libarchive also reads .lzma files only with the dictionary sizes its
// writers use (4 KiB to 128 MiB), while xz and 7-Zip decode every size: a
// file made with `xz --format=lzma --lzma1=dict=256MiB` is not an archive
// to libarchive. lzmaAloneHeader takes what xz itself takes.
//
//   if (mime::lzmaAloneHeader(bytes)) ...   // then LzmaDecoder, its dictionary lowered
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace sekimori::mime {

// Raw LZMA (`props`: 5 bytes, lc/lp/pb and the dictionary size) or LZMA2
// (1 byte) decoded from `packed` and appended to `out`, up to `maxOut`
// bytes. The dictionary is the declared one or `maxOut`, whichever is
// smaller (at least 4 KiB). std::bad_alloc when even that cannot be had.
struct LzmaDecoded {
  enum class Status {
    End,        // the stream's end marker (LZMA2: its end)
    Full,       // maxOut bytes written; there may be more
    Truncated,  // the input ended first (LZMA without an end marker ends so)
    Damaged,    // properties not understood, or data no encoder writes
  };
  Status status = Status::Damaged;
};
LzmaDecoded decodeLzma(std::span<const unsigned char> packed, bool lzma2, std::span<const unsigned char> props,
                       std::uint64_t maxOut, std::string& out);

// The same decoder fed piece by piece, for data that arrives in pieces
// (measureExpansion streams a .lzma file through it). The dictionary is
// the declared one or `dictionaryCap`, whichever is smaller (at least
// 4 KiB): output past `dictionaryCap` bytes may come back Damaged where a
// match reaches further back. The constructor throws std::bad_alloc when
// the dictionary cannot be had.
//
//   LzmaDecoder d(false, props, 64 << 20);
//   while (d.ok() && d.decode(in, out) == LzmaDecoder::Step::More) { ... }
class LzmaDecoder {
 public:
  LzmaDecoder(bool lzma2, std::span<const unsigned char> props, std::uint64_t dictionaryCap);
  ~LzmaDecoder();
  LzmaDecoder(const LzmaDecoder&) = delete;
  LzmaDecoder& operator=(const LzmaDecoder&) = delete;

  // False when the properties are not understood (decode then says Damaged).
  bool ok() const { return stream_ != nullptr; }

  enum class Step {
    More,     // `in` used up or `out` filled: call again with more of either
    End,      // the stream's end marker (LZMA2: its end)
    Damaged,  // data no encoder writes
  };
  // Decodes from the front of `in` into the front of `out`, and drops from
  // both what was read and written.
  Step decode(std::span<const unsigned char>& in, std::span<unsigned char>& out);

 private:
  struct Stream;
  std::unique_ptr<Stream> stream_;
};

// An .xz file decoded piece by piece, as xz does: its streams one after
// the other (with the padding between them), each block checked, with a
// dictionary no larger than `dictionaryCap` (at least 4 KiB) whatever a
// block header declares. liblzma's own .xz decoder (as libarchive calls
// it) allocates the declared dictionary, up to 4 GiB for a file of a few
// dozen bytes; here a block reaching further back than `dictionaryCap`
// comes back Damaged. decode throws std::bad_alloc when even the lowered
// dictionary cannot be had.
//
//   XzDecoder d(64 << 20);
//   while (... d.decode(in, out) == XzDecoder::Step::More) { ... }
//   bool whole = d.complete();  // once the input has ended
class XzDecoder {
 public:
  explicit XzDecoder(std::uint64_t dictionaryCap);
  ~XzDecoder();
  XzDecoder(const XzDecoder&) = delete;
  XzDecoder& operator=(const XzDecoder&) = delete;

  enum class Step {
    More,     // `in` used up or `out` filled: call again with more of either
    Damaged,  // not .xz, or data no encoder writes, or a check that fails
  };
  // Decodes from the front of `in` into the front of `out`, and drops from
  // both what was read and written. Call it with an empty `in` once the
  // input has ended, until it writes nothing more.
  Step decode(std::span<const unsigned char>& in, std::span<unsigned char>& out);
  // Whether the input may end here: after a whole stream (and padding).
  bool complete() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// An .lz file (lzip) decoded piece by piece, as lzip does: its members one
// after the other, each with its data size, member size and CRC32 checked
// (format versions 0 and 1), with a dictionary no larger than
// `dictionaryCap` (at least 4 KiB) whatever a member header declares (up to
// 512 MiB, which libarchive's reader has liblzma allocate). Bytes after the
// last member that do not start with "LZIP" are ignored, as lzip ignores
// them; ones that do must be a whole member. decode throws std::bad_alloc
// when even the lowered dictionary cannot be had.
//
//   LzipDecoder d(64 << 20);    // used as XzDecoder
class LzipDecoder {
 public:
  explicit LzipDecoder(std::uint64_t dictionaryCap);
  ~LzipDecoder();
  LzipDecoder(const LzipDecoder&) = delete;
  LzipDecoder& operator=(const LzipDecoder&) = delete;

  enum class Step {
    More,     // `in` used up or `out` filled: call again with more of either
    Damaged,  // not .lz, or data no encoder writes, or a size or CRC that does not match
  };
  // As XzDecoder::decode.
  Step decode(std::span<const unsigned char>& in, std::span<unsigned char>& out);
  // Whether the input may end here: after a whole member (and any trailing
  // bytes).
  bool complete() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Whether `bytes` start with the .xz magic number.
bool xzMagic(std::span<const unsigned char> bytes);

// Whether `bytes` start with an .lz member header as lzip takes one:
// "LZIP", version 0 or 1, a dictionary size of 4 KiB to 512 MiB (text that
// starts with the word LZIP is not one).
bool lzipHeader(std::span<const unsigned char> bytes);

// A .lzma file starts with a header: the LZMA properties (5 bytes), then
// the uncompressed size (8 bytes, little-endian; all ones: not given, the
// data ends with an end marker).
inline constexpr std::size_t kLzmaAloneHeaderSize = 13;
inline constexpr std::uint64_t kLzmaAloneSizeUnknown = ~std::uint64_t{0};

// A ZIP member compressed with LZMA (method 14) has its LZMA properties in
// front of its data, after the local header (30 bytes), its name and its
// extra field (APPNOTE 5.8.8: a version (2), the size of the properties
// (2, 5 for LZMA), lc/lp/pb (1), the dictionary size (4)). Readers go by
// the local header for both the method and where the data starts
// (libarchive by the method's low byte: 0xFC0E is LZMA to it).
// For the local header signature ("PK\3\4") `bytes` start with: where its
// member's dictionary size field is, from the signature; kNoZipLzma when it
// is no LZMA member; kZipLzmaNeedsMore when `bytes` end first.
inline constexpr std::size_t kNoZipLzma = 0;
inline constexpr std::size_t kZipLzmaNeedsMore = ~std::size_t{0};
std::size_t zipLzmaDictionaryField(std::span<const unsigned char> bytes);

// Whether `bytes` start with a .lzma header as xz recognises one (the
// format has no magic number): properties liblzma decodes (lc + lp <= 4,
// pb <= 4), a dictionary size of 2^n or 2^n + 2^(n-1) (or 2^32 - 1), and
// an uncompressed size that is "unknown" or under 256 GiB.
bool lzmaAloneHeader(std::string_view bytes);

}  // namespace sekimori::mime
