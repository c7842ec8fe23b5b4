// tests/unit/milters/antivirus/scanner_test.cpp — ScannerPool against a real
// libclamav with a tiny generated database (EICAR as an .ndb body signature),
// real worker processes, and the fault-injection hooks (SEKIMORI_TEST_HOOKS).
#include "milters/antivirus/scanner.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <iterator>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/util/strings.h"
#include "tests/support/sanitized.h"
#include "tests/unit/common/mime/archive_samples.h"
#include "tests/unit/milters/antivirus/zip_edit.h"

namespace sekimori::antivirus {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using Status = ScanResult::Status;

const std::string kEicar = R"(X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*)";
constexpr const char* kEicarSig = "Sekimori.Test.EICAR";

std::string hex(std::string_view s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

std::string ndbLine(const std::string& name, std::string_view body) { return name + ":0:*:" + hex(body) + "\n"; }

// EICAR followed by 10 KB of repeated lines, so that every archiver and
// compressor really compresses it: stored raw, the EICAR bytes would show
// through and match without any unpacking.
std::string paddedEicar() {
  std::string payload = kEicar + "\n";
  for (int i = 0; i < 200; ++i) payload += "padding line so that the compressor compresses this file\n";
  return payload;
}

// Bytes no content signature matches: only a hash signature finds them.
std::string randomBytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

void writeFile(const fs::path& p, std::string_view data) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << data;
  ASSERT_TRUE(f.good()) << p;
}

// A private temp directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sekimori-scanner-test.XXXXXX";
    const char* p = mkdtemp(tmpl);
    if (p != nullptr) path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Runs `cmd` quietly (its own redirections go in a subshell: "(a > f)").
int sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

// The children of `pid` (the supervisor's are its engine processes).
std::vector<pid_t> childrenOf(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  pid_t c;
  while (f >> c) out.push_back(c);
  return out;
}

std::string readFile(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Scans the bytes of `p` as the milter hands a message over: in a sealed
// ScanFile, which the worker maps.
ScanResult scanPath(ScannerPool& pool, const fs::path& p) {
  const std::string bytes = readFile(p);
  ScanFile f;
  if (f.fd() < 0 || !f.write(bytes.data(), bytes.size()) || !f.seal()) {
    ADD_FAILURE() << "cannot make a sealed memfd of " << p << ": " << std::strerror(errno);
    return ScanResult{};
  }
  return pool.scan(f.fd());
}

// Scans `p` through a plain fd of the file itself, which the worker reads
// with pread (any caller may hand over a file it could still truncate).
ScanResult scanPlainFile(ScannerPool& pool, const fs::path& p) {
  const int fd = open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ScanResult{};
  // Leave the offset at the end: the worker must read from offset 0 regardless.
  lseek(fd, 0, SEEK_END);
  ScanResult r = pool.scan(fd);
  close(fd);
  return r;
}

// scanPath, and the same verdict when the file is read instead of mapped.
ScanResult scanBothWays(ScannerPool& pool, const fs::path& p) {
  const ScanResult mapped = scanPath(pool, p);
  const ScanResult read = scanPlainFile(pool, p);
  EXPECT_EQ(mapped.status, read.status) << p << " mapped: " << mapped.name << mapped.error << ", read: " << read.name
                                        << read.error;
  EXPECT_EQ(mapped.name, read.name) << p;
  return mapped;
}

// Scans `p` every 20 ms until `until` holds for the verdict or `limit`
// passes; the last verdict.
template <typename Pred>
ScanResult scanUntil(ScannerPool& pool, const fs::path& p, Pred until, std::chrono::seconds limit) {
  const auto t0 = Clock::now();
  ScanResult r;
  while (Clock::now() - t0 < limit) {
    r = scanPath(pool, p);
    if (until(r.status)) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return r;
}
const auto kNotClean = [](Status st) { return st != Status::Clean; };  // a new signature matched

class ScannerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(tmp_.path().empty());
    db_ = tmp_.path() / "db";
    data_ = tmp_.path() / "data";
    fs::create_directories(db_);
    fs::create_directories(data_);
    writeFile(db_ / "sekimori-test.ndb", ndbLine(kEicarSig, kEicar));
    writeFile(data_ / "eicar.com", kEicar);
    writeFile(data_ / "clean.txt", "Hello, this is an ordinary message body.\nNothing to see here.\n");
    options_.engine.databaseDir = db_.string();
    options_.workers = 2;
    options_.scanTimeout = std::chrono::seconds(10);
    options_.runDir = (tmp_.path() / "run").string();
    // libclamav's temp files (the workers' directories) inside the test's own directory.
    options_.engine.tempDir = (tmp_.path() / "scantmp").string();
    fs::create_directories(options_.engine.tempDir);
  }

  void startPool() {
    std::string why;
    const auto t0 = Clock::now();
    ASSERT_TRUE(pool_.start(options_, &why)) << why;
    startMs_ = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  }

  // Starts `pool` with the fixture's options but a max_scan_memory of
  // `limit`, in a run directory of its own (a test may start several).
  void startPoolWithScanMemory(ScannerPool& pool, std::uint64_t limit) {
    ScannerOptions o = options_;
    o.engine.limits.maxScanMemory = limit;
    o.runDir = (tmp_.path() / ("run-memory-" + std::to_string(limit))).string();
    std::string why;
    ASSERT_TRUE(pool.start(o, &why)) << why;
  }

  fs::path file(const std::string& name) const { return data_ / name; }

  // Each file scanned mapped and read: its status, and a name starting
  // with `name` (empty: none).
  struct Expected {
    const char* file;
    Status status;
    const char* name;
  };
  void expectVerdicts(std::initializer_list<Expected> cases) {
    for (const Expected& c : cases) {
      const ScanResult r = scanBothWays(pool_, file(c.file));
      EXPECT_EQ(r.status, c.status) << c.file << ": " << toString(r.status) << " " << r.name << " " << r.error;
      EXPECT_TRUE(r.name.starts_with(c.name) && r.name.empty() == (c.name[0] == '\0')) << c.file << ": " << r.name;
    }
  }

  TempDir tmp_;
  fs::path db_, data_;
  ScannerOptions options_;
  ScannerPool pool_;
  long long startMs_ = 0;
};

TEST_F(ScannerTest, CleanAndInfectedAndArchives) {
  // Archives made with the real tools, as mail attachments would be.
  ASSERT_EQ(sh("cd " + data_.string() + " && zip -q eicar.zip eicar.com"), 0);
  ASSERT_EQ(sh("cd " + data_.string() + " && zip -q -P secret encrypted.zip clean.txt"), 0);
  // An encrypted member first, EICAR (padded: compressed) after it, and the
  // other way round: the encryption heuristic must not end the scan.
  writeFile(data_ / "payload.txt", paddedEicar());
  ASSERT_EQ(sh("cd " + data_.string() + " && zip -q -P secret mixed1.zip clean.txt && zip -q mixed1.zip payload.txt"),
            0);
  ASSERT_EQ(sh("cd " + data_.string() + " && zip -q mixed2.zip payload.txt && zip -q -P secret mixed2.zip clean.txt"),
            0);
  ASSERT_EQ(sh("cd " + data_.string() + " && lha aq eicar.lzh eicar.com"), 0) << "lha (jlha-utils) missing?";
  startPool();
  std::cout << "[ timing   ] start() with the test database: " << startMs_ << " ms\n";

  struct Case {
    const char* label;
    const char* file;
    Status status;
    const char* namePrefix;
  } cases[] = {
      {"clean text", "clean.txt", Status::Clean, ""},
      {"EICAR plain", "eicar.com", Status::Infected, kEicarSig},
      {"EICAR in a zip", "eicar.zip", Status::Infected, kEicarSig},
      {"encrypted zip", "encrypted.zip", Status::Encrypted, "Heuristics.Encrypted"},
      {"EICAR after an encrypted member", "mixed1.zip", Status::Infected, kEicarSig},
      {"EICAR before an encrypted member", "mixed2.zip", Status::Infected, kEicarSig},
      {"EICAR in an LZH archive", "eicar.lzh", Status::Infected, kEicarSig},
  };
  for (const auto& c : cases) {
    const auto t0 = Clock::now();
    const ScanResult r = scanBothWays(pool_, file(c.file));
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t0).count();
    std::cout << "[ timing   ] " << c.label << " (mapped, then read): " << us << " us -> " << toString(r.status)
              << " " << r.name << "\n";
    EXPECT_EQ(r.status, c.status) << c.label << ": " << toString(r.status) << " " << r.name << " " << r.error;
    EXPECT_TRUE(r.name.starts_with(c.namePrefix)) << c.label << ": " << r.name;
    EXPECT_TRUE(r.versions.starts_with(ScannerPool::libraryVersion() + "/")) << c.label << ": " << r.versions;
  }
}

// R-AV-2's list: ZIP, ARJ, LZH, CAB, TAR, GZIP, BZIP2 and EXE (a zip
// self-extractor behind an MZ stub), plus 7z and xz, each made with the
// real archiver. The payload is padded so that every archiver compresses
// it: the EICAR bytes never show through, and only unpacking finds them.
// RAR needs libclamunrar (non-free): without it RAR is "unscanned" (above).
TEST_F(ScannerTest, EveryArchiveFormatOfTheSpecIsUnpacked) {
  writeFile(data_ / "payload.txt", paddedEicar());
  const std::string in = "cd " + data_.string() + " && ";
  ASSERT_EQ(sh(in + "zip -q p.zip payload.txt"), 0);
  ASSERT_EQ(sh(in + "arj a -y p.arj payload.txt"), 0) << "arj missing? (scripts/install-deps)";
  ASSERT_EQ(sh(in + "lha aq p.lzh payload.txt"), 0) << "lha (jlha-utils) missing?";
  ASSERT_EQ(sh(in + "gcab -c -z p.cab payload.txt"), 0) << "gcab missing? (scripts/install-deps)";
  ASSERT_EQ(sh(in + "tar -cf p.tar payload.txt && (gzip -c p.tar > p.tar.gz)"), 0);
  ASSERT_EQ(sh(in + "(gzip -c payload.txt > payload.txt.gz)"), 0);
  ASSERT_EQ(sh(in + "(bzip2 -c payload.txt > payload.txt.bz2)"), 0);
  ASSERT_EQ(sh(in + "(xz -c payload.txt > payload.txt.xz)"), 0);
  ASSERT_EQ(sh(in + "7z a -bso0 p.7z payload.txt"), 0) << "7z (p7zip-full) missing?";
  std::string stub = "MZ" + std::string(1022, '\0');
  std::ifstream zip(data_ / "p.zip", std::ios::binary);
  writeFile(data_ / "sfx.exe", stub + std::string(std::istreambuf_iterator<char>(zip), {}));
  startPool();

  for (const char* name : {"p.zip", "p.arj", "p.lzh", "p.cab", "p.tar.gz", "payload.txt.gz", "payload.txt.bz2",
                           "payload.txt.xz", "p.7z", "sfx.exe"}) {
    const std::string bytes = readFile(data_ / name);
    ASSERT_GT(bytes.size(), 0u) << name;
    EXPECT_EQ(bytes.find("EICAR-STANDARD"), std::string::npos) << name << ": the test string shows through";
    const ScanResult r = scanBothWays(pool_, data_ / name);
    EXPECT_EQ(r.status, Status::Infected) << name << ": " << toString(r.status) << " " << r.name << " " << r.error;
    EXPECT_TRUE(r.name.starts_with(kEicarSig)) << name << ": " << r.name;
  }
  // The tar itself is not compressed: there the bytes do show through.
  EXPECT_EQ(scanBothWays(pool_, data_ / "p.tar").status, Status::Infected);
}

