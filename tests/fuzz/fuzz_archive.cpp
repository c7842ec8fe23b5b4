// Fuzzes the archive-expansion guard (R-SIZE-5, common/mime/archive.cpp
// over libarchive) and the 7-Zip header probe written here
// (common/mime/sevenzip.cpp): attachments are attacker-made bytes.
// Properties: both always return, within the limits they were given.
#include "common/mime/archive.h"
#include "common/mime/sevenzip.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sekimori::mime;
  const auto bytes = sekimori::fuzz::view(data, size);

  ExpansionLimits limits;
  limits.maxTotal = 4 << 20;
  limits.maxDepth = 4;
  limits.maxEntries = 1000;
  limits.copyMemoryLimit = 64 * 1024;
  BufferContent content(bytes);
  const ExpansionResult r = measureExpansion(content, limits);
  if (r.status == ExpansionResult::Status::Ok) {
    FUZZ_CHECK(r.totalUncompressed <= limits.maxTotal);
    FUZZ_CHECK(r.deepestLevel <= limits.maxDepth);
    FUZZ_CHECK(r.entries <= limits.maxEntries);
  }
  FUZZ_CHECK(r.deepestLevel <= limits.maxDepth + 1);

  Spool spool(1 << 20);
  spool.append(bytes);
  const SevenZipProbe p = probeSevenZip(spool, 1 << 20);
  if (p.kind != SevenZipProbe::Kind::Files) FUZZ_CHECK(p.files == 0);
  return 0;
}
