// milters/antivirus/scanner.cpp — the libclamav process pool behind ScannerPool.
//
// Four kinds of process:
//   milter    start() forks the supervisor and waits for its first engine
//             (or the reason there is none); scan() hands an fd to a worker
//             and reads one line. It never loads an engine itself.
//   supervisor  no engine; owns the listening socket, watches the database
//             directory, starts one engine process per generation of
//             signatures and retires the previous one once the new one
//             serves. Exits when the control pipe from the milter reaches
//             EOF (the milter exited or called stop()).
//   engine    loads and compiles the signatures, forks the workers that
//             share the engine copy-on-write, reaps and replaces them. A
//             database that crashes libclamav while loading, or the OOM
//             killer, ends this process only: the supervisor keeps the
//             previous generation, or loads a new one. Dies with the
//             supervisor (PR_SET_PDEATHSIG), its workers with it.
//   worker    accepts one connection at a time, receives one fd over
//             SCM_RIGHTS, scans it under alarm() (the watchdog: SIGALRM's
//             default action kills the worker), answers one line.
//
// Wire protocol on the worker socket (private, 0700 directory):
//   client → worker: one byte 'S' carrying the fd (SCM_RIGHTS)
//   worker → client: 'A' as soon as the connection is accepted (the client's
//                    scan deadline starts here, not while queued), then
//                    "STATUS\tNAME\tVERSIONS\tERROR\n".
#include "milters/antivirus/scanner.h"

#include <clamav.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <new>
#include <set>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include "common/log/log.h"
#include "common/mime/archive.h"
#include "common/mime/lzma.h"
#include "common/mime/spool.h"
#include "common/util/files.h"
#include "common/util/strings.h"
#include "milters/antivirus/active_html.h"
#include "milters/antivirus/member_sizes.h"
#include "milters/antivirus/openpgp.h"
#include "milters/antivirus/zisofs.h"

