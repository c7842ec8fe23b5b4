// tests/unit/common/mime/archive_test.cpp — common/mime/archive.cpp: the
// archive expansion guard (R-SIZE-5) on formats, nesting and bombs, and
// unpackEntries (one level, for the antivirus workers).
#include "common/mime/archive.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "common/mime/sevenzip.h"
#include "tests/support/sanitized.h"
#include "tests/unit/common/mime/archive_samples.h"

namespace sekimori::mime {
namespace {

using Status = ExpansionResult::Status;

using support::kSanitized;

using samples::ChunkedContent;

ExpansionResult measure(std::string_view bytes, const ExpansionLimits& limits = {}) {
  BufferContent c(bytes);
  return measureExpansion(c, limits);
}

std::string text(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<char>('a' + i % 26);
  return s;
}

TEST(Archive, PlainDataIsNotAnArchive) {
  for (const std::string& data : {std::string(), std::string("hello\r\n"), text(100000), std::string(5000, '\0'),
                                  std::string("PK"), std::string("MZ not really an exe")}) {
    const ExpansionResult r = measure(data);
    EXPECT_EQ(r.status, Status::NotArchive) << data.substr(0, 20);
    EXPECT_EQ(r.deepestLevel, 0);
  }
}

// Every format in the list, each holding the same three files: the exact
// leaf total comes back.
TEST(Archive, FormatsMeasureExactly) {
  using samples::Entry;
  const std::vector<Entry> files = {{"a.txt", text(10)}, {"dir/b.txt", text(1000)}, {"c.bin", text(123457)}};
  const std::uint64_t total = 10 + 1000 + 123457;
  const struct {
    const char* label;
    std::string archive;
    std::uint64_t entries;
    const char* formatHas;
  } cases[] = {
      {"zip", samples::zip(files), 3, "ZIP"},
      {"tar", samples::write(archive_write_set_format_pax_restricted, {}, files), 3, "tar"},
      {"tar.gz", samples::write(archive_write_set_format_gnutar, {archive_write_add_filter_gzip}, files), 3, "tar"},
      {"tar.bz2", samples::write(archive_write_set_format_ustar, {archive_write_add_filter_bzip2}, files), 3, "tar"},
      {"tar.xz", samples::write(archive_write_set_format_pax_restricted, {archive_write_add_filter_xz}, files), 3,
       "tar"},
      {"cpio", samples::write(archive_write_set_format_cpio_newc, {}, files), 3, "cpio"},
      {"7z", samples::write(archive_write_set_format_7zip, {}, files), 3, "7-Zip"},
      {"iso9660", samples::write(archive_write_set_format_iso9660, {}, files), 0, "ISO9660"},
      {"lha", samples::lha(files), 3, "lha"},
      {"cab", samples::cab(files), 3, "CAB"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    ASSERT_FALSE(c.archive.empty());
    for (const std::size_t chunk : {std::size_t{1} << 20, std::size_t{7}}) {
      ChunkedContent content(c.archive, chunk);
      const ExpansionResult r = measureExpansion(content, {});
      EXPECT_EQ(r.status, Status::Ok) << toString(r.status);
      EXPECT_EQ(r.totalUncompressed, total);
      EXPECT_EQ(r.deepestLevel, 1);
      if (c.entries) {
        EXPECT_EQ(r.entries, c.entries);  // iso9660 adds directories
      }
      EXPECT_NE(r.format.find(c.formatHas), std::string::npos) << r.format;
    }
  }
}

TEST(Archive, BareCompressedFileIsOneLevel) {
  const std::string body = text(50000);
  const struct {
    const char* label;
    samples::AddFilter filter;
    const char* format;
  } cases[] = {
      {"gz", archive_write_add_filter_gzip, "gzip"},
      {"bz2", archive_write_add_filter_bzip2, "bzip2"},
      {"xz", archive_write_add_filter_xz, "xz"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const std::string archive = samples::write(archive_write_set_format_raw, {c.filter}, {{"data", body}});
    ASSERT_FALSE(archive.empty());
    const ExpansionResult r = measure(archive);
    EXPECT_EQ(r.status, Status::Ok) << toString(r.status);
    EXPECT_EQ(r.totalUncompressed, body.size());
    EXPECT_EQ(r.deepestLevel, 1);  // the text inside is not a further level
    EXPECT_EQ(r.format, c.format);
  }
}

// The decompressed size is what counts, whatever the format inside makes
// of it: zeros look like an empty tar to libarchive, and a tar's
// end-of-archive blocks may be followed by anything.
TEST(Archive, DecompressedBytesCountEvenWhereTheFormatStops) {
  {
    const std::string gz =
        samples::write(archive_write_set_format_raw, {archive_write_add_filter_gzip}, {{"z", "", 200ULL << 20}});
    const ExpansionResult r = measure(gz);
    EXPECT_EQ(r.status, Status::TooLarge) << toString(r.status);
    EXPECT_EQ(r.format, "gzip");
  }
  {
    const std::string gz =
        samples::write(archive_write_set_format_raw, {archive_write_add_filter_gzip}, {{"z", "", 1 << 20}});
    const ExpansionResult r = measure(gz);
    EXPECT_EQ(r.status, Status::Ok) << toString(r.status);
    EXPECT_EQ(r.totalUncompressed, 1u << 20);
  }
  {
    const std::string tar = samples::write(archive_write_set_format_pax_restricted, {}, {{"a.txt", text(1000)}});
    const std::string tgz = samples::write(archive_write_set_format_raw, {archive_write_add_filter_gzip},
                                           {{"t", tar, 150ULL << 20}});  // tar, then 150 MiB of zeros
    const ExpansionResult r = measure(tgz);
    EXPECT_EQ(r.status, Status::TooLarge) << toString(r.status);
    EXPECT_NE(r.format.find("tar"), std::string::npos) << r.format;
  }
}

TEST(Archive, IsoImagesAreReadOnlyUncompressedAtTheTop) {
  const std::string iso = samples::write(archive_write_set_format_iso9660, {}, {{"a.txt", text(5000)}});
  const std::string isoGz = samples::write(archive_write_set_format_raw, {archive_write_add_filter_gzip}, {{"i", iso}});
  const ExpansionResult gz = measure(isoGz);
  EXPECT_EQ(gz.status, Status::Ok) << toString(gz.status);
  EXPECT_EQ(gz.format, "gzip");
  EXPECT_EQ(gz.totalUncompressed, iso.size());  // the image, as data
  const ExpansionResult nested = measure(samples::zip({{"x.iso", iso}}));
  EXPECT_EQ(nested.status, Status::Ok) << toString(nested.status);
  EXPECT_EQ(nested.totalUncompressed, iso.size());
}

TEST(Archive, NestedArchivesCountLeafBytes) {
  const std::string leaf = text(4321);
  {
    const ExpansionResult r = measure(samples::nestedZip(3, leaf));
    EXPECT_EQ(r.status, Status::Ok) << toString(r.status);
    EXPECT_EQ(r.deepestLevel, 3);
    EXPECT_EQ(r.entries, 3u);
    // Leaf bytes, plus the few bytes of each inner zip that follow its last
    // entry (central directory), which are counted as data on purpose.
    EXPECT_GE(r.totalUncompressed, leaf.size());
    EXPECT_LT(r.totalUncompressed, leaf.size() + 512);
  }
  {
    // A .tar.gz and a .gz inside a zip.
    const std::string tgz =
        samples::write(archive_write_set_format_pax_restricted, {archive_write_add_filter_gzip}, {{"t.txt", leaf}});
    const std::string gz = samples::write(archive_write_set_format_raw, {archive_write_add_filter_gzip}, {{"d", leaf}});
    const ExpansionResult r = measure(samples::zip({{"a.tar.gz", tgz}, {"b.gz", gz}, {"c.txt", leaf}}));
    EXPECT_EQ(r.status, Status::Ok) << toString(r.status);
    EXPECT_EQ(r.deepestLevel, 2);
    EXPECT_GE(r.totalUncompressed, 3 * leaf.size());
    EXPECT_LT(r.totalUncompressed, 3 * leaf.size() + 20000);  // tar's end blocks and padding
  }
}

std::size_t heapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

TEST(Archive, ZipBombStopsEarlyWithSmallMemory) {
  // 200 MiB of zeros deflate to about 200 KB.
  const std::string bomb = samples::zip({{"zeros.bin", "", 200ULL << 20}});
  ASSERT_FALSE(bomb.empty());
  ASSERT_LT(bomb.size(), 1u << 20);
  for (const bool nested : {false, true}) {
    SCOPED_TRACE(nested ? "inside a zip" : "top level");
    const std::string input = nested ? samples::zip({{"inner.zip", bomb}}) : bomb;
    const std::size_t before = heapInUse();
    std::size_t peak = 0;
    const auto start = std::chrono::steady_clock::now();
    ExpansionResult r;
    {
      BufferContent c(input);
      r = measureExpansion(c, {});
      peak = heapInUse();  // after: libarchive's buffers are gone; the probe below checks during
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(r.status, Status::TooLarge);
    EXPECT_GT(r.totalUncompressed, 100ULL << 20);
    EXPECT_LE(r.totalUncompressed, (100ULL << 20) + (1 << 20));
    EXPECT_LT(elapsed, std::chrono::seconds(kSanitized ? 60 : 10));
    if (!kSanitized) {
      EXPECT_LT(peak - std::min(peak, before), std::size_t{1} << 20);
    }
  }
}

// The heap while a bomb is being measured: a Content that samples it on
// every read the reader makes.
TEST(Archive, ZipBombHeapStaysSmallWhileMeasuring) {
  if (kSanitized) GTEST_SKIP() << "mallinfo2 says nothing under ASan";
  const std::string bomb = samples::zip({{"inner.zip", samples::zip({{"zeros.bin", "", 150ULL << 20}})}});
  class Probe final : public Content {
   public:
    explicit Probe(std::string_view b) : inner_(b) {}
    std::size_t read(std::span<std::byte> buf) override {
      peak = std::max(peak, heapInUse());
      return inner_.read(buf);
    }
    std::size_t peak = 0;

   private:
    BufferContent inner_;
  } probe(bomb);
  const std::size_t before = heapInUse();
  const ExpansionResult r = measureExpansion(probe, {});
  EXPECT_EQ(r.status, Status::TooLarge);
  // The whole (small) zip is copied for its central directory; what
  // libarchive holds besides is a few hundred KB per level.
  EXPECT_LT(probe.peak - std::min(probe.peak, before), std::size_t{4} << 20);
}

TEST(Archive, FortyTwoStyleNestingIsTooDeep) {
  const ExpansionResult r = measure(samples::nestedZip(10, text(100)));
  EXPECT_EQ(r.status, Status::TooDeep);
  EXPECT_EQ(r.deepestLevel, 9);
  // Exactly at the limit is fine.
  const ExpansionResult ok = measure(samples::nestedZip(8, text(100)));
  EXPECT_EQ(ok.status, Status::Ok) << toString(ok.status);
  EXPECT_EQ(ok.deepestLevel, 8);
}

TEST(Archive, TooManyEntries) {
  std::vector<samples::Entry> many;
  for (int i = 0; i < 50; ++i) many.push_back({"f" + std::to_string(i), "x"});
  ExpansionLimits limits;
  limits.maxEntries = 10;
  {
    // ZIP: refused from the declared count, before libarchive reads its
    // central directory.
    const ExpansionResult r = measure(samples::zip(many), limits);
    EXPECT_EQ(r.status, Status::TooManyEntries);
    EXPECT_EQ(r.entries, 50u);
  }
  {
    const ExpansionResult r = measure(samples::write(archive_write_set_format_pax_restricted, {}, many), limits);
    EXPECT_EQ(r.status, Status::TooManyEntries);
    EXPECT_EQ(r.entries, 11u);
  }
  {
    // Counted over all levels: 6 + 6 entries in a zip of two tars.
    std::vector<samples::Entry> six(many.begin(), many.begin() + 6);
    const std::string tar = samples::write(archive_write_set_format_pax_restricted, {}, six);
    const ExpansionResult r = measure(samples::zip({{"a.tar", tar}, {"b.tar", tar}}), limits);
    EXPECT_EQ(r.status, Status::TooManyEntries);
  }
}

// libarchive allocates for every file a 7-Zip header declares before
// returning the first; the declared count is read first (sevenzip.h).
TEST(Archive, SevenZipDeclaringMillionsOfFilesIsRefusedBeforeLibarchive) {
  for (const bool packed : {false, true}) {
    SCOPED_TRACE(packed ? "packed header" : "plain header");
    const std::string bomb = samples::sevenZipManyFiles(20000000, packed);
    if (packed) {
      EXPECT_LT(bomb.size(), 64u * 1024);
    }
    const std::size_t before = heapInUse();
    const ExpansionResult r = measure(bomb);
    EXPECT_EQ(r.status, Status::TooManyEntries) << toString(r.status);
    EXPECT_EQ(r.entries, 20000000u);
    EXPECT_EQ(r.format, "7-Zip");
    if (!kSanitized) {
      EXPECT_LT(heapInUse() - std::min(heapInUse(), before), std::size_t{1} << 20);
    }
  }
  // Under the limit the same construction goes on to libarchive.
  const ExpansionResult few = measure(samples::sevenZipManyFiles(5, true));
  EXPECT_EQ(few.status, Status::Ok) << toString(few.status);
  EXPECT_EQ(few.entries, 5u);
}

// The coders the data needs, as libarchive's 7-Zip writer sets them (the
// antivirus scanner names those libclamav cannot decode), also behind a
// header packed with LZMA2, as that writer packs it; bytes in memory read
// as a spool is.
TEST(Archive, SevenZipProbeListsTheCodersOfTheData) {
  using Id = std::vector<unsigned char>;
  const std::vector<samples::Entry> files = {{"a.txt", text(5000)}, {"b.txt", text(7000)}};
  const std::vector<std::pair<const char*, Id>> cases = {{"7zip:compression=bzip2", {0x04, 0x02, 0x02}},
                                                         {"7zip:compression=deflate", {0x04, 0x01, 0x08}},
                                                         {"7zip:compression=lzma2", {0x21}},
                                                         {"7zip:compression=store", {0x00}}};
  for (const auto& [option, id] : cases) {
    SCOPED_TRACE(option);
    const std::string a = samples::write(archive_write_set_format_7zip, {}, files, option);
    ASSERT_FALSE(a.empty());
    const SevenZipProbe inMemory = probeSevenZip(std::string_view(a), 1 << 20);
    EXPECT_EQ(inMemory.kind, SevenZipProbe::Kind::Files);
    EXPECT_EQ(inMemory.files, 2u);
    ASSERT_FALSE(inMemory.coders.empty());
    for (const Id& c : inMemory.coders) EXPECT_EQ(c, id);
    Spool spool(1 << 20);
    spool.append(a);
    const SevenZipProbe spooled = probeSevenZip(spool, 1 << 20);
    EXPECT_EQ(spooled.files, inMemory.files);
    EXPECT_EQ(spooled.coders, inMemory.coders);
    // And measured (an LZMA2-packed header was "unreadable" before).
    EXPECT_EQ(measure(a).status, Status::Ok) << toString(measure(a).status);
  }
  // Not a 7-Zip archive, or cut short: no coders.
  EXPECT_TRUE(probeSevenZip(std::string_view("PK\x03\x04 not 7-Zip"), 1 << 20).coders.empty());
  const std::string a = samples::write(archive_write_set_format_7zip, {}, files, "7zip:compression=bzip2");
  for (std::size_t n = 0; n < a.size(); n += 7) {
    EXPECT_NE(probeSevenZip(std::string_view(a).substr(0, n), 1 << 20).kind, SevenZipProbe::Kind::Files) << n;
  }
}

TEST(Archive, EncryptedEntriesAreReportedAndTheirDeclaredSizeCounted) {
  const std::string enc = samples::write(archive_write_set_format_zip, {},
                                         {{"secret.txt", text(5000)}, {"big.bin", "", 300ULL << 20}},
                                         "zip:encryption=zipcrypt", "password");
  if (enc.empty()) GTEST_SKIP() << "libarchive without zip encryption";
  {
    ExpansionLimits limits;
    limits.maxTotal = 1ULL << 40;
    const ExpansionResult r = measure(enc, limits);
    EXPECT_EQ(r.status, Status::Encrypted) << toString(r.status);
    EXPECT_EQ(r.totalUncompressed, 5000 + (300ULL << 20));
  }
  // A declared size over the limit is TooLarge, encrypted or not.
  EXPECT_EQ(measure(enc).status, Status::TooLarge);
  {
    // Mixed: the plain entry is measured, the encrypted one declared.
    const std::string small = samples::write(archive_write_set_format_zip, {}, {{"s.txt", text(10)}},
                                             "zip:encryption=zipcrypt", "pw");
    const ExpansionResult r = measure(samples::zip({{"plain.txt", text(20)}, {"inner.zip", small}}));
    EXPECT_EQ(r.status, Status::Encrypted) << toString(r.status);
    EXPECT_GE(r.totalUncompressed, 30u);
  }
}

TEST(Archive, DamagedArchivesAreUnreadableNotErrors) {
  const std::string zip = samples::zip({{"a.txt", text(100000)}, {"b.txt", text(100000)}});
  const std::string tgz = samples::write(archive_write_set_format_pax_restricted, {archive_write_add_filter_gzip},
                                         {{"a.txt", text(300000)}});
  const std::string sevenZ = samples::write(archive_write_set_format_7zip, {}, {{"a.txt", text(100000)}});
  const struct {
    const char* label;
    std::string bytes;
  } cases[] = {
      {"zip cut in half", zip.substr(0, zip.size() / 2)},
      {"tar.gz cut in half", tgz.substr(0, tgz.size() / 2)},
      {"7z cut in half", sevenZ.substr(0, sevenZ.size() / 2)},
      {"zip with garbage in the middle", zip.substr(0, 200) + std::string(500, '\xAB') + zip.substr(700)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const ExpansionResult r = measure(c.bytes);
    EXPECT_TRUE(r.status == Status::Unreadable || r.status == Status::NotArchive) << toString(r.status);
  }
  // Inside a good archive the damaged one is counted as data.
  const ExpansionResult r = measure(samples::zip({{"bad.tar.gz", tgz.substr(0, tgz.size() / 2)}}));
  EXPECT_EQ(r.status, Status::Unreadable) << toString(r.status);
  EXPECT_GE(r.totalUncompressed, tgz.size() / 2);
}

// A central directory its end record misplaces (the size 1 short):
// libarchive's seeking reader gives up, 7-Zip extracts the members by their
// local headers, and so are they measured and unpacked (before, a bomb so
// damaged was Unreadable, delivered unmeasured).
TEST(Archive, ZipWithAMisplacedDirectoryIsReadByItsLocalHeaders) {
  ExpansionLimits limits;
  limits.maxTotal = 10 << 20;
  const std::string bomb = samples::misplaceDirectory(samples::zip({{"zeros.bin", "", 12 << 20}}));
  EXPECT_EQ(measure(bomb, limits).status, Status::TooLarge);
  const std::string zip = samples::misplaceDirectory(samples::zip({{"a.txt", text(1000)}, {"b.txt", text(5000)}}));
  const ExpansionResult r = measure(zip, limits);
  EXPECT_EQ(r.status, Status::Ok) << toString(r.status);
  EXPECT_EQ(r.totalUncompressed, 6000u);
  EXPECT_EQ(r.entries, 2u);
  std::vector<std::string> names;
  const UnpackResult u = unpackEntries(zip, {}, [&](std::string_view name, std::string_view data) {
    names.emplace_back(name);
    EXPECT_EQ(data, name == "a.txt" ? text(1000) : text(5000));
    return true;
  });
  EXPECT_EQ(u.status, UnpackResult::Status::Ok) << toString(u.status);
  EXPECT_EQ(names, (std::vector<std::string>{"a.txt", "b.txt"}));
}

// Overlapping entries (the "better zip bomb"): 200 entries sharing one
// 60000-byte kernel. Front to back it is one entry of ~67 KB; by the
// central directory, as unzip extracts it, ~12.6 MB.
TEST(Archive, OverlappingZipEntriesAreCountedByTheCentralDirectory) {
  const std::string bomb = samples::overlappingZip(200, 60000);
  ExpansionLimits limits;
  limits.maxTotal = 10ULL << 20;
  const ExpansionResult r = measure(bomb, limits);
  EXPECT_EQ(r.status, Status::TooLarge) << toString(r.status) << " " << r.totalUncompressed;
  // Nested, it is read front to back (nested levels always stream): only
  // the first entry is seen. A documented limit.
  const ExpansionResult nested = measure(samples::zip({{"bomb.zip", bomb}}), limits);
  EXPECT_LT(nested.totalUncompressed, 1u << 20);
}

TEST(Archive, SelfExtractingZipIsFound) {
  const std::string zip = samples::zip({{"a.txt", text(777)}});
  const std::string sfx = "MZ" + std::string(4094, '\x90') + zip;
  const ExpansionResult r = measure(sfx);
  EXPECT_EQ(r.status, Status::Ok) << toString(r.status);
  EXPECT_EQ(r.totalUncompressed, 777u);
}

TEST(Archive, LargeSeekableCopyGoesToDisk) {
  // Over copyMemoryLimit the top-level copy is a temp file; same answer.
  const std::string zip = samples::zip({{"a.bin", text(3 << 20)}});
  ExpansionLimits limits;
  limits.copyMemoryLimit = 1024;
  const ExpansionResult r = measure(zip, limits);
  EXPECT_EQ(r.status, Status::Ok) << toString(r.status);
  EXPECT_EQ(r.totalUncompressed, 3u << 20);
  limits.tmpDir = "/nonexistent-sekimori-dir";
  EXPECT_EQ(measure(zip, limits).status, Status::Unreadable);
}

// --- unpackEntries -------------------------------------------------------

struct Unpacked {
  UnpackResult result;
  std::vector<std::pair<std::string, std::string>> entries;  // name, data
};

Unpacked unpack(std::string_view bytes, const UnpackLimits& limits = {}, std::size_t stopAfter = SIZE_MAX) {
  Unpacked u;
  u.result = unpackEntries(bytes, limits, [&](std::string_view name, std::string_view data) {
    u.entries.emplace_back(name, data);
    return u.entries.size() < stopAfter;
  });
  return u;
}

using UStatus = UnpackResult::Status;

TEST(Unpack, EachRegularFileOfAnArchiveIsHandedOverWhole) {
  using samples::Entry;
  const std::vector<Entry> files = {{"a.txt", text(10)}, {"dir/b.txt", text(1000)}, {"c.bin", text(123457)}};
  const struct {
    const char* label;
    std::string archive;
  } cases[] = {
      {"zip", samples::zip(files)},
      {"7z", samples::write(archive_write_set_format_7zip, {}, files)},
      {"7z, bzip2", samples::write(archive_write_set_format_7zip, {}, files, "7zip:compression=bzip2")},
      {"7z, deflate", samples::write(archive_write_set_format_7zip, {}, files, "7zip:compression=deflate")},
      {"7z, ppmd", samples::write(archive_write_set_format_7zip, {}, files, "7zip:compression=ppmd")},
      {"tar", samples::write(archive_write_set_format_pax_restricted, {}, files)},
      {"cpio", samples::write(archive_write_set_format_cpio_newc, {}, files)},
      {"lha", samples::lha(files)},
      {"cab", samples::cab(files)},
      {"rar 4, stored", samples::rar4Stored(files)},
      {"self-extracting zip", "MZ" + std::string(4094, '\x90') + samples::zip(files)},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    ASSERT_FALSE(c.archive.empty());
    const Unpacked u = unpack(c.archive);
    EXPECT_EQ(u.result.status, UStatus::Ok) << toString(u.result.status);
    EXPECT_FALSE(u.result.encrypted);
    ASSERT_EQ(u.entries.size(), files.size());
    for (std::size_t i = 0; i < files.size(); ++i) {
      EXPECT_EQ(u.entries[i].first, files[i].name);
      EXPECT_TRUE(u.entries[i].second == files[i].data) << files[i].name;
    }
    EXPECT_EQ(u.result.entries, 3u);
    EXPECT_EQ(u.result.totalSize, 10u + 1000 + 123457);
  }
}

// One entry, the decompressed bytes, whatever they are: a .tar.gz gives
// the tar (the scanner unpacks that), a .zst of text the text.
TEST(Unpack, ACompressedFileIsOneEntryOfItsDecompressedBytes) {
  const std::string body = text(50000);
  for (const samples::AddFilter filter :
       {archive_write_add_filter_gzip, archive_write_add_filter_bzip2, archive_write_add_filter_xz,
        archive_write_add_filter_lzma, archive_write_add_filter_lzip, archive_write_add_filter_zstd,
        archive_write_add_filter_lz4, archive_write_add_filter_compress}) {
    const std::string bytes = samples::write(archive_write_set_format_raw, {filter}, {{"data", body}});
    ASSERT_FALSE(bytes.empty());
    const Unpacked u = unpack(bytes);
    SCOPED_TRACE(bytes.substr(0, 4));
    EXPECT_EQ(u.result.status, UStatus::Ok) << toString(u.result.status);
    ASSERT_EQ(u.entries.size(), 1u);
    EXPECT_TRUE(u.entries[0].second == body);
  }
  const std::string tar = samples::write(archive_write_set_format_pax_restricted, {}, {{"a.txt", body}});
  const Unpacked tgz = unpack(samples::write(archive_write_set_format_pax_restricted,
                                             {archive_write_add_filter_gzip}, {{"a.txt", body}}));
  ASSERT_EQ(tgz.entries.size(), 1u);
  EXPECT_TRUE(tgz.entries[0].second == tar);
}

TEST(Unpack, PlainOrDamagedDataHandsOverNothingItCannotRead) {
  for (const std::string& data : {std::string(), std::string("hello\r\n"), text(100000), std::string("PK"),
                                  std::string("Rar!\x1a\x07\x00", 7)}) {
    const Unpacked u = unpack(data);
    EXPECT_TRUE(u.result.status == UStatus::NotArchive || u.result.status == UStatus::Unreadable)
        << toString(u.result.status);
    EXPECT_TRUE(u.entries.empty());
  }
  // What was read before the damage is handed over; the result says the
  // rest is unread. A .tar.gz cut in half: the first part of the tar.
  const std::string tgz = samples::write(archive_write_set_format_pax_restricted, {archive_write_add_filter_gzip},
                                         {{"a.txt", text(300000)}});
  const Unpacked cut = unpack(tgz.substr(0, tgz.size() / 2));
  EXPECT_EQ(cut.result.status, UStatus::Unreadable) << toString(cut.result.status);
  ASSERT_EQ(cut.entries.size(), 1u);
  EXPECT_GT(cut.entries[0].second.size(), 1000u);
  EXPECT_NE(cut.entries[0].second.find(text(1000)), std::string::npos);
  const std::string rar = samples::rar4Stored({{"a.txt", text(100)}, {"b.txt", text(5000)}});
  const Unpacked half = unpack(rar.substr(0, rar.size() - 2000));
  EXPECT_EQ(half.result.status, UStatus::Unreadable) << toString(half.result.status);
  EXPECT_EQ(half.entries.size(), 1u);
}

TEST(Unpack, LimitsStopTheReadingBeforeTheyAreExceeded) {
  const std::string big = samples::zip({{"a.txt", "a"}, {"big", "", 64ULL << 20}});
  ASSERT_FALSE(big.empty());
  UnpackLimits limits;
  limits.maxEntrySize = 1 << 20;
  const auto t0 = std::chrono::steady_clock::now();
  const Unpacked u = unpack(big, limits);
  EXPECT_EQ(u.result.status, UStatus::EntryTooLarge) << toString(u.result.status);
  EXPECT_EQ(u.entries.size(), 1u);  // "a" only: the big one is never handed over
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(kSanitized ? 20 : 2));

  std::vector<samples::Entry> five;
  for (int i = 0; i < 5; ++i) five.push_back({"f" + std::to_string(i), text(1000)});
  limits = {};
  limits.maxTotal = 3500;
  EXPECT_EQ(unpack(samples::rar4Stored(five), limits).result.status, UStatus::TooLarge);
  limits = {};
  limits.maxEntries = 3;
  const Unpacked many = unpack(samples::rar4Stored(five), limits);
  EXPECT_EQ(many.result.status, UStatus::TooManyEntries);
  EXPECT_EQ(many.entries.size(), 3u);
  // Declared: refused before libarchive reads the directory.
  EXPECT_EQ(unpack(samples::zip(five), limits).result.status, UStatus::TooManyEntries);
  EXPECT_TRUE(unpack(samples::zip(five), limits).entries.empty());
  EXPECT_EQ(unpack(samples::sevenZipManyFiles(50, true), limits).result.status, UStatus::TooManyEntries);
  // A header too large to be read for the count (20 million files) is not
  // handed to libarchive either.
  const Unpacked bomb = unpack(samples::sevenZipManyFiles(20000000, true), limits);
  EXPECT_TRUE(bomb.result.status == UStatus::TooManyEntries || bomb.result.status == UStatus::Unreadable);
  EXPECT_TRUE(bomb.entries.empty());
  // The handler can stop it.
  const Unpacked stopped = unpack(samples::rar4Stored(five), {}, 2);
  EXPECT_EQ(stopped.result.status, UStatus::Stopped);
  EXPECT_EQ(stopped.entries.size(), 2u);
}

TEST(Unpack, EncryptedEntriesAreSkippedAndSaid) {
  const std::string zip = samples::write(archive_write_set_format_zip, {}, {{"secret.txt", text(5000)}},
                                         "zip:encryption=zipcrypt", "password");
  if (zip.empty()) GTEST_SKIP() << "libarchive without zip encryption";
  const Unpacked z = unpack(zip);
  EXPECT_EQ(z.result.status, UStatus::Ok) << toString(z.result.status);
  EXPECT_TRUE(z.result.encrypted);
  EXPECT_TRUE(z.entries.empty());
  const Unpacked r = unpack(samples::rar4Stored({{"secret.txt", text(100)}}, true));
  EXPECT_TRUE(r.result.encrypted) << toString(r.result.status);
  EXPECT_TRUE(r.entries.empty());
}

TEST(Archive, StatusNames) {
  EXPECT_STREQ(toString(Status::TooLarge), "too-large");
  EXPECT_STREQ(toString(Status::NotArchive), "not-archive");
  EXPECT_STREQ(toString(UStatus::EntryTooLarge), "entry-too-large");
}

}  // namespace
}  // namespace sekimori::mime
