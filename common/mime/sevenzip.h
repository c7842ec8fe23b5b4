// common/mime/sevenzip.h — how many files a 7-Zip archive declares, read
// before libarchive is let near it (used by archive.cpp).
//
// libarchive's 7-Zip reader allocates for every declared file (~100 bytes
// each, up to 100 million files) as soon as it reads the header, before
// the first entry comes back to be counted. The header is LZMA-compressed
// (LZMA2 in archives libarchive writes) and may describe files with one
// bit each, so a few KB of attachment can claim tens of millions of files:
// gigabytes of memory. This reads the header's file count itself (decoding
// a packed header with liblzma, into at most maxHeaderBytes) so archive.cpp
// can refuse first; and the coders the archive's data needs (the antivirus
// scanner names the ones libclamav cannot decode: member_sizes.h there).
//
//   auto p = mime::probeSevenZip(copy, 16 << 20);
//   if (p.kind == SevenZipProbe::Kind::Files && p.files > limits.maxEntries) refuse();
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "common/mime/spool.h"

namespace sekimori::mime {

struct SevenZipProbe {
  enum class Kind {
    Files,      // `files` is what the header declares
    Encrypted,  // the header itself is encrypted (7z -mhe): nothing to count
    Unknown,    // not understood (damaged, a header coder other than LZMA or LZMA2, too large)
  };
  Kind kind = Kind::Unknown;
  std::uint64_t files = 0;
  // Files: the method id of every coder of the archive's folders (7-Zip's
  // DOC/Methods.txt: {0x21} LZMA2, {0x03, 0x01, 0x01} LZMA, {0x04, 0x02,
  // 0x02} BZip2...), in order, repeats included.
  std::vector<std::vector<unsigned char>> coders;
};

SevenZipProbe probeSevenZip(const Spool& archive, std::uint64_t maxHeaderBytes);
SevenZipProbe probeSevenZip(std::string_view archive, std::uint64_t maxHeaderBytes);  // bytes in memory

}  // namespace sekimori::mime
