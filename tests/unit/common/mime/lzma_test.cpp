// tests/unit/common/mime/lzma_test.cpp — common/mime/lzma.cpp: .lzma files
// with every dictionary size xz decodes, .xz and .lz files, decoded with no
// more dictionary than their output needs; cut, damaged and oversized ones.
#include "common/mime/lzma.h"
#include "common/mime/archive.h"

#include <gtest/gtest.h>
#include <lzma.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <new>
#include <string>
#include <vector>

#include "tests/support/sanitized.h"
#include "tests/unit/common/mime/archive_samples.h"

namespace sekimori::mime {
namespace {

using support::kSanitized;

std::string text(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; s.size() < n; ++i) s += "line " + std::to_string(i % 977) + " of some text\n";
  s.resize(n);
  return s;
}

// libarchive's .lzma writer: xz's encoder, dictionary 8 MiB, size unknown,
// an end marker.
std::string lzmaFile(const std::string& body) {
  return samples::write(archive_write_set_format_raw, {archive_write_add_filter_lzma}, {{"data", body}});
}

void putLe(std::string& s, std::size_t at, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s[at + i] = static_cast<char>(v >> (8 * i));
}

std::string withDictionary(std::string f, std::uint32_t dict) {
  putLe(f, 1, dict, 4);
  return f;
}

struct Unpacked {
  UnpackResult result;
  std::vector<std::string> entries;
};

Unpacked unpack(std::string_view bytes, const UnpackLimits& limits = {}) {
  Unpacked u;
  u.result = unpackEntries(bytes, limits, [&](std::string_view name, std::string_view data) {
    EXPECT_EQ(name, "");
    u.entries.emplace_back(data);
    return true;
  });
  return u;
}

using UStatus = UnpackResult::Status;

// Dictionary sizes xz and 7-Zip decode but libarchive's .lzma reader does
// not take (only 4 KiB to 128 MiB): before, such a file was no archive to
// unpackEntries (and those of 2 GiB and more were not even taken for
// .lzma by the scanner). Each decodes to the same bytes.
TEST(Lzma, EveryDictionarySizeXzTakesIsDecoded) {
  const std::string body = text(300000);
  const std::string f = lzmaFile(body);
  ASSERT_FALSE(f.empty());
  // From the encoder's own 8 MiB up (a smaller one would not reach back
  // as far as the encoder did: damaged data, to xz too).
  for (const std::uint32_t dict : {8u << 20, 12u << 20, 96u << 20, 1u << 28, 3u << 29, 1u << 31, 3u << 30, ~0u}) {
    SCOPED_TRACE(dict);
    const std::string g = withDictionary(f, dict);
    EXPECT_TRUE(lzmaAloneHeader(g));
    const Unpacked u = unpack(g);
    EXPECT_EQ(u.result.status, UStatus::Ok) << toString(u.result.status);
    ASSERT_EQ(u.entries.size(), 1u);
    EXPECT_TRUE(u.entries[0] == body);
  }
}

// Runs `body` in a forked child whose RLIMIT_DATA is what it holds plus
// `extra` bytes; its exit status: body's (0 for success, 1 and 2 for the
// test's own failures), 3-4 when the limit could not be set.
int exitStatusWithDataLimit(std::uint64_t extra, const std::function<int()>& body) {
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    // statm: size resident shared text lib data (pages).
    FILE* f = std::fopen("/proc/self/statm", "r");
    unsigned long long v[6] = {};
    const int got = f != nullptr ? std::fscanf(f, "%llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4],
                                               &v[5])
                                 : 0;
    if (f != nullptr) std::fclose(f);
    if (got != 6) _exit(3);
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = v[5] * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE)) + extra;
    if (setrlimit(RLIMIT_DATA, &lim) != 0) _exit(4);
    _exit(body());
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// A file declaring 4 GiB of dictionary is decoded in a process allowed
// 64 MiB more than it holds: the dictionary is the output's size, not the
// declared one (liblzma's own .lzma decoder asks for 4 GiB, and fails).
TEST(Lzma, TheDictionaryIsNoLargerThanTheOutput) {
  if (kSanitized) GTEST_SKIP() << "ASan's shadow memory does not live under RLIMIT_DATA";
  const std::string body = text(2 << 20);
  const std::string g = withDictionary(lzmaFile(body), ~std::uint32_t{0});
  const int status = exitStatusWithDataLimit(64 << 20, [&] {
    try {
      UnpackLimits limits;
      limits.maxEntrySize = limits.maxTotal = 25 << 20;  // the scanner's default max_file_size
      std::string out;
      const UnpackResult r = unpackEntries(g, limits, [&](std::string_view, std::string_view d) {
        out = d;
        return true;
      });
      return r.status == UStatus::Ok && out == body ? 0 : 1;
    } catch (const std::bad_alloc&) {
      return 2;
    }
  });
  EXPECT_EQ(status, 0) << "1: wrong result, 2: out of memory, 3-4: test setup";
}

