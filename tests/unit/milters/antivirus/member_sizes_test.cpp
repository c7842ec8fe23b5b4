// tests/unit/milters/antivirus/member_sizes_test.cpp — the member sizes ZIP
// and CAB archives declare, and the ZIP methods and 7-Zip coders libclamav
// skips, on archives
// made with the real tools (zip, 7z, gcab), and on damaged ones: never a
// read outside the bytes given.
#include "milters/antivirus/member_sizes.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "tests/unit/milters/antivirus/zip_edit.h"

namespace sekimori::antivirus {
namespace {

namespace fs = std::filesystem;

class MemberSizes : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/sekimori-member-sizes.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    write("small.txt", std::string(1000, 'a'));
    write("large.txt", std::string(300000, 'b'));  // compresses to almost nothing
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void write(const std::string& name, const std::string& data) { std::ofstream(dir_ / name, std::ios::binary) << data; }
  std::string read(const std::string& name) {
    std::ifstream f(dir_ / name, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
  }
  // Runs `cmd` in the test's directory, quietly; its exit status.
  int sh(const std::string& cmd) {
    return std::system(("cd " + dir_.string() + " && (" + cmd + ") >/dev/null 2>&1").c_str());
  }
  fs::path dir_;
};

TEST_F(MemberSizes, ZipCentralDirectoryGivesTheLargestMember) {
  ASSERT_EQ(sh("zip -q a.zip small.txt large.txt && zip -q b.zip large.txt small.txt"), 0);
  ASSERT_LT(read("a.zip").size(), 3000u);
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Zip, read("a.zip")), 300000u);
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Zip, read("b.zip")), 300000u);
}

TEST_F(MemberSizes, Zip64SizesAreReadFromTheExtraField) {
  ASSERT_EQ(sh("zip -q -fz z64.zip small.txt large.txt"), 0);
  const std::string z = read("z64.zip");
  ASSERT_NE(z.find("PK\x06\x06"), std::string::npos) << "zip -fz wrote no zip64 end record";
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Zip, z), 300000u);
}

TEST_F(MemberSizes, DataBeforeTheZipDoesNotMatter) {
  ASSERT_EQ(sh("zip -q a.zip small.txt large.txt"), 0);
  // As in a self-extractor: an MZ stub in front, offsets not adjusted.
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Zip, "MZ" + std::string(4094, '\0') + read("a.zip")), 300000u);
}

TEST_F(MemberSizes, ZipWithoutCentralDirectoryIsReadByItsLocalHeaders) {
  ASSERT_EQ(sh("zip -q a.zip small.txt large.txt"), 0);
  const std::string z = read("a.zip");
  const std::size_t cd = z.find("PK\x01\x02");
  ASSERT_NE(cd, std::string::npos);
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Zip, z.substr(0, cd)), 300000u);
  // Streamed into a pipe (sizes after the data): the first member's local
  // header declares none, and the walk stops there; the central directory
  // still has them.
  ASSERT_EQ(sh("cat large.txt | zip -q - - | cat > s.zip"), 0);
  const std::string s = read("s.zip");
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Zip, s), 300000u);
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Zip, s.substr(0, s.find("PK\x01\x02"))), 0u);
}

TEST_F(MemberSizes, CabFileRecordsGiveTheLargestMember) {
  ASSERT_EQ(sh("gcab -c -z a.cab small.txt large.txt"), 0) << "gcab missing? (scripts/install-deps)";
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Cab, read("a.cab")), 300000u);
}

