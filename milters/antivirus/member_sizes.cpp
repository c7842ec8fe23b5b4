// milters/antivirus/member_sizes.cpp — see member_sizes.h.
#include "milters/antivirus/member_sizes.h"

#include <algorithm>
#include <cstring>

#include "common/util/bytes.h"

namespace sekimori::antivirus {
namespace {

using util::le16;
using util::le32;
using util::le64;

// Reads fixed-size fields at `at` only when `n` bytes are there.
class Bytes {
 public:
  explicit Bytes(std::string_view b) : b_(b) {}
  std::uint64_t size() const { return b_.size(); }
  const unsigned char* at(std::uint64_t off, std::uint64_t n) const {
    if (off > b_.size() || n > b_.size() - off) return nullptr;
    return reinterpret_cast<const unsigned char*>(b_.data()) + off;
  }
  static constexpr std::uint64_t npos = std::string_view::npos;
  std::uint64_t find(char c, std::uint64_t from) const { return from > b_.size() ? npos : b_.find(c, from); }
  bool magic(std::uint64_t off, std::string_view m) const {
    const unsigned char* p = at(off, m.size());
    return p != nullptr && std::memcmp(p, m.data(), m.size()) == 0;
  }

 private:
  std::string_view b_;
};

// A record's sizes; a field of 0xFFFFFFFF is in the zip64 extra field
// (id 1), which holds the uncompressed size first, then the compressed one.
struct ZipSizes {
  std::uint64_t size, packed;
};

ZipSizes zipSizes(const Bytes& b, std::uint64_t extra, std::uint64_t len, std::uint32_t size32, std::uint32_t packed32) {
  ZipSizes s{size32, packed32};
  if (size32 != 0xFFFFFFFFu && packed32 != 0xFFFFFFFFu) return s;
  for (std::uint64_t off = extra; off + 4 <= extra + len;) {
    const unsigned char* h = b.at(off, 4);
    if (h == nullptr) break;
    const std::uint64_t n = le16(h + 2);
    if (le16(h) == 1) {
      std::uint64_t field = off + 4;
      if (size32 == 0xFFFFFFFFu && field + 8 <= off + 4 + n) {
        if (const unsigned char* v = b.at(field, 8)) s.size = le64(v);
        field += 8;
      }
      if (packed32 == 0xFFFFFFFFu && field + 8 <= off + 4 + n) {
        if (const unsigned char* v = b.at(field, 8)) s.packed = le64(v);
      }
      break;
    }
    off += 4 + n;
  }
  return s;
}

// The central directory: its start, size and entry count, from the end
// record (searched in the last 64 KiB + 22 bytes) and a zip64 record.
struct CentralDirectory {
  std::uint64_t start = 0, size = 0, entries = 0;
  bool found = false;
};

CentralDirectory findCentralDirectory(const Bytes& b) {
  CentralDirectory cd;
  constexpr std::uint64_t kEnd = 22;
  if (b.size() < kEnd) return cd;
  const std::uint64_t lowest = b.size() - kEnd - std::min<std::uint64_t>(b.size() - kEnd, 65535);
  for (std::uint64_t i = b.size() - kEnd + 1; i-- > lowest;) {
    if (!b.magic(i, "PK\x05\x06")) continue;
    const unsigned char* e = b.at(i, kEnd);
    std::uint64_t endOfDirectory = i;
    cd.entries = le16(e + 10);
    cd.size = le32(e + 12);
    if (i >= 20 && b.magic(i - 20, "PK\x06\x07")) {
      // The zip64 end record sits between the directory and the locator.
      const std::uint64_t z64 = le64(b.at(i - 20 + 8, 8));
      if (const unsigned char* z = b.at(z64, 56); z != nullptr && std::memcmp(z, "PK\x06\x06", 4) == 0) {
        cd.entries = le64(z + 32);
        cd.size = le64(z + 40);
        endOfDirectory = z64;
      }
    }
    if (cd.size > endOfDirectory) return cd;
    cd.start = endOfDirectory - cd.size;
    cd.found = true;
    return cd;
  }
  return cd;
}

std::uint64_t largestInZip(const Bytes& b) {
  std::uint64_t largest = 0;
  if (const CentralDirectory cd = findCentralDirectory(b); cd.found) {
    std::uint64_t off = cd.start;
    for (std::uint64_t n = 0; n < cd.entries && off < cd.start + cd.size; ++n) {
      const unsigned char* r = b.at(off, 46);
      if (r == nullptr || std::memcmp(r, "PK\x01\x02", 4) != 0) break;
      const std::uint64_t nameLen = le16(r + 28), extraLen = le16(r + 30), commentLen = le16(r + 32);
      largest = std::max(largest, zipSizes(b, off + 46 + nameLen, extraLen, le32(r + 24), le32(r + 20)).size);
      off += 46 + nameLen + extraLen + commentLen;
    }
    return largest;
  }
  // No central directory (a cut-off archive): the local headers, as
  // libclamav then reads them. A member whose sizes follow its data (flag
  // bit 3) declares none here, and the walk cannot go past it.
  for (std::uint64_t off = 0; b.magic(off, "PK\x03\x04");) {
    const unsigned char* r = b.at(off, 30);
    if (r == nullptr) break;
    const std::uint64_t nameLen = le16(r + 26), extraLen = le16(r + 28);
    const ZipSizes z = zipSizes(b, off + 30 + nameLen, extraLen, le32(r + 22), le32(r + 18));
    largest = std::max(largest, z.size);
    if ((le16(r + 6) & 0x8) != 0) break;
    off += 30 + nameLen + extraLen + z.packed;
  }
  return largest;
}

std::uint64_t largestInCab(const Bytes& b) {
  const unsigned char* h = b.at(0, 36);
  if (h == nullptr || std::memcmp(h, "MSCF", 4) != 0) return 0;
  std::uint64_t off = le32(h + 16);  // coffFiles
  const std::uint64_t files = le16(h + 28);
  std::uint64_t largest = 0;
  for (std::uint64_t n = 0; n < files; ++n) {
    const unsigned char* f = b.at(off, 16);  // cbFile, uoffFolderStart, iFolder, date, time, attribs
    if (f == nullptr) break;
    largest = std::max<std::uint64_t>(largest, le32(f));
    // Then the name, NUL-terminated.
    const std::uint64_t nul = b.find('\0', off + 16);
    if (nul == Bytes::npos) break;
    off = nul + 1;
  }
  return largest;
}

}  // namespace

std::uint64_t largestDeclaredMember(ArchiveKind kind, std::string_view bytes) {
  const Bytes b(bytes);
  return kind == ArchiveKind::Zip ? largestInZip(b) : largestInCab(b);
}

}  // namespace sekimori::antivirus