// Zips nested `depth` deep (EICAR inside level 1, level 1 inside level 2...).
fs::path nestedZip(const fs::path& dir, int depth) {
  const fs::path work = dir / ("nest" + std::to_string(depth));
  fs::create_directories(work);
  writeFile(work / "payload.txt", paddedEicar());  // never showing through a level
  std::string inner = "payload.txt";
  for (int level = 1; level <= depth; ++level) {
    const std::string outer = "l" + std::to_string(level) + ".zip";
    if (sh("cd " + work.string() + " && zip -q " + outer + " " + inner) != 0) return {};
    inner = outer;
  }
  return work / inner;
}

// Containers libclamav does not unpack (Zstandard, LZ4, .lzma; RAR without
// the unrar module; zip members compressed with LZMA or PPMd; 7-Zip data
// compressed with BZip2): each came back clean from libclamav with EICAR
// inside, and "unscanned" from the worker before it unpacked them itself
// with libarchive. Now what they hold is scanned, at every level.
TEST_F(ScannerTest, ContainersTheEngineCannotUnpackAreUnpackedByTheWorker) {
  writeFile(data_ / "payload.txt", paddedEicar());
  const std::string d = "cd " + data_.string() + " && ";
  ASSERT_EQ(sh(d + "zstd -q -19 payload.txt -o payload.zst"), 0) << "zstd missing?";
  // LZ4 keeps unrepeated bytes as plain literals (EICAR would show
  // through): clean text, as most of what such a container holds.
  std::string text;
  for (int i = 0; i < 200; ++i) text += "an ordinary line of text, repeated so that it compresses\n";
  writeFile(data_ / "text.txt", text);
  ASSERT_EQ(sh(d + "lz4 -q -9 text.txt text.lz4"), 0) << "lz4 missing?";
  ASSERT_EQ(sh(d + "zip -q zst-in.zip payload.zst"), 0);
  // Members compressed with LZMA or PPMd, as 7-Zip writes them on request.
  ASSERT_EQ(sh(d + "7z a -tzip -mm=LZMA lzma.zip payload.txt"), 0) << "7z missing?";
  ASSERT_EQ(sh(d + "7z a -tzip -mm=PPMd ppmd.zip payload.txt"), 0);
  ASSERT_EQ(sh(d + "7z a -tzip -mm=LZMA lzma-clean.zip text.txt clean.txt"), 0);
  // What libclamav itself unpacks stays its own: EICAR deflated beside an
  // LZMA member, Deflate64, and 7-Zip's default (LZMA2) and PPMd.
  ASSERT_EQ(sh(d + "cp lzma-clean.zip mixed.zip && zip -q mixed.zip eicar.com && "
                   "7z a -tzip -mm=Deflate64 deflate64.zip payload.txt && 7z a -t7z lzma2.7z payload.txt && "
                   "7z a -t7z -m0=PPMd ppmd.7z payload.txt"),
            0);
  ASSERT_EQ(sh(d + "7z a -t7z -m0=BZip2 bzip2.7z payload.txt && 7z a -t7z -m0=Deflate deflate.7z payload.txt && "
                   "xz --format=lzma -k payload.txt"),
            0);
  // A Zstandard file inside a zip inside a Zstandard file: unpacked by us,
  // by libclamav, by us again.
  ASSERT_EQ(sh(d + "zstd -q zst-in.zip -o zst-in.zip.zst"), 0);
  // RAR: no RAR writer is packaged, so stored archives made here. Stored,
  // EICAR would show through: the RAR holds a Zstandard file of it.
  writeFile(data_ / "clean.rar", mime::samples::rar4Stored({{"clean.txt", text}}));
  writeFile(data_ / "zst.rar",
            mime::samples::rar4Stored({{"clean.txt", text}, {"payload.zst", readFile(data_ / "payload.zst")}}));
  writeFile(data_ / "encrypted.rar", mime::samples::rar4Stored({{"secret.txt", text}}, true));
  // Cut short: what decompresses before the cut is scanned (Zstandard
  // blocks hold up to 128 KiB: EICAR in the first of three, the last cut).
  std::string longer = paddedEicar();
  for (int i = 0; longer.size() < 300000; ++i) longer += "line " + std::to_string(i) + "\n";
  writeFile(data_ / "longer.txt", longer);
  ASSERT_EQ(sh(d + "zstd -q -19 longer.txt -o longer.zst"), 0);
  const std::string zst = readFile(data_ / "longer.zst");
  writeFile(data_ / "cut.zst", zst.substr(0, zst.size() - 16));
  // ISO 9660 images (libclamav reads them) whose files are compressed with
  // zisofs, which libclamav scans as stored (clean before): EICAR, and a
  // zip of it, over several blocks. The plain image is libclamav's own.
  ASSERT_EQ(sh(d + "zip -q -0 zip-of-longer.zip longer.txt"), 0);
  const std::vector<mime::samples::Entry> iso = {{"readme.txt", text},
                                                 {"eicar.com", paddedEicar()},
                                                 {"longer.zip", readFile(data_ / "zip-of-longer.zip")}};
  const auto image = [](const std::vector<mime::samples::Entry>& files, const char* options) {
    return mime::samples::write(archive_write_set_format_iso9660, {}, files, options);
  };
  writeFile(data_ / "zisofs.iso", image({iso[0], iso[1]}, "zisofs"));
  writeFile(data_ / "zisofs-zip.iso", image({iso[0], iso[2]}, "zisofs"));
  writeFile(data_ / "zisofs-clean.iso", image({iso[0]}, "zisofs"));
  writeFile(data_ / "plain.iso", image(iso, nullptr));
  for (const char* name : {"payload.zst", "cut.zst", "zst-in.zip", "zst-in.zip.zst", "lzma.zip", "ppmd.zip",
                           "bzip2.7z", "deflate.7z", "payload.txt.lzma", "zst.rar", "zisofs.iso", "zisofs-zip.iso"}) {
    EXPECT_EQ(readFile(data_ / name).find("EICAR-STANDARD"), std::string::npos) << name << ": shows through";
  }
  startPool();

  expectVerdicts({
      {"payload.zst", Status::Infected, kEicarSig},
      {"zst-in.zip", Status::Infected, kEicarSig},
      {"zst-in.zip.zst", Status::Infected, kEicarSig},
      {"lzma.zip", Status::Infected, kEicarSig},
      {"ppmd.zip", Status::Infected, kEicarSig},
      {"bzip2.7z", Status::Infected, kEicarSig},
      {"deflate.7z", Status::Infected, kEicarSig},
      {"payload.txt.lzma", Status::Infected, kEicarSig},
      {"zst.rar", Status::Infected, kEicarSig},
      {"cut.zst", Status::Infected, kEicarSig},
      {"mixed.zip", Status::Infected, kEicarSig},
      {"deflate64.zip", Status::Infected, kEicarSig},
      {"lzma2.7z", Status::Infected, kEicarSig},
      {"ppmd.7z", Status::Infected, kEicarSig},
      {"zisofs.iso", Status::Infected, kEicarSig},
      {"zisofs-zip.iso", Status::Infected, kEicarSig},
      {"plain.iso", Status::Infected, kEicarSig},
      {"zisofs-clean.iso", Status::Clean, ""},
      {"text.lz4", Status::Clean, ""},
      {"lzma-clean.zip", Status::Clean, ""},
      {"clean.rar", Status::Clean, ""},
      {"encrypted.rar", Status::Encrypted, "Heuristics.Encrypted.RAR"},
  });
}

