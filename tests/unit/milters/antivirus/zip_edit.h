// tests/unit/milters/antivirus/zip_edit.h — crafted zips for the tests, made
// from archives the real zip tool wrote: a member that understates its
// size, a member its central directory no longer lists, a member's method
// or its LZMA dictionary changed. Bytes in, bytes out; an archive that is not as expected comes
// back empty.
#pragma once

#include <cstdint>
#include <string>

#include "common/util/bytes.h"

namespace sekimori::antivirus::testing {

inline void putLe(std::string& z, std::size_t at, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) z[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

inline const unsigned char* bytesAt(const std::string& z, std::size_t off) {
  return reinterpret_cast<const unsigned char*>(z.data()) + off;
}

// The first member declares `size` bytes uncompressed, in its local header
// and its central directory entry alike (unzip still extracts it whole: the
// deflate stream and the CRC say where it ends).
inline std::string understateFirstMember(std::string z, std::uint32_t size) {
  const auto central = z.find("PK\x01\x02");
  if (z.compare(0, 4, "PK\x03\x04") != 0 || central == std::string::npos || central + 28 > z.size()) return {};
  putLe(z, 22, size, 4);
  putLe(z, central + 24, size, 4);
  return z;
}

// The central directory without its last entry: that member's local header
// and data stay where they are, listed nowhere (no zip64, no comments).
inline std::string unlistLastMember(std::string z) {
  const auto end = z.rfind("PK\x05\x06");
  if (end == std::string::npos || end + 22 > z.size()) return {};
  const std::size_t start = util::le32(bytesAt(z, end + 16)), count = util::le16(bytesAt(z, end + 10));
  std::size_t off = start, last = 0;
  for (std::size_t n = 0; n < count; ++n) {
    if (off + 46 > end || z.compare(off, 4, "PK\x01\x02") != 0) return {};
    last = off;
    off += 46 + util::le16(bytesAt(z, off + 28)) + util::le16(bytesAt(z, off + 30)) + util::le16(bytesAt(z, off + 32));
  }
  if (count < 2 || off != end) return {};
  z.erase(last, end - last);
  const auto e = last;  // the end record, moved up
  putLe(z, e + 8, count - 1, 2);
  putLe(z, e + 10, count - 1, 2);
  putLe(z, e + 12, last - start, 4);
  return z;
}

// The first member's compression method set to `central` in its central
// directory entry and `local` in its local header (nothing else changed).
inline std::string setFirstMethod(std::string z, std::uint16_t central, std::uint16_t local) {
  const auto entry = z.find("PK\x01\x02");
  if (z.compare(0, 4, "PK\x03\x04") != 0 || entry == std::string::npos || entry + 46 > z.size()) return {};
  putLe(z, 8, local, 2);
  putLe(z, entry + 10, central, 2);
  return z;
}

// The first member, compressed with LZMA, declares a dictionary of `dict`
// bytes (in the properties in front of its data; 7-Zip and unzippers
// decode it with any dictionary at least as large as the encoder's).
inline std::string setFirstLzmaDictionary(std::string z, std::uint32_t dict) {
  if (z.size() < 30 || z.compare(0, 4, "PK\x03\x04") != 0 || util::le16(bytesAt(z, 8)) != 14) return {};
  const std::size_t props = 30 + util::le16(bytesAt(z, 26)) + util::le16(bytesAt(z, 28)) + 4;
  if (props + 5 > z.size() || util::le16(bytesAt(z, props - 2)) != 5) return {};
  putLe(z, props + 1, dict, 4);
  return z;
}

}  // namespace sekimori::antivirus::testing