namespace sekimori::antivirus {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr const char* kSocketName = "scan.sock";
// A client's answer may be late by this much beyond scanTimeout (the worker's
// alarm has one-second granularity, and it must still write the line).
constexpr milliseconds kReplySlack{2000};
// How long a worker waits for the fd after accepting the connection.
constexpr int kRecvTimeoutSeconds = 5;
// How long stop() waits for the supervisor before killing it.
constexpr milliseconds kStopWait{5000};
// How long start() waits for the first engine (loaded, compiled, workers forked).
constexpr milliseconds kStartWait{300000};

using util::errnoText;

std::string_view statusWord(ScanResult::Status s) {
  switch (s) {
    case ScanResult::Status::Clean: return "clean";
    case ScanResult::Status::Infected: return "infected";
    case ScanResult::Status::LimitsExceeded: return "limits-exceeded";
    case ScanResult::Status::Encrypted: return "encrypted";
    case ScanResult::Status::Unscanned: return "unscanned";
    case ScanResult::Status::Error: return "error";
  }
  return "error";
}

bool parseStatus(std::string_view w, ScanResult::Status* out) {
  for (auto s : {ScanResult::Status::Clean, ScanResult::Status::Infected, ScanResult::Status::LimitsExceeded,
                 ScanResult::Status::Encrypted, ScanResult::Status::Unscanned, ScanResult::Status::Error}) {
    if (w == statusWord(s)) {
      *out = s;
      return true;
    }
  }
  return false;
}

// --- containers libclamav does not unpack ----------------------------------
//
// A RAR archive when libclamav has no unrar module (Debian's libclamav has
// none unless libclamunrar is installed), compressed formats it has no
// unpacker for, and zip and 7-Zip archives compressed in ways its unpackers
// do not know are scanned as opaque bytes: a virus inside is not seen, and
// libclamav still answers CL_CLEAN. libclamav shows each layer it scans to
// the file inspection callback, in order, parent before children; a
// container of these kinds that gets no child layer was not unpacked.
//
// The worker unpacks such a container itself once libclamav's scan is
// over (scanUnpacked: libarchive, mime::unpackEntries; a signed OpenPGP
// file's compressed data, openPgpUnpack; a zisofs file, zisofsUnpack) and
// scans each entry with the same engine, as a file one level below its
// container, under the same limits (levels, file size, files, scan size,
// counted over the whole scan). What
// neither can read (ACE, ZPAQ, StuffIt, lzop, a damaged archive, a method
// libarchive does not know) leaves the scan "unscanned", never "clean".

// A file of an ISO 9660 image compressed with zisofs, which libclamav
// hands over as stored; the worker inflates it (zisofs.h).
constexpr const char* kZisofs = "zisofs data";

// The kind of container at the start of a layer, or nullptr.
const char* containerKind(const char* type, const char* buf, std::size_t size) {
  if (type != nullptr && std::strcmp(type, "CL_TYPE_RAR") == 0) return "RAR archive";
  if (buf == nullptr) return nullptr;
  const std::string_view b(buf, std::min<std::size_t>(size, 16));
  if (b.starts_with("\x28\xB5\x2F\xFD")) return "Zstandard data";
  if (b.starts_with("\x04\x22\x4D\x18")) return "LZ4 data";
  if (mime::lzipHeader(std::span(reinterpret_cast<const unsigned char*>(b.data()), b.size()))) return "lzip data";
  if (b.starts_with(std::string_view("\x89LZO\0\r\n\x1A\n", 9))) return "lzop data";
  if (b.size() >= 3 && b.starts_with("\x1F\x9D") && (b[2] & 0x1F) >= 9 && (b[2] & 0x1F) <= 16) {
    return "compress (.Z) data";  // the third byte: block mode and 9..16 code bits
  }
  if (mime::lzmaAloneHeader(b)) return "LZMA data";  // .lzma: no magic number
  if (b.size() >= 14 && b.substr(7, 7) == "**ACE**") return "ACE archive";
  if (b.starts_with("7kSt\xA0\x31\x83\xD3")) return "ZPAQ archive";
  if (b.size() >= 14 && b.starts_with("SIT!") && b.substr(10, 4) == "rLau") return "StuffIt archive";
  if (b.starts_with("StuffIt (c)")) return "StuffIt archive";
  if (zisofsHeader(b)) return kZisofs;  // a file of an ISO image, as stored (zisofs.h)
  return nullptr;
}

// Limits a worker applies itself (set by the engine process before it
// forks workers): max_file_size (below) and what it unpacks.
EngineLimits gLimits;

// The limits the worker applies itself, by the names libclamav gives them.
constexpr const char* kOverFileSize = "Heuristics.Limits.Exceeded.MaxFileSize";
constexpr const char* kOverScanSize = "Heuristics.Limits.Exceeded.MaxScanSize";
constexpr const char* kOverFiles = "Heuristics.Limits.Exceeded.MaxFiles";
constexpr const char* kOverRecursion = "Heuristics.Limits.Exceeded.MaxRecursion";
constexpr const char* kOverScanMemory = "Heuristics.Limits.Exceeded.MaxScanMemory";

// Signed OpenPGP files, which openPgpUnpack reads (not libarchive):
// compressed (unscanned if it cannot), or not (scanned as raw bytes
// already: nothing is said if it cannot).
constexpr const char* kOpenPgpCompressed = "OpenPGP compressed data";
constexpr const char* kOpenPgpSigned = "OpenPGP signed data";

// A container libclamav did not unpack, for scanUnpacked.
struct ToUnpack {
  const char* kind;  // "RAR archive", "ZIP members compressed with LZMA" (unscanned if libarchive fails too)
  std::string bytes;
  std::uint32_t level;  // of the container, counted from the scanned file (0)
};

// For the name of an encrypted container: "Heuristics.Encrypted." + this.
const char* encryptedKind(std::string_view kind) {
  if (kind.starts_with("ZIP")) return "Zip";
  if (kind.starts_with("7-Zip")) return "7Zip";
  if (kind.starts_with("RAR")) return "RAR";
  if (kind.starts_with("OpenPGP")) return "OpenPGP";
  return "Archive";
}

// What the scans of unpacked entries have scanned so far, every layer
// libclamav shows in them included (the entries themselves, and what it
// unpacks from them): libclamav counts its limits per scan, and one
// container of max_files entries, each its own scan, must not multiply
// them. Together they get one max_scan_size and one max_files, on top of
// the message's own scan. Past either, the scan under way is cut short
// (the callback answers CL_VIRUS) and `over` names the limit.
struct UnpackedBudget {
  std::uint64_t bytes = 0;
  std::uint64_t files = 0;
  const char* over = nullptr;
};

// A layer libclamav showed the callback, while its children may come.
struct Layer {
  std::uint32_t level;  // counted from the scanned file (levelOffset included)
  const char* kind;     // containerKind(), or nullptr
  std::string bytes;    // a kind's bytes, to unpack if libclamav does not
  enum class Copy { None, Held, OverScanSize } copy = Copy::None;  // OverScanSize: not held, too much
  bool child = false;
  // Its children are files inside it (an archive's members, a compressed
  // file's data, a document's embedded files), not the MIME parts of a
  // mail (the milter's to look at) or what libclamav derives from HTML.
  bool holdsFiles = false;
};

// What the current scan found and holds beside libclamav's answer: a
// worker scans one message at a time, and all of it is reset at once
// before each (gScan = {}).
struct ScanState {
  // libclamav reported an error. It can meet an internal error inside an
  // archive (a temp file it cannot create, say), log it, and still answer
  // CL_CLEAN for the whole scan: such a "clean" is not trusted.
  bool hadError = false;
  std::string unscanned;      // containers not unpacked, "RAR archive, LZ4 data"
  std::string encryptedName;  // "Heuristics.Encrypted.OpenPGP": encrypted, not scanned
  std::string limitName;      // "Heuristics.Limits.Exceeded.MaxFileSize": a limit the worker applied
  bool unpacked = false;      // the worker unpacked a container itself
  std::vector<Layer> layers;  // the layers of the scan under way still open
  std::vector<ToUnpack> toUnpack;
  std::uint64_t heldBytes = 0;  // copies held in toUnpack and layers, at most the scan size
  // The level of the file being scanned: 0 for the file handed to the
  // worker, a container's level + 1 for an entry scanUnpacked scans.
  std::uint32_t levelOffset = 0;
  UnpackedBudget budget;
  std::string entryName;     // the name of the entry scanUnpacked scans, for its HTML check
  bool activeHtml = false;   // an HTML file inside an archive holds active content
  // Set by the worker while a scan is under way (libclamav also logs while
  // an engine loads, outside any scan).
  bool inScan = false;
  std::size_t clamavLines = 0;  // libclamav messages logged in this scan
  std::size_t clamavMuted = 0;  // and not logged, past kClamavLinesPerScan
  bool tempChecked = false;     // tempFull looked at, once, at its first error
  std::string tempFull;         // not empty: the temp directory had no room, and how little
  // An allocation failed (ScanMemoryLimit): libclamav said so, or our code
  // met std::bad_alloc. What the scan did not reach is unknown.
  bool outOfMemory = false;
};
ScanState gScan;
// The worker's temp directory (workerTempDir), for the look at its room.
std::string gWorkerTempDir;

void noteUnscanned(const char* what) {
  std::string& u = gScan.unscanned;
  if (u.find(what) == std::string::npos) u += u.empty() ? what : std::string(", ") + what;
}
void noteEncrypted(std::string name) {
  if (gScan.encryptedName.empty()) gScan.encryptedName = std::move(name);
}
void noteLimit(std::string name) {
  if (gScan.limitName.empty()) gScan.limitName = std::move(name);
}

// A copy of a layer's bytes, counted against the scan size; false (and
// nothing held) when it would take more.
bool holdCopy(std::string_view bytes, std::string* out) {
  if (gScan.heldBytes + bytes.size() > gLimits.maxScanSize) return false;
  gScan.heldBytes += bytes.size();
  out->assign(bytes);
  return true;
}

void releaseCopy(std::string* s) {
  gScan.heldBytes -= std::min<std::uint64_t>(gScan.heldBytes, s->size());
  std::string().swap(*s);
}

void unpackLater(const char* kind, std::string_view bytes, std::uint32_t level) {
  ToUnpack u{kind, {}, level};
  if (!holdCopy(bytes, &u.bytes)) {
    noteLimit(kOverScanSize);
    return;
  }
  gScan.toUnpack.push_back(std::move(u));
}

void closeLayersFrom(std::uint32_t level) {
  std::vector<Layer>& layers = gScan.layers;
  while (!layers.empty() && layers.back().level >= level) {
    Layer& l = layers.back();
    if (l.kind != nullptr && !l.child) {
      switch (l.copy) {
        case Layer::Copy::Held: gScan.toUnpack.push_back({l.kind, std::move(l.bytes), l.level}); break;  // still held
        case Layer::Copy::OverScanSize: noteLimit(kOverScanSize); break;
        case Layer::Copy::None: noteUnscanned(l.kind); break;  // no bytes to unpack
      }
    } else if (l.copy == Layer::Copy::Held) {
      releaseCopy(&l.bytes);
    }
    layers.pop_back();
  }
}

// How many of libclamav's messages one scan may log. It logs a line for
// many a write it could not make: a 2 MB attachment decoded into a full
// temp directory made 485 lines of "fileblobAddData: Can't write 57 bytes
// to temporary file" for one message (measured), more for a larger one,
// and again at every retry of the sending MTA.
constexpr std::size_t kClamavLinesPerScan = 10;

// When the file system of the temp directory `dir` has (next to) no room
// left, in blocks or in inodes: what to tell the admin; else "".
std::string noRoomIn(const std::string& dir) {
  struct statvfs fs {};
  if (dir.empty() || statvfs(dir.c_str(), &fs) != 0) return "";
  const std::uint64_t free = static_cast<std::uint64_t>(fs.f_bavail) * fs.f_frsize;
  if (free < 64 * 1024) {
    return "the temp directory " + dir + " is on a full file system (" + std::to_string(free) +
           " bytes free; see [engine] temp_dir)";
  }
  if (fs.f_files > 0 && fs.f_favail == 0) {
    return "the temp directory " + dir + " is on a file system without free inodes (see [engine] temp_dir)";
  }
  return "";
}

// libclamav's own warnings and errors go to our log instead of its stderr.
void logClamavMessage(enum cl_msg severity, const char* msg) {
  if (severity >= CL_MSG_ERROR) {
    gScan.hadError = true;
    // Looked at while it happens (the scan's temp files are gone after):
    // was it a temp file it had no room to write?
    if (gScan.inScan && !gScan.tempChecked) {
      gScan.tempChecked = true;
      gScan.tempFull = noRoomIn(gWorkerTempDir);
    }
  }
  if (severity < CL_MSG_WARN || msg == nullptr) return;
  if (gScan.inScan && ++gScan.clamavLines > kClamavLinesPerScan) {
    ++gScan.clamavMuted;
    return;
  }
  std::string_view text(msg);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  log::message(severity >= CL_MSG_ERROR ? log::Level::Error : log::Level::Warning,
               "libclamav: " + util::sanitize(text, 512));
}

// Whether an error libclamav reports is an allocation that failed. Its
// parsers word it each their own way ("cli_malloc(): Can't allocate memory
// (N bytes).", "malloc_problem: Cannot allocate memory", "Out of memory
// allocating ...", "json: no memory for ...", "cli_scanxz: nomemory for
// decompress buffer.", "Insufficient memory available!", "we may be low on
// memory"); not "Can't map file into memory" or "unpack memory address out
// of bounds". Read without allocating: memory may be short.
bool saysOutOfMemory(const char* msg) {
  if (msg == nullptr) return false;
  char lower[256] = {};
  for (std::size_t i = 0; i + 1 < sizeof lower && msg[i] != '\0'; ++i) {
    lower[i] = static_cast<char>(std::tolower(static_cast<unsigned char>(msg[i])));
  }
  for (const char* words : {"alloc", "no memory", "nomemory", "out of memory", "out-of-memory", "insufficient memory",
                            "low on memory"}) {
    if (std::strstr(lower, words) != nullptr) return true;
  }
  return false;
}

// libclamav's messages, called from inside libclamav (C): nothing may be
// thrown through it. Out of memory, logging one fails too.
void clamavMessage(enum cl_msg severity, const char* /*fullmsg*/, const char* msg, void* /*context*/) {
  if (gScan.inScan && severity >= CL_MSG_ERROR && saysOutOfMemory(msg)) gScan.outOfMemory = true;
  try {
    logClamavMessage(severity, msg);
  } catch (const std::bad_alloc&) {
    gScan.hadError = true;
    if (gScan.inScan) gScan.outOfMemory = true;
  }
}

// --- files longer than max_file_size ---------------------------------------
//
// libclamav's own file size limit is not a verdict for every container:
// 1.4.6 scans a zip member longer than CL_ENGINE_MAX_FILESIZE cut short (at
// the last 8 KiB buffer of its unzip that fits: empty under 8 KiB) and a cab
// member cut short, and answers clean, heuristics for exceeded limits on or
// not (gzip, bzip2, xz, tar.gz, 7z, arj and lzh members do alert; measured,
// ScannerTest.EachLimitReachedIsLimitsExceededNeverClean). A virus in a zip
// member padded past max_file_size would pass. So a worker applies
// max_file_size itself, to every layer inside the scanned file and to the
// member sizes every ZIP and CAB layer declares (member_sizes.h: such a
// member may never become a layer); either makes the scan
// "Heuristics.Limits.Exceeded.MaxFileSize". libclamav's own limit is set
// above the scan size (kCutMargin): a message up to the scan size is
// scanned whole, and a layer libclamav cut short is still longer than the
// scan size, which no layer may be. That is what tells when a zip's
// directory understates a member's size (measured: 300 KB of zeros and
// EICAR declared as 100 bytes, both sizes 100 KB, came back clean when the
// limit was the scan size itself and the cut layer 96 KB). The scanned file
// itself is bounded by the scan size only (scanOne).
// How far above the scan size libclamav's file size limit is: more than any
// buffer an unpacker of libclamav fills before checking the limit.
constexpr std::uint64_t kCutMargin = 1 << 20;
// libclamav 1.4 lowers a larger file size limit to INT_MAX - 2, with a warning.
static_assert(kLargestScanSize + kCutMargin <= std::uint64_t{INT_MAX} - 2);

// The types libclamav gives an archive it unpacks as a zip.
bool zipFamily(const char* type) {
  const std::string_view t(type);
  return t == "CL_TYPE_ZIP" || t.starts_with("CL_TYPE_OOXML_") || t == "CL_TYPE_XPS";
}

bool overFileSize(std::uint64_t size) { return size > gLimits.maxFileSize || size > gLimits.maxScanSize; }

// A web archive found in an archive is walked from a copy: in memory up to
// this, then in the worker's temp directory.
constexpr std::uint64_t kWebArchiveMemory = 1 << 20;

cl_error_t inspectOneLayer(const char* type, const char* name, size_t size, const char* buf, uint32_t fileLevel,
                           uint32_t attributes) {
  const std::uint32_t level = gScan.levelOffset + fileLevel;
  if (gScan.levelOffset > 0) {
    UnpackedBudget& b = gScan.budget;
    b.bytes += size;
    ++b.files;
    if (b.bytes > gLimits.maxScanSize) b.over = kOverScanSize;
    if (b.files > gLimits.maxFiles) b.over = kOverFiles;
    if (b.over != nullptr) return CL_VIRUS;  // stops this scan; scanUnpacked reads `over`
  }
  if (level >= 1 && overFileSize(size)) noteLimit(kOverFileSize);
  // Deeper than libclamav goes in one scan: only inside what we unpacked.
  if (level > gLimits.maxRecursion) noteLimit(kOverRecursion);
  const char* kind = containerKind(type, buf, size);
  if (buf != nullptr && type != nullptr) {
    const std::string_view bytes(buf, size);
    const bool zip = zipFamily(type);
    if ((zip || std::strcmp(type, "CL_TYPE_MSCAB") == 0) &&
        overFileSize(largestDeclaredMember(zip ? ArchiveKind::Zip : ArchiveKind::Cab, bytes))) {
      noteLimit(kOverFileSize);
    }
    // Members only a reader of local headers finds: libclamav scans none in
    // a zip (an Office document's it does find: measured with a .docx).
    if (std::strcmp(type, "CL_TYPE_ZIP") == 0 && zipMembersOutsideDirectory(bytes) > 0) {
      noteUnscanned("ZIP members outside its central directory");
    }
    // Members compressed in a way libclamav skips (zip: LZMA, PPMd...;
    // 7-Zip: BZip2, Deflate, filters other than x86 and ARM): the whole
    // archive is unpacked again, by us.
    const char* method = nullptr;
    if (zip) {
      method = zipMethodNotUnpacked(bytes);
    } else if (std::strcmp(type, "CL_TYPE_7Z") == 0) {
      method = sevenZipMethodNotUnpacked(bytes);
    }
    if (method != nullptr) unpackLater(method, bytes, level);
    // Binary OpenPGP (openpgp.h), a type libclamav does not know: an
    // encrypted .gpg, or compressed data (gpg --sign) it does not unpack,
    // which the worker unpacks. Both read only the start of the layer.
    if (openPgpEncrypted(bytes)) {
      noteEncrypted("Heuristics.Encrypted.OpenPGP");
    } else if (openPgpCompressed(bytes)) {
      unpackLater(kOpenPgpCompressed, bytes, level);
    } else if (openPgpSigned(bytes)) {
      unpackLater(kOpenPgpSigned, bytes, level);
    }
  }
  closeLayersFrom(level);
  Layer* parent = !gScan.layers.empty() && gScan.layers.back().level + 1 == level ? &gScan.layers.back() : nullptr;
  if (parent != nullptr) parent->child = true;
  // An HTML file inside an archive (a zip's invoice.html, "HTML
  // smuggling"), which the milter's walk over the MIME parts does not
  // open: checked as the milter checks an HTML part, by its name (the
  // type libclamav detects when it has none). Not the layers libclamav
  // derives from an HTML part (normalized text, scripts).
  const bool inArchive = fileLevel == 0 ? gScan.levelOffset > 0 : parent != nullptr && parent->holdsFiles;
  if (inArchive && buf != nullptr && !gScan.activeHtml && (attributes & LAYER_ATTRIBUTES_NORMALIZED) == 0) {
    const std::string_view fileName = fileLevel == 0 ? std::string_view(gScan.entryName)
                                      : name != nullptr ? std::string_view(name)
                                                        : std::string_view();
    const bool html = !fileName.empty() ? htmlLeaf("", fileName)
                                        : type != nullptr && std::string_view(type).starts_with("CL_TYPE_HTML");
    if (html && hasActiveHtml(std::string_view(buf, size))) gScan.activeHtml = true;
    // A web archive (page.mht), walked for its pages; the layers libclamav
    // derives from it (its MIME parts) are a mail's, not looked at again.
    if (!html && webArchiveLeaf("", fileName)) {
      mime::Spool archive(kWebArchiveMemory, gWorkerTempDir);
      archive.append(std::string_view(buf, size));
      if (webArchiveHasActiveHtml(archive)) gScan.activeHtml = true;
    }
  }
  Layer layer{level, kind, {}};
  layer.holdsFiles = type != nullptr && std::strcmp(type, "CL_TYPE_MAIL") != 0 &&
                     !std::string_view(type).starts_with("CL_TYPE_HTML");
  // Kept until we know whether libclamav unpacks it (a child layer).
  if (kind != nullptr && buf != nullptr) {
    layer.copy = holdCopy(std::string_view(buf, size), &layer.bytes) ? Layer::Copy::Held : Layer::Copy::OverScanSize;
  }
  gScan.layers.push_back(std::move(layer));
  return CL_SUCCESS;
}

// libclamav's file inspection callback, called from inside libclamav (C):
// nothing may be thrown through it. Out of memory the layer is left to
// libclamav (CL_BREAK: not looked at further) and the scan is no longer
// trusted (outOfMemory).
cl_error_t inspectLayer(int /*fd*/, const char* type, const char** /*ancestors*/, size_t /*parentSize*/,
                        const char* name, size_t size, const char* buf, uint32_t fileLevel, uint32_t attributes,
                        void* /*context*/) {
  try {
    return inspectOneLayer(type, name, size, buf, fileLevel, attributes);
  } catch (const std::bad_alloc&) {
    gScan.outOfMemory = true;
    return CL_BREAK;
  }
}

void freeEngine(cl_engine* e) {
  if (e != nullptr) cl_engine_free(e);
}
using EnginePtr = std::unique_ptr<cl_engine, decltype(&freeEngine)>;

// What identifies one state of the database directory: every file's name,
// size and mtime (so a new, removed or rewritten file all count as a change).
std::string databaseStamp(const std::string& dir) {
  std::vector<std::string> lines;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    struct stat st {};
    if (stat(entry.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    lines.push_back(entry.path().filename().string() + ":" + std::to_string(st.st_size) + ":" +
                    std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec));
  }
  if (ec) return "error:" + ec.message();
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

struct LoadedEngine {
  EnginePtr engine{nullptr, &freeEngine};
  std::string versions;  // "1.4.6/27100"
  unsigned int signatures = 0;
};

bool setNum(cl_engine* e, cl_engine_field field, long long value, const char* name, std::string* error) {
  const cl_error_t rc = cl_engine_set_num(e, field, value);
  if (rc == CL_SUCCESS) return true;
  *error = std::string("cannot set libclamav ") + name + ": " + cl_strerror(rc);
  return false;
}

bool loadEngine(const EngineSettings& s, LoadedEngine* out, std::string* error) {
  EnginePtr e(cl_engine_new(), &freeEngine);
  if (!e) {
    *error = "cannot create a libclamav engine (out of memory?)";
    return false;
  }
  if (!s.tempDir.empty()) {
    const cl_error_t rc = cl_engine_set_str(e.get(), CL_ENGINE_TMPDIR, s.tempDir.c_str());
    if (rc != CL_SUCCESS) {
      *error = "cannot set libclamav temp directory " + s.tempDir + ": " + cl_strerror(rc);
      return false;
    }
  }
  const EngineLimits& l = s.limits;
  gLimits = l;  // max_file_size is ours to apply (inspectLayer), and the limits of what we unpack
  if (!setNum(e.get(), CL_ENGINE_MAX_SCANSIZE, static_cast<long long>(l.maxScanSize), "max scan size", error) ||
      !setNum(e.get(), CL_ENGINE_MAX_FILESIZE, static_cast<long long>(l.maxScanSize + kCutMargin),
              "file size limit (above the max scan size)", error) ||
      !setNum(e.get(), CL_ENGINE_MAX_FILES, l.maxFiles, "max files", error) ||
      // libclamav counts the scanned file itself as a level: with
      // CL_ENGINE_MAX_RECURSION = N an archive nested N deep is already
      // "Heuristics.Limits.Exceeded.MaxRecursion" (measured with 1.4.6).
      // maxRecursion counts archive levels (R-AV-2: 8 deep are scanned).
      !setNum(e.get(), CL_ENGINE_MAX_RECURSION, static_cast<long long>(l.maxRecursion) + 1, "max recursion", error) ||
      !setNum(e.get(), CL_ENGINE_MAX_SCANTIME, static_cast<long long>(l.maxScanTime.count()), "max scan time",
              error)) {
    return false;
  }
  cl_engine_set_clcb_file_inspection(e.get(), inspectLayer);
  unsigned int sigs = 0;
  cl_error_t rc = cl_load(s.databaseDir.c_str(), e.get(), &sigs, CL_DB_STDOPT);
  if (rc != CL_SUCCESS) {
    *error = "no virus database could be loaded from " + s.databaseDir + ": " + cl_strerror(rc);
    return false;
  }
  if (sigs == 0) {
    *error = "no virus database could be loaded from " + s.databaseDir + ": no signatures found";
    return false;
  }
  rc = cl_engine_compile(e.get());
  if (rc != CL_SUCCESS) {
    *error = "cannot compile the virus database from " + s.databaseDir + ": " + cl_strerror(rc);
    return false;
  }
  const long long dbVersion = cl_engine_get_num(e.get(), CL_ENGINE_DB_VERSION, nullptr);
  out->versions = std::string(cl_retver()) + "/" + std::to_string(dbVersion);
  out->signatures = sigs;
  out->engine = std::move(e);
  return true;
}

bool versionAtLeast(const char* v, int wantMajor, int wantMinor) {
  int major = 0, minor = 0;
  if (v == nullptr || std::sscanf(v, "%d.%d", &major, &minor) != 2) return false;
  return major > wantMajor || (major == wantMajor && minor >= wantMinor);
}

void setNonBlocking(int fd) {
  const int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

bool writeAll(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = send(fd, s.data(), s.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    s.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// A child of the milter must not keep the milter's descriptors: another
// pool's control pipe held here would keep that pool's supervisor alive, and
// the milter's listening socket has no business in a scanner. Kept: stdio,
// `keep`, and unix datagram sockets (syslog's, opened with LOG_NDELAY —
// closing it under glibc's feet could make it close a reused number later).
void closeInheritedFds(const std::set<int>& keep) {
  std::vector<int> fds;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* ent = readdir(d)) {
      if (ent->d_name[0] == '.') continue;
      const int fd = std::atoi(ent->d_name);
      if (fd > 2 && fd != dirfd(d)) fds.push_back(fd);
    }
    closedir(d);
  }
  for (int fd : fds) {
    if (keep.count(fd)) continue;
    int type = 0;
    socklen_t len = sizeof type;
    sockaddr_storage ss{};
    socklen_t slen = sizeof ss;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_DGRAM &&
        getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &slen) == 0 && ss.ss_family == AF_UNIX) {
      continue;
    }
    close(fd);
  }
}

// --- worker ---------------------------------------------------------------

volatile sig_atomic_t gWorkerStop = 0;
void onWorkerTerm(int) { gWorkerStop = 1; }

#ifdef SEKIMORI_TEST_HOOKS
// Test-only: dies of SIGSEGV as a crash in libclamav would, also in a
// sanitizer build (whose own SIGSEGV handler would exit with status 1).
[[noreturn]] void crashNow() {
  signal(SIGSEGV, SIG_DFL);
  raise(SIGSEGV);
  _exit(139);
}

// Test-only: lets the unit tests prove that a crash or a hang inside the
// scan costs one scan and one worker, nothing more.
void faultInjection(int fd) {
  const char* env = std::getenv("SEKIMORI_FAULT_INJECTION");
  if (env == nullptr || std::string_view(env) != "1") return;
  std::string data;
  char buf[65536];
  off_t off = 0;
  for (;;) {
    const ssize_t n = pread(fd, buf, sizeof buf, off);
    if (n <= 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    off += n;
    if (data.size() > (16u << 20)) break;
  }
  if (data.find("SEKIMORI-TEST-CRASH") != std::string::npos) crashNow();
  if (data.find("SEKIMORI-TEST-THROW") != std::string::npos) throw std::runtime_error("SEKIMORI-TEST-THROW");
  if (data.find("SEKIMORI-TEST-HANG") != std::string::npos) {
    for (;;) pause();
  }
}
#endif

// The file of one scan mapped into memory when it is a sealed ScanFile: it
// cannot shrink under the mapping (which would be SIGBUS), and libclamav
// then reads it from memory instead of through a pread() per page; a
// twentieth less CPU per scan of a 100 KB message (bench/scan_cost.py).
// Anything else (a file the caller may still truncate) is not mapped.
class MappedScanFile {
 public:
  MappedScanFile(int fd, std::uint64_t size) {
    const int seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & F_SEAL_SHRINK) == 0 || size == 0) return;
    void* p = mmap(nullptr, static_cast<std::size_t>(size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return;
    data_ = p;
    size_ = static_cast<std::size_t>(size);
  }
  ~MappedScanFile() {
    if (data_ != nullptr) munmap(data_, size_);
  }
  MappedScanFile(const MappedScanFile&) = delete;
  MappedScanFile& operator=(const MappedScanFile&) = delete;
  // nullptr: not mapped, read it through the fd.
  const void* data() const { return data_; }
  std::size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  std::size_t size_ = 0;
};

cl_scan_options scanOptions() {
  cl_scan_options opts{};
  opts.general = CL_SCAN_GENERAL_HEURISTICS;
  opts.parse = ~0u;  // every parser libclamav has (archives, mail, html, ole2, pdf, pe, elf, ...)
  opts.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX | CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE |
                   CL_SCAN_HEURISTIC_ENCRYPTED_DOC;
  return opts;
}

ScanResult verdict(cl_error_t rc, const char* virname, const std::string& versions) {
  if (rc == CL_EMEM) gScan.outOfMemory = true;
  ScanResult r;
  r.versions = versions;
  if (rc == CL_VIRUS) {
    r.name = virname != nullptr ? virname : "unknown";
    if (r.name.starts_with("Heuristics.Limits.Exceeded")) {
      r.status = ScanResult::Status::LimitsExceeded;
    } else if (r.name.starts_with("Heuristics.Encrypted")) {
      r.status = ScanResult::Status::Encrypted;
    } else {
      r.status = ScanResult::Status::Infected;
    }
  } else if (rc == CL_CLEAN) {
    r.status = ScanResult::Status::Clean;
  } else {
    r.status = ScanResult::Status::Error;
    r.error = std::string("libclamav: ") + cl_strerror(rc);
    r.versions.clear();
  }
  return r;
}

// A limit the worker applies itself (kOver...), as the verdict of a scan.
ScanResult limitsExceeded(const char* name, const std::string& versions) {
  ScanResult r;
  r.versions = versions;
  r.status = ScanResult::Status::LimitsExceeded;
  r.name = name;
  return r;
}

ScanResult scanMemory(const void* data, std::size_t size, const cl_engine* engine, const std::string& versions) {
  cl_fmap_t* map = cl_fmap_open_memory(data, size);
  if (map == nullptr) return ScanResult::failure("libclamav: cannot map the file to scan");
  cl_scan_options opts = scanOptions();
  const char* virname = nullptr;
  unsigned long scanned = 0;
  const cl_error_t rc = cl_scanmap_callback(map, nullptr, &virname, &scanned, engine, &opts, nullptr);
  cl_fmap_close(map);
  return verdict(rc, virname, versions);
}

ScanResult scanOne(int fd, const cl_engine* engine, const std::string& versions) {
#ifdef SEKIMORI_TEST_HOOKS
  faultInjection(fd);
#endif
  struct stat st {};
  if (fstat(fd, &st) != 0) return ScanResult::failure(errnoText("cannot stat the file to scan"));
  const auto size = static_cast<std::uint64_t>(st.st_size);
  // The scanned file itself longer than the scan size: libclamav would not
  // scan it and answer a detection without a name.
  if (size > gLimits.maxScanSize) return limitsExceeded(kOverScanSize, versions);
  if (const MappedScanFile mem(fd, size); mem.data() != nullptr) {
    return scanMemory(mem.data(), mem.size(), engine, versions);
  }
  // cl_scandesc reads the fd with pread from offset 0: the caller's file
  // offset (shared with us through SCM_RIGHTS) does not matter.
  cl_scan_options opts = scanOptions();
  const char* virname = nullptr;
  unsigned long scanned = 0;
  const cl_error_t rc = cl_scandesc(fd, nullptr, &virname, &scanned, engine, &opts);
  return verdict(rc, virname, versions);
}

// The reader of a container of `kind` (a ToUnpack's): our own for OpenPGP
// and zisofs, libarchive for the rest.
using Unpacker = mime::UnpackResult (*)(std::string_view, const mime::UnpackLimits&, const mime::EntryHandler&);
Unpacker unpackerFor(const char* kind) {
  if (kind == kOpenPgpCompressed || kind == kOpenPgpSigned) return openPgpUnpack;
  if (kind == kZisofs) return zisofsUnpack;
  return mime::unpackEntries;
}

// Whether `n` bytes of memory can be had now, within the scan's memory
// limit (max_scan_memory) and the system's: mapped as malloc would map
// them, nothing touched, and given back.
bool canReserve(std::uint64_t n) {
  if (n > std::numeric_limits<std::size_t>::max() / 2) return false;
  void* p = mmap(nullptr, static_cast<std::size_t>(n), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  munmap(p, static_cast<std::size_t>(n));
  return true;
}

// Unpacks the containers libclamav left unpacked (gScan.toUnpack) and scans
// every entry with the engine, one level below its container; whatever
// those scans find joins the verdict `r` (an infection or a failed scan
// ends it). Entries inside are unpacked in turn, level by level, under the
// same limits: an entry within max_file_size, levels within max_recursion,
// all of it within one max_scan_size and one max_files (UnpackedBudget).
// Where libarchive cannot read a container either, it stays unscanned.
void scanUnpacked(const cl_engine* engine, const std::string& versions, ScanResult& r) {
  const UnpackedBudget& budget = gScan.budget;
  std::vector<ToUnpack>& queue = gScan.toUnpack;
  while (!queue.empty() && r.status != ScanResult::Status::Infected && r.status != ScanResult::Status::Error) {
    ToUnpack u = std::move(queue.back());
    queue.pop_back();
    gScan.unpacked = true;
    if (u.level + 1 > gLimits.maxRecursion) {
      noteLimit(kOverRecursion);
      releaseCopy(&u.bytes);
      continue;
    }
    // A zip's LZMA members declare a dictionary, which libarchive has
    // liblzma allocate whole: one the scan cannot have is past
    // max_scan_memory, as libclamav's own allocations are (and not a
    // member that merely cannot be read). 1 MiB for the decoder's state.
    const bool zip = std::string_view(u.kind).starts_with("ZIP");
    const std::uint64_t dictionary = zip ? zipLargestLzmaDictionary(u.bytes) : 0;
    if (dictionary > 0 && !canReserve(dictionary + (1 << 20))) {
      gScan.outOfMemory = true;
      releaseCopy(&u.bytes);
      continue;
    }
    mime::UnpackLimits limits;
    limits.maxEntrySize = gLimits.maxFileSize;
    limits.maxTotal = gLimits.maxScanSize - std::min(budget.bytes, gLimits.maxScanSize);
    limits.maxEntries = gLimits.maxFiles - std::min<std::uint64_t>(budget.files, gLimits.maxFiles);
    const mime::UnpackResult got =
        unpackerFor(u.kind)(u.bytes, limits, [&](std::string_view name, std::string_view data) {
          if (data.empty()) return true;
          gScan.levelOffset = u.level + 1;
          gScan.entryName = name;
          const ScanResult e = scanMemory(data.data(), data.size(), engine, versions);
          closeLayersFrom(0);
          gScan.levelOffset = 0;
          if (budget.over != nullptr) {
            noteLimit(budget.over);
            return false;
          }
          switch (e.status) {
            case ScanResult::Status::Infected:
            case ScanResult::Status::Error:
              r = e;
              return false;
            case ScanResult::Status::LimitsExceeded: noteLimit(e.name); break;
            case ScanResult::Status::Encrypted: noteEncrypted(e.name); break;
            case ScanResult::Status::Clean:
            case ScanResult::Status::Unscanned: break;
          }
          return true;
        });
    releaseCopy(&u.bytes);
    if (budget.over != nullptr) break;
    if (got.encrypted) noteEncrypted(std::string("Heuristics.Encrypted.") + encryptedKind(u.kind));
    switch (got.status) {
      case mime::UnpackResult::Status::Ok:
      case mime::UnpackResult::Status::Stopped: break;
      case mime::UnpackResult::Status::EntryTooLarge: noteLimit(kOverFileSize); break;
      case mime::UnpackResult::Status::TooLarge: noteLimit(kOverScanSize); break;
      case mime::UnpackResult::Status::TooManyEntries: noteLimit(kOverFiles); break;
      case mime::UnpackResult::Status::NotArchive:
      case mime::UnpackResult::Status::Unreadable:
        if (u.kind != kOpenPgpSigned) noteUnscanned(u.kind);
        break;
    }
  }
  for (ToUnpack& u : queue) releaseCopy(&u.bytes);
  queue.clear();
}

std::string fieldSafe(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

}  // namespace

std::string scanTempBase(const ScannerOptions& o, const std::string& shm) {
  if (!o.engine.tempDir.empty()) return o.engine.tempDir;
  if (const char* env = std::getenv("TMPDIR"); env != nullptr && *env != '\0') return env;
  // What all workers may write at once, twice over: a tmpfs is memory, and
  // others (PostgreSQL, browsers) use /dev/shm too. A container's 64 MiB
  // /dev/shm never has room.
  const std::uint64_t perWorker = o.engine.limits.maxScanSize + kCutMargin;
  const std::uint64_t room = 2 * static_cast<std::uint64_t>(std::max(o.workers, 1)) * perWorker;
  struct statfs fs {};
  if (statfs(shm.c_str(), &fs) == 0 && fs.f_type == TMPFS_MAGIC && access(shm.c_str(), W_OK | X_OK) == 0 &&
      static_cast<std::uint64_t>(fs.f_bavail) * static_cast<std::uint64_t>(fs.f_bsize) >= room) {
    return shm;
  }
  return "/tmp";
}

std::string scanMemoryWarning(const ScannerOptions& o, std::uint64_t machineMemory, std::uint64_t cgroupMemory) {
  const std::uint64_t all = static_cast<std::uint64_t>(std::max(o.workers, 1)) * o.engine.limits.maxScanMemory;
  const bool inCgroup = cgroupMemory != 0 && (machineMemory == 0 || cgroupMemory < machineMemory);
  const std::uint64_t memory = inCgroup ? cgroupMemory : machineMemory;
  if (o.engine.limits.maxScanMemory == 0 || memory == 0 || all <= memory) return {};
  const auto mib = [](std::uint64_t b) { return std::to_string(b >> 20) + " MiB"; };
  return "[engine] max_scan_memory (" + mib(o.engine.limits.maxScanMemory) + ") x " + std::to_string(o.workers) +
         " scanner workers = " + mib(all) + ", more than " +
         (inCgroup ? "the " + mib(memory) + " of memory its cgroup may use (memory.max)"
                   : "this machine's " + mib(memory) + " of memory") +
         ": scans taking it at once could still bring the kernel's OOM killer; lower max_scan_memory or [engine] "
         "workers";
}

// The text of a small file (/proc, /sys); empty when it cannot be read.
std::string fileText(const std::string& path) {
  std::string text;
  if (const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
    util::readWhole(fd, &text);
    close(fd);
  }
  return text;
}

std::uint64_t cgroupMemoryLimit(std::string_view procCgroup, const std::string& root) {
  // Values this large are "no limit" (v1 writes PAGE_COUNTER_MAX pages).
  constexpr std::uint64_t kUnlimited = std::uint64_t{1} << 62;
  std::uint64_t lowest = 0;
  const auto lower = [&](const std::string& file) {
    errno = 0;
    const unsigned long long v = std::strtoull(fileText(file).c_str(), nullptr, 10);
    if (errno != 0 || v == 0 || v >= kUnlimited) return;  // "max", or none, or no file
    if (lowest == 0 || v < lowest) lowest = v;
  };
  // Lines "ID:CONTROLLERS:PATH": v2 has one with no controllers ("0::/x").
  for (const std::string& line : util::split(procCgroup, '\n')) {
    const std::size_t a = line.find(':'), b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    std::string dir, file;
    if (controllers.empty()) {
      dir = root;
      file = "/memory.max";
    } else if (const auto list = util::split(controllers, ','); std::find(list.begin(), list.end(), "memory") !=
                                                                list.end()) {
      dir = root + "/memory";
      file = "/memory.limit_in_bytes";
    } else {
      continue;
    }
    // The cgroup and each one above it: a parent's limit holds for all
    // below it.
    for (;;) {
      lower(dir + path + file);
      const std::size_t up = path.rfind('/');
      if (up == std::string::npos || path == "/") break;
      path.erase(up);
    }
  }
  return lowest;
}

namespace {

// Each worker has a temp directory of its own below the base, removed with
// whatever is in it when the worker ends: a scan killed by the watchdog or
// crashed inside libclamav leaves its decoded attachments and archive
// members behind, and a message that does that on purpose could otherwise
// fill the disk (or tmpfs) one scan at a time.
constexpr std::string_view kWorkerTempPrefix = "sekimori-av-scan-";

std::string workerTempDir(const std::string& base, pid_t pid) {
  return base + "/" + std::string(kWorkerTempPrefix) + std::to_string(pid);
}

// Removes a worker's temp directory; how many files and directories were
// left in it (0: none, or no directory).
std::uintmax_t removeWorkerTempDir(const std::string& base, pid_t pid) {
  std::error_code ec;
  const auto n = std::filesystem::remove_all(workerTempDir(base, pid), ec);
  return ec || n == static_cast<std::uintmax_t>(-1) || n == 0 ? 0 : n - 1;
}

// At start: the temp directories of workers that are gone (an engine
// process killed with its workers, a daemon killed outright). One of a live
// process (another sekimori-antivirus sharing the base) stays.
void sweepWorkerTempDirs(const std::string& base) {
  std::error_code ec;
  for (std::filesystem::directory_iterator it(base, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename();
    if (!name.starts_with(kWorkerTempPrefix)) continue;
    const std::string digits = name.substr(kWorkerTempPrefix.size());
    if (digits.empty() || digits.size() > 9 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (kill(pid, 0) == 0 || errno != ESRCH) continue;
    const auto left = removeWorkerTempDir(base, pid);
    log::message(log::Level::Notice, "removed the temp directory of gone scanner worker " + std::to_string(pid) +
                                         " (" + std::to_string(left) + " file(s) left in it)");
  }
}

// Where libclamav writes a scan's temp files, for the start log line:
// on a disk file system creating and removing them costs more CPU than
// scanning small mail does (README, Performance), on a tmpfs little.
std::string tempDirNote(const std::string& dir) {
  struct statfs fs {};
  if (statfs(dir.c_str(), &fs) != 0) return "temp files in " + dir + " (" + std::strerror(errno) + ")";
  return "temp files in " + dir + (fs.f_type == TMPFS_MAGIC ? " (tmpfs)" : " (not a tmpfs, see [engine] temp_dir)");
}

// A worker's exit status when it ends to be replaced by one with an empty
// clean-file cache (workerMain): not a death, replaced at once.
constexpr int kExitForFreshCache = 3;

// The whole life of a forked process of the pool (supervisor, engine
// process, worker). No exception may unwind out of it: the child would run
// on in the code of the process it was forked from, as a second copy of it
// (under a test runner, or a caller that catches, that copy goes on to
// stop the pool and remove its directory). Logged; the child exits, which
// costs a worker's scan as a crash does.
template <typename Life>
[[noreturn]] void childLife(const char* who, Life&& life) {
  std::string why = "an unknown exception";
  try {
    life();
  } catch (const std::exception& e) {
    why = e.what();
  } catch (...) {
  }
  try {
    log::message(log::Level::Error, std::string(who) + " ended by an exception: " + why);
  } catch (...) {
  }
  _exit(70);  // EX_SOFTWARE
}

// --- memory per scan ---------------------------------------------------------
//
// What libclamav allocates grows with what it parses, not only with the
// bytes: its mail parser keeps each line of a message in a structure of its
// own, 30 times the size of a message of empty lines (measured with 1.4.6:
// 10 MB of them, 310 MiB more; text in 42-byte lines, 4 times; a base64
// attachment, 3 times). Four workers on four such messages could take the machine's
// memory, and the kernel's OOM killer picks its own victim: the milter,
// Postfix. So each scan gets max_scan_memory: RLIMIT_DATA (private writable
// memory: heap and anonymous mappings; not the mapped message, not temp
// files) is set to what the worker holds as the scan starts plus that, and
// put back after it. An allocation past it fails: libclamav reports it and
// gives up, our code meets std::bad_alloc; the scan is then
// kOverScanMemory (what it did not reach is unknown), and the worker is
// replaced. Where GLib allocates (GMime, a web archive in an archive), a
// failure aborts the worker: a scan failure, as for any crash.
class ScanMemoryLimit {
 public:
  explicit ScanMemoryLimit(std::uint64_t allowance) : allowance_(allowance) {
    if (allowance_ == 0) return;
    if (getrlimit(RLIMIT_DATA, &saved_) != 0) {
      log::message(log::Level::Warning, errnoText("scanner worker cannot read its memory limit; scans unbounded"));
      allowance_ = 0;
      return;
    }
    statm_ = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (statm_ < 0) {
      log::message(log::Level::Warning, errnoText("scanner worker cannot open /proc/self/statm; scans unbounded"));
      allowance_ = 0;
    }
  }
  ~ScanMemoryLimit() {
    if (statm_ >= 0) close(statm_);
  }
  ScanMemoryLimit(const ScanMemoryLimit&) = delete;
  ScanMemoryLimit& operator=(const ScanMemoryLimit&) = delete;

  // Before a scan: sets the limit (armed() says whether it could: not with
  // none configured, nor when what the worker holds cannot be read).
  void arm() {
    armed_ = false;
    if (allowance_ == 0) return;
    // "size resident shared text lib data dt", in pages; data counts the
    // private writable mappings (and the stack), as RLIMIT_DATA does.
    char buf[128];
    const ssize_t n = pread(statm_, buf, sizeof buf - 1, 0);
    if (n <= 0) return;
    buf[n] = '\0';
    unsigned long long fields[6] = {};
    if (std::sscanf(buf, "%llu %llu %llu %llu %llu %llu", &fields[0], &fields[1], &fields[2], &fields[3], &fields[4],
                    &fields[5]) != 6) {
      return;
    }
    const std::uint64_t held = fields[5] * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
    rlimit lim = saved_;
    const std::uint64_t want = held + allowance_;
    if (saved_.rlim_cur != RLIM_INFINITY && saved_.rlim_cur < want) return;  // set tighter outside: kept
    lim.rlim_cur = static_cast<rlim_t>(want);
    armed_ = setrlimit(RLIMIT_DATA, &lim) == 0;
  }
  // After it: the limit the worker started with.
  void disarm() {
    if (armed_) setrlimit(RLIMIT_DATA, &saved_);
    armed_ = false;
  }
  bool armed() const { return armed_; }

 private:
  std::uint64_t allowance_;
  rlimit saved_{};
  int statm_ = -1;
  bool armed_ = false;
};

[[noreturn]] void workerMain(int listenFd, pid_t supervisor, cl_engine* engine, const std::string& versions,
                             unsigned alarmSeconds, const std::string& tempBaseDir) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != supervisor) _exit(0);
  prctl(PR_SET_NAME, "sekimori-av-scan");
  // Its own temp directory (see workerTempDir), set in this process's copy
  // of the engine only; the engine process removes it when we are gone.
  const std::string temp = workerTempDir(tempBaseDir, getpid());
  gWorkerTempDir = temp;
  removeWorkerTempDir(tempBaseDir, getpid());  // a pid used before
  if (mkdir(temp.c_str(), 0700) != 0) {
    log::message(log::Level::Error, errnoText("scanner worker cannot create its temp directory " + temp));
    _exit(1);
  }
  if (const cl_error_t rc = cl_engine_set_str(engine, CL_ENGINE_TMPDIR, temp.c_str()); rc != CL_SUCCESS) {
    log::message(log::Level::Error, "scanner worker cannot set its temp directory " + temp + ": " + cl_strerror(rc));
    _exit(1);
  }
  // Workers are forked from one process: without a reseed they would share
  // rand()'s state, and libclamav names its temp files from rand() — two
  // workers scanning at once then collide on the same name and an archive
  // member goes unscanned.
  srand(static_cast<unsigned>(getpid()) ^ static_cast<unsigned>(time(nullptr)) ^
        static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count()));

  struct sigaction sa {};
  sa.sa_handler = onWorkerTerm;  // no SA_RESTART: epoll_pwait must return EINTR
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGALRM, SIG_DFL);  // the watchdog
  signal(SIGCHLD, SIG_DFL);
  signal(SIGPIPE, SIG_IGN);
  // SIGTERM ("exit after the current scan") is only delivered inside epoll_pwait,
  // while the worker is idle: no race between the check and the wait.
  sigset_t term, idle;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, &idle);
  sigdelset(&idle, SIGTERM);

  // Every worker waits on the same listening socket; EPOLLEXCLUSIVE wakes
  // one of them per connection instead of all (each woken worker costs a
  // context switch and a failed accept).
  ScanMemoryLimit memoryLimit(gLimits.maxScanMemory);
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLEXCLUSIVE;
  if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listenFd, &ev) != 0) {
    log::message(log::Level::Error, errnoText("scanner worker cannot wait on its socket (epoll)"));
    _exit(1);
  }
  for (;;) {
    if (gWorkerStop) _exit(0);
    epoll_event got{};
    if (epoll_pwait(ep, &got, 1, -1, &idle) < 0) continue;  // EINTR: check the flag
    const int c = accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) continue;  // another worker took it (EAGAIN), or the client left
    if (!writeAll(c, "A")) {
      close(c);
      continue;
    }
    timeval tv{kRecvTimeoutSeconds, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char byte = 0;
    iovec iov{&byte, 1};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n;
    do {
      n = recvmsg(c, &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    int fd = -1;
    if (n == 1) {
      for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS && cm->cmsg_len >= CMSG_LEN(sizeof(int))) {
          std::memcpy(&fd, CMSG_DATA(cm), sizeof fd);
        }
      }
    }
    ScanResult r;
    bool freshCache = false;
    if (fd < 0) {
      r = ScanResult::failure("scanner worker received no file descriptor");
    } else {
      gScan = {};
      gScan.inScan = true;
      alarm(alarmSeconds);
      memoryLimit.arm();
      try {
        r = scanOne(fd, engine, versions);
        closeLayersFrom(0);
        scanUnpacked(engine, versions, r);
      } catch (const std::bad_alloc&) {
        gScan.outOfMemory = true;
      }
      const bool memoryLimited = memoryLimit.armed();
      memoryLimit.disarm();
      alarm(0);
      gScan.inScan = false;
      if (gScan.clamavMuted > 0) {
        log::message(log::Level::Warning, "libclamav: " + std::to_string(gScan.clamavMuted) +
                                              " more message(s) in the same scan not logged");
      }
      if (gScan.hadError && r.status == ScanResult::Status::Clean) {
        r = ScanResult::failure("libclamav reported an error during the scan (see the log); not trusted as clean");
      }
      if (r.status == ScanResult::Status::Error && !gScan.tempFull.empty()) r.error += ": " + gScan.tempFull;
      if (r.status == ScanResult::Status::Clean && !gScan.encryptedName.empty()) {
        r.status = ScanResult::Status::Encrypted;
        r.name = gScan.encryptedName;
      }
      if (r.status == ScanResult::Status::Clean && !gScan.unscanned.empty()) {
        r.status = ScanResult::Status::Unscanned;
        r.name = gScan.unscanned;
      }
      if (!gScan.limitName.empty() &&
          (r.status == ScanResult::Status::Clean || r.status == ScanResult::Status::Unscanned)) {
        r.status = ScanResult::Status::LimitsExceeded;
        r.name = gScan.limitName;
      }
      // Out of memory, nothing is known of what the scan did not reach: only
      // a virus found before stands. Past max_scan_memory that is a limit
      // of the scan (the message needs more); with none set (or one that could
      // not be set), the machine's memory ran out: a failure, tried again later.
      if (gScan.outOfMemory && r.status != ScanResult::Status::Infected) {
        r = memoryLimited ? limitsExceeded(kOverScanMemory, versions)
                          : ScanResult::failure("scanner worker out of memory");
      }
      // libclamav keeps the hash of every file (and archive member) it found
      // clean, and skips such a file the next time. What only we noticed or
      // did (a container it could not unpack, which we may have unpacked, a
      // member longer than max_file_size, an encrypted OpenPGP file, an
      // error it logged and went on from) left the files around it in that
      // cache as clean: the same zip again would come back clean. This
      // worker ends after answering, whatever the verdict, and its
      // replacement starts with an empty cache.
      freshCache = !gScan.unscanned.empty() || gScan.hadError || !gScan.limitName.empty() ||
                   !gScan.encryptedName.empty() || gScan.unpacked || gScan.activeHtml || gScan.outOfMemory;
      r.activeHtml = gScan.activeHtml;
      close(fd);
    }
    std::string line = std::string(statusWord(r.status)) + "\t" + fieldSafe(r.name) + "\t" +
                       fieldSafe(r.versions) + "\t" + fieldSafe(r.error) + "\t" + (r.activeHtml ? "html" : "") + "\n";
    writeAll(c, line);
    close(c);
    if (freshCache) _exit(kExitForFreshCache);
  }
}