// What neither libclamav nor libarchive unpacks: never "clean", but
// "unscanned" naming it.
TEST_F(ScannerTest, ContainersNobodyUnpacksAreUnscannedNotClean) {
  writeFile(data_ / "payload.txt", paddedEicar());
  const std::string d = "cd " + data_.string() + " && ";
  ASSERT_EQ(sh(d + "zip -q clean.zip clean.txt"), 0);
  // EICAR in a member the central directory does not list: a streaming
  // unzipper extracts it, libclamav 1.4.6 never looks at it.
  ASSERT_EQ(sh(d + "zip -q listed.zip clean.txt payload.txt"), 0);
  const std::string unlisted = testing::unlistLastMember(readFile(data_ / "listed.zip"));
  ASSERT_FALSE(unlisted.empty());
  writeFile(data_ / "unlisted.zip", unlisted);
  // The ARM64 filter is newer than this libarchive (3.7).
  ASSERT_EQ(sh(d + "7z a -t7z -mf=ARM64 arm64.7z payload.txt"), 0) << "7z (p7zip-full) missing?";
  ASSERT_EQ(sh(d + "zip -q arm64-in.zip arm64.7z clean.txt"), 0);
  // A RAR 4 signature and a block header with nothing a decoder can use:
  // typed RAR by libclamav, unpacked by no one.
  writeFile(data_ / "broken.rar", std::string("Rar!\x1a\x07\x00\xcf\x90\x73\x00\x00\x0d\x00", 14) +
                                      std::string(6, '\0') + "not really an archive");
  // An ACE archive's header (no unpacker is packaged for ACE).
  writeFile(data_ / "header.ace", std::string("\x2b\x3a\x31\x00\x00\x00\x90**ACE**", 14) + std::string(40, '\x14'));
  // Text that merely starts like a magic number is still text.
  writeFile(data_ / "lzip.txt", "LZIP is a compressor; this line only mentions it.\n");
  // A zisofs file whose blocks do not inflate (zisofs.h).
  std::string zisofs = mime::samples::write(archive_write_set_format_iso9660, {}, {{"eicar.com", paddedEicar()}},
                                            "zisofs");
  const std::size_t at = zisofs.find("\x37\xE4\x53\x96\xC9\xDB\xD6\x07");
  ASSERT_NE(at, std::string::npos);
  const std::size_t firstBlock = at + (static_cast<unsigned char>(zisofs[at + 16]) |
                                       static_cast<unsigned char>(zisofs[at + 17]) << 8);
  zisofs.replace(firstBlock + 2, 16, std::string(16, 'x'));  // after the zlib header
  writeFile(data_ / "damaged-zisofs.iso", zisofs);
  startPool();

  expectVerdicts({
      {"broken.rar", Status::Unscanned, "RAR archive"},
      {"unlisted.zip", Status::Unscanned, "ZIP members outside its central directory"},
      {"arm64.7z", Status::Unscanned, "7-Zip data with an ARM64 filter"},
      {"arm64-in.zip", Status::Unscanned, "7-Zip data with an ARM64 filter"},
      {"header.ace", Status::Unscanned, "ACE archive"},
      {"damaged-zisofs.iso", Status::Unscanned, "zisofs data"},
      {"listed.zip", Status::Infected, kEicarSig},
      {"clean.zip", Status::Clean, ""},
      {"lzip.txt", Status::Clean, ""},
      {"payload.txt", Status::Infected, kEicarSig},
  });
  // The finding is per scan: a clean file after an unscanned one is clean.
  EXPECT_EQ(scanBothWays(pool_, file("clean.txt")).status, Status::Clean);
}

// OpenPGP files as the real gpg writes them without --armor, a type
// libclamav does not know: encrypted (marked so, also inside a zip), and
// signed, whose compressed packet libclamav does not unpack (EICAR in one
// came back clean, then unscanned): the worker unpacks it (openPgpUnpack)
// and scans the signed file, also when gpg streamed it from a pipe (partial
// body lengths), when it is a zip, and when the .gpg is inside a zip.
// Signed without compression, the bytes are there to scan, but not as the
// file: a file known by its MD5 (an .hdb signature) came back clean signed
// with -z 0, from a file or a pipe; the worker unpacks those too.
TEST_F(ScannerTest, OpenPgpFilesAreUnpackedOrMarkedEncrypted) {
  const std::string d = "cd " + data_.string() + " && ";
  const std::string gpg = "gpg --homedir g --batch -q --pinentry-mode loopback ";
  ASSERT_EQ(sh(d + "mkdir -m 700 g && " + gpg + "--passphrase '' --quick-gen-key 's <s@example.net>' " +
               "future-default default never"), 0) << "gpg (gnupg) missing?";
  for (const char* algo : {"zip", "zlib", "bzip2", "uncompressed"}) {
    EXPECT_EQ(sh(d + gpg + "--compress-algo " + algo + " --sign -o signed-" + algo + ".gpg eicar.com"), 0);
  }
  // From a pipe gpg does not know the size: a literal of 40 KB comes in
  // partial body lengths, EICAR at its end.
  std::string piped;
  for (int i = 0; piped.size() < 40000; ++i) piped += "line " + std::to_string(i) + " of a longer file\n";
  writeFile(data_ / "piped.txt", piped + kEicar);
  EXPECT_EQ(sh(d + gpg + "--sign -o signed-clean.gpg clean.txt && " + gpg + "--sign -o signed-pipe.gpg < piped.txt"), 0);
  EXPECT_EQ(sh(d + gpg + "--list-packets signed-pipe.gpg | grep -q 'tag=11 .* partial'"), 0);
  EXPECT_EQ(sh(d + "zip -q e.zip eicar.com && " + gpg + "--sign -o signed-e.zip.gpg e.zip"), 0);
  EXPECT_EQ(sh(d + gpg + "--passphrase x --symmetric -o eicar.com.gpg eicar.com"), 0);
  writeFile(data_ / "m.bin", randomBytes(30000, 7));
  ASSERT_EQ(sh(d + "echo \"$(md5sum m.bin | cut -c1-32):30000:Sekimori.Test.Hash\" > ../db/h.hdb && true"), 0);
  EXPECT_EQ(sh(d + gpg + "-z 0 --sign -o m-file.gpg m.bin && " + gpg + "-z 0 --sign -o m-pipe.gpg < m.bin && " + gpg +
               "-z 0 --store -o m-store.gpg m.bin && " + gpg + "--sign -o m-zlib.gpg m.bin"),
            0);
  sh("gpgconf --homedir " + data_.string() + "/g --kill all");  // the agent gpg started for that home
  ASSERT_EQ(sh(d + "zip -q gpg-in.zip eicar.com.gpg && zip -q gpg-and-eicar.zip eicar.com.gpg eicar.com && "
                   "zip -q signed-in.zip signed-zlib.gpg"),
            0);
  for (const char* f : {"signed-zip.gpg", "signed-zlib.gpg", "signed-bzip2.gpg", "signed-pipe.gpg"}) {
    EXPECT_EQ(readFile(data_ / f).find("EICAR-STANDARD"), std::string::npos) << f;  // only compressed
  }
  startPool();

  expectVerdicts({
      {"signed-zip.gpg", Status::Infected, kEicarSig},
      {"signed-zlib.gpg", Status::Infected, kEicarSig},
      {"signed-bzip2.gpg", Status::Infected, kEicarSig},
      {"signed-pipe.gpg", Status::Infected, kEicarSig},
      {"signed-e.zip.gpg", Status::Infected, kEicarSig},
      {"signed-in.zip", Status::Infected, kEicarSig},
      {"signed-clean.gpg", Status::Clean, ""},
      {"signed-uncompressed.gpg", Status::Infected, kEicarSig},
      {"m.bin", Status::Infected, "Sekimori.Test.Hash"},
      {"m-file.gpg", Status::Infected, "Sekimori.Test.Hash"},
      {"m-pipe.gpg", Status::Infected, "Sekimori.Test.Hash"},
      {"m-store.gpg", Status::Infected, "Sekimori.Test.Hash"},
      {"m-zlib.gpg", Status::Infected, "Sekimori.Test.Hash"},
      {"eicar.com.gpg", Status::Encrypted, "Heuristics.Encrypted.OpenPGP"},
      {"gpg-in.zip", Status::Encrypted, "Heuristics.Encrypted.OpenPGP"},
      {"gpg-and-eicar.zip", Status::Infected, kEicarSig},
  });
  EXPECT_EQ(scanBothWays(pool_, file("clean.txt")).status, Status::Clean);
}

// HTML inside an archive ("HTML smuggling": invoice.html in a zip, which a
// mail program opens in the browser) is checked as an HTML part is, by its
// name, and active content reported beside the verdict; also in what the
// worker unpacks itself. Not the MIME parts of a mail (the milter checks
// those) nor what libclamav derives from them: an HTML body showing the
// text "<script>" escaped stays unflagged.
TEST_F(ScannerTest, ActiveHtmlInsideArchivesIsReported) {
  const std::string active = "<html><body><p>Invoice</p><img src=x onerror=\"location='https://x.example/'\"></body></html>\n";
  const std::string escaped = "<html><body><p>Write &lt;script&gt; to start a script</p></body></html>\n";
  writeFile(data_ / "invoice.html", active);
  writeFile(data_ / "notes.html", escaped);
  writeFile(data_ / "invoice.txt", active);  // not opened as HTML
  const std::string d = "cd " + data_.string() + " && ";
  ASSERT_EQ(sh(d + "zip -q active.zip notes.html invoice.html && zip -q plain.zip notes.html && zip -q txt.zip invoice.txt && "
                   "zip -q nested.zip active.zip && 7z a -bso0 -t7z -m0=BZip2 active.7z invoice.html && "
                   "zstd -q invoice.html -o invoice.html.zst"),
            0);
  writeFile(data_ / "active.iso",
            mime::samples::write(archive_write_set_format_iso9660, {}, {{"invoice.html", active}}));
  const auto mail = [&](const std::string& name, const std::string& body) {
    writeFile(data_ / name, "From: a@example.net\r\nTo: b@example.net\r\nSubject: t\r\nMIME-Version: 1.0\r\n" + body);
  };
  const std::string zipB64 = util::encodeBase64(readFile(data_ / "active.zip"));
  mail("zip-attached.eml", "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
                           "--b\r\nContent-Type: application/zip; name=a.zip\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
                               zipB64 + "\r\n--b--\r\n");
  mail("html-body.eml", "Content-Type: text/html\r\n\r\n" + active);
  mail("escaped-body.eml", "Content-Type: text/html\r\n\r\n" + escaped);
  // One worker: the same HTML seen first as a mail's part (the milter's
  // to check), then inside a zip, must not come from libclamav's cache of
  // clean files, which skips a file it has seen before unseen.
  options_.workers = 1;
  startPool();
  const std::pair<const char*, bool> cases[] = {
      {"html-body.eml", false},   {"escaped-body.eml", false}, {"invoice.html", false},  // the milter's to check
      {"invoice.txt", false},     {"txt.zip", false},          {"plain.zip", false},
      {"active.zip", true},       {"nested.zip", true},        {"active.7z", true},  // BZip2: unpacked by the worker
      {"invoice.html.zst", true},                                                     // no name: libclamav's type
      {"active.iso", true},
      {"zip-attached.eml", true},
  };
  for (const auto& [f, expected] : cases) {
    for (int i = 0; i < 2; ++i) {  // twice: not hidden by libclamav's cache of clean files
      const ScanResult r = i == 0 ? scanPath(pool_, file(f)) : scanPlainFile(pool_, file(f));
      EXPECT_EQ(r.status, Status::Clean) << f << ": " << toString(r.status) << " " << r.name << r.error;
      EXPECT_EQ(r.activeHtml, expected) << f << " (scan " << i + 1 << ")";
    }
  }
}

