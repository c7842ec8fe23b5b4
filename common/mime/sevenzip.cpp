// common/mime/sevenzip.cpp — see sevenzip.h. Layout from 7-Zip's
// DOC/7zFormat.txt: a 32-byte signature header pointing at the header at
// the end; the header either plain (kHeader) or packed (kEncodedHeader: a
// StreamsInfo describing one LZMA- or LZMA2-compressed stream that holds
// kHeader).
#include "common/mime/sevenzip.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/mime/lzma.h"
#include "common/util/bytes.h"

namespace sekimori::mime {
namespace {

using util::le64;

enum Nid : unsigned char {
  kEnd = 0x00,
  kHeader = 0x01,
  kArchiveProperties = 0x02,
  kAdditionalStreamsInfo = 0x03,
  kMainStreamsInfo = 0x04,
  kFilesInfo = 0x05,
  kPackInfo = 0x06,
  kUnPackInfo = 0x07,
  kSubStreamsInfo = 0x08,
  kSize = 0x09,
  kCRC = 0x0A,
  kFolder = 0x0B,
  kCodersUnPackSize = 0x0C,
  kNumUnPackStream = 0x0D,
  kEncodedHeader = 0x17,
};

// Thrown by the reader on anything it cannot follow; caught in this file.
struct Malformed {};

class Reader {
 public:
  explicit Reader(std::span<const unsigned char> b) : b_(b) {}
  unsigned char byte() {
    if (pos_ >= b_.size()) throw Malformed{};
    return b_[pos_++];
  }
  // 7z NUMBER: the leading 1 bits of the first byte say how many bytes follow.
  std::uint64_t number() {
    const unsigned char first = byte();
    unsigned char mask = 0x80;
    std::uint64_t value = 0;
    for (int i = 0; i < 8; ++i) {
      if ((first & mask) == 0) return value | (static_cast<std::uint64_t>(first & (mask - 1)) << (8 * i));
      value |= static_cast<std::uint64_t>(byte()) << (8 * i);
      mask >>= 1;
    }
    return value;
  }
  void skip(std::uint64_t n) {
    if (n > remaining()) throw Malformed{};
    pos_ += static_cast<std::size_t>(n);
  }
  std::uint64_t remaining() const { return b_.size() - pos_; }
  // A count that must be backed by at least one byte each.
  std::uint64_t count() {
    const std::uint64_t n = number();
    if (n > remaining()) throw Malformed{};
    return n;
  }