// --- signals as bytes on a pipe -------------------------------------------
//
// The supervisor and each engine process wait in poll(); their signal
// handlers only write the signal number to a pipe the loop reads.

int gSignalPipe = -1;  // write end
void onSignalByte(int sig) {
  const int saved = errno;
  const char b = static_cast<char>(sig);
  (void)!write(gSignalPipe, &b, 1);
  errno = saved;
}

// Installs onSignalByte for `sigs`; returns the read end (non-blocking), or
// -1. A process calls it once, after fork (the pipe is its own).
int signalPipe(std::initializer_list<int> sigs) {
  int p[2];
  if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return -1;
  gSignalPipe = p[1];
  struct sigaction sa {};
  sa.sa_handler = onSignalByte;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigemptyset(&sa.sa_mask);
  for (int s : sigs) sigaction(s, &sa, nullptr);
  return p[0];
}

// Reads what is on the signal pipe; true if `sig` was among it.
bool drainSignals(int fd, int sig) {
  bool seen = false;
  char buf[64];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; ++i) seen = seen || buf[i] == static_cast<char>(sig);
  }
  return seen;
}

std::string exitText(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  return "status " + std::to_string(status);
}

// --- engine process -------------------------------------------------------
//
// One per generation of signatures: loads and compiles the engine, forks the
// workers that share it, reaps and replaces them. A database that crashes
// libclamav while loading kills this process only; the supervisor keeps the
// previous generation serving. Report to the supervisor, one line:
//   "R<versions>\t<signatures>\t<load ms>\n"  loaded, workers forked
//   "E<why>\n"                     no engine (then exits 1)
// SIGTERM retires it: its workers exit after their current scan, then it
// does.