// Every limit of EngineLimits is a verdict of its own when a scan reaches
// it, never "clean" (libclamav's default would be clean). The archives hold
// nothing but clean text unless said: the limit alone decides. Each is
// scanned twice, mapped and read, so a limited scan left in libclamav's
// clean-file cache would show as clean the second time.
TEST_F(ScannerTest, EachLimitReachedIsLimitsExceededNeverClean) {
  std::string text;
  for (int i = 0; i < 100; ++i) text += "an ordinary line of text, repeated so that it compresses well\n";  // 6.4 KB
  for (const char* name : {"a.txt", "b.txt", "c.txt", "d.txt", "e.txt"}) writeFile(data_ / name, text);
  writeFile(data_ / "tail.txt", text + kEicar + "\n");  // EICAR after the first 6.4 KB
  const std::string d = "cd " + data_.string() + " && ";
  ASSERT_EQ(sh(d + "zip -q one.zip a.txt && zip -q tail.zip tail.txt && zip -q -fz tail64.zip tail.txt"), 0);
  ASSERT_EQ(sh(d + "zip -q three.zip a.txt b.txt c.txt && zip -q five.zip a.txt b.txt c.txt d.txt e.txt"), 0);
  ASSERT_EQ(sh(d + "gcab -c -z tail.cab tail.txt"), 0) << "gcab missing? (scripts/install-deps)";
  ASSERT_LT(fs::file_size(data_ / "five.zip"), 2000u);  // the archives are small, what they hold is not
  // 300 KB of zeros and EICAR, declared as 100 bytes: only what libclamav
  // unpacks can tell its size.
  // The same, compressed in ways libclamav does not unpack: the worker
  // does, under the same limits.
  ASSERT_EQ(sh(d + "zstd -q a.txt -o a.zst && 7z a -bso0 -tzip -mm=LZMA five-lzma.zip a.txt b.txt c.txt d.txt e.txt && "
                   "7z a -bso0 -tzip -mm=LZMA three-lzma.zip a.txt b.txt c.txt"),
            0) << "zstd or 7z missing?";
  writeFile(data_ / "payload.txt", paddedEicar());
  // Levels: a Zstandard file in a zip (2: unpacked by libclamav, then by
  // us), that zip in a Zstandard file (3). Compression stacked on
  // compression (a .zst of a .zst) is one level, as unzstd -r sees it.
  ASSERT_EQ(sh(d + "zstd -q -19 payload.txt -o p.zst && zip -q p.zst.zip p.zst && zstd -q p.zst.zip -o p.zst.zip.zst"),
            0);
  ASSERT_EQ(readFile(data_ / "p.zst").find("EICAR-STANDARD"), std::string::npos);
  // What libclamav unpacks from the entries the worker unpacked counts
  // too, once for all of them: five zips of 6.4 KB text in a 7-Zip archive
  // libclamav does not decode (BZip2) are 33 KB, though each is 6.7 KB to
  // libclamav and the entries 1.5 KB together; two zips of three files
  // are eight files. Each text differs (libclamav skips a file it has
  // found clean before). Not in a stored RAR: libclamav finds a zip inside
  // any bytes it scans, as in a self-extractor, and unpacks it itself.
  for (int i = 1; i <= 6; ++i) writeFile(data_ / ("u" + std::to_string(i) + ".txt"), text + std::to_string(i) + "\n");
  ASSERT_EQ(sh(d + "for i in 1 2 3 4 5; do zip -q u$i.zip u$i.txt; done && zip -q v1.zip u1.txt u2.txt u3.txt && "
                   "zip -q v2.zip u4.txt u5.txt u6.txt && "
                   "7z a -bso0 -t7z -m0=BZip2 five-zips.7z u1.zip u2.zip u3.zip u4.zip u5.zip && "
                   "7z a -bso0 -t7z -m0=BZip2 two-zips.7z v1.zip v2.zip"),
            0);
  writeFile(data_ / "zeros.txt", std::string(300000, '\0') + kEicar + "\n");
  ASSERT_EQ(sh(d + "zip -q zeros.zip zeros.txt"), 0);
  const std::string understated = testing::understateFirstMember(readFile(data_ / "zeros.zip"), 100);
  ASSERT_FALSE(understated.empty());
  writeFile(data_ / "understated.zip", understated);

  const auto fileSize = [](std::uint64_t n) { return [n](EngineLimits& l) { l.maxFileSize = n; }; };
  struct Case {
    const char* limit;
    std::function<void(EngineLimits&)> set;
    const char* file;
    Status status;
    const char* name;
  } cases[] = {
      {"max file size 4 KB", fileSize(4096), "one.zip", Status::LimitsExceeded,
       "Heuristics.Limits.Exceeded.MaxFileSize"},
      // Longer than the limit but scanned whole: what is found wins.
      {"max file size 4 KB, EICAR past it", fileSize(4096), "tail.zip", Status::Infected, kEicarSig},
      {"max file size 4 KB, EICAR past it in a CAB", fileSize(4096), "tail.cab", Status::Infected, kEicarSig},
      // libclamav 1.4.6 scans a zip member longer than its own file size
      // limit cut short (empty under 8 KiB), a cab member cut short: the
      // size the archive declares tells, or the scan size (a member longer
      // than the scan size is whichever libclamav or the worker sees first).
      {"scan size 4 KB, a zip member longer", [](EngineLimits& l) { l.maxFileSize = 1 << 20, l.maxScanSize = 4096; },
       "tail.zip", Status::LimitsExceeded, "Heuristics.Limits.Exceeded.Max"},
      {"scan size 4 KB, a zip64 member longer", [](EngineLimits& l) { l.maxFileSize = 1 << 20, l.maxScanSize = 4096; },
       "tail64.zip", Status::LimitsExceeded, "Heuristics.Limits.Exceeded.MaxFileSize"},
      {"scan size 4 KB, a cab member longer", [](EngineLimits& l) { l.maxFileSize = 1 << 20, l.maxScanSize = 4096; },
       "tail.cab", Status::LimitsExceeded, "Heuristics.Limits.Exceeded.MaxFileSize"},
      {"scan size 4 KB, the file itself longer", [](EngineLimits& l) { l.maxScanSize = 4096; }, "tail.txt",
       Status::LimitsExceeded, "Heuristics.Limits.Exceeded.MaxScanSize"},
      {"max scan size 16 KB", [](EngineLimits& l) { l.maxScanSize = 16384; }, "three.zip", Status::LimitsExceeded,
       "Heuristics.Limits.Exceeded.MaxScanSize"},
      {"max files 3", [](EngineLimits& l) { l.maxFiles = 3; }, "five.zip", Status::LimitsExceeded,
       "Heuristics.Limits.Exceeded.MaxFiles"},
      // What the worker unpacks itself (scanUnpacked) counts the same.
      {"max file size 4 KB, unpacked by the worker", fileSize(4096), "a.zst", Status::LimitsExceeded,
       "Heuristics.Limits.Exceeded.MaxFileSize"},
      {"max files 3, unpacked by the worker", [](EngineLimits& l) { l.maxFiles = 3; }, "five-lzma.zip",
       Status::LimitsExceeded, "Heuristics.Limits.Exceeded.MaxFiles"},
      {"max scan size 16 KB, unpacked by the worker", [](EngineLimits& l) { l.maxScanSize = 16384; },
       "three-lzma.zip", Status::LimitsExceeded, "Heuristics.Limits.Exceeded.MaxScanSize"},
      {"max scan size 16 KB, over the worker's entries and what libclamav unpacks from them",
       [](EngineLimits& l) { l.maxScanSize = 16384; }, "five-zips.7z", Status::LimitsExceeded,
       "Heuristics.Limits.Exceeded.MaxScanSize"},
      {"max files 5, over the worker's entries and what libclamav unpacks from them",
       [](EngineLimits& l) { l.maxFiles = 5; }, "two-zips.7z", Status::LimitsExceeded,
       "Heuristics.Limits.Exceeded.MaxFiles"},
      {"max recursion 2, two levels, one unpacked by the worker", [](EngineLimits& l) { l.maxRecursion = 2; },
       "p.zst.zip", Status::Infected, kEicarSig},
      {"max recursion 2, three levels, two unpacked by the worker", [](EngineLimits& l) { l.maxRecursion = 2; },
       "p.zst.zip.zst", Status::LimitsExceeded, "Heuristics.Limits.Exceeded.MaxRecursion"},
      // A scan size that is no multiple of libclamav's 8 KiB unzip buffer:
      // it used to cut the member at 96 KB, under both limits, and scan that.
      {"scan and file size 100 KB, a zip member that understates its size",
       [](EngineLimits& l) { l.maxFileSize = l.maxScanSize = 100 * 1024; }, "understated.zip",
       Status::LimitsExceeded, "Heuristics.Limits.Exceeded.Max"},
  };
  int n = 0;
  for (const auto& c : cases) {
    ScannerOptions o = options_;
    c.set(o.engine.limits);
    o.runDir = (tmp_.path() / ("run-limit" + std::to_string(++n))).string();
    ScannerPool pool;
    std::string why;
    ASSERT_TRUE(pool.start(o, &why)) << c.limit << ": " << why;
    // Within the limits, a small file is clean: the limit is what counts.
    EXPECT_EQ(scanBothWays(pool, file("clean.txt")).status, Status::Clean) << c.limit;
    for (int i = 0; i < 2; ++i) {
      const ScanResult r = scanBothWays(pool, file(c.file));
      EXPECT_EQ(r.status, c.status) << c.limit << ": " << toString(r.status) << " " << r.name << " " << r.error;
      EXPECT_TRUE(r.name.starts_with(c.name)) << c.limit << ": " << r.name;
    }
    pool.stop();
  }
}