TEST(Lzma, TheHeaderIsTakenAsXzTakesIt) {
  const std::string f = lzmaFile(text(1000));
  EXPECT_TRUE(lzmaAloneHeader(f));
  EXPECT_FALSE(lzmaAloneHeader(f.substr(0, 12)));
  EXPECT_FALSE(lzmaAloneHeader(withDictionary(f, 5000)));     // neither 2^n nor 2^n + 2^(n-1)
  EXPECT_FALSE(lzmaAloneHeader(withDictionary(f, 1 << 11)));  // under 4 KiB
  // Properties: lc/lp/pb as liblzma takes them, not only the defaults
  // (xz --lzma1=lc=4 writes 0x5E, and xz and 7-Zip decode it).
  std::string g = f;
  for (const int props : {0x00, 0x5E, 0xD0, (4 * 5 + 0) * 9 + 4}) {
    g[0] = static_cast<char>(props);
    EXPECT_TRUE(lzmaAloneHeader(g)) << props;
  }
  for (const int props : {(0 * 5 + 2) * 9 + 3, (4 * 5 + 4) * 9 + 8 + 1, 0xFF}) {  // lc + lp = 5; pb = 5
    g[0] = static_cast<char>(props);
    EXPECT_FALSE(lzmaAloneHeader(g)) << props;
  }
  g = f;
  putLe(g, 5, std::uint64_t{1} << 40, 8);  // a declared size of 1 TiB
  EXPECT_FALSE(lzmaAloneHeader(g));
  EXPECT_FALSE(lzmaAloneHeader("]" + text(100)));
  EXPECT_EQ(unpackEntries(text(100), {}, [](std::string_view, std::string_view) { return true; }).status,
            UStatus::NotArchive);
}

TEST(Lzma, CutDamagedAndOversizedData) {
  const std::string body = text(300000);
  const std::string f = lzmaFile(body);
  // Cut: what was decoded before the cut is handed over, Unreadable.
  const Unpacked cut = unpack(f.substr(0, f.size() / 2));
  EXPECT_EQ(cut.result.status, UStatus::Unreadable) << toString(cut.result.status);
  ASSERT_EQ(cut.entries.size(), 1u);
  EXPECT_GT(cut.entries[0].size(), 1000u);
  EXPECT_EQ(body.compare(0, cut.entries[0].size(), cut.entries[0]), 0);
  // Garbage after the header: nothing decodes.
  const Unpacked junk = unpack(f.substr(0, 13) + std::string(200, '\xFF'));
  EXPECT_EQ(junk.result.status, UStatus::Unreadable) << toString(junk.result.status);
  EXPECT_TRUE(junk.entries.empty());
  // A declared size: exactly it is whole; more than the stream holds is
  // damage after the bytes that came.
  std::string sized = f;
  putLe(sized, 5, body.size(), 8);
  const Unpacked exact = unpack(sized);
  EXPECT_EQ(exact.result.status, UStatus::Ok) << toString(exact.result.status);
  ASSERT_EQ(exact.entries.size(), 1u);
  EXPECT_TRUE(exact.entries[0] == body);
  putLe(sized, 5, body.size() + 10, 8);
  const Unpacked longer = unpack(sized);
  EXPECT_EQ(longer.result.status, UStatus::Unreadable) << toString(longer.result.status);
  ASSERT_EQ(longer.entries.size(), 1u);
  EXPECT_TRUE(longer.entries[0] == body);
  // Limits: never handed over past them.
  UnpackLimits limits;
  limits.maxEntrySize = body.size() - 1;
  const Unpacked big = unpack(f, limits);
  EXPECT_EQ(big.result.status, UStatus::EntryTooLarge) << toString(big.result.status);
  EXPECT_TRUE(big.entries.empty());
  limits = {};
  limits.maxTotal = 1000;
  EXPECT_EQ(unpack(f, limits).result.status, UStatus::TooLarge);
  limits.maxTotal = body.size();
  EXPECT_EQ(unpack(f, limits).result.status, UStatus::Ok);
}