struct Worker {
  Clock::time_point started;
};

class EngineProcess {
 public:
  EngineProcess(const ScannerOptions& o, int listenFd, int reportFd, pid_t supervisor)
      : o_(o), listenFd_(listenFd), reportFd_(reportFd), supervisor_(supervisor) {
    const double secs = std::ceil(static_cast<double>(o_.scanTimeout.count()) / 1000.0);
    alarmSeconds_ = static_cast<unsigned>(std::max(1.0, secs));
  }

  [[noreturn]] void run() {
    // The supervisor gone (even SIGKILLed): SIGTERM, which retires us below
    // (or, while still loading, ends us).
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != supervisor_) _exit(0);
    prctl(PR_SET_NAME, "sekimori-av-eng");
#ifdef SEKIMORI_TEST_HOOKS
    faultOnLoad(o_.engine.databaseDir);
#endif
    std::string why;
    const auto t0 = Clock::now();
    if (!loadEngine(o_.engine, &engine_, &why)) {
      report("E" + fieldSafe(why) + "\n");
      _exit(1);
    }
    const auto ms = std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count();
    signalRead_ = signalPipe({SIGCHLD, SIGTERM});
    if (signalRead_ < 0) {
      report("E" + errnoText("pipe") + "\n");
      _exit(1);
    }
    sweepWorkerTempDirs(o_.engine.tempDir);
    spawnMissing();
    report("R" + engine_.versions + "\t" + std::to_string(engine_.signatures) + "\t" + std::to_string(ms) + "\n");
    close(reportFd_);
    reportFd_ = -1;

