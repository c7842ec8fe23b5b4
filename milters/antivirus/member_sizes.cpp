// milters/antivirus/member_sizes.cpp — see member_sizes.h.
#include "milters/antivirus/member_sizes.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>
#include <vector>

#include "common/mime/lzma.h"
#include "common/mime/sevenzip.h"
#include "common/util/bytes.h"

namespace sekimori::antivirus {
namespace {

using util::le16;
using util::le32;
using util::le64;

constexpr std::string_view kLocalHeader("PK\x03\x04", 4);

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
  // `s` starting in [from, to), or npos.
  std::uint64_t find(std::string_view s, std::uint64_t from, std::uint64_t to) const {
    const std::uint64_t end = std::min<std::uint64_t>(to + s.size() - 1, b_.size());
    return from >= end ? npos : b_.substr(0, end).find(s, from);
  }
  bool magic(std::uint64_t off, std::string_view m) const {
    const unsigned char* p = at(off, m.size());
    return p != nullptr && std::memcmp(p, m.data(), m.size()) == 0;
  }

 private:
  std::string_view b_;
};

// A record's sizes (and, in a central directory entry, its local header's
// offset); a field of 0xFFFFFFFF is in the zip64 extra field (id 1), which
// holds those fields in this order, only the ones that are 0xFFFFFFFF.
struct ZipSizes {
  std::uint64_t size, packed, offset;
};

ZipSizes zipSizes(const Bytes& b, std::uint64_t extra, std::uint64_t len, std::uint32_t size32, std::uint32_t packed32,
                  std::uint32_t offset32 = 0) {
  ZipSizes s{size32, packed32, offset32};
  std::uint64_t* fields[] = {&s.size, &s.packed, &s.offset};
  if (std::none_of(std::begin(fields), std::end(fields), [](const std::uint64_t* f) { return *f == 0xFFFFFFFFu; })) {
    return s;
  }
  for (std::uint64_t off = extra; off + 4 <= extra + len;) {
    const unsigned char* h = b.at(off, 4);
    if (h == nullptr) break;
    const std::uint64_t n = le16(h + 2);
    if (le16(h) == 1) {
      std::uint64_t field = off + 4;
      for (std::uint64_t* f : fields) {
        if (*f != 0xFFFFFFFFu) continue;
        if (field + 8 > off + 4 + n) break;
        if (const unsigned char* v = b.at(field, 8)) *f = le64(v);
        field += 8;
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
  std::uint64_t stated = 0;  // the start as the end record states it: data prepended shifts the real one
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
    cd.stated = le32(e + 16);
    if (i >= 20 && b.magic(i - 20, "PK\x06\x07")) {
      // The zip64 end record sits between the directory and the locator.
      const std::uint64_t z64 = le64(b.at(i - 20 + 8, 8));
      if (const unsigned char* z = b.at(z64, 56); z != nullptr && std::memcmp(z, "PK\x06\x06", 4) == 0) {
        cd.entries = le64(z + 32);
        cd.size = le64(z + 40);
        cd.stated = le64(z + 48);
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

// Calls visit(record, sizes) for each entry of the central directory `cd`,
// in order, until one cannot be read: the entry's fixed 46 bytes and its
// sizes and local header offset (zip64 ones from its extra field).
template <typename Visit>
void forEachDirectoryEntry(const Bytes& b, const CentralDirectory& cd, Visit visit) {
  std::uint64_t off = cd.start;
  for (std::uint64_t n = 0; n < cd.entries && off < cd.start + cd.size; ++n) {
    const unsigned char* r = b.at(off, 46);
    if (r == nullptr || std::memcmp(r, "PK\x01\x02", 4) != 0) break;
    const std::uint64_t nameLen = le16(r + 28), extraLen = le16(r + 30), commentLen = le16(r + 32);
    visit(r, zipSizes(b, off + 46 + nameLen, extraLen, le32(r + 24), le32(r + 20), le32(r + 42)));
    off += 46 + nameLen + extraLen + commentLen;
  }
}

// Without a central directory (a cut-off archive): calls visit(header,
// sizes) for the local headers front to back, as libclamav then reads
// them, until one cannot be read. A member whose sizes follow its data
// (flag bit 3) declares none there, and the walk cannot go past it.
template <typename Visit>
void forEachLocalHeader(const Bytes& b, Visit visit) {
  for (std::uint64_t off = 0; b.magic(off, "PK\x03\x04");) {
    const unsigned char* r = b.at(off, 30);
    if (r == nullptr) break;
    const std::uint64_t nameLen = le16(r + 26), extraLen = le16(r + 28);
    const ZipSizes z = zipSizes(b, off + 30 + nameLen, extraLen, le32(r + 22), le32(r + 18));
    visit(r, z);
    if ((le16(r + 6) & 0x8) != 0) break;
    off += 30 + nameLen + extraLen + z.packed;
  }
}

std::uint64_t largestInZip(const Bytes& b) {
  std::uint64_t largest = 0;
  if (const CentralDirectory cd = findCentralDirectory(b); cd.found) {
    forEachDirectoryEntry(b, cd, [&](const unsigned char*, const ZipSizes& z) { largest = std::max(largest, z.size); });
    return largest;
  }
  forEachLocalHeader(b, [&](const unsigned char*, const ZipSizes& z) { largest = std::max(largest, z.size); });
  return largest;
}

// The length of the local file header (with its name) at `off` if a reader
// going by local headers would take it for a member: its fixed part and
// its name are there, the method is one of those the format defines; else 0.
std::uint64_t plausibleLocalHeader(const Bytes& b, std::uint64_t off) {
  const unsigned char* r = b.at(off, 30);
  if (r == nullptr || std::memcmp(r, "PK\x03\x04", 4) != 0) return 0;
  const std::uint64_t method = le16(r + 8), nameLen = le16(r + 26);
  const bool known = method <= 20 || (method >= 93 && method <= 99);
  return nameLen > 0 && known && b.at(off + 30, nameLen) != nullptr ? 30 + nameLen : 0;
}

std::uint64_t hiddenInZip(const Bytes& b) {
  const CentralDirectory cd = findCentralDirectory(b);
  if (!cd.found || cd.stated > cd.start) return 0;  // without a directory libclamav reads the local headers
  const std::uint64_t shift = cd.start - cd.stated;  // data prepended, as in a self-extractor
  // Where the members the directory lists lie: local header, name, extra
  // field, data, and a data descriptor after it when flag bit 3 says so.
  struct Extent {
    std::uint64_t begin, end;
  };
  std::vector<Extent> listed;
  forEachDirectoryEntry(b, cd, [&](const unsigned char* r, const ZipSizes& z) {
    const std::uint64_t local = z.offset + shift;
    const unsigned char* h = b.at(local, 30);
    if (h == nullptr || std::memcmp(h, "PK\x03\x04", 4) != 0 || z.packed > b.size()) return;
    std::uint64_t end = local + 30 + le16(h + 26) + le16(h + 28) + z.packed;
    if ((le16(r + 8) & 0x8) != 0) end += (b.magic(end, "PK\x07\x08") ? 4 : 0) + (z.packed >= 0xFFFFFFFFu ? 20 : 12);
    listed.push_back({local, end});
  });
  std::sort(listed.begin(), listed.end(), [](const Extent& x, const Extent& y) { return x.begin < y.begin; });
  // Local headers between them, or between the last and the directory.
  // Before the first: only one at the very start, what a reader of local
  // headers meets first; anything else there is data prepended, such as a
  // self-extractor's program, where the magic number may well be a constant.
  std::uint64_t hidden = 0;
  if (!listed.empty() && listed.front().begin > 0 && plausibleLocalHeader(b, 0) > 0) ++hidden;
  std::uint64_t from = listed.empty() ? shift : listed.front().begin;
  const auto searchTo = [&](std::uint64_t to) {
    for (std::uint64_t hit = from; (hit = b.find(kLocalHeader, hit, to)) != Bytes::npos;) {
      const std::uint64_t header = plausibleLocalHeader(b, hit);
      hidden += header > 0 ? 1 : 0;
      hit += std::max<std::uint64_t>(header, 4);  // a member's header is not another's
    }
  };
  for (const Extent& e : listed) {
    if (e.begin > from) searchTo(e.begin);
    from = std::max(from, e.end);
  }
  searchTo(cd.start);
  return hidden;
}

// A ZIP compression method libclamav 1.4.6's unzip does not unpack, as
// "ZIP members compressed with NAME"; nullptr for one it does.
const char* methodNotUnpacked(std::uint64_t method) {
  switch (method) {
    case 0:   // stored
    case 1:   // shrunk
    case 2:   // reduced, factors 1-4
    case 3:
    case 4:
    case 5:
    case 6:   // imploded
    case 8:   // deflate
    case 9:   // deflate64
    case 12:  // bzip2
      return nullptr;
    case 10: return "ZIP members compressed with PKWARE DCL Implode";
    case 14: return "ZIP members compressed with LZMA";
    case 18: return "ZIP members compressed with IBM TERSE";
    case 19: return "ZIP members compressed with IBM LZ77";
    case 93: return "ZIP members compressed with Zstandard";
    case 95: return "ZIP members compressed with XZ";
    case 98: return "ZIP members compressed with PPMd";
    default: return "ZIP members compressed with an unknown method";
  }
}

// The method of a member (general purpose flags at `flags`, method after
// them) that holds anything unencrypted libclamav does not unpack.
const char* memberNotUnpacked(const unsigned char* flags, const ZipSizes& z) {
  const std::uint64_t bits = le16(flags);
  if ((bits & 0x1) != 0) return nullptr;                                 // encrypted
  if (z.size == 0 && z.packed == 0 && (bits & 0x8) == 0) return nullptr;  // empty (sizes not deferred)
  return methodNotUnpacked(le16(flags + 2));
}

const char* notUnpackedInZip(const Bytes& b) {
  const char* found = nullptr;
  if (const CentralDirectory cd = findCentralDirectory(b); cd.found) {
    // The method as the entry says and as its local header says: an
    // unzipper may go by either.
    const std::uint64_t shift = cd.start > cd.stated ? cd.start - cd.stated : 0;
    forEachDirectoryEntry(b, cd, [&](const unsigned char* r, const ZipSizes& z) {
      if (found == nullptr) found = memberNotUnpacked(r + 8, z);
      const unsigned char* local = z.offset <= b.size() ? b.at(z.offset + shift, 30) : nullptr;
      if (found == nullptr && local != nullptr && std::memcmp(local, "PK\x03\x04", 4) == 0) {
        found = memberNotUnpacked(local + 6, z);
      }
    });
  }
  // And every local header in the bytes, wherever it lies: with no
  // directory, or one that is damaged or misplaced by its end record,
  // 7-Zip and libarchive still extract the members they find by their
  // local headers (libclamav then skips those it cannot unpack).
  for (std::uint64_t hit = 0; found == nullptr && (hit = b.find(kLocalHeader, hit, b.size())) != Bytes::npos;
       hit += 4) {
    if (plausibleLocalHeader(b, hit) == 0) continue;
    const unsigned char* r = b.at(hit, 30);
    const std::uint64_t nameLen = le16(r + 26);
    found = memberNotUnpacked(r + 6, zipSizes(b, hit + 30 + nameLen, le16(r + 28), le32(r + 22), le32(r + 18)));
  }
  return found;
}

// A 7-Zip coder libclamav 1.4.6 cannot decode, as "7-Zip data compressed
// with NAME"; nullptr for one it does.
const char* coderNotDecoded(const std::vector<unsigned char>& id) {
  using Id = std::vector<unsigned char>;
  static const std::array<Id, 7> kDecoded = {
      Id{0x00},                    // Copy
      Id{0x21},                    // LZMA2
      Id{0x03, 0x01, 0x01},        // LZMA
      Id{0x03, 0x04, 0x01},        // PPMd
      Id{0x03, 0x03, 0x01, 0x03},  // BCJ (x86)
      Id{0x03, 0x03, 0x01, 0x1B},  // BCJ2
      Id{0x03, 0x03, 0x05, 0x01},  // ARM
  };
  if (std::find(kDecoded.begin(), kDecoded.end(), id) != kDecoded.end()) return nullptr;
  static const std::array<std::pair<Id, const char*>, 11> kNamed = {{
      {{0x06, 0xF1, 0x07, 0x01}, nullptr},  // AES: libclamav says encrypted
      {{0x04, 0x02, 0x02}, "7-Zip data compressed with BZip2"},
      {{0x04, 0x01, 0x08}, "7-Zip data compressed with Deflate"},
      {{0x04, 0x01, 0x09}, "7-Zip data compressed with Deflate64"},
      {{0x03}, "7-Zip data with a Delta filter"},
      {{0x0A}, "7-Zip data with an ARM64 filter"},
      {{0x03, 0x03, 0x07, 0x01}, "7-Zip data with an ARM Thumb filter"},
      {{0x03, 0x03, 0x02, 0x05}, "7-Zip data with a PowerPC filter"},
      {{0x03, 0x03, 0x04, 0x01}, "7-Zip data with an IA-64 filter"},
      {{0x03, 0x03, 0x08, 0x05}, "7-Zip data with a SPARC filter"},
      {{0x04, 0xF7, 0x11, 0x01}, "7-Zip data compressed with Zstandard"},
  }};
  for (const auto& [known, name] : kNamed) {
    if (known == id) return name;
  }
  return "7-Zip data compressed with an unknown method";
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

std::uint64_t zipMembersOutsideDirectory(std::string_view bytes) { return hiddenInZip(Bytes(bytes)); }

const char* zipMethodNotUnpacked(std::string_view bytes) { return notUnpackedInZip(Bytes(bytes)); }

// Every local header signature, wherever it lies: a reader going by the
// central directory, by local headers, or recovering a damaged directory
// (libarchive does) may take any of them for a member's.
std::uint64_t zipLargestLzmaDictionary(std::string_view b) {
  std::uint64_t largest = 0;
  for (std::size_t hit = 0; (hit = b.find(kLocalHeader, hit)) != std::string_view::npos; hit += 4) {
    const auto* h = reinterpret_cast<const unsigned char*>(b.data()) + hit;
    const std::size_t field = mime::zipLzmaDictionaryField(std::span(h, b.size() - hit));
    if (field != mime::kNoZipLzma && field != mime::kZipLzmaNeedsMore) {
      largest = std::max<std::uint64_t>(largest, le32(h + field));
    }
  }
  return largest;
}

const char* sevenZipMethodNotUnpacked(std::string_view bytes) {
  for (const auto& id : mime::probeSevenZip(bytes, kSevenZipHeaderMax).coders) {
    if (const char* name = coderNotDecoded(id)) return name;
  }
  return nullptr;
}

}  // namespace sekimori::antivirus