// max_scan_memory: libclamav's memory grows with what it parses, and its
// mail parser keeps every line apart (6 MB of empty lines take it about
// 190 MiB); the worker itself unpacks a Zstandard file (which libclamav
// does not) into memory, 100 MB of zeros from 5 KB. Within the limit both
// are clean; past it the scan is a limit of its own, never clean and never
// a crashed worker, and the worker's replacement scans on. Both pools are
// one worker, so the scans after the first meet the replacement.
// ASan's allocator aborts the process where malloc would fail: the worker
// dies, a scan failure (never clean either).
constexpr Status kPastTheMemoryLimit = support::kSanitized ? Status::Error : Status::LimitsExceeded;
TEST_F(ScannerTest, AScanNeedingMoreMemoryThanMaxScanMemoryIsLimitsExceeded) {
  std::string mail =
      "From: a@example.com\r\nTo: b@example.net\r\nSubject: empty lines\r\nMIME-Version: 1.0\r\n"
      "Content-Type: text/plain\r\n\r\n";
  for (int i = 0; i < 3'000'000; ++i) mail += "\r\n";
  writeFile(data_ / "empty-lines.eml", mail);
  writeFile(data_ / "zeros.bin", std::string(100'000'000, '\0'));
  ASSERT_EQ(sh("cd " + data_.string() + " && zstd -q -19 --rm zeros.bin -o zeros.zst"), 0) << "zstd missing?";
  options_.workers = 1;
  options_.engine.limits.maxScanSize = options_.engine.limits.maxFileSize = 128u << 20;
  for (const std::uint64_t limit : {std::uint64_t{64} << 20, std::uint64_t{4} << 30}) {
    ScannerPool pool;
    ASSERT_NO_FATAL_FAILURE(startPoolWithScanMemory(pool, limit));
    const bool tight = limit < (256u << 20);
    for (const char* f : {"empty-lines.eml", "zeros.zst"}) {
      const ScanResult r = scanBothWays(pool, file(f));
      EXPECT_EQ(r.status, tight ? kPastTheMemoryLimit : Status::Clean)
          << f << ", " << limit << " bytes: " << toString(r.status) << " " << r.name << " " << r.error;
      if (r.status != Status::Error) {
        EXPECT_EQ(r.name, tight ? "Heuristics.Limits.Exceeded.MaxScanMemory" : "") << f << ", " << limit << " bytes";
      }
      EXPECT_EQ(scanPath(pool, file("eicar.com")).status, Status::Infected) << f << ", " << limit << " bytes";
      EXPECT_EQ(scanPath(pool, file("clean.txt")).status, Status::Clean) << f << ", " << limit << " bytes";
    }
    pool.stop();
  }
}

// LZMA data declares its dictionary size, up to 4 GiB, and a decoder
// allocates it before it writes a byte. xz and 7-Zip decode every size, so
// such a file reaches the recipient whole. Before: a .lzma declaring 2 GiB
// or more was not taken for .lzma at all (scanned as opaque bytes: clean
// with EICAR inside), one libarchive does not read (over 128 MiB) was
// unscanned, and a zip whose LZMA member declares more than the scan may
// have was unscanned (libarchive's allocation failed). Now a .lzma is
// decoded with no more dictionary than its output needs, whatever it
// declares, and a zip member's dictionary past max_scan_memory is that
// limit, as libclamav's own allocations are. An .lz file declaring lzip's
// largest dictionary, 512 MiB, was unpacked by libarchive, which allocated
// it whole: past max_scan_memory, not unpacked. Now it is decoded as a
// .lzma is.
TEST_F(ScannerTest, DeclaredLzmaDictionariesAreDecodedOrALimit) {
  writeFile(data_ / "payload.txt", paddedEicar());
  std::string text;
  for (int i = 0; i < 300; ++i) text += "an ordinary line of text, repeated so that it compresses\n";
  writeFile(data_ / "text.txt", text);
  const std::string d = "cd " + data_.string() + " && ";
  ASSERT_EQ(sh(d + "xz --format=lzma -k payload.txt text.txt"), 0);
  ASSERT_EQ(sh(d + "7z a -bso0 -tzip -mm=LZMA -md=64k eicar-lzma.zip payload.txt && "
                   "7z a -bso0 -tzip -mm=LZMA -md=64k clean-lzma.zip text.txt"),
            0)
      << "7z missing?";
  const auto withDictionary = [](std::string f, std::uint32_t dict) {
    testing::putLe(f, 1, dict, 4);
    return f;
  };
  constexpr std::uint32_t k256M = 256u << 20, k3G = 3u << 30, k4G = ~0u;
  for (const auto& [name, dict] : {std::pair{"256m", k256M}, {"3g", k3G}, {"4g", k4G}}) {
    writeFile(data_ / ("payload-" + std::string(name) + ".lzma"),
              withDictionary(readFile(data_ / "payload.txt.lzma"), dict));
  }
  writeFile(data_ / "text-3g.lzma", withDictionary(readFile(data_ / "text.txt.lzma"), k3G));
  for (const std::string kind : {"payload", "text"}) {
    std::string lz = mime::samples::write(archive_write_set_format_raw, {archive_write_add_filter_lzip},
                                          {{"data", readFile(data_ / (kind + ".txt"))}});
    ASSERT_TRUE(lz.starts_with("LZIP"));
    lz[5] = 29;  // the coded dictionary size: 2^29
    writeFile(data_ / (kind + "-512m.lz"), lz);
  }
  for (const auto& [name, dict] : {std::pair{"256m", k256M}, {"3g", k3G}}) {
    for (const char* kind : {"eicar", "clean"}) {
      const std::string z = testing::setFirstLzmaDictionary(readFile(data_ / (std::string(kind) + "-lzma.zip")), dict);
      ASSERT_FALSE(z.empty()) << kind;
      writeFile(data_ / (std::string(kind) + "-" + name + ".zip"), z);
    }
  }
  // The end record misplaces the directory (its size is 1 short): 7-Zip
  // and libarchive still find the member, by its local header, and
  // libclamav skips it (before, such a zip was clean with EICAR inside).
  for (const char* zip : {"eicar-lzma", "clean-lzma", "eicar-3g", "clean-3g"}) {
    const std::string z = mime::samples::misplaceDirectory(readFile(data_ / (std::string(zip) + ".zip")));
    ASSERT_FALSE(z.empty()) << zip;
    writeFile(data_ / (std::string(zip) + "-lost.zip"), z);
  }
  constexpr const char* kMemory = "Heuristics.Limits.Exceeded.MaxScanMemory";
  options_.workers = 1;
  for (const std::uint64_t limit : {std::uint64_t{64} << 20, std::uint64_t{1} << 30}) {
    SCOPED_TRACE("max_scan_memory " + std::to_string(limit >> 20) + "M");
    ScannerPool pool;
    ASSERT_NO_FATAL_FAILURE(startPoolWithScanMemory(pool, limit));
    const bool tight = limit < k256M;
    const struct {
      const char* file;
      Status status;
      const char* name;
    } cases[] = {
        {"payload-256m.lzma", Status::Infected, kEicarSig},
        {"payload-3g.lzma", Status::Infected, kEicarSig},
        {"payload-4g.lzma", Status::Infected, kEicarSig},
        {"text-3g.lzma", Status::Clean, ""},
        {"payload-512m.lz", Status::Infected, kEicarSig},
        {"text-512m.lz", Status::Clean, ""},
        {"eicar-256m.zip", tight ? Status::LimitsExceeded : Status::Infected, tight ? kMemory : kEicarSig},
        {"clean-256m.zip", tight ? Status::LimitsExceeded : Status::Clean, tight ? kMemory : ""},
        {"eicar-3g.zip", Status::LimitsExceeded, kMemory},
        {"clean-3g.zip", Status::LimitsExceeded, kMemory},
        {"eicar-lzma-lost.zip", Status::Infected, kEicarSig},
        {"clean-lzma-lost.zip", Status::Clean, ""},
        {"eicar-3g-lost.zip", Status::LimitsExceeded, kMemory},
        {"clean-3g-lost.zip", Status::LimitsExceeded, kMemory},
    };
    for (const auto& c : cases) {
      const ScanResult r = scanBothWays(pool, file(c.file));
      EXPECT_EQ(r.status, c.status) << c.file << ": " << toString(r.status) << " " << r.name << " " << r.error;
      EXPECT_TRUE(r.name.starts_with(c.name) && (*c.name != '\0' || r.name.empty())) << c.file << ": " << r.name;
    }
    EXPECT_EQ(scanPath(pool, file("eicar.com")).status, Status::Infected);
    EXPECT_EQ(scanPath(pool, file("clean.txt")).status, Status::Clean);
    pool.stop();
  }
}

// libclamav keeps the hashes of files it found clean and skips them the
// next time. A zip holding Zstandard data is "clean" to libclamav (it
// scanned the bytes it could not unpack): scanned again by the same worker
// it must not come back clean from that cache, neither when the worker
// unpacked it (infected) nor when no one could (unscanned).
TEST_F(ScannerTest, AnUnpackedOrUnscannedContainerIsNeverCleanFromTheCache) {
  writeFile(data_ / "payload.txt", paddedEicar());
  const std::string d = "cd " + data_.string() + " && ";
  ASSERT_EQ(sh(d + "zstd -q -19 payload.txt -o payload.zst && zip -q zst-in.zip payload.zst"), 0) << "zstd missing?";
  ASSERT_EQ(sh(d + "7z a -t7z -mf=ARM64 arm64.7z payload.txt && zip -q arm64-in.zip arm64.7z"), 0) << "7z missing?";
  ASSERT_EQ(sh(d + "zip -q clean.zip clean.txt"), 0);
  options_.workers = 1;  // every scan in the same worker's cache (or its replacement's)
  startPool();
  for (int i = 0; i < 3; ++i) {
    const ScanResult r = scanPath(pool_, file("zst-in.zip"));
    EXPECT_EQ(r.status, Status::Infected) << "scan " << i + 1 << ": " << toString(r.status) << " " << r.error;
    const ScanResult u = scanPath(pool_, file("arm64-in.zip"));
    EXPECT_EQ(u.status, Status::Unscanned) << "scan " << i + 1 << ": " << toString(u.status) << " " << u.error;
    EXPECT_EQ(u.name, "7-Zip data with an ARM64 filter") << "scan " << i + 1;
    // A clean file in between is clean (and may be cached: it is clean).
    EXPECT_EQ(scanPath(pool_, file("clean.zip")).status, Status::Clean) << "scan " << i + 1;
  }
}