    for (;;) {
      int waitMs = -1;
      if (!retiring_ && live() < o_.workers) {
        waitMs = static_cast<int>(std::clamp<long long>(
            std::chrono::duration_cast<milliseconds>(nextSpawn_ - Clock::now()).count() + 1, 0, 60000));
      }
      pollfd p{signalRead_, POLLIN, 0};
      poll(&p, 1, waitMs);
      if (drainSignals(signalRead_, SIGTERM) && !retiring_) {
        retiring_ = true;
        for (const auto& [pid, w] : workers_) kill(pid, SIGTERM);
      }
      reap();
      if (retiring_ && workers_.empty()) _exit(0);
      if (!retiring_) spawnMissing();
    }
  }

 private:
  void report(const std::string& line) { (void)!write(reportFd_, line.data(), line.size()); }

  int live() const { return static_cast<int>(workers_.size()); }

  void spawnMissing() {
    // SIGTERM is blocked across the fork: a worker told to retire before it
    // has set up its own handling (until then it has ours, which writes to
    // our signal pipe) must not lose the signal and live on after us. It
    // stays pending until the worker first waits (workerMain), and the
    // worker exits then.
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    while (live() < o_.workers && Clock::now() >= nextSpawn_) {
      sigprocmask(SIG_BLOCK, &term, &old);
      const pid_t pid = fork();
      if (pid < 0) {
        sigprocmask(SIG_SETMASK, &old, nullptr);
        log::message(log::Level::Error, errnoText("cannot fork a scanner worker"));
        nextSpawn_ = Clock::now() + std::chrono::seconds(1);
        return;
      }
      if (pid == 0) {
#ifdef SEKIMORI_TEST_HOOKS
        slowWorkerStart(o_.engine.databaseDir);
#endif
        if (reportFd_ >= 0) close(reportFd_);
        close(signalRead_);
        close(gSignalPipe);
        signal(SIGTERM, SIG_DFL);
        childLife("scanner worker", [&] {
          workerMain(listenFd_, self_, engine_.engine.get(), engine_.versions, alarmSeconds_, o_.engine.tempDir);
        });
      }
      sigprocmask(SIG_SETMASK, &old, nullptr);
      workers_[pid] = Worker{Clock::now()};
    }
  }

  void reap() {
    for (;;) {
      int st = 0;
      const pid_t pid = waitpid(-1, &st, WNOHANG);
      if (pid <= 0) return;
      auto it = workers_.find(pid);
      if (it == workers_.end()) continue;
      const Worker w = it->second;
      workers_.erase(it);
      const std::string who = "scanner worker " + std::to_string(pid);
      if (const auto left = removeWorkerTempDir(o_.engine.tempDir, pid); left > 0) {
        log::message(log::Level::Notice, who + " left " + std::to_string(left) + " temp file(s); removed");
      }
      if (WIFSIGNALED(st)) {
        const int sig = WTERMSIG(st);
        if (sig == SIGALRM) {
          log::message(log::Level::Warning, who + " killed by signal 14 (scan timeout)");
        } else if (!(retiring_ && (sig == SIGTERM || sig == SIGKILL))) {
          log::message(log::Level::Error, who + " crashed (signal " + std::to_string(sig) + ")");
        }
      } else if (WIFEXITED(st) && WEXITSTATUS(st) == kExitForFreshCache) {
        log::message(log::Level::Debug, who + " ended for an empty clean-file cache; replaced");
        continue;  // a deliberate end: no back-off
      } else if (WIFEXITED(st) && WEXITSTATUS(st) != 0) {
        log::message(log::Level::Error, who + " exited with status " + std::to_string(WEXITSTATUS(st)));
      }
      if (retiring_) continue;
      // Respawn at once, unless workers die as soon as they start: then back
      // off (100 ms doubling to 10 s) instead of a fork loop.
      if (Clock::now() - w.started < std::chrono::seconds(1)) {
        fastDeaths_ = std::min(fastDeaths_ + 1, 8);
        const milliseconds delay = std::min(milliseconds(100) * (1 << (fastDeaths_ - 1)), milliseconds(10000));
        nextSpawn_ = std::max(nextSpawn_, Clock::now() + delay);
        if (fastDeaths_ >= 4) {
          log::message(log::Level::Error, "scanner workers keep dying; next start in " +
                                              std::to_string(delay.count()) + " ms");
        }
      } else {
        fastDeaths_ = 0;
      }
    }
  }