// --- measureExpansion (sekimori-sizelimit's archive guard, R-SIZE-5) -------

ExpansionResult measure(std::string_view bytes, const ExpansionLimits& limits = {}) {
  BufferContent c(bytes);
  return measureExpansion(c, limits);
}

using EStatus = ExpansionResult::Status;

// The archive guard reads .lzma files by the same rule as unpackEntries:
// before, one declaring a dictionary libarchive does not take was plain
// data to it, and its expansion was not counted. Bare, holding a tar, and
// inside a zip; and inside a tar read a few bytes at a time, so that the
// header comes in pieces.
TEST(Lzma, EveryDictionarySizeXzTakesIsMeasured) {
  const std::string body = text(300000);
  const std::string tar =
      samples::write(archive_write_set_format_pax_restricted, {}, {{"a.txt", body}, {"b.txt", body}});
  for (const std::uint32_t dict : {8u << 20, 96u << 20, 1u << 28, 3u << 30, ~0u}) {
    SCOPED_TRACE(dict);
    const std::string bare = withDictionary(lzmaFile(body), dict);
    ExpansionResult r = measure(bare);
    EXPECT_EQ(r.status, EStatus::Ok) << toString(r.status);
    EXPECT_EQ(r.totalUncompressed, body.size());
    EXPECT_EQ(r.deepestLevel, 1);
    EXPECT_EQ(r.format, "lzma");

    r = measure(withDictionary(lzmaFile(tar), dict));
    EXPECT_EQ(r.status, EStatus::Ok) << toString(r.status);
    EXPECT_GE(r.totalUncompressed, 2 * body.size());
    EXPECT_LE(r.totalUncompressed, tar.size());  // the tar's end blocks and padding are counted
    EXPECT_EQ(r.entries, 2u);
    EXPECT_NE(r.format.find("tar"), std::string::npos) << r.format;
    EXPECT_NE(r.format.find("(lzma)"), std::string::npos) << r.format;

    r = measure(samples::zip({{"x.lzma", bare}}));
    EXPECT_EQ(r.status, EStatus::Ok) << toString(r.status);
    EXPECT_EQ(r.totalUncompressed, body.size());
    EXPECT_EQ(r.deepestLevel, 2);

    const std::string outer =
        samples::write(archive_write_set_format_pax_restricted, {}, {{"pad", text(40000)}, {"x.lzma", bare}});
    samples::ChunkedContent trickle(outer, 7);
    r = measureExpansion(trickle, {});
    EXPECT_EQ(r.status, EStatus::Ok) << toString(r.status);
    EXPECT_EQ(r.totalUncompressed, 40000 + body.size());
  }
}

// A .lzma bomb is stopped at the limit, whatever dictionary it declares,
// bare or in a zip; cut, it is still counted as far as it decodes.
TEST(Lzma, BombsAreStoppedWhateverTheDictionary) {
  ExpansionLimits limits;
  limits.maxTotal = 10 << 20;
  const std::string bomb =
      samples::write(archive_write_set_format_raw, {archive_write_add_filter_lzma}, {{"z", "", 12 << 20}});
  ASSERT_LT(bomb.size(), 64u << 10);
  for (const std::uint32_t dict : {8u << 20, 1u << 28, 3u << 30}) {
    SCOPED_TRACE(dict);
    const std::string g = withDictionary(bomb, dict);
    ExpansionResult r = measure(g, limits);
    EXPECT_EQ(r.status, EStatus::TooLarge) << toString(r.status);
    EXPECT_EQ(r.format, "lzma");
    r = measure(samples::zip({{"z.lzma", g}}), limits);
    EXPECT_EQ(r.status, EStatus::TooLarge) << toString(r.status);
    r = measure(g.substr(0, g.size() / 2), limits);
    EXPECT_EQ(r.status, EStatus::Unreadable) << toString(r.status);
    EXPECT_GT(r.totalUncompressed, 1u << 20);
  }
}