TEST_F(MemberSizes, DamagedOrForeignBytesGiveWhatCanBeRead) {
  ASSERT_EQ(sh("zip -q a.zip small.txt large.txt && gcab -c -z a.cab small.txt large.txt"), 0);
  const std::string zip = read("a.zip"), cab = read("a.cab");
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Zip, ""), 0u);
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Cab, ""), 0u);
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Zip, "not an archive at all"), 0u);
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Cab, zip), 0u);
  // Every cut of each archive: no read past the end (ASan builds check), and
  // never more than the whole archive declares.
  for (std::size_t n = 0; n <= zip.size(); ++n) {
    EXPECT_LE(largestDeclaredMember(ArchiveKind::Zip, std::string_view(zip).substr(0, n)), 300000u) << n;
  }
  for (std::size_t n = 0; n <= cab.size(); ++n) {
    EXPECT_LE(largestDeclaredMember(ArchiveKind::Cab, std::string_view(cab).substr(0, n)), 300000u) << n;
  }
  // An end record claiming a directory larger than the file.
  std::string lying = zip;
  const std::size_t eocd = lying.rfind("PK\x05\x06");
  ASSERT_NE(eocd, std::string::npos);
  lying[eocd + 12] = '\xff';
  lying[eocd + 13] = '\xff';
  lying[eocd + 14] = '\xff';
  lying[eocd + 15] = '\x7f';
  EXPECT_LE(largestDeclaredMember(ArchiveKind::Zip, lying), 300000u);
}

TEST_F(MemberSizes, ZipMembersTheDirectoryDoesNotListAreCounted) {
  ASSERT_EQ(sh("zip -q a.zip small.txt large.txt && zip -q b.zip small.txt && zip -q c.zip large.txt"), 0);
  const std::string a = read("a.zip");
  EXPECT_EQ(zipMembersOutsideDirectory(a), 0u);
  const std::string unlisted = testing::unlistLastMember(a);
  ASSERT_FALSE(unlisted.empty());
  ASSERT_EQ(unlisted.find("PK\x01\x02", unlisted.find("PK\x01\x02") + 4), std::string::npos);
  EXPECT_EQ(zipMembersOutsideDirectory(unlisted), 1u);
  // A member in front of an archive whose offsets say data was prepended:
  // what a reader of local headers meets first.
  const std::string b = read("b.zip"), c = read("c.zip");
  const std::string front = b.substr(0, b.find("PK\x01\x02")) + c;
  EXPECT_EQ(largestDeclaredMember(ArchiveKind::Zip, front), 300000u);
  EXPECT_EQ(zipMembersOutsideDirectory(front), 1u);
  // None: zip64, streamed with data descriptors, a self-extractor's program
  // in front holding the magic number as a constant, a stored zip inside a
  // zip (its headers lie in the outer member's data), no directory at all.
  ASSERT_EQ(sh("zip -q -fz z64.zip small.txt large.txt && cat large.txt | zip -q - - | cat > s.zip"), 0);
  ASSERT_EQ(sh("zip -q -0 outer.zip a.zip small.txt"), 0);
  EXPECT_EQ(zipMembersOutsideDirectory(read("z64.zip")), 0u);
  EXPECT_EQ(zipMembersOutsideDirectory(read("s.zip")), 0u);
  // (A local header as plausible as any: method 8, a name of 4 bytes.)
  const std::string fake = std::string("PK\x03\x04\x14\x00\x00\x00\x08\x00", 10) + std::string(16, '\0') +
                           std::string("\x04\x00\x00\x00", 4) + "name";
  const std::string stub = "MZ" + std::string(100, '\0') + fake + std::string(1000, '\0');
  EXPECT_EQ(zipMembersOutsideDirectory(stub + a), 0u);
  write("sfx.exe", stub + a);
  ASSERT_EQ(sh("zip -q -A sfx.exe"), 0);  // offsets adjusted to the stub: the archive starts at 0
  const std::string sfx = read("sfx.exe");
  ASSERT_NE(sfx, stub + a);
  EXPECT_EQ(zipMembersOutsideDirectory(sfx), 0u);
  EXPECT_EQ(zipMembersOutsideDirectory(testing::unlistLastMember(sfx)), 1u);
  EXPECT_EQ(zipMembersOutsideDirectory(fake + std::string(1000, '\0') + a), 1u);  // a member at the very start
  EXPECT_EQ(zipMembersOutsideDirectory(read("outer.zip")), 0u);
  EXPECT_EQ(zipMembersOutsideDirectory(a.substr(0, a.find("PK\x01\x02"))), 0u);
  // Every cut, of the crafted one too: no read outside the bytes.
  for (std::size_t n = 0; n <= unlisted.size(); ++n) {
    EXPECT_LE(zipMembersOutsideDirectory(std::string_view(unlisted).substr(0, n)), 1u) << n;
  }
}