TEST_F(ScannerTest, NestedArchivesUpToTheRecursionLimit) {
  ASSERT_EQ(options_.engine.limits.maxRecursion, 8u);
  const fs::path eight = nestedZip(data_, 8);
  const fs::path nine = nestedZip(data_, 9);
  ASSERT_FALSE(eight.empty());
  ASSERT_FALSE(nine.empty());
  startPool();

  const ScanResult r8 = scanBothWays(pool_, eight);
  EXPECT_EQ(r8.status, Status::Infected) << toString(r8.status) << " " << r8.name << " " << r8.error;
  EXPECT_TRUE(r8.name.starts_with(kEicarSig)) << r8.name;

  // One level deeper than scanned: never clean, a verdict of its own.
  const ScanResult r9 = scanBothWays(pool_, nine);
  EXPECT_NE(r9.status, Status::Clean);
  EXPECT_EQ(r9.status, Status::LimitsExceeded) << toString(r9.status) << " " << r9.name << " " << r9.error;
  EXPECT_EQ(r9.name, "Heuristics.Limits.Exceeded.MaxRecursion");
}

TEST_F(ScannerTest, EmptyDatabaseDirectoryFailsStartNamingIt) {
  fs::remove(db_ / "sekimori-test.ndb");
  std::string why;
  EXPECT_FALSE(pool_.start(options_, &why));
  EXPECT_NE(why.find(db_.string()), std::string::npos) << why;
  std::cout << "[ message  ] " << why << "\n";
  // Nothing left behind: a later scan is an error, not a hang.
  EXPECT_EQ(pool_.scan(0).status, Status::Error);
}

TEST_F(ScannerTest, MissingDatabaseDirectoryFailsStartNamingIt) {
  options_.engine.databaseDir = (tmp_.path() / "nonexistent").string();
  std::string why;
  EXPECT_FALSE(pool_.start(options_, &why));
  EXPECT_NE(why.find(options_.engine.databaseDir), std::string::npos) << why;
}

TEST_F(ScannerTest, StopRemovesTheSocketDirectoryItCreated) {
  startPool();
  EXPECT_TRUE(fs::exists(fs::path(options_.runDir) / "scan.sock"));
  EXPECT_EQ(fs::status(options_.runDir).permissions() & fs::perms::all, fs::perms::owner_all);
  pool_.stop();
  EXPECT_FALSE(fs::exists(options_.runDir));
  EXPECT_EQ(scanPath(pool_, file("clean.txt")).status, Status::Error);
}

// The worker temp directories below [engine] temp_dir: "sekimori-av-scan-PID".
std::set<std::string> workerTempDirs(const fs::path& base) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(base)) {
    const std::string name = e.path().filename();
    if (name.starts_with("sekimori-av-scan-")) out.insert(name);
  }
  return out;
}

// The worker temp directories once there are `n` of them (5 s at most):
// a worker makes its own when it starts, which may be after a scan
// another worker served.
std::set<std::string> workerTempDirsOnce(const fs::path& base, std::size_t n) {
  auto dirs = workerTempDirs(base);
  for (const auto until = Clock::now() + std::chrono::seconds(5); dirs.size() != n && Clock::now() < until;) {
    std::this_thread::sleep_for(milliseconds(10));
    dirs = workerTempDirs(base);
  }
  return dirs;
}

// A pid that belonged to a process of ours that is gone.
pid_t deadPid() {
  const pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, nullptr, 0);
  return pid;
}

// Where temp files go when [engine] temp_dir is empty: $TMPDIR, else a
// tmpfs with room for twice what the workers may write at once, else /tmp.
TEST(ScanTempBase, TmpfsWithRoomElseTmp) {
  // $TMPDIR as it was, whatever way the test ends.
  struct RestoreTmpdir {
    const char* saved = std::getenv("TMPDIR");
    std::string value = saved != nullptr ? saved : "";
    ~RestoreTmpdir() {
      if (saved != nullptr) {
        setenv("TMPDIR", value.c_str(), 1);
      } else {
        unsetenv("TMPDIR");
      }
    }
  } restore;
  unsetenv("TMPDIR");
  struct statfs shm {};
  ASSERT_EQ(statfs("/dev/shm", &shm), 0) << "no /dev/shm on this machine";
  ASSERT_EQ(shm.f_type, TMPFS_MAGIC) << "/dev/shm is not a tmpfs here";
  const std::uint64_t free = static_cast<std::uint64_t>(shm.f_bavail) * shm.f_bsize;
  ScannerOptions o;
  o.workers = 2;
  o.engine.limits.maxScanSize = 1 << 20;  // 2 x 2 x 2 MiB = 8 MiB of room wanted
  if (free < (1ULL << 30)) GTEST_SKIP() << "less than 1 GiB free in /dev/shm";
  EXPECT_EQ(scanTempBase(o), "/dev/shm");
  // Twice every worker's scan size and 1 MiB: 256 MiB more than it has, or
  // less (others may write to /dev/shm meanwhile).
  o.engine.limits.maxScanSize = free / 4 - (1 << 20) + (64 << 20);
  EXPECT_EQ(scanTempBase(o), "/tmp");
  o.engine.limits.maxScanSize = free / 4 - (1 << 20) - (64 << 20);
  EXPECT_EQ(scanTempBase(o), "/dev/shm");
  // Not a tmpfs, or not there.
  TempDir disk;
  struct statfs d {};
  ASSERT_EQ(statfs(disk.path().c_str(), &d), 0);
  if (d.f_type != TMPFS_MAGIC) {
    EXPECT_EQ(scanTempBase(o, disk.path()), "/tmp");
  }
  EXPECT_EQ(scanTempBase(o, "/nonexistent/shm"), "/tmp");
  // Said so: $TMPDIR, then temp_dir.
  setenv("TMPDIR", disk.path().c_str(), 1);
  EXPECT_EQ(scanTempBase(o), disk.path());
  o.engine.tempDir = "/var/tmp/sekimori";
  EXPECT_EQ(scanTempBase(o), "/var/tmp/sekimori");
}

// max_scan_memory bounds one scan; all workers at their bound at once must
// fit in the machine, or the OOM killer may still choose (said at start).
TEST(ScanMemoryWarning, SaidWhenAllWorkersAtTheLimitWouldNotFit) {
  ScannerOptions o;
  o.workers = 4;
  o.engine.limits.maxScanMemory = 1ULL << 30;
  EXPECT_EQ(scanMemoryWarning(o, 24ULL << 30), "");
  EXPECT_EQ(scanMemoryWarning(o, 4ULL << 30), "");  // exactly fits
  EXPECT_EQ(scanMemoryWarning(o, 2ULL << 30),
            "[engine] max_scan_memory (1024 MiB) x 4 scanner workers = 4096 MiB, more than this machine's 2048 MiB "
            "of memory: scans taking it at once could still bring the kernel's OOM killer; lower max_scan_memory or "
            "[engine] workers");
  o.workers = 1;
  EXPECT_EQ(scanMemoryWarning(o, 2ULL << 30), "");
  o.engine.limits.maxScanMemory = 0;  // none set (tests only: the conf refuses 0)
  EXPECT_EQ(scanMemoryWarning(o, 2ULL << 30), "");
  o.engine.limits.maxScanMemory = 1ULL << 30;
  EXPECT_EQ(scanMemoryWarning(o, 0), "");  // unknown
  // Under a cgroup's memory limit (systemd's MemoryMax=), that is what
  // there is: its OOM killer takes the whole service.
  o.workers = 4;
  EXPECT_EQ(scanMemoryWarning(o, 24ULL << 30, 2ULL << 30),
            "[engine] max_scan_memory (1024 MiB) x 4 scanner workers = 4096 MiB, more than the 2048 MiB of memory "
            "its cgroup may use (memory.max): scans taking it at once could still bring the kernel's OOM killer; "
            "lower max_scan_memory or [engine] workers");
  EXPECT_EQ(scanMemoryWarning(o, 24ULL << 30, 8ULL << 30), "");
  EXPECT_NE(scanMemoryWarning(o, 2ULL << 30, 8ULL << 30).find("this machine's 2048 MiB"), std::string::npos);
  EXPECT_NE(scanMemoryWarning(o, 0, 2ULL << 30), "");
}

// The limit is read from the cgroup /proc/self/cgroup names and every one
// above it, the lowest: cgroup v2 (memory.max, "max" for none) and v1
// (memory.limit_in_bytes, a huge number for none).
TEST(ScanMemoryWarning, TheCgroupLimitIsTheLowestOnItsPath) {
  TempDir dir;
  const std::string root = dir.path().string();
  const auto put = [&](const std::string& path, const std::string& value) {
    fs::create_directories(fs::path(root + path).parent_path());
    std::ofstream(root + path) << value;
  };
  put("/system.slice/memory.max", "max\n");
  put("/system.slice/sekimori.service/memory.max", "3221225472\n");
  EXPECT_EQ(cgroupMemoryLimit("0::/system.slice/sekimori.service\n", root), 3ULL << 30);
  put("/system.slice/memory.max", "2147483648\n");  // the parent's is lower
  EXPECT_EQ(cgroupMemoryLimit("0::/system.slice/sekimori.service\n", root), 2ULL << 30);
  EXPECT_EQ(cgroupMemoryLimit("0::/user.slice\n", root), 0u);  // nothing there
  EXPECT_EQ(cgroupMemoryLimit("0::/\n", root), 0u);
  EXPECT_EQ(cgroupMemoryLimit("", root), 0u);
  EXPECT_EQ(cgroupMemoryLimit("0::system.slice\n0:\nnonsense", root), 0u);  // not as the kernel writes it
  // v1: the memory controller's own hierarchy.
  put("/memory/docker/abc/memory.limit_in_bytes", "1073741824\n");
  put("/memory/docker/memory.limit_in_bytes", "9223372036854771712\n");
  EXPECT_EQ(cgroupMemoryLimit("5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n", root), 1ULL << 30);
  EXPECT_EQ(cgroupMemoryLimit("4:cpu:/docker/abc\n", root), 0u);
  put("/memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n");
  EXPECT_EQ(cgroupMemoryLimit("4:memory:/docker/abc\n", root), 0u);
}