#ifdef SEKIMORI_TEST_HOOKS
  static bool testMarker(const std::string& dir, const char* name) {
    const char* env = std::getenv("SEKIMORI_FAULT_INJECTION");
    return env != nullptr && std::string_view(env) == "1" && access((dir + "/" + name).c_str(), F_OK) == 0;
  }
  // Test-only: a file of this name in the database directory makes the load
  // crash, as a database that trips a bug in libclamav's loader would.
  static void faultOnLoad(const std::string& dir) {
    if (testMarker(dir, "SEKIMORI-TEST-CRASH-ON-LOAD")) crashNow();
  }
  // Test-only: a new worker that the scheduler runs late (300 ms after the
  // fork, before it has touched its signal handling).
  static void slowWorkerStart(const std::string& dir) {
    if (testMarker(dir, "SEKIMORI-TEST-SLOW-WORKER-START")) usleep(300 * 1000);
  }
#endif

  const ScannerOptions o_;
  const int listenFd_;
  int reportFd_;
  const pid_t supervisor_;
  const pid_t self_ = getpid();
  LoadedEngine engine_;
  int signalRead_ = -1;
  unsigned alarmSeconds_ = 1;
  bool retiring_ = false;
  std::map<pid_t, Worker> workers_;
  Clock::time_point nextSpawn_ = Clock::now();
  int fastDeaths_ = 0;
};

// --- supervisor -----------------------------------------------------------
//
// Holds no engine (a few MB): owns the listening socket, watches the
// database directory, starts an engine process per generation of
// signatures, retires the previous one once the new one is serving, and
// replaces an engine process that dies (the OOM killer picks the big ones).

class Supervisor {
 public:
  Supervisor(const ScannerOptions& o, int ctlFd, int lifeFd, int listenFd)
      : o_(o), ctlFd_(ctlFd), lifeFd_(lifeFd), listenFd_(listenFd) {}