TEST(Lzma, CutDamagedAndDeclaredSizesAreMeasured) {
  const std::string body = text(300000);
  const std::string f = lzmaFile(body);
  // Cut: counted up to the cut, and Unreadable.
  ExpansionResult r = measure(f.substr(0, f.size() / 2));
  EXPECT_EQ(r.status, EStatus::Unreadable) << toString(r.status);
  EXPECT_GT(r.totalUncompressed, 1000u);
  EXPECT_LT(r.totalUncompressed, body.size());
  // Garbage after the header.
  EXPECT_EQ(measure(f.substr(0, 13) + std::string(200, '\xFF')).status, EStatus::Unreadable);
  // A declared size: exactly it is whole; more than the stream holds is
  // damage after the bytes that came; less ends there.
  std::string sized = f;
  for (const std::uint64_t declared : {body.size(), body.size() + 10, body.size() - 10, std::size_t{0}}) {
    SCOPED_TRACE(declared);
    putLe(sized, 5, declared, 8);
    r = measure(sized);
    EXPECT_EQ(r.status, declared > body.size() ? EStatus::Unreadable : EStatus::Ok) << toString(r.status);
    EXPECT_EQ(r.totalUncompressed, std::min<std::uint64_t>(declared, body.size()));
  }
}

// A ZIP member compressed with LZMA declares its dictionary too, and
// libarchive has liblzma allocate it whole: the guard lowers it to what may
// be counted, in the attachment and in a ZIP nested in a ZIP or a .tar.gz.
// Each measures exactly, and a bomb stops at the limit, whatever the
// member declares.
TEST(Lzma, ZipMembersAreMeasuredWhateverTheDictionary) {
  const std::string body = text(300000);
  ExpansionLimits limits;
  limits.maxTotal = 10 << 20;
  for (const std::uint32_t dict : {0u, 96u << 20, 3u << 30, ~0u}) {
    SCOPED_TRACE(dict);
    const std::string zip = samples::lzmaZip({{"a.txt", body}, {"b.txt", body}}, dict);
    ASSERT_FALSE(zip.empty());
    const std::string tgz =
        samples::write(archive_write_set_format_pax_restricted, {archive_write_add_filter_gzip}, {{"in.zip", zip}});
    // Also a few bytes at a time: a header arrives in pieces.
    const std::string tar = samples::write(archive_write_set_format_pax_restricted, {}, {{"in.zip", zip}});
    for (const std::string& attachment : {zip, samples::zip({{"in.zip", zip}}), tgz, tar}) {
      for (const std::size_t chunk : {std::size_t{1} << 20, std::size_t{7}}) {
        samples::ChunkedContent content(attachment, chunk);
        const ExpansionResult r = measureExpansion(content, limits);
        EXPECT_EQ(r.status, EStatus::Ok) << toString(r.status);
        EXPECT_GE(r.totalUncompressed, 2 * body.size());
        EXPECT_LT(r.totalUncompressed, 2 * body.size() + 20000);  // a nested zip's directory, tar's end
      }
    }
    const std::string bomb = samples::lzmaZip({{"zeros.bin", "", 12 << 20}}, dict);
    for (const std::string& attachment : {bomb, samples::zip({{"in.zip", bomb}})}) {
      EXPECT_EQ(measure(attachment, limits).status, EStatus::TooLarge);
    }
  }
}

// What the lowering is for: a member declaring 3 GiB is measured in a
// process allowed 256 MiB more than it holds (libarchive alone asks
// liblzma for the 3 GiB, and the member was not measured).
TEST(Lzma, ZipMembersCostNoMoreThanTheLimit) {
  if (kSanitized) GTEST_SKIP() << "ASan's shadow memory does not live under RLIMIT_DATA";
  const std::string bomb = samples::lzmaZip({{"zeros.bin", "", 12 << 20}}, 3u << 30);
  const std::string nested = samples::zip({{"in.zip", bomb}});
  // libarchive reads only the low byte of the local header's method.
  std::string highByte = bomb;
  highByte[9] = '\xFC';
  const int status = exitStatusWithDataLimit(256 << 20, [&] {
    ExpansionLimits limits;
    limits.maxTotal = 10 << 20;
    for (const std::string& attachment : {bomb, nested, highByte}) {
      if (measure(attachment, limits).status != EStatus::TooLarge) return 1;
    }
    return 0;
  });
  EXPECT_EQ(status, 0) << "1: not measured, 3-4: test setup";
}

// --- .xz and .lz files ----------------------------------------------------