TEST_F(MemberSizes, ZipMethodsLibclamavDoesNotUnpackAreNamed) {
  ASSERT_EQ(sh("zip -q a.zip small.txt large.txt && zip -q -0 stored.zip small.txt && "
               "zip -q -Z bzip2 bz.zip small.txt && touch empty.txt && zip -q -0 empty.zip empty.txt"),
            0);
  for (const char* m : {"LZMA", "PPMd", "Deflate64", "BZip2", "Deflate"}) {
    ASSERT_EQ(sh(std::string("7z a -tzip -mm=") + m + " 7z-" + m + ".zip small.txt large.txt"), 0)
        << m << ": p7zip-full missing? (scripts/install-deps)";
  }
  // What libclamav unpacks.
  for (const char* z : {"a.zip", "stored.zip", "bz.zip", "7z-Deflate64.zip", "7z-BZip2.zip", "7z-Deflate.zip"}) {
    EXPECT_EQ(zipMethodNotUnpacked(read(z)), nullptr) << z;
  }
  // What it skips, as 7-Zip writes it.
  EXPECT_STREQ(zipMethodNotUnpacked(read("7z-LZMA.zip")), "ZIP members compressed with LZMA");
  EXPECT_STREQ(zipMethodNotUnpacked(read("7z-PPMd.zip")), "ZIP members compressed with PPMd");
  // Methods no tool here writes: the method field changed.
  const std::string stored = read("stored.zip");
  EXPECT_STREQ(zipMethodNotUnpacked(testing::setFirstMethod(stored, 93, 93)), "ZIP members compressed with Zstandard");
  EXPECT_STREQ(zipMethodNotUnpacked(testing::setFirstMethod(stored, 95, 95)), "ZIP members compressed with XZ");
  EXPECT_STREQ(zipMethodNotUnpacked(testing::setFirstMethod(stored, 7, 7)),
               "ZIP members compressed with an unknown method");
  // The directory and the local header disagreeing: either counts.
  EXPECT_STREQ(zipMethodNotUnpacked(testing::setFirstMethod(stored, 0, 14)), "ZIP members compressed with LZMA");
  EXPECT_STREQ(zipMethodNotUnpacked(testing::setFirstMethod(stored, 14, 0)), "ZIP members compressed with LZMA");
  // Not these: an encrypted member (libclamav says encrypted), an empty one.
  std::string encrypted = testing::setFirstMethod(stored, 14, 14);
  ASSERT_FALSE(encrypted.empty());
  encrypted[6] |= 1;
  encrypted[encrypted.find("PK\x01\x02") + 8] |= 1;
  EXPECT_EQ(zipMethodNotUnpacked(encrypted), nullptr);
  EXPECT_EQ(zipMethodNotUnpacked(testing::setFirstMethod(read("empty.zip"), 14, 14)), nullptr);
  // Without a central directory: the local headers.
  const std::string lzma = read("7z-LZMA.zip");
  EXPECT_STREQ(zipMethodNotUnpacked(lzma.substr(0, lzma.find("PK\x01\x02"))), "ZIP members compressed with LZMA");
  EXPECT_EQ(zipMethodNotUnpacked(""), nullptr);
  EXPECT_EQ(zipMethodNotUnpacked("not an archive at all"), nullptr);
  // Every cut: no read outside the bytes.
  for (std::size_t n = 0; n <= lzma.size(); ++n) zipMethodNotUnpacked(std::string_view(lzma).substr(0, n));
}