  [[noreturn]] void run() {
    signalRead_ = signalPipe({SIGCHLD});
    if (signalRead_ < 0) fail(errnoText("pipe"));
    stamp_ = databaseStamp(o_.engine.databaseDir);
    if (std::string why; !startLoading(&why)) fail(why);

    // dbCheckInterval <= 0: only reload() triggers a check.
    const auto interval = o_.dbCheckInterval > milliseconds(0) ? o_.dbCheckInterval : milliseconds(24LL * 3600 * 1000);
    auto nextCheck = Clock::now() + interval;
    for (;;) {
      auto wake = nextCheck;
      if (current_ < 0 && loading_ < 0) wake = std::min(wake, nextStart_);
      const auto waitMs = std::clamp<long long>(
          std::chrono::duration_cast<milliseconds>(wake - Clock::now()).count() + 1, 0, 60000);
      pollfd p[3] = {{ctlFd_, POLLIN, 0}, {signalRead_, POLLIN, 0}, {reportRead_, POLLIN, 0}};
      const int n = poll(p, reportRead_ >= 0 ? 3 : 2, static_cast<int>(waitMs));
      drainSignals(signalRead_, SIGCHLD);
      bool check = false;
      if (n > 0 && (p[0].revents & (POLLIN | POLLHUP | POLLERR))) {
        char buf[64];
        const ssize_t r = read(ctlFd_, buf, sizeof buf);
        if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) shutdown();  // milter gone or stop()
        if (r > 0) check = true;                                                  // reload()
      }
      readReport();
      reap();
      if (Clock::now() >= nextCheck) check = true;
      if (check) {
        nextCheck = Clock::now() + interval;
        if (loading_ >= 0) {
          recheck_ = true;  // after the load under way
        } else {
          checkDatabase();
        }
      }
      if (current_ < 0 && loading_ < 0 && Clock::now() >= nextStart_) {
        stamp_ = databaseStamp(o_.engine.databaseDir);
        startLoading();
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& why) {
    (void)!write(lifeFd_, ("E" + why).data(), why.size() + 1);
    _exit(1);
  }

  // Forks the engine process for a new generation. False (logged, `why`
  // set, the next try in 1 s) when the system cannot make one.
  bool startLoading(std::string* why = nullptr) {
    int rp[2];
    pid_t pid = -1;
    std::string error;
    if (pipe2(rp, O_CLOEXEC) != 0) {
      error = errnoText("cannot start a scanner engine process: pipe");
    } else if ((pid = fork()) < 0) {
      error = errnoText("cannot fork a scanner engine process");
      close(rp[0]);
      close(rp[1]);
    }
    if (!error.empty()) {
      log::message(log::Level::Error, error);
      if (why != nullptr) *why = error;
      nextStart_ = Clock::now() + std::chrono::seconds(1);
      return false;
    }
    if (pid == 0) {
      // Keeps the worker socket, the lifeline (EOF for the milter when the
      // last process of the pool is gone) and its report pipe; not the
      // control pipe, nor another generation's report pipe.
      closeInheritedFds({listenFd_, lifeFd_, rp[1]});
      signal(SIGCHLD, SIG_DFL);
      childLife("scanner engine process", [&] { EngineProcess(o_, listenFd_, rp[1], supervisor_).run(); });
    }
    close(rp[1]);
    reportRead_ = rp[0];
    setNonBlocking(reportRead_);
    report_.clear();
    loading_ = pid;
    return true;
  }

  void readReport() {
    if (reportRead_ < 0) return;
    char buf[1024];
    ssize_t n;
    while ((n = read(reportRead_, buf, sizeof buf)) > 0) report_.append(buf, static_cast<std::size_t>(n));
    if (n == 0) {  // written and closed: the engine is serving, or gone
      close(reportRead_);
      reportRead_ = -1;
    }
    if (report_.find('\n') != std::string::npos && report_[0] == 'R') ready();
  }

  // The generation being loaded is serving: it becomes current.
  void ready() {
    std::vector<std::string> f = util::splitFields(std::string_view(report_.data() + 1, report_.find('\n') - 1), '\t');
    f.resize(3);
    const pid_t previous = current_;
    current_ = loading_;
    currentSince_ = Clock::now();
    loading_ = -1;
    if (reportRead_ >= 0) {
      close(reportRead_);
      reportRead_ = -1;
    }
    report_.clear();
    const std::string what = o_.engine.databaseDir + ": " + f[1] + " signatures, " + f[0] + " (" + f[2] +
                             " ms), " + std::to_string(o_.workers) + " scanner workers";
    if (!started_) {
      started_ = true;
      log::message(log::Level::Notice,
                   "libclamav engine loaded from " + what + ", " + tempDirNote(o_.engine.tempDir));
      (void)!write(lifeFd_, "R", 1);  // start() may return
    } else {
      log::message(log::Level::Notice, "signatures reloaded from " + what);
    }
    versions_ = f[0];
    if (previous > 0) {
      retiring_.insert(previous);  // its workers exit after their current scan
      kill(previous, SIGTERM);
    }
    afterLoad();
  }

  // The generation being loaded died before it was serving.
  void loadFailed(int status) {
    std::string why = report_.size() > 1 && report_[0] == 'E'
                          ? report_.substr(1, report_.find('\n') - 1)
                          : "loading the signatures from " + o_.engine.databaseDir +
                                " crashed the engine process (" + exitText(status) + ")";
    loading_ = -1;
    if (reportRead_ >= 0) {
      close(reportRead_);
      reportRead_ = -1;
    }
    report_.clear();
    if (!started_) fail(why);
    if (current_ > 0) {
      log::message(log::Level::Error, "signature reload failed, keeping the engine " + versions_ + ": " + why);
    } else {
      const milliseconds delay = backOff();
      nextStart_ = Clock::now() + delay;
      log::message(log::Level::Error, "no scanner engine: " + why + "; next try in " +
                                          std::to_string(delay.count()) + " ms");
    }
    afterLoad();
  }

  void afterLoad() {
    if (!recheck_) return;
    recheck_ = false;
    checkDatabase();
  }

  // The delay before the next try: none, then 1 s doubling to 60 s.
  milliseconds backOff() {
    const milliseconds d = backoff_;
    backoff_ = std::clamp(backoff_ * 2, milliseconds(1000), milliseconds(60000));
    return d;
  }

  void reap() {
    for (;;) {
      int st = 0;
      const pid_t pid = waitpid(-1, &st, WNOHANG);
      if (pid <= 0) return;
      if (pid == loading_) readReport();  // its 'R' may still be in the pipe: then it is current_ now
      if (pid == loading_) {
        loadFailed(st);
      } else if (pid == current_) {
        // Killed under us (the OOM killer, an admin): its workers die with
        // it. Load a new generation at once, unless engine processes keep
        // dying within a minute: then after 1 s, doubling to 60 s.
        current_ = -1;
        if (Clock::now() - currentSince_ > std::chrono::seconds(60)) backoff_ = milliseconds(0);
        nextStart_ = Clock::now() + backOff();
        log::message(log::Level::Error, "scanner engine process " + std::to_string(pid) + " " + exitText(st) +
                                            "; loading the signatures again (scans wait meanwhile)");
      } else if (retiring_.erase(pid) == 0) {
        // A worker orphaned by its engine process's death (we are their
        // subreaper): its temp directory is left to us.
        if (const auto left = removeWorkerTempDir(o_.engine.tempDir, pid); left > 0) {
          log::message(log::Level::Notice, "scanner worker " + std::to_string(pid) + " of a dead engine process left " +
                                               std::to_string(left) + " temp file(s); removed");
        }
      }
    }
  }

  void checkDatabase() {
    const std::string stamp = databaseStamp(o_.engine.databaseDir);
    if (stamp == stamp_) return;
    stamp_ = stamp;  // a failed load is retried only when the directory changes again
    if (!startLoading()) stamp_.clear();  // no process for it: retried at the next check
  }

  [[noreturn]] void shutdown() {
    std::set<pid_t> all = retiring_;
    for (pid_t p : {current_, loading_}) {
      if (p > 0) all.insert(p);
    }
    for (pid_t p : all) kill(p, SIGTERM);
    const auto deadline = Clock::now() + milliseconds(1000);
    while (!all.empty() && Clock::now() < deadline) {
      const pid_t pid = waitpid(-1, nullptr, WNOHANG);
      if (pid > 0) {
        all.erase(pid);
      } else if (pid < 0 && errno == ECHILD) {
        all.clear();
      } else {
        std::this_thread::sleep_for(milliseconds(10));
      }
    }
    for (pid_t p : all) kill(p, SIGKILL);  // their workers follow (PR_SET_PDEATHSIG)
    for (pid_t p : all) waitpid(p, nullptr, 0);
    _exit(0);
  }

  const ScannerOptions o_;
  const int ctlFd_;
  const int lifeFd_;
  const int listenFd_;
  const pid_t supervisor_ = getpid();
  int signalRead_ = -1;
  int reportRead_ = -1;  // from the engine process being loaded
  std::string report_;
  std::string stamp_;
  std::string versions_;
  bool started_ = false;
  bool recheck_ = false;
  pid_t current_ = -1;  // the generation serving
  pid_t loading_ = -1;  // the generation being loaded
  std::set<pid_t> retiring_;
  Clock::time_point currentSince_;
  Clock::time_point nextStart_ = Clock::now();
  milliseconds backoff_{0};
};

// The socket is created by the supervisor before any worker, so workers
// inherit it and a worker's death never closes it.
int listenOn(const std::string& path, std::string* error) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) {
    *error = "socket path too long: " + path;
    return -1;
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = errnoText("socket");
    return -1;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  unlink(path.c_str());
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(fd, SOMAXCONN) != 0) {
    *error = "cannot listen on " + path + ": " + std::strerror(errno);
    close(fd);
    return -1;
  }
  setNonBlocking(fd);  // workers wait in epoll, then accept (EAGAIN when another took it)
  return fd;
}

}  // namespace

std::string_view toString(ScanResult::Status s) { return statusWord(s); }

ScanFile::ScanFile() : fd_(memfd_create("sekimori-scan", MFD_CLOEXEC | MFD_ALLOW_SEALING)) {}

ScanFile::~ScanFile() {
  if (fd_ >= 0) close(fd_);
}

bool ScanFile::write(const void* data, std::size_t size) {
  return util::writeAll(fd_, std::string_view(static_cast<const char*>(data), size));
}

bool ScanFile::seal() {
  return fcntl(fd_, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) == 0;
}

// --- ScannerPool (milter side) ---------------------------------------------

struct ScannerPool::Impl {
  ScannerOptions options;
  std::string socketPath;
  std::string runDir;
  bool removeRunDir = false;
  pid_t supervisor = -1;
  int ctlFd = -1;   // write end: reload() bytes; EOF stops the supervisor
  int lifeFd = -1;  // read end: 'R' when ready; EOF when the pool is gone
  std::thread watcher;                // watch()
  std::atomic<bool> stopping{false};  // stop() is under way: the watcher goes quietly
};