 private:
  std::span<const unsigned char> b_;
  std::size_t pos_ = 0;
};

// Skips a Digests record for n streams; returns which are defined.
std::vector<bool> digests(Reader& r, std::uint64_t n) {
  if (n > r.remaining() * 8 + 8) throw Malformed{};
  std::vector<bool> defined(static_cast<std::size_t>(n), true);
  if (r.byte() == 0) {  // not all defined: a bit vector
    unsigned char bits = 0;
    for (std::size_t i = 0; i < defined.size(); ++i) {
      if (i % 8 == 0) bits = r.byte();
      defined[i] = (bits & (0x80 >> (i % 8))) != 0;
    }
  }
  r.skip(4 * static_cast<std::uint64_t>(std::count(defined.begin(), defined.end(), true)));
  return defined;
}

struct Coder {
  std::vector<unsigned char> id;
  std::vector<unsigned char> props;
};

struct StreamsInfo {
  std::uint64_t packPos = 0;
  std::vector<std::uint64_t> packSizes;
  std::vector<std::vector<Coder>> folders;
  std::vector<std::uint64_t> unpackSizes;  // all folders' out streams, in order
};

StreamsInfo readStreamsInfo(Reader& r) {
  StreamsInfo si;
  std::vector<bool> folderCrc;
  for (unsigned char nid = r.byte(); nid != kEnd; nid = r.byte()) {
    if (nid == kPackInfo) {
      si.packPos = r.number();
      const std::uint64_t n = r.number();
      for (unsigned char t = r.byte(); t != kEnd; t = r.byte()) {
        if (t == kSize) {
          if (n > r.remaining()) throw Malformed{};
          for (std::uint64_t i = 0; i < n; ++i) si.packSizes.push_back(r.number());
        } else if (t == kCRC) {
          digests(r, n);
        } else {
          throw Malformed{};
        }
      }
    } else if (nid == kUnPackInfo) {
      if (r.byte() != kFolder) throw Malformed{};
      const std::uint64_t numFolders = r.count();
      if (r.byte() != 0) throw Malformed{};  // "external" folders: never written by 7-Zip
      std::vector<std::uint64_t> outs;
      for (std::uint64_t f = 0; f < numFolders; ++f) {
        std::vector<Coder> coders;
        std::uint64_t totalIn = 0, totalOut = 0;
        const std::uint64_t numCoders = r.count();
        for (std::uint64_t c = 0; c < numCoders; ++c) {
          const unsigned char flags = r.byte();
          if (flags & 0x80) throw Malformed{};  // alternative methods: unused
          Coder coder;
          for (int i = 0; i < (flags & 0x0F); ++i) coder.id.push_back(r.byte());
          std::uint64_t in = 1, out = 1;
          if (flags & 0x10) {
            in = r.count();
            out = r.count();
          }
          if (flags & 0x20) {
            const std::uint64_t size = r.count();
            for (std::uint64_t i = 0; i < size; ++i) coder.props.push_back(r.byte());
          }
          totalIn += in;
          totalOut += out;
          coders.push_back(std::move(coder));
        }
        if (totalOut == 0 || totalIn + 1 < totalOut) throw Malformed{};
        const std::uint64_t bindPairs = totalOut - 1;
        for (std::uint64_t i = 0; i < bindPairs; ++i) {
          r.number();
          r.number();
        }
        const std::uint64_t packed = totalIn - bindPairs;
        if (packed > 1) {
          if (packed > r.remaining()) throw Malformed{};
          for (std::uint64_t i = 0; i < packed; ++i) r.number();
        }
        outs.push_back(totalOut);
        si.folders.push_back(std::move(coders));
      }
      if (r.byte() != kCodersUnPackSize) throw Malformed{};
      for (const std::uint64_t out : outs) {
        if (out > r.remaining()) throw Malformed{};
        for (std::uint64_t i = 0; i < out; ++i) si.unpackSizes.push_back(r.number());
      }
      for (unsigned char t = r.byte(); t != kEnd; t = r.byte()) {
        if (t != kCRC) throw Malformed{};
        folderCrc = digests(r, si.folders.size());
      }
    } else if (nid == kSubStreamsInfo) {
      std::vector<std::uint64_t> numUnpack(si.folders.size(), 1);
      unsigned char t = r.byte();
      if (t == kNumUnPackStream) {
        for (auto& n : numUnpack) n = r.number();
        t = r.byte();
      }
      if (t == kSize) {
        for (const std::uint64_t n : numUnpack) {
          if (n > r.remaining() + 1) throw Malformed{};
          for (std::uint64_t i = 1; i < n; ++i) r.number();
        }
        t = r.byte();
      }
      // Streams whose CRC the folder does not already give.
      std::uint64_t unknown = 0;
      for (std::size_t f = 0; f < numUnpack.size(); ++f) {
        const bool known = numUnpack[f] == 1 && f < folderCrc.size() && folderCrc[f];
        if (!known) unknown += numUnpack[f];
        if (unknown > r.remaining() * 8 + 8) throw Malformed{};
      }
      while (t != kEnd) {
        if (t != kCRC) throw Malformed{};
        digests(r, unknown);
        t = r.byte();
      }
    } else {
      throw Malformed{};
    }
  }
  return si;
}

// What the probe reads: a spool, or bytes in memory.
struct Source {
  std::uint64_t length;
  std::function<std::size_t(std::uint64_t offset, std::span<std::byte> out)> read;  // 0: nothing more
  std::uint64_t size() const { return length; }
};

bool readAt(const Source& s, std::uint64_t offset, std::vector<unsigned char>& out) {
  std::size_t have = 0;
  while (have < out.size()) {
    const std::size_t n =
        s.read(offset + have, std::as_writable_bytes(std::span<unsigned char>(out)).subspan(have));
    if (n == 0) return false;
    have += n;
  }
  return true;
}

bool isAes(const Coder& c) {
  static constexpr std::array<unsigned char, 4> kAes = {0x06, 0xF1, 0x07, 0x01};
  return c.id.size() == kAes.size() && std::equal(c.id.begin(), c.id.end(), kAes.begin());
}

bool isLzma(const Coder& c) {
  static constexpr std::array<unsigned char, 3> kLzma = {0x03, 0x01, 0x01};
  return c.id.size() == kLzma.size() && std::equal(c.id.begin(), c.id.end(), kLzma.begin());
}

bool isLzma2(const Coder& c) { return c.id.size() == 1 && c.id[0] == 0x21; }

SevenZipProbe probe(const Source& archive, std::uint64_t maxHeaderBytes) {
  SevenZipProbe probe;
  try {
    std::vector<unsigned char> sig(32);
    if (!readAt(archive, 0, sig) || std::memcmp(sig.data(), "7z\xBC\xAF\x27\x1C", 6) != 0) return probe;
    const std::uint64_t offset = le64(&sig[12]);
    const std::uint64_t size = le64(&sig[20]);
    if (size == 0 || size > maxHeaderBytes || offset > archive.size() || 32 + offset + size > archive.size()) {
      return probe;
    }
    std::vector<unsigned char> header(static_cast<std::size_t>(size));
    if (!readAt(archive, 32 + offset, header)) return probe;

    // Packed headers: decode (7-Zip nests them at most once; allow a few).
    for (int round = 0; round < 4 && !header.empty() && header[0] == kEncodedHeader; ++round) {
      Reader r(std::span<const unsigned char>(header).subspan(1));
      const StreamsInfo si = readStreamsInfo(r);
      if (si.folders.size() != 1 || si.packSizes.empty() || si.unpackSizes.empty()) return probe;
      const std::vector<Coder>& coders = si.folders[0];
      if (std::any_of(coders.begin(), coders.end(), isAes)) {
        probe.kind = SevenZipProbe::Kind::Encrypted;
        return probe;
      }
      if (coders.size() != 1 || !(isLzma(coders[0]) || isLzma2(coders[0]))) return probe;
      const std::uint64_t packSize = si.packSizes[0], unpackSize = si.unpackSizes[0];
      if (packSize > maxHeaderBytes || unpackSize > maxHeaderBytes || unpackSize == 0 ||
          si.packPos > archive.size() || 32 + si.packPos + packSize > archive.size()) {
        return probe;
      }
      std::vector<unsigned char> packed(static_cast<std::size_t>(packSize));
      if (!readAt(archive, 32 + si.packPos, packed)) return probe;
      // LZMA (7-Zip's coder 03 01 01) or LZMA2 (coder 21; libarchive's
      // 7-Zip writer packs headers with it), into exactly unpackSize bytes.
      std::string decoded;
      decodeLzma(packed, isLzma2(coders[0]), coders[0].props, unpackSize, decoded);
      if (decoded.size() != unpackSize) return probe;
      header.assign(decoded.begin(), decoded.end());
    }

    Reader r(header);
    if (r.byte() != kHeader) return probe;
    unsigned char nid = r.byte();
    if (nid == kArchiveProperties) {
      while (r.byte() != 0) r.skip(r.number());
      nid = r.byte();
    }
    if (nid == kAdditionalStreamsInfo) {
      readStreamsInfo(r);
      nid = r.byte();
    }
    if (nid == kMainStreamsInfo) {
      for (const auto& folder : readStreamsInfo(r).folders) {
        for (const Coder& c : folder) probe.coders.push_back(c.id);
      }
      nid = r.byte();
    }
    probe.kind = SevenZipProbe::Kind::Files;
    probe.files = nid == kFilesInfo ? r.number() : 0;
    if (nid != kFilesInfo && nid != kEnd) probe.kind = SevenZipProbe::Kind::Unknown;
  } catch (const Malformed&) {
    probe.kind = SevenZipProbe::Kind::Unknown;
  } catch (const std::bad_alloc&) {
    probe.kind = SevenZipProbe::Kind::Unknown;
  }
  if (probe.kind != SevenZipProbe::Kind::Files) probe.coders.clear();
  return probe;
}

}  // namespace

SevenZipProbe probeSevenZip(const Spool& archive, std::uint64_t maxHeaderBytes) {
  return probe({archive.size(),
                [&](std::uint64_t offset, std::span<std::byte> out) { return archive.read(offset, out); }},
               maxHeaderBytes);
}

SevenZipProbe probeSevenZip(std::string_view archive, std::uint64_t maxHeaderBytes) {
  return probe({archive.size(),
                [&](std::uint64_t offset, std::span<std::byte> out) -> std::size_t {
                  if (offset >= archive.size()) return 0;
                  const std::size_t n = std::min<std::uint64_t>(out.size(), archive.size() - offset);
                  std::memcpy(out.data(), archive.data() + offset, n);
                  return n;
                }},
               maxHeaderBytes);
}

}  // namespace sekimori::mime