TEST_F(MemberSizes, ZipLzmaMembersDeclareTheirDictionary) {
  // 7-Zip writes the dictionary asked for, or the file's size when smaller.
  ASSERT_EQ(sh("7z a -tzip -mm=LZMA -md=64k lzma.zip small.txt large.txt && seq 1 300000 > r.txt && "
               "7z a -tzip -mm=LZMA -md=1m one.zip r.txt && zip -q a.zip small.txt && "
               "7z a -tzip -mm=PPMd ppmd.zip small.txt"),
            0)
      << "p7zip-full missing? (scripts/install-deps)";
  const std::string lzma = read("lzma.zip");
  EXPECT_EQ(zipLargestLzmaDictionary(lzma), 64u << 10);
  EXPECT_EQ(zipLargestLzmaDictionary(read("one.zip")), 1u << 20);
  for (const char* z : {"a.zip", "ppmd.zip"}) EXPECT_EQ(zipLargestLzmaDictionary(read(z)), 0u) << z;
  // The largest of the members, the first changed to 4 GiB - 1.
  const std::string huge = testing::setFirstLzmaDictionary(lzma, ~0u);
  ASSERT_FALSE(huge.empty());
  EXPECT_EQ(zipLargestLzmaDictionary(huge), 0xFFFFFFFFu);
  // Without a central directory: the local headers.
  EXPECT_EQ(zipLargestLzmaDictionary(huge.substr(0, huge.find("PK\x01\x02"))), 0xFFFFFFFFu);
  // Data prepended (a self-extractor): the directory's offsets still found.
  EXPECT_EQ(zipLargestLzmaDictionary("MZ" + std::string(5000, '\x90') + huge), 0xFFFFFFFFu);
  EXPECT_EQ(zipLargestLzmaDictionary(""), 0u);
  EXPECT_EQ(zipLargestLzmaDictionary("not an archive at all"), 0u);
  // Every cut: no read outside the bytes.
  for (std::size_t n = 0; n <= huge.size(); ++n) zipLargestLzmaDictionary(std::string_view(huge).substr(0, n));
}

TEST_F(MemberSizes, SevenZipCodersLibclamavDoesNotDecodeAreNamed) {
  const std::vector<std::pair<std::string, const char*>> archives = {
      // What libclamav decodes: the default (LZMA2), LZMA, PPMd, Copy,
      // the x86 and ARM filters; encrypted (libclamav says so).
      {"-m0=LZMA2", nullptr},
      {"-m0=LZMA", nullptr},
      {"-m0=PPMd", nullptr},
      {"-m0=Copy", nullptr},
      {"-mf=BCJ", nullptr},
      {"-mf=BCJ2", nullptr},
      {"-mf=ARM", nullptr},
      {"-pabc", nullptr},
      {"-pabc -mhe=on", nullptr},
      // What it does not.
      {"-m0=BZip2", "7-Zip data compressed with BZip2"},
      {"-m0=Deflate", "7-Zip data compressed with Deflate"},
      {"-m0=Deflate64", "7-Zip data compressed with Deflate64"},
      {"-mf=ARM64", "7-Zip data with an ARM64 filter"},
      {"-mf=ARMT", "7-Zip data with an ARM Thumb filter"},
      {"-mf=PPC", "7-Zip data with a PowerPC filter"},
      {"-mf=SPARC", "7-Zip data with a SPARC filter"},
      {"-mf=IA64", "7-Zip data with an IA-64 filter"},
      {"-mf=Delta:4", "7-Zip data with a Delta filter"},
  };
  int n = 0;
  for (const auto& [options, want] : archives) {
    SCOPED_TRACE(options);
    const std::string name = "a" + std::to_string(n++) + ".7z";
    ASSERT_EQ(sh("7z a -t7z " + options + " " + name + " small.txt large.txt"), 0) << "p7zip-full missing?";
    const std::string a = read(name);
    if (want == nullptr) {
      EXPECT_EQ(sevenZipMethodNotUnpacked(a), nullptr);
    } else {
      EXPECT_STREQ(sevenZipMethodNotUnpacked(a), want);
    }
  }
  // Not 7-Zip, or cut short (the header is at the end): nothing to say.
  EXPECT_EQ(sevenZipMethodNotUnpacked(""), nullptr);
  EXPECT_EQ(sevenZipMethodNotUnpacked(read("a0.7z").substr(0, 40)), nullptr);
  ASSERT_EQ(sh("zip -q a.zip small.txt"), 0);
  EXPECT_EQ(sevenZipMethodNotUnpacked(read("a.zip")), nullptr);
}

}  // namespace
}  // namespace sekimori::antivirus