TEST_F(ScannerTest, EachWorkerHasATempDirectoryOfItsOwnRemovedWithIt) {
  const fs::path base = options_.engine.tempDir;  // the fixture's
  // Left by workers of a daemon that was killed: removed at start. One of a
  // live process (another daemon sharing the directory) stays.
  const std::string gone = "sekimori-av-scan-" + std::to_string(deadPid());
  const std::string live = "sekimori-av-scan-" + std::to_string(getpid());
  for (const auto& d : {gone, live}) {
    fs::create_directories(base / d / "clamav-leftover.tmp");
    writeFile(base / d / "clamav-leftover.tmp" / "member", "decoded attachment");
  }
  startPool();
  EXPECT_EQ(scanPath(pool_, file("eicar.com")).status, Status::Infected);
  auto dirs = workerTempDirsOnce(base, 1 + static_cast<std::size_t>(options_.workers));
  EXPECT_EQ(dirs.count(gone), 0u);
  EXPECT_EQ(dirs.count(live), 1u);
  EXPECT_EQ(dirs.size(), 1u + static_cast<std::size_t>(options_.workers)) << ::testing::PrintToString(dirs);
  pool_.stop();
  EXPECT_EQ(workerTempDirs(base), std::set<std::string>{live});
}

#ifdef SEKIMORI_TEST_HOOKS
// Sets SEKIMORI_FAULT_INJECTION=1 for the workers forked while it lives.
class FaultInjection {
 public:
  FaultInjection() { setenv("SEKIMORI_FAULT_INJECTION", "1", 1); }
  ~FaultInjection() { unsetenv("SEKIMORI_FAULT_INJECTION"); }
};

TEST_F(ScannerTest, CrashedWorkerCostsOneScanAndIsReplaced) {
  FaultInjection fi;
  options_.workers = 1;  // the next scan must be served by the replacement
  writeFile(file("crash.txt"), "a message with SEKIMORI-TEST-CRASH inside\n");
  startPool();
  const ScanResult r = scanPath(pool_, file("crash.txt"));
  EXPECT_EQ(r.status, Status::Error);
  EXPECT_EQ(r.error, "scanner worker died during the scan");
  EXPECT_TRUE(r.versions.empty());
  for (int i = 0; i < 3; ++i) {
    const ScanResult next = scanPath(pool_, file("eicar.com"));
    EXPECT_EQ(next.status, Status::Infected) << next.error;
  }
}

// An exception out of a worker's scan (what the worker catches is
// std::bad_alloc, max_scan_memory's) ends that worker like a crash. It
// must not unwind out of the forked worker into the code it was forked
// from: here that is this test, whose copy would run on, stop the pool
// and remove its directory under the real one.
TEST_F(ScannerTest, AnExceptionInAWorkerCostsOneScanAndGoesNoFurther) {
  FaultInjection fi;
  options_.workers = 1;
  writeFile(file("throw.txt"), "a message with SEKIMORI-TEST-THROW inside\n");
  startPool();
  const ScanResult r = scanPath(pool_, file("throw.txt"));
  EXPECT_EQ(r.status, Status::Error);
  EXPECT_EQ(r.error, "scanner worker died during the scan");
  std::this_thread::sleep_for(milliseconds(500));  // time for a runaway copy to do its harm
  for (int i = 0; i < 3; ++i) {
    const ScanResult next = scanPath(pool_, file("eicar.com"));
    EXPECT_EQ(next.status, Status::Infected) << next.error;
  }
  EXPECT_TRUE(fs::exists(fs::path(options_.runDir) / "scan.sock"));
}

TEST_F(ScannerTest, WhatACrashedScanLeavesInItsTempDirectoryIsRemoved) {
  FaultInjection fi;
  const fs::path base = options_.engine.tempDir;  // the fixture's
  options_.workers = 1;
  writeFile(file("crash.txt"), "a message with SEKIMORI-TEST-CRASH inside\n");
  startPool();
  EXPECT_EQ(scanPath(pool_, file("clean.txt")).status, Status::Clean);  // the worker is up
  const auto before = workerTempDirs(base);
  ASSERT_EQ(before.size(), 1u);
  // As libclamav leaves them when the scan dies halfway: a scan directory with a decoded member.
  fs::create_directories(base / *before.begin() / "clamav-0123.tmp");
  writeFile(base / *before.begin() / "clamav-0123.tmp" / "member", std::string(4096, 'x'));
  EXPECT_EQ(scanPath(pool_, file("crash.txt")).status, Status::Error);
  EXPECT_EQ(scanPath(pool_, file("eicar.com")).status, Status::Infected);  // the replacement serves
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  auto after = workerTempDirs(base);
  while ((after.count(*before.begin()) || after.size() != 1) && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
    after = workerTempDirs(base);
  }
  EXPECT_EQ(after.count(*before.begin()), 0u) << "the crashed worker's temp directory is still there";
  EXPECT_EQ(after.size(), 1u) << ::testing::PrintToString(after);
}

// A database that crashes libclamav's loader (a bug, a corrupt file):
// at start, start() fails naming the crash ...
TEST_F(ScannerTest, LoadThatCrashesAtStartFailsStartNamingTheCrash) {
  FaultInjection fi;
  writeFile(db_ / "SEKIMORI-TEST-CRASH-ON-LOAD", "");
  std::string why;
  EXPECT_FALSE(pool_.start(options_, &why));
  std::cout << "[ message  ] " << why << "\n";
  EXPECT_NE(why.find("crashed the engine process (killed by signal 11)"), std::string::npos) << why;
  EXPECT_NE(why.find(db_.string()), std::string::npos) << why;
  EXPECT_FALSE(fs::exists(options_.runDir));
}

