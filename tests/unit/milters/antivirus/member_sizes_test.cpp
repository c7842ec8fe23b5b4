// tests/unit/milters/antivirus/member_sizes_test.cpp — the member sizes ZIP
// and CAB archives declare, on archives made with the real tools (zip,
// gcab), and on damaged ones: never a read outside the bytes given.
#include "milters/antivirus/member_sizes.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

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

}  // namespace
}  // namespace sekimori::antivirus
