// common/mime/sevenzip.h — how many files a 7-Zip archive declares, read
// before libarchive is let near it (used by archive.cpp).
//
// libarchive's 7-Zip reader allocates for every declared file (~100 bytes
// each, up to 100 million files) as soon as it reads the header, before
// the first entry comes back to be counted. The header is LZMA-compressed
// and may describe files with one bit each, so a few KB of attachment can
// claim tens of millions of files: gigabytes of memory. This reads the
// header's file count itself (decoding an LZMA-compressed header with
// liblzma, into at most maxHeaderBytes) so archive.cpp can refuse first.
//
//   auto p = mime::probeSevenZip(copy, 16 << 20);
//   if (p.kind == SevenZipProbe::Kind::Files && p.files > limits.maxEntries) refuse();
#pragma once

#include <cstdint>

#include "common/mime/spool.h"

namespace sekimori::mime {

struct SevenZipProbe {
  enum class Kind {
    Files,      // `files` is what the header declares
    Encrypted,  // the header itself is encrypted (7z -mhe): nothing to count
    Unknown,    // not understood (damaged, a header coder other than LZMA, too large)
  };
  Kind kind = Kind::Unknown;
  std::uint64_t files = 0;
};

SevenZipProbe probeSevenZip(const Spool& archive, std::uint64_t maxHeaderBytes);

}  // namespace sekimori::mime
