// common/mime/prescan.h — how much of a message GMime may parse before its
// memory use leaves the limits (used by message.cpp).
//
// GMime keeps leaf content in the spool (persistent stream), but it builds
// an object of ~1.3 KB for every part, ~0.5 KB for every header field, and
// copies into memory every header block, every multipart preface and
// epilogue, and the whole body of a multipart without a boundary. A 10 MB
// message of one million empty parts costs it 1.3 GB; a 20 MB preface,
// 40 MB. GMime has no limit for any of these, so this scan follows the MIME
// structure the way GMime's parser does (boundary stack, header blocks,
// multipart/digest defaults, encoded message/rfc822 left as leaves), counts
// parts, header fields and the bytes GMime would copy, and returns the
// offset of the first line past a limit: message.cpp lets GMime parse only
// up to there. It errs on the side of counting more: a multipart whose
// boundary it cannot be sure of makes it count every "--" line as a part.
// One pass over the spool, constant memory apart from the boundary stack.
//
//   auto p = mime::prescan(spool, {10000, 20000, 1 << 20});
//   GMimeStream* s = spool.openStream(p.cutoff);
#pragma once

#include <cstdint>

#include "common/mime/spool.h"

namespace sekimori::mime {

struct PrescanLimits {
  std::uint64_t maxParts;        // entities GMime would create
  std::uint64_t maxHeaders;      // header fields over all entities
  std::uint64_t maxHeaderBytes;  // header blocks + prefaces + epilogues + boundary-less bodies
};

struct Prescan {
  std::uint64_t cutoff = UINT64_MAX;  // parse only [0, cutoff); UINT64_MAX: all of it
  bool partsExceeded = false;
  bool headersExceeded = false;  // header fields or header bytes
  std::uint64_t parts = 0, headers = 0, headerBytes = 0;  // counted up to the cutoff
};

Prescan prescan(const Spool& spool, const PrescanLimits& limits);

}  // namespace sekimori::mime
