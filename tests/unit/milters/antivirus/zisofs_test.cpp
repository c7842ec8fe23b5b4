// tests/unit/milters/antivirus/zisofs_test.cpp — milters/antivirus/zisofs.cpp
// on zisofs files made here as mkzftree lays them out (a real writer's, from
// libarchive, in scanner_test.cpp).
#include "milters/antivirus/zisofs.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sekimori::antivirus {
namespace {

using Status = mime::UnpackResult::Status;

void putLe32(std::string& out, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out[at + i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

// `data` as a zisofs file with blocks of 2^log2 bytes; a block of zeros
// only is stored with no bytes, as mkzftree does.
std::string zisofsFile(const std::string& data, int log2 = 15) {
  const std::size_t block = std::size_t{1} << log2;
  const std::size_t blocks = (data.size() + block - 1) / block;
  std::string out("\x37\xE4\x53\x96\xC9\xDB\xD6\x07", 8);
  out.resize(16 + (blocks + 1) * 4, '\0');
  putLe32(out, 8, static_cast<std::uint32_t>(data.size()));
  out[12] = 4;
  out[13] = static_cast<char>(log2);
  for (std::size_t i = 0; i < blocks; ++i) {
    putLe32(out, 16 + i * 4, static_cast<std::uint32_t>(out.size()));
    const std::string part = data.substr(i * block, block);
    if (part.find_first_not_of('\0') == std::string::npos) continue;
    uLongf n = compressBound(part.size());
    std::string z(n, '\0');
    EXPECT_EQ(compress2(reinterpret_cast<Bytef*>(z.data()), &n, reinterpret_cast<const Bytef*>(part.data()),
                        part.size(), 6),
              Z_OK);
    out += z.substr(0, n);
  }
  putLe32(out, 16 + blocks * 4, static_cast<std::uint32_t>(out.size()));
  return out;
}

struct Got {
  mime::UnpackResult result;
  std::vector<std::string> entries;
};

Got unpack(const std::string& bytes, mime::UnpackLimits limits = {}) {
  Got g;
  g.result = zisofsUnpack(bytes, limits, [&](std::string_view name, std::string_view data) {
    EXPECT_TRUE(name.empty());
    g.entries.emplace_back(data);
    return true;
  });
  return g;
}

std::string sample() {
  std::string data;
  for (int i = 0; data.size() < 40000; ++i) data += "line " + std::to_string(i) + " of a file in an ISO image\n";
  data += std::string(70000, '\0');  // two blocks of zeros, stored empty
  return data + "the end\n";
}

TEST(Zisofs, HandsOverTheFileInflated) {
  const std::string data = sample();
  for (const int log2 : {15, 16, 17}) {
    const Got g = unpack(zisofsFile(data, log2));
    EXPECT_EQ(g.result.status, Status::Ok) << log2;
    ASSERT_EQ(g.entries.size(), 1u) << log2;
    EXPECT_EQ(g.entries[0], data) << log2;
    EXPECT_EQ(g.result.totalSize, data.size());
  }
  EXPECT_EQ(unpack(zisofsFile("")).result.status, Status::Ok);  // empty: nothing to hand over
  EXPECT_TRUE(zisofsHeader(zisofsFile("x")));
}

TEST(Zisofs, LimitsComeBeforeInflating) {
  const std::string file = zisofsFile(sample());
  EXPECT_EQ(unpack(file, {.maxEntrySize = 1000, .maxTotal = 1 << 20, .maxEntries = 10}).result.status,
            Status::EntryTooLarge);
  const Got total = unpack(file, {.maxEntrySize = 1 << 20, .maxTotal = 1000, .maxEntries = 10});
  EXPECT_EQ(total.result.status, Status::TooLarge);
  EXPECT_TRUE(total.entries.empty());
  // 4 GiB of zeros declared in a few bytes: refused by its size, not inflated.
  std::string zeros = zisofsFile("x");
  putLe32(zeros, 8, 0xFFFFFFFF);
  EXPECT_EQ(unpack(zeros).result.status, Status::EntryTooLarge);
}

TEST(Zisofs, DamageIsUnreadableAfterTheBlocksBeforeIt) {
  const std::string data = sample();
  const std::string file = zisofsFile(data);
  // Cut inside the second block: the first one is handed over.
  const std::uint32_t second = static_cast<unsigned char>(file[20]) | static_cast<unsigned char>(file[21]) << 8;
  const Got cut = unpack(file.substr(0, second + 10));
  EXPECT_EQ(cut.result.status, Status::Unreadable);
  ASSERT_EQ(cut.entries.size(), 1u);
  EXPECT_EQ(cut.entries[0], data.substr(0, 32768));
  // Offsets out of order; into the table; the table cut short; a block
  // of garbage.
  std::string backwards = file;
  putLe32(backwards, 20, 17);
  EXPECT_EQ(unpack(backwards).result.status, Status::Unreadable);
  std::string intoTable = file;
  putLe32(intoTable, 16, 8);
  EXPECT_EQ(unpack(intoTable).result.status, Status::Unreadable);
  EXPECT_TRUE(unpack(intoTable).entries.empty());
  EXPECT_EQ(unpack(file.substr(0, 20)).result.status, Status::Unreadable);
  std::string garbage = file;
  for (std::size_t i = second; i < second + 20; ++i) garbage[i] = 'x';
  EXPECT_EQ(unpack(garbage).result.status, Status::Unreadable);
}

TEST(Zisofs, OnlyItsHeaderIsOne) {
  std::string file = zisofsFile("hello");
  EXPECT_EQ(unpack("not a zisofs file at all").result.status, Status::NotArchive);
  for (const auto& [at, value] : std::vector<std::pair<int, char>>{{0, 'x'}, {12, 5}, {13, 14}, {13, 18}}) {
    std::string bad = file;
    bad[at] = value;
    EXPECT_FALSE(zisofsHeader(bad)) << at;
    EXPECT_EQ(unpack(bad).result.status, Status::NotArchive) << at;
  }
  EXPECT_FALSE(zisofsHeader(file.substr(0, 15)));
}

}  // namespace
}  // namespace sekimori::antivirus