ScannerPool::ScannerPool() = default;
ScannerPool::~ScannerPool() { stop(); }

std::string ScannerPool::libraryVersion() { return cl_retver(); }

pid_t ScannerPool::supervisorPid() const { return impl_ ? impl_->supervisor : -1; }

void ScannerPool::watch(std::function<void()> onDeath) {
  if (!impl_ || impl_->lifeFd < 0 || impl_->watcher.joinable()) return;
  Impl* im = impl_.get();
  im->watcher = std::thread([im, onDeath = std::move(onDeath)] {
    while (!im->stopping.load()) {
      // Short polls: stop() sets `stopping` and joins before it reads or
      // closes the lifeline itself.
      pollfd p{im->lifeFd, POLLIN, 0};
      const int n = poll(&p, 1, 200);
      if (n <= 0 || im->stopping.load()) continue;
      char buf[64];
      const ssize_t r = read(im->lifeFd, buf, sizeof buf);
      if (r > 0 || (r < 0 && (errno == EINTR || errno == EAGAIN))) continue;
      log::message(log::Level::Error, "scanner supervisor " + std::to_string(im->supervisor) +
                                             " and its workers are gone; no scan can be made");
      onDeath();
      return;
    }
  });
}

bool ScannerPool::start(const ScannerOptions& options, std::string* error) {
  std::string ignored;
  if (error == nullptr) error = &ignored;
  if (impl_) {
    *error = "scanner pool already started";
    return false;
  }
  if (!versionAtLeast(cl_retver(), 1, 4)) {
    *error = std::string("libclamav ") + cl_retver() + " is too old: 1.4 or later is needed (LZH support)";
    return false;
  }
  if (options.workers < 1) {
    *error = "scanner workers must be at least 1";
    return false;
  }
  const long pages = sysconf(_SC_PHYS_PAGES), pageSize = sysconf(_SC_PAGESIZE);
  const std::string warning =
      scanMemoryWarning(options,
                        pages > 0 && pageSize > 0
                            ? static_cast<std::uint64_t>(pages) * static_cast<std::uint64_t>(pageSize)
                            : 0,
                        cgroupMemoryLimit(fileText("/proc/self/cgroup")));
  if (!warning.empty()) log::message(log::Level::Warning, warning);
  cl_set_clcb_msg(clamavMessage);
  if (const cl_error_t rc = cl_init(CL_INIT_DEFAULT); rc != CL_SUCCESS) {
    *error = std::string("cannot initialise libclamav: ") + cl_strerror(rc);
    return false;
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  // Resolved once, here: the supervisor, every engine process and their
  // workers use the same directory (as [engine] settings, until restart).
  impl->options.engine.tempDir = scanTempBase(options);
  if (options.runDir.empty()) {
    char tmpl[] = "/tmp/sekimori-av.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      *error = errnoText("cannot create the scanner socket directory under /tmp");
      return false;
    }
    impl->runDir = tmpl;
    impl->removeRunDir = true;
  } else {
    impl->runDir = options.runDir;
    if (mkdir(impl->runDir.c_str(), 0700) == 0) {
      impl->removeRunDir = true;
    } else if (errno != EEXIST) {
      *error = "cannot create " + impl->runDir + ": " + std::strerror(errno);
      return false;
    }
    struct stat st {};
    if (stat(impl->runDir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      *error = impl->runDir + " is not a directory";
      return false;
    }
    chmod(impl->runDir.c_str(), 0700);
  }
  impl->socketPath = impl->runDir + "/" + kSocketName;
  auto cleanupDir = [&] {
    unlink(impl->socketPath.c_str());
    if (impl->removeRunDir) rmdir(impl->runDir.c_str());
  };

  int ctl[2], life[2];
  if (pipe2(ctl, O_CLOEXEC) != 0) {
    *error = errnoText("pipe");
    cleanupDir();
    return false;
  }
  if (pipe2(life, O_CLOEXEC) != 0) {
    *error = errnoText("pipe");
    close(ctl[0]);
    close(ctl[1]);
    cleanupDir();
    return false;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    *error = errnoText("cannot fork the scanner supervisor");
    for (int fd : {ctl[0], ctl[1], life[0], life[1]}) close(fd);
    cleanupDir();
    return false;
  }
  if (pid == 0) {
    // Supervisor. Its own session: the terminal's ^C and the milter's
    // process-group signals do not reach it; it ends when the control pipe
    // reaches EOF.
    setsid();
    prctl(PR_SET_NAME, "sekimori-av-sup");
    // The workers of an engine process that dies become ours to reap, so
    // that their temp directories can go with them (Supervisor::reap).
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_DFL);  // never a handler of the milter's: it would swallow the signal here
    close(ctl[1]);
    close(life[0]);
    closeInheritedFds({ctl[0], life[1]});
    std::string why;
    const int listenFd = listenOn(impl->socketPath, &why);
    if (listenFd < 0) {
      (void)!write(life[1], ("E" + why).data(), why.size() + 1);
      _exit(1);
    }
    childLife("scanner supervisor", [&] { Supervisor(impl->options, ctl[0], life[1], listenFd).run(); });
  }
  close(ctl[0]);
  close(life[1]);
  impl->supervisor = pid;
  impl->ctlFd = ctl[1];
  impl->lifeFd = life[0];

  // Wait for 'R' (signatures loaded, workers forked) or the reason there
  // is no engine. The official databases take tens of seconds to compile.
  std::string answer;
  const auto deadline = Clock::now() + kStartWait;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    pollfd p{impl->lifeFd, POLLIN, 0};
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) == 0) {
      answer = "Esignatures not loaded within " + std::to_string(kStartWait.count() / 1000) + " s";
      break;
    }
    char buf[512];
    const ssize_t n = read(impl->lifeFd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) answer.append(buf, static_cast<std::size_t>(n));
    if (n <= 0 || answer[0] == 'R') break;
  }
  impl_ = std::move(impl);
  if (answer.empty() || answer[0] != 'R') {
    *error = answer.size() > 1 ? answer.substr(1) : "scanner supervisor exited during start";
    stop();
    return false;
  }
  return true;
}

ScanResult ScannerPool::scan(int fd) {
  if (!impl_) return ScanResult::failure("scanner not started");
  const Impl& im = *impl_;
  const auto timeout = im.options.scanTimeout;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, im.socketPath.c_str(), im.socketPath.size() + 1);

  // Connect. A full backlog (EAGAIN) means every worker is busy and many
  // scans wait: retry until scanTimeout. Refused means no supervisor
  // (stopped or dead): retry only briefly.
  const auto start = Clock::now();
  int c = -1;
  for (;;) {
    c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (c < 0) return ScanResult::failure(errnoText("scanner socket"));
    if (connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) break;
    const int err = errno;
    close(c);
    c = -1;
    const auto waited = Clock::now() - start;
    const bool gone = err == ECONNREFUSED || err == ENOENT;
    const bool retry = (err == EAGAIN && waited < timeout) ||
                       (gone && waited < std::min<milliseconds>(timeout, milliseconds(1000)));
    if (!retry) {
      return ScanResult::failure(err == EAGAIN ? "no scanner worker free within the scan timeout"
                                               : "cannot reach the scanner: " + std::string(std::strerror(err)));
    }
    std::this_thread::sleep_for(milliseconds(20));
  }

  char byte = 'S';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  cmsghdr* cm = CMSG_FIRSTHDR(&msg);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cm), &fd, sizeof fd);
  ssize_t sent;
  do {
    sent = sendmsg(c, &msg, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent != 1) {
    const std::string why = errnoText("cannot hand the message to the scanner");
    close(c);
    return ScanResult::failure(why);
  }

  // Until 'A' the scan is queued for a worker (a busy one frees up within
  // scanTimeout, its watchdog sees to that); after 'A' the scan itself runs.
  std::string reply;
  bool accepted = false;
  auto deadline = Clock::now() + timeout + kReplySlack;
  ScanResult result = ScanResult::failure("scan timed out");
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) break;
    pollfd p{c, POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    char buf[1024];
    const ssize_t r = recv(c, buf, sizeof buf, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (r <= 0) {
      result = ScanResult::failure(accepted ? "scanner worker died during the scan"
                                            : "scanner worker died before the scan");
      break;
    }
    reply.append(buf, static_cast<std::size_t>(r));
    if (!accepted && !reply.empty() && reply[0] == 'A') {
      accepted = true;
      reply.erase(0, 1);
      deadline = Clock::now() + timeout + kReplySlack;
    }
    const auto nl = reply.find('\n');
    if (accepted && nl != std::string::npos) {
      const std::vector<std::string> f = util::splitFields(std::string_view(reply.data(), nl), '\t');
      ScanResult r2;
      if (f.size() != 5 || !parseStatus(f[0], &r2.status)) {
        result = ScanResult::failure("malformed answer from the scanner worker");
      } else {
        r2.name = f[1];
        r2.versions = f[2];
        r2.error = f[3];
        r2.activeHtml = f[4] == "html";
        result = std::move(r2);
      }
      break;
    }
  }
  close(c);
  return result;
}

void ScannerPool::reload() {
  if (!impl_ || impl_->ctlFd < 0) return;
  // Non-blocking on purpose: a full pipe already holds a pending reload.
  const int fl = fcntl(impl_->ctlFd, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(impl_->ctlFd, F_SETFL, fl | O_NONBLOCK);
  (void)!write(impl_->ctlFd, "L", 1);
}

void ScannerPool::stop() {
  if (!impl_) return;
  Impl& im = *impl_;
  im.stopping = true;
  if (im.watcher.joinable()) im.watcher.join();
  if (im.ctlFd >= 0) {
    close(im.ctlFd);  // EOF: the supervisor stops its workers and exits
    im.ctlFd = -1;
  }
  // The lifeline reaches EOF when the supervisor and every worker are gone.
  // It works even when the supervisor is no child of ours (the milter
  // daemonised after start()).
  auto waitGone = [&](milliseconds limit) {
    const auto deadline = Clock::now() + limit;
    while (im.lifeFd >= 0) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left <= 0) return false;
      pollfd p{im.lifeFd, POLLIN, 0};
      const int n = poll(&p, 1, static_cast<int>(left));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      char buf[256];
      const ssize_t r = read(im.lifeFd, buf, sizeof buf);
      if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) return true;
    }
    return true;
  };
  if (im.lifeFd >= 0 && !waitGone(kStopWait) && im.supervisor > 0) {
    log::message(log::Level::Warning,
                 "scanner supervisor " + std::to_string(im.supervisor) + " did not stop; killing it");
    kill(im.supervisor, SIGKILL);  // its workers follow (PR_SET_PDEATHSIG)
    waitGone(milliseconds(2000));
  }
  if (im.supervisor > 0) {
    // Reap it if it is our child (no-op with ECHILD after a daemonising fork).
    int st = 0;
    for (int i = 0; i < 200 && waitpid(im.supervisor, &st, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
  }
  if (im.lifeFd >= 0) close(im.lifeFd);
  unlink(im.socketPath.c_str());
  if (im.removeRunDir) rmdir(im.runDir.c_str());
  impl_.reset();
}

}  // namespace sekimori::antivirus