// A compressed file of `copies` x `body`: measured at level 1 as
// `format`, and unpacked to those bytes.
void expectWhole(const std::string& file, const std::string& body, std::size_t copies, const char* format) {
  ASSERT_FALSE(file.empty());
  const ExpansionResult r = measure(file);
  EXPECT_EQ(r.status, EStatus::Ok) << toString(r.status);
  EXPECT_EQ(r.totalUncompressed, copies * body.size());
  EXPECT_EQ(r.format, format);
  EXPECT_EQ(r.deepestLevel, 1);
  const Unpacked u = unpack(file);
  EXPECT_EQ(u.result.status, UStatus::Ok) << toString(u.result.status);
  ASSERT_EQ(u.entries.size(), 1u);
  EXPECT_EQ(u.entries[0].size(), copies * body.size());
  EXPECT_EQ(u.entries[0].compare(0, body.size(), body), 0);
}

// A compressed tar of two files of `bodySize` bytes, measured read 7 bytes
// at a time: headers and trailers come in pieces.
void expectChunkedTar(const std::string& file, std::size_t bodySize, const std::string& format) {
  samples::ChunkedContent content(file, 7);
  const ExpansionResult r = measureExpansion(content, {});
  EXPECT_EQ(r.status, EStatus::Ok) << toString(r.status);
  EXPECT_EQ(r.entries, 2u);
  EXPECT_GE(r.totalUncompressed, 2 * bodySize);
  EXPECT_LT(r.totalUncompressed, 2 * bodySize + 20000);  // the tar's end
  EXPECT_NE(r.format.find(format), std::string::npos) << r.format;
}

// A damaged compressed file: Unreadable, counted up to the damage (at
// least `atLeast`, below `below`), and Unreadable to unpackEntries.
void expectDamaged(const std::string& file, std::uint64_t atLeast, std::uint64_t below) {
  const ExpansionResult r = measure(file);
  EXPECT_EQ(r.status, EStatus::Unreadable) << toString(r.status);
  EXPECT_GE(r.totalUncompressed, atLeast);
  EXPECT_LT(r.totalUncompressed, below);
  EXPECT_EQ(unpack(file).result.status, UStatus::Unreadable);
}

std::string gz(const std::string& bytes) {
  return samples::write(archive_write_set_format_raw, {archive_write_add_filter_gzip}, {{"data", bytes}});
}

// Every layout xz writes or reads is measured and unpacked to its bytes:
// the four checks, a BCJ filter, several blocks, several streams with
// padding, and dictionaries libarchive's reader would allocate whole (up
// to 4 GiB, for a file of a few kilobytes).
TEST(Xz, EveryLayoutIsMeasuredAndUnpacked) {
  const std::string body = text(300000);
  struct Case {
    std::string label, xz;
    std::size_t copies;
  };
  std::vector<Case> cases;
  for (const lzma_check check : {LZMA_CHECK_NONE, LZMA_CHECK_CRC32, LZMA_CHECK_CRC64, LZMA_CHECK_SHA256}) {
    for (const bool bcj : {false, true}) {
      cases.push_back({"check " + std::to_string(check) + (bcj ? " bcj" : ""), samples::xz(body, {check, bcj}), 1});
    }
  }
  const std::string one = samples::xz(body);
  cases.push_back({"blocks", samples::xz(body, {LZMA_CHECK_CRC64, false, 64 << 10}), 1});
  cases.push_back({"two streams", one + one, 2});
  cases.push_back({"padding", one + std::string(8, '\0') + one + std::string(4, '\0'), 2});
  cases.push_back({"1 GiB", samples::withXzDictionary(one, 36), 1});
  cases.push_back({"4 GiB", samples::withXzDictionary(one, 40), 1});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.label);
    expectWhole(c.xz, body, c.copies, "xz");
  }
  // A tar in it, read in pieces.
  expectChunkedTar(samples::withXzDictionary(samples::xz(samples::write(archive_write_set_format_pax_restricted, {},
                                                                        {{"a", body}, {"b", body}})),
                                             40),
                   body.size(), "tar format (xz)");
}

