// Fuzzes the archive-expansion guard (R-SIZE-5, common/mime/archive.cpp
// over libarchive) and its one-level unpacker (unpackEntries, what the
// antivirus workers unpack for libclamav), the 7-Zip header probe written here
// (common/mime/sevenzip.cpp), the antivirus scanner's ZIP/CAB directory
// reader (milters/antivirus/member_sizes.cpp: sizes, unlisted members,
// methods; 7-Zip coders), its OpenPGP reader (openpgp.cpp, which inflates
// compressed data and unpacks the literal data inside) and its zisofs reader
// (zisofs.cpp), and the .lzma, .xz and .lz decoders (common/mime/lzma.cpp,
// which both call): attachments are attacker-made bytes. Properties: all
// return, within the limits they were given (out-of-bounds reads are the
// sanitizers' to catch).
#include "common/mime/archive.h"
#include "common/mime/sevenzip.h"
#include "milters/antivirus/member_sizes.h"
#include "milters/antivirus/openpgp.h"
#include "milters/antivirus/zisofs.h"
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

  UnpackLimits unpack;
  unpack.maxEntrySize = 1 << 20;
  unpack.maxTotal = 2 << 20;
  unpack.maxEntries = 100;
  // An unpacker (libarchive's formats; the signed files inside an OpenPGP
  // message; a zisofs file) hands over entries within the limits, and
  // counts what it did.
  const auto checkUnpacker = [&](const auto& unpacker) {
    std::uint64_t handed = 0, handedBytes = 0;
    const UnpackResult u = unpacker(bytes, unpack, [&](std::string_view, std::string_view entry) {
      FUZZ_CHECK(entry.size() <= unpack.maxEntrySize);
      ++handed;
      handedBytes += entry.size();
      return true;
    });
    FUZZ_CHECK(u.entries == handed && u.totalSize == handedBytes);
    FUZZ_CHECK(handed <= unpack.maxEntries && handedBytes <= unpack.maxTotal);
    if (u.status == UnpackResult::Status::NotArchive) FUZZ_CHECK(handed == 0);
  };
  // As the scanner worker does first: a ZIP member's LZMA dictionary is
  // allocated whole by libarchive (archive.h).
  if (sekimori::antivirus::zipLargestLzmaDictionary(bytes) <= (64u << 20)) checkUnpacker(unpackEntries);
  checkUnpacker(sekimori::antivirus::openPgpUnpack);
  checkUnpacker(sekimori::antivirus::zisofsUnpack);

  Spool spool(1 << 20);
  spool.append(bytes);
  const SevenZipProbe p = probeSevenZip(spool, 1 << 20);
  if (p.kind != SevenZipProbe::Kind::Files) FUZZ_CHECK(p.files == 0);

  (void)sekimori::antivirus::largestDeclaredMember(sekimori::antivirus::ArchiveKind::Zip, bytes);
  (void)sekimori::antivirus::largestDeclaredMember(sekimori::antivirus::ArchiveKind::Cab, bytes);
  // A dictionary size is 4 bytes of a member's LZMA properties.
  FUZZ_CHECK(sekimori::antivirus::zipLargestLzmaDictionary(bytes) <= 0xFFFFFFFFu);
  // Each hidden member is a local header of 30 bytes at least.
  FUZZ_CHECK(sekimori::antivirus::zipMembersOutsideDirectory(bytes) <= bytes.size() / 30);
  // A method is read from a header of 30 bytes at least (7-Zip: 32).
  if (const char* m = sekimori::antivirus::zipMethodNotUnpacked(bytes)) {
    FUZZ_CHECK(bytes.size() >= 30 && std::string_view(m).starts_with("ZIP members compressed with "));
  }
  if (const char* m = sekimori::antivirus::sevenZipMethodNotUnpacked(bytes)) {
    FUZZ_CHECK(bytes.size() >= 32 && std::string_view(m).starts_with("7-Zip data "));
  }
  // Never both: an encrypted message opens with a session key, a compressed one with its packet.
  FUZZ_CHECK(!(sekimori::antivirus::openPgpEncrypted(bytes) && sekimori::antivirus::openPgpCompressed(bytes)));
  // Signed data opens with a one-pass signature or literal data, compressed data with its own packet.
  FUZZ_CHECK(!(sekimori::antivirus::openPgpSigned(bytes) && sekimori::antivirus::openPgpCompressed(bytes)));
  return 0;
}