// ... and at a reload it costs nothing: the engine process serving keeps
// serving (same process, no scan fails), and the next change loads.
TEST_F(ScannerTest, ReloadThatCrashesTheLoaderKeepsTheOldEngine) {
  FaultInjection fi;
  options_.dbCheckInterval = std::chrono::hours(1);
  const std::string marker = "SEKIMORI-NEW-SIG-TEST";
  writeFile(file("new.txt"), "payload " + marker + " end\n");
  startPool();
  std::atomic<int> deaths{0};
  pool_.watch([&] { ++deaths; });
  const std::vector<pid_t> before = childrenOf(pool_.supervisorPid());
  ASSERT_EQ(before.size(), 1u);

  std::atomic<bool> done{false};
  std::atomic<int> errors{0}, wrong{0}, total{0};
  std::thread background([&] {
    while (!done) {
      const ScanResult e = scanPath(pool_, file("eicar.com"));
      if (e.status == Status::Error) ++errors;
      if (e.status != Status::Infected && e.status != Status::Error) ++wrong;
      ++total;
    }
  });
  writeFile(db_ / "new.ndb", ndbLine("Sekimori.Test.NewSig", marker));
  writeFile(db_ / "SEKIMORI-TEST-CRASH-ON-LOAD", "");
  pool_.reload();
  // The crashed load is reaped; only the old engine process is left.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  std::this_thread::sleep_for(milliseconds(100));
  while (childrenOf(pool_.supervisorPid()).size() != 1 && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(childrenOf(pool_.supervisorPid()), before);
  EXPECT_EQ(scanPath(pool_, file("new.txt")).status, Status::Clean);  // still the old signatures

  fs::remove(db_ / "SEKIMORI-TEST-CRASH-ON-LOAD");
  pool_.reload();
  const ScanResult r = scanUntil(pool_, file("new.txt"), kNotClean, std::chrono::seconds(5));
  done = true;
  background.join();
  EXPECT_EQ(r.status, Status::Infected) << toString(r.status) << " " << r.error;
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(total.load(), 0);
  EXPECT_EQ(deaths.load(), 0);
  EXPECT_NE(childrenOf(pool_.supervisorPid()), before);
}

TEST_F(ScannerTest, HungWorkerIsKilledByItsWatchdog) {
  FaultInjection fi;
  options_.workers = 1;
  options_.scanTimeout = milliseconds(1000);
  writeFile(file("hang.txt"), "a message with SEKIMORI-TEST-HANG inside\n");
  startPool();
  const auto t0 = Clock::now();
  const ScanResult r = scanPath(pool_, file("hang.txt"));
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  std::cout << "[ timing   ] hung scan returned after " << ms << " ms: " << r.error << "\n";
  EXPECT_EQ(r.status, Status::Error);
  EXPECT_LT(ms, 3500);
  const ScanResult next = scanPath(pool_, file("clean.txt"));
  EXPECT_EQ(next.status, Status::Clean) << next.error;
}
#endif

// The whole pool gone (the supervisor killed, say by the OOM killer): the
// watcher says so, so the daemon can exit and be restarted rather than
// tempfail every message. A stop() is no death.
TEST_F(ScannerTest, WatcherReportsTheDeathOfThePoolButNotItsStop) {
  startPool();
  std::atomic<int> deaths{0};
  pool_.watch([&] { ++deaths; });
  ASSERT_GT(pool_.supervisorPid(), 0);
  ASSERT_EQ(kill(pool_.supervisorPid(), SIGKILL), 0);
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (deaths.load() == 0 && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(deaths.load(), 1);
  EXPECT_EQ(scanPath(pool_, file("clean.txt")).status, Status::Error);
  pool_.stop();

  ScannerPool second;
  std::string why;
  options_.runDir = (tmp_.path() / "run2").string();
  ASSERT_TRUE(second.start(options_, &why)) << why;
  std::atomic<int> stopped{0};
  second.watch([&] { ++stopped; });
  EXPECT_EQ(scanPath(second, file("eicar.com")).status, Status::Infected);
  second.stop();
  EXPECT_EQ(stopped.load(), 0);
}

// Workers forked a moment before the engine process is told to retire
// (its supervisor killed right after start) still exit: a SIGTERM that
// reaches a worker before it has set up its own handling is not lost, so
// no engine or worker process is left behind. The lifeline reaches EOF,
// which the watcher reports, only when every process of the pool is gone.
// (Before the fix, seen once in a unit-test run on a loaded machine: an
// engine process and a worker left idle for good after
// WatcherReportsTheDeathOfThePoolButNotItsStop killed their supervisor.)
TEST_F(ScannerTest, SupervisorKilledRightAfterStartLeavesNoProcessBehind) {
  FaultInjection fi;
  writeFile(db_ / "SEKIMORI-TEST-SLOW-WORKER-START", "");  // workers run 300 ms after their fork
  options_.workers = 3;
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE(round);
    ScannerPool pool;
    std::string why;
    options_.runDir = (tmp_.path() / ("run-kill-" + std::to_string(round))).string();
    ASSERT_TRUE(pool.start(options_, &why)) << why;
    std::atomic<int> deaths{0};
    pool.watch([&] { ++deaths; });
    std::vector<pid_t> pids = childrenOf(pool.supervisorPid());  // the engine process
    ASSERT_EQ(pids.size(), 1u);
    for (pid_t w : childrenOf(pids[0])) pids.push_back(w);
    ASSERT_EQ(kill(pool.supervisorPid(), SIGKILL), 0);
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (deaths.load() == 0 && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(10));
    EXPECT_EQ(deaths.load(), 1) << "a process of the pool outlived its supervisor";
    if (deaths.load() == 0) {
      for (pid_t p : pids) kill(p, SIGKILL);  // ours: leave nothing behind on failure
    }
    pool.stop();
  }
}

// The engine process killed (the OOM killer picks the biggest process,
// and that is the one holding the engine): the supervisor loads a new one,
// scans work again, and the pool is not dead.
TEST_F(ScannerTest, KilledEngineProcessIsReplaced) {
  startPool();
  EXPECT_EQ(scanPath(pool_, file("clean.txt")).status, Status::Clean);  // the workers are up
  const auto oldTemps = workerTempDirsOnce(options_.engine.tempDir, static_cast<std::size_t>(options_.workers));
  ASSERT_EQ(oldTemps.size(), static_cast<std::size_t>(options_.workers));
  std::atomic<int> deaths{0};
  pool_.watch([&] { ++deaths; });
  const std::vector<pid_t> before = childrenOf(pool_.supervisorPid());
  ASSERT_EQ(before.size(), 1u);
  const std::vector<pid_t> oldWorkers = childrenOf(before[0]);
  ASSERT_EQ(kill(before[0], SIGKILL), 0);
  const auto t0 = Clock::now();
  // Until the kill has landed, a worker of the old engine process may still
  // take a scan (and die in it, with its engine process): the verdicts are
  // asked once the supervisor has reaped it and forked its successor. The
  // old workers are the supervisor's children for a moment too (it is
  // their subreaper) until it has reaped them.
  const auto old = [&](pid_t p) {
    return p == before[0] || std::find(oldWorkers.begin(), oldWorkers.end(), p) != oldWorkers.end();
  };
  std::vector<pid_t> after;
  for (const auto until = t0 + std::chrono::seconds(10); Clock::now() < until;
       std::this_thread::sleep_for(milliseconds(5))) {
    after = childrenOf(pool_.supervisorPid());
    if (after.size() == 1 && !old(after[0])) break;
  }
  ASSERT_EQ(after.size(), 1u);
  ASSERT_NE(after[0], before[0]);
  // No retry: a scan sent while the new engine process loads waits for it.
  const ScanResult r = scanPath(pool_, file("eicar.com"));
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  std::cout << "[ timing   ] scanning again " << ms << " ms after the engine process was killed\n";
  EXPECT_EQ(r.status, Status::Infected) << toString(r.status) << " " << r.error;
  EXPECT_EQ(scanPath(pool_, file("clean.txt")).status, Status::Clean);
  EXPECT_EQ(childrenOf(pool_.supervisorPid()), after);
  EXPECT_EQ(deaths.load(), 0);
  // The killed generation's workers died with it; the supervisor, their
  // subreaper, removed their temp directories.
  for (const auto& d : oldTemps) EXPECT_EQ(workerTempDirs(options_.engine.tempDir).count(d), 0u) << d;
}

TEST_F(ScannerTest, ReloadPicksUpANewSignatureWithoutFailingScans) {
  options_.dbCheckInterval = std::chrono::hours(1);  // only reload() triggers the check
  const std::string marker = "SEKIMORI-NEW-SIG-TEST";
  writeFile(file("new.txt"), "payload " + marker + " end\n");
  startPool();
  ASSERT_EQ(scanPath(pool_, file("new.txt")).status, Status::Clean);

  // Scans keep running through the reload; none may fail.
  std::atomic<bool> done{false};
  std::atomic<int> errors{0}, wrong{0}, total{0};
  std::thread background([&] {
    while (!done) {
      const ScanResult c = scanPath(pool_, file("clean.txt"));
      const ScanResult e = scanPath(pool_, file("eicar.com"));
      if (c.status == Status::Error || e.status == Status::Error) ++errors;
      if (c.status != Status::Clean && c.status != Status::Error) ++wrong;
      if (e.status != Status::Infected && e.status != Status::Error) ++wrong;
      total += 2;
    }
  });

  // A broken file first: the old engine stays, scans go on.
  writeFile(db_ / "broken.ndb", "this is not a signature\n");
  pool_.reload();
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(scanPath(pool_, file("eicar.com")).status, Status::Infected);
  fs::remove(db_ / "broken.ndb");

  writeFile(db_ / "new.ndb", ndbLine("Sekimori.Test.NewSig", marker));
  const auto t0 = Clock::now();
  pool_.reload();
  const ScanResult r = scanUntil(pool_, file("new.txt"), kNotClean, std::chrono::seconds(5));
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  std::this_thread::sleep_for(milliseconds(200));
  done = true;
  background.join();
  std::cout << "[ timing   ] new signature live after " << ms << " ms; " << total << " scans during reloads\n";
  EXPECT_EQ(r.status, Status::Infected) << toString(r.status) << " " << r.error;
  // libclamav marks signatures from outside its official databases.
  EXPECT_EQ(r.name, "Sekimori.Test.NewSig.UNOFFICIAL");
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_GT(total.load(), 0);
}

TEST_F(ScannerTest, PeriodicCheckPicksUpANewSignature) {
  options_.dbCheckInterval = milliseconds(200);
  writeFile(file("new.txt"), "payload SEKIMORI-NEW-SIG-TEST end\n");
  startPool();
  ASSERT_EQ(scanPath(pool_, file("new.txt")).status, Status::Clean);
  writeFile(db_ / "new.ndb", ndbLine("Sekimori.Test.NewSig", "SEKIMORI-NEW-SIG-TEST"));
  const ScanResult r = scanUntil(pool_, file("new.txt"), kNotClean, std::chrono::seconds(5));
  EXPECT_EQ(r.status, Status::Infected) << r.error;
}

// The milter starts the pool, then daemonises (forks, the parent exits): the
// supervisor is no child of the process that scans and stops it.
TEST_F(ScannerTest, WorksAndStopsAfterTheMilterDaemonises) {
  int report[2];
  ASSERT_EQ(pipe(report), 0);
  const pid_t milter = fork();
  ASSERT_GE(milter, 0);
  if (milter == 0) {
    close(report[0]);
    ScannerPool pool;
    std::string why;
    if (!pool.start(options_, &why)) _exit(2);
    const pid_t daemon = fork();
    if (daemon != 0) _exit(daemon > 0 ? 0 : 3);  // the "parent exits" of daemonize()
    const bool infected = scanPath(pool, file("eicar.com")).status == Status::Infected;
    const auto t0 = Clock::now();
    pool.stop();
    const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
    const std::string line = std::string(infected ? "infected " : "wrong ") + std::to_string(ms) + "\n";
    (void)!write(report[1], line.data(), line.size());
    _exit(0);
  }
  close(report[1]);
  int st = 0;
  ASSERT_EQ(waitpid(milter, &st, 0), milter);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  std::string line;
  char buf[64];
  ssize_t n;
  while ((n = read(report[0], buf, sizeof buf)) > 0) line.append(buf, static_cast<std::size_t>(n));
  close(report[0]);
  std::cout << "[ observed ] daemonised: " << line;
  ASSERT_TRUE(line.starts_with("infected ")) << line;
  EXPECT_LT(std::stoi(line.substr(9)), 3000) << "stop() did not see the supervisor go";
  EXPECT_FALSE(fs::exists(options_.runDir));
}

TEST_F(ScannerTest, ConcurrentScansFromFourThreads) {
  ASSERT_EQ(sh("cd " + data_.string() + " && zip -q eicar.zip eicar.com"), 0);
  startPool();
  struct Job {
    const char* file;
    Status status;
  };
  const Job jobs[] = {{"clean.txt", Status::Clean}, {"eicar.com", Status::Infected}, {"eicar.zip", Status::Infected}};
  std::atomic<int> right{0};
  std::vector<std::string> failures[4];
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        const Job& j = jobs[(t + i) % 3];
        const ScanResult r = scanPath(pool_, file(j.file));
        if (r.status == j.status) {
          ++right;
        } else {
          failures[t].push_back(std::string(j.file) + ": " + std::string(toString(r.status)) + " " + r.error);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
  std::cout << "[ timing   ] 80 scans on 4 threads, 2 workers: " << ms << " ms\n";
  EXPECT_EQ(right.load(), 80);
  for (const auto& f : failures) {
    for (const auto& line : f) ADD_FAILURE() << line;
  }
}

// What the milter hands over cannot change once sealed (the worker maps
// it); an empty one, with nothing to map, is read and scanned too.
TEST_F(ScannerTest, ASealedScanFileCannotChangeAndAnEmptyOneIsScanned) {
  ScanFile f;
  ASSERT_GE(f.fd(), 0) << std::strerror(errno);
  ASSERT_TRUE(f.write(kEicar.data(), kEicar.size()));
  ASSERT_TRUE(f.seal()) << std::strerror(errno);
  EXPECT_FALSE(f.write("x", 1));
  EXPECT_NE(ftruncate(f.fd(), 1), 0);
  EXPECT_NE(ftruncate(f.fd(), 1 << 20), 0);
  startPool();
  const ScanResult r = pool_.scan(f.fd());
  EXPECT_EQ(r.status, Status::Infected) << toString(r.status) << " " << r.error;
  ScanFile empty;
  ASSERT_TRUE(empty.seal());
  const ScanResult e = pool_.scan(empty.fd());
  EXPECT_EQ(e.status, Status::Clean) << toString(e.status) << " " << e.error;
}

TEST(ScannerStatus, Names) {
  EXPECT_EQ(toString(Status::Clean), "clean");
  EXPECT_EQ(toString(Status::Infected), "infected");
  EXPECT_EQ(toString(Status::LimitsExceeded), "limits-exceeded");
  EXPECT_EQ(toString(Status::Encrypted), "encrypted");
  EXPECT_EQ(toString(Status::Error), "error");
}

TEST(ScannerVersion, IsAtLeastOneFour) {
  int major = 0, minor = 0;
  ASSERT_EQ(std::sscanf(ScannerPool::libraryVersion().c_str(), "%d.%d", &major, &minor), 2);
  EXPECT_TRUE(major > 1 || (major == 1 && minor >= 4)) << ScannerPool::libraryVersion();
}

}  // namespace
}  // namespace sekimori::antivirus