// Damage anywhere is Unreadable, counted up to it: cut short, a block
// whose check fails, an index that does not list the blocks, padding that
// is not a multiple of four, bytes after the last stream.
TEST(Xz, DamageIsUnreadableAfterWhatCameBefore) {
  const std::string body = text(300000);
  const std::string one = samples::xz(body, {LZMA_CHECK_CRC32});
  ASSERT_FALSE(one.empty());
  // The footer's backward size: the index's, in 4-byte units, minus one.
  const std::size_t footer = one.size() - LZMA_STREAM_HEADER_SIZE;
  std::uint32_t backward = 0;
  for (int i = 3; i >= 0; --i) backward = backward << 8 | static_cast<std::uint8_t>(one[footer + 4 + i]);
  const std::size_t index = footer - (backward + 1) * 4;
  std::string badCheck = one, badIndex = one, badRecord = one;
  badCheck[index - 1] ^= 1;   // the block's CRC32, just before the index
  badIndex[footer - 1] ^= 1;  // the index's CRC32
  badRecord[index + 2] ^= 1;  // the block's size as the index says it
  std::string badData = one;
  badData[one.size() / 2] ^= 0x55;
  const struct {
    const char* label;
    std::string xz;
    std::uint64_t atLeast, below;
  } cases[] = {
      {"cut", one.substr(0, one.size() / 2), 1000, body.size()},
      {"data", badData, 0, body.size() + 1},
      {"check", badCheck, 0, body.size() + 1},
      {"index CRC", badIndex, body.size(), body.size() + 1},
      {"index record", badRecord, body.size(), body.size() + 1},
      {"padding", one + std::string(3, '\0'), body.size(), body.size() + 1},
      {"trailing", one + "junk", body.size(), body.size() + 1},
      {"footer", one.substr(0, one.size() - 1), body.size(), body.size() + 1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    expectDamaged(c.xz, c.atLeast, c.below);
  }
  // Nothing but the magic number: a stream header that does not decode.
  EXPECT_EQ(measure(one.substr(0, 6) + std::string(100, 'x')).status, EStatus::Unreadable);
  // An empty .xz (xz < /dev/null) is whole and holds nothing.
  const ExpansionResult empty = measure(samples::xz(""));
  EXPECT_EQ(empty.status, EStatus::Ok) << toString(empty.status);
  EXPECT_EQ(empty.totalUncompressed, 0u);
}

// A compressed file inside a compressed file: libarchive undoes its own
// layers one inside the other, but before, a .lzma inside a .gz was left
// to libarchive's .lzma reader, which takes dictionaries of 4 KiB to
// 128 MiB only: with any other, the .gz of a .lzma bomb counted its few
// hundred bytes. And one with properties other than the defaults (xz
// --lzma1=lc=4) was no .lzma to either reader. Each is measured now; the
// compressed bytes of an inner layer count too, and no more layers are
// nested than levels.
TEST(Xz, CompressionsInsideCompressionsAreMeasured) {
  ExpansionLimits limits;
  limits.maxTotal = 10 << 20;
  const std::string zeros(12 << 20, '\0');
  const std::string lzmaBomb = withDictionary(lzmaFile(zeros), 256u << 20);
  const std::string lc4Bomb = withDictionary(samples::lzmaAlone(zeros, 4), 256u << 20);
  const std::string xzBomb = samples::withXzDictionary(samples::xz(zeros), 40);
  ASSERT_FALSE(lc4Bomb.empty());
  ASSERT_FALSE(xzBomb.empty());
  const std::string bz2OfXz =
      samples::write(archive_write_set_format_raw, {archive_write_add_filter_bzip2}, {{"data", xzBomb}});
  for (const std::string& bomb : {gz(lzmaBomb), lc4Bomb, gz(lc4Bomb), gz(xzBomb), bz2OfXz, samples::xz(gz(zeros)),
                                  samples::xz(lzmaBomb), gz(samples::xz(gz(lzmaBomb)))}) {
    const ExpansionResult r = measure(bomb, limits);
    EXPECT_EQ(r.status, EStatus::TooLarge) << toString(r.status) << " " << r.format << " " << r.totalUncompressed;
  }
  // Within the limit: the bytes inside, plus the inner layer's own.
  const std::string body = text(300000);
  const std::string lzmaInner = withDictionary(lzmaFile(body), 256u << 20);
  const std::string xzInner = samples::xz(body);
  const struct {
    std::string file;
    std::size_t inner;
  } within[] = {{gz(lzmaInner), lzmaInner.size()}, {samples::xz(lzmaInner), lzmaInner.size()},
                {gz(xzInner), xzInner.size()}, {samples::xz(gz(body)), gz(body).size()}};
  for (const auto& w : within) {
    const ExpansionResult r = measure(w.file, limits);
    EXPECT_EQ(r.status, EStatus::Ok) << toString(r.status);
    EXPECT_EQ(r.totalUncompressed, body.size() + w.inner);
    EXPECT_EQ(r.deepestLevel, 1);
  }
  // An .xz stream may be gigabytes of padding that decode to nothing: as
  // the inner layer, that is counted (before, 100 MiB of it were "ok",
  // 0 bytes).
  const std::string padded = samples::xz(samples::xz("") + std::string(100 << 20, '\0'));
  EXPECT_EQ(measure(padded, limits).status, EStatus::TooLarge);
  // So may a .gz of empty members, as libarchive reads it inside ours.
  const std::string emptyMember = gz("");
  std::string members;
  while (members.size() < (20u << 20)) members += emptyMember;
  EXPECT_EQ(measure(samples::xz(members), limits).status, EStatus::TooLarge);
  // Compressions nested around or inside ours: no more than maxDepth.
  std::string deep = body;
  for (int i = 1; i <= 9; ++i) {
    deep = i % 2 != 0 ? samples::xz(deep) : gz(deep);
    const ExpansionResult r = measure(deep, limits);
    SCOPED_TRACE(i);
    EXPECT_EQ(r.status, i <= limits.maxDepth ? EStatus::Ok : EStatus::TooDeep) << toString(r.status);
  }
  std::string xzs = body;
  for (int i = 1; i <= 9; ++i) xzs = samples::xz(xzs);
  EXPECT_EQ(measure(xzs, limits).status, EStatus::TooDeep);
  EXPECT_EQ(measure(samples::xz(samples::xz(body)), limits).status, EStatus::Ok);
}

// libarchive's xz reader has liblzma allocate the dictionary a block
// declares: 4 GiB for a 2 KB file. Where that address space is refused (a
// host with less memory, ulimit -v), the bomb was not measured
// (NotArchive). Measured and unpacked here in a child allowed 256 MiB
// more than it holds: bare, in a .gz, in a tar, in a zip.
TEST(Xz, ADeclaredDictionaryCostsNoMoreThanTheLimit) {
  if (kSanitized) GTEST_SKIP() << "ASan's shadow memory does not live under RLIMIT_DATA";
  const std::string bomb = samples::withXzDictionary(samples::xz(std::string(12 << 20, '\0')), 40);
  ASSERT_FALSE(bomb.empty());
  const std::string inTar = samples::write(archive_write_set_format_pax_restricted, {}, {{"z.xz", bomb}});
  const std::string inZip = samples::zip({{"z.xz", bomb}});
  const int status = exitStatusWithDataLimit(256 << 20, [&] {
    ExpansionLimits limits;
    limits.maxTotal = 10 << 20;
    for (const std::string& attachment : {bomb, gz(bomb), inTar, inZip}) {
      if (measure(attachment, limits).status != EStatus::TooLarge) return 1;
    }
    const Unpacked u = unpack(bomb);
    if (u.result.status != UStatus::Ok || u.entries.size() != 1 || u.entries[0].size() != 12u << 20) return 2;
    return 0;
  });
  EXPECT_EQ(status, 0) << "1: not measured, 2: not unpacked, 3-4: test setup";
}

// --- .lz files -------------------------------------------------------------

// libarchive's lzip writer: one member, format version 1.
std::string lzip(const std::string& body) {
  return samples::write(archive_write_set_format_raw, {archive_write_add_filter_lzip}, {{"data", body}});
}

// The member header's coded dictionary size: 2^(low 5 bits) less (high 3
// bits) sixteenths of it; 29 is 512 MiB, lzip's largest.
std::string withLzipDictionary(std::string f, std::uint8_t coded) {
  f[5] = static_cast<char>(coded);
  return f;
}

// Every layout lzip writes or reads is measured and unpacked to its bytes:
// several members, version 0 members (no member size in the trailer),
// trailing bytes (ignored, as lzip ignores them), and dictionaries up to
// 512 MiB, which libarchive's reader has liblzma allocate whole.
TEST(Lzip, EveryLayoutIsMeasuredAndUnpacked) {
  const std::string body = text(300000);
  const std::string one = lzip(body);
  ASSERT_TRUE(one.starts_with(std::string("LZIP\x01", 5)));
  std::string v0 = one.substr(0, one.size() - 8);  // the member size goes
  v0[4] = 0;
  const struct {
    const char* label;
    std::string lz;
    std::size_t copies;
  } cases[] = {
      {"one member", one, 1},
      {"two members", one + one, 2},
      {"version 0", v0, 1},
      {"version 0 and 1", v0 + one, 2},
      {"trailing bytes", one + "not a member\n", 1},
      {"a few trailing bytes", one + "LZ", 1},
      {"256 MiB", withLzipDictionary(one, 28), 1},
      {"384 MiB", withLzipDictionary(one, 29 | 4 << 5), 1},
      {"512 MiB", withLzipDictionary(one, 29), 1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    expectWhole(c.lz, body, c.copies, "lzip");
  }
  // A tar in it, read in pieces.
  expectChunkedTar(
      withLzipDictionary(lzip(samples::write(archive_write_set_format_pax_restricted, {}, {{"a", body}, {"b", body}})),
                         29),
      body.size(), "tar format (lzip)");
  // An empty .lz (lzip < /dev/null) is whole and holds nothing.
  const ExpansionResult empty = measure(lzip(""));
  EXPECT_EQ(empty.status, EStatus::Ok) << toString(empty.status);
  EXPECT_EQ(empty.totalUncompressed, 0u);
}

// Damage anywhere is Unreadable, counted up to it: cut short, data that
// does not decode, a CRC, data size or member size that does not match,
// a second member whose header is not one. A first header with a version
// or dictionary size the format does not have is no .lz (nor is text that
// starts with the word): not an archive, plain data to the caller.
TEST(Lzip, DamageIsUnreadableAfterWhatCameBefore) {
  const std::string body = text(300000);
  const std::string one = lzip(body);
  ASSERT_FALSE(one.empty());
  const std::size_t trailer = one.size() - 20;
  std::string badData = one, badCrc = one, badSize = one, badMember = one;
  badData[one.size() / 2] ^= 0x55;
  badCrc[trailer] ^= 1;
  badSize[trailer + 4] ^= 1;
  badMember[trailer + 12] ^= 1;
  const struct {
    const char* label;
    std::string lz;
    std::uint64_t atLeast, below;
  } cases[] = {
      {"cut", one.substr(0, one.size() / 2), 1000, body.size()},
      {"cut trailer", one.substr(0, one.size() - 1), body.size(), body.size() + 1},
      {"data", badData, 0, body.size() + 1},
      {"CRC", badCrc, body.size(), body.size() + 1},
      {"data size", badSize, body.size(), body.size() + 1},
      {"member size", badMember, body.size(), body.size() + 1},
      {"a second header", one + std::string("LZIP\x07\x1c", 6) + one.substr(6), body.size(), body.size() + 1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    expectDamaged(c.lz, c.atLeast, c.below);
  }
  for (const std::string& data : {std::string("LZIP\x02", 5) + one.substr(5), withLzipDictionary(one, 30),
                                  withLzipDictionary(one, 11), std::string("LZIP is a compressor.\n")}) {
    SCOPED_TRACE(data.substr(0, 6));
    EXPECT_EQ(measure(data).status, EStatus::NotArchive);
    EXPECT_EQ(unpack(data).result.status, UStatus::NotArchive);
  }
}

// A declared dictionary of 512 MiB (the most lzip has) was allocated whole
// by libarchive's reader: where that address space is refused (a host with
// less memory, ulimit -v, LimitAS=), the bomb was not measured
// (NotArchive). Measured here in a child allowed 256 MiB more than it
// holds: bare, in a .gz, around a .gz, in a tar, in a zip; and unpacked.
TEST(Lzip, ADeclaredDictionaryCostsNoMoreThanTheLimit) {
  if (kSanitized) GTEST_SKIP() << "ASan's shadow memory does not live under RLIMIT_DATA";
  const std::string zeros(12 << 20, '\0');
  const std::string bomb = withLzipDictionary(lzip(zeros), 29);
  ASSERT_FALSE(bomb.empty());
  const std::string aroundGz = withLzipDictionary(lzip(gz(zeros)), 29);
  const std::string inTar = samples::write(archive_write_set_format_pax_restricted, {}, {{"z.lz", bomb}});
  const std::string inZip = samples::zip({{"z.lz", bomb}});
  const int status = exitStatusWithDataLimit(256 << 20, [&] {
    ExpansionLimits limits;
    limits.maxTotal = 10 << 20;
    for (const std::string& attachment : {bomb, gz(bomb), aroundGz, inTar, inZip}) {
      if (measure(attachment, limits).status != EStatus::TooLarge) return 1;
    }
    const Unpacked u = unpack(bomb);
    if (u.result.status != UStatus::Ok || u.entries.size() != 1 || u.entries[0].size() != 12u << 20) return 2;
    return 0;
  });
  EXPECT_EQ(status, 0) << "1: not measured, 2: not unpacked, 3-4: test setup";
}

}  // namespace
}  // namespace sekimori::mime
