// common/mime/archive.h — how large an attached archive really is
// (R-SIZE-5), measured by streaming it through libarchive: never extracted
// to disk, never held whole in memory, archive bombs cost milliseconds.
// And (unpackEntries, at the end) one level of an archive in memory
// unpacked entry by entry, for the antivirus workers to scan what libclamav
// cannot unpack itself.
//
// Every entry's data is read into one fixed scratch buffer and counted. An
// entry that is itself an archive or compressed (zip in zip, a .gz of
// anything) is opened in turn, reading from its parent, and its leaf bytes
// are counted instead, down to maxDepth levels. A compression layer is not
// a level (a .tar.gz is one archive), but its whole decompressed stream is
// counted, also where the format inside stops early: a .gz of zeros (an
// "empty tar" to libarchive) or a .tar.gz with gigabytes after the tar's
// end is as large as gunzip makes it. Counting stops as soon as a limit is
// certain.
//
// Seeking: ZIP, 7-Zip, self-extracting .exe and ISO 9660 images are read
// with seek support at the top level, so the attachment is copied first
// (into memory up to copyMemoryLimit, else into an unlinked temp file in
// tmpDir; mime::Spool). A ZIP read by its central directory shows every
// entry an unzip tool would write, including overlapping ones (the "better
// zip bomb"), which a front-to-back reader does not see; a ZIP whose
// directory libarchive cannot read (damaged, or misplaced by its end
// record) and yields no entry is read front to back instead, by its local
// headers, as 7-Zip then extracts it. Nested levels
// always stream: a nested ZIP is read front to back, a nested 7-Zip is
// Unreadable (its header is at the end), a nested or compressed ISO image
// is plain data.
//
// Readers that allocate per declared entry before returning the first one
// are checked first: a ZIP's end-of-central-directory count and a 7-Zip
// header's file count (sevenzip.h) above maxEntries are TooManyEntries
// without libarchive reading them.
//
// Formats: zip, tar, cpio, 7z, rar, rar5, lha/lzh, cab, ar, iso9660 (see
// above), each optionally under gzip, bzip2, xz, lzma, lzip, zstd, lz4 or
// compress; a bare compressed file of plain data is one level. A .lzma,
// .xz or .lz stream is decoded by our own decoders (lzma.h), at any level
// and inside any other compression, whatever dictionary size it declares
// (libarchive's .lzma reader takes 4 KiB to 128 MiB only, the rest would
// be plain data here; its .xz and .lz readers allocate what is declared),
// with a dictionary of at most twice maxTotal.
//
// Encrypted entries: their data cannot be read, so the size the archive
// declares for them (when it declares one) is counted instead, and the
// rest of the archive is measured normally. The result is Encrypted unless
// a limit was hit (TooLarge, TooDeep, TooManyEntries win). A damaged
// archive inside a good one is counted as data on top of what it yielded.
//
// LZMA dictionaries: an LZMA stream declares its dictionary size, up to
// 4 GiB, and liblzma allocates what is declared. .lzma, .xz and .lz files
// are decoded by us, and a ZIP member compressed with LZMA has its declared dictionary
// lowered in the bytes libarchive reads (the attachment's copy, and every
// nested level's stream), both to twice maxTotal: a few bytes declaring
// 4 GiB cost no more than a bomb of maxTotal. The output is the same: a
// match never reaches back further than the bytes written.
//
// XXX: 7-Zip coders and xz members of a ZIP (method 95) may still declare
// up to 4 GiB, which liblzma asks for as address space (libarchive 3.6
// sets no limit); pages
// are touched only as output is written, so a bomb costs up to about
// maxTotal of memory before it is stopped, but where the kernel refuses
// the address space (a host with less memory than the declared size, or
// ulimit -v) the level is not measured (NotArchive or Unreadable).
//
//   mime::ExpansionLimits limits;               // 100 MiB, 8 levels, 100000 entries
//   auto r = mime::measureExpansion(content, limits);   // content: message.h
//   if (r.status == mime::ExpansionResult::Status::TooLarge) refuse();
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/mime/message.h"

namespace sekimori::mime {

struct ExpansionLimits {
  std::uint64_t maxTotal = 100ULL * 1024 * 1024;  // leaf bytes over all levels
  int maxDepth = 8;                               // 1 = the attachment itself
  std::uint64_t maxEntries = 100000;              // entries over all levels
  // Where the top level goes when it must be read with seeks (see above).
  std::uint64_t copyMemoryLimit = 8ULL * 1024 * 1024;
  std::string tmpDir = "/tmp";
};

struct ExpansionResult {
  enum class Status {
    NotArchive,      // no archive or compression format recognised
    Ok,              // an archive or compressed file, measured completely within the limits
    TooLarge,        // totalUncompressed > maxTotal
    TooDeep,         // an archive nested deeper than maxDepth
    TooManyEntries,  // more than maxEntries entries (or a ZIP / 7-Zip declaring more)
    Encrypted,       // measured, except the data of encrypted entries
    Unreadable,      // recognised but damaged or truncated somewhere (measured up to the damage),
                     // or the copy for seeking could not be made
  };
  Status status = Status::NotArchive;
  std::uint64_t totalUncompressed = 0;  // leaf bytes counted so far; when TooLarge just > maxTotal
  int deepestLevel = 0;                 // deepest archive level seen (maxDepth + 1 when TooDeep)
  std::uint64_t entries = 0;            // entries seen over all levels
  std::string format;                   // libarchive's name of the outermost format, e.g.
                                        // "ZIP 2.0 (deflation)", "GNU tar format (gzip)", or
                                        // the filter ("gzip") for a bare compressed file
};

ExpansionResult measureExpansion(Content& content, const ExpansionLimits& limits);

// "ok", "too-large", ... for log lines.
const char* toString(ExpansionResult::Status s);

// --- one level unpacked ----------------------------------------------------
//
// unpackEntries reads `bytes` (a whole archive or compressed file in
// memory) with the same libarchive formats and filters as measureExpansion
// and hands each regular file's data, read whole, to `onEntry`. One level
// only: an entry that is itself an archive is handed over as it is. A
// compressed file (gzip, bzip2, xz, lzma, lzip, zstd, lz4, compress) is one
// entry, its decompressed bytes (a .tar.zst gives the tar); a .lzma or .xz
// file is decoded by our own decoders (lzma.h), whatever dictionary size
// it declares, with at most the dictionary its output can use. An archive is
// read with seeks (a ZIP by its central directory, as unzip tools do, or
// by its local headers when that yields nothing, as measureExpansion); a
// ZIP or 7-Zip declaring more than maxEntries entries is refused before
// libarchive allocates for them. A ZIP member compressed with LZMA is not
// changed here (the bytes handed over are the archive's own): libarchive
// allocates the dictionary it declares, up to 4 GiB, and the caller checks
// that first (the antivirus worker: zipLargestLzmaDictionary, member_sizes.h).
//
// The limits are checked while reading: an entry is never held past
// maxEntrySize, nor the sum of the entries past maxTotal. Encrypted entries
// are skipped and counted as `encrypted` (also a 7-Zip whose header is
// encrypted); an entry libarchive cannot read (damaged, or compressed in a
// way it does not know) makes the result Unreadable, and what was read of
// it before the damage (a cut .zst's first megabytes) and the entries after
// it are still handed over.
//
//   mime::UnpackLimits lim{25 << 20, 100 << 20, 10000};
//   auto r = mime::unpackEntries(bytes, lim, [&](std::string_view name, std::string_view data) {
//     return scan(data);                  // false: stop here (Stopped)
//   });
struct UnpackLimits {
  std::uint64_t maxEntrySize = 25ULL * 1024 * 1024;  // one entry's bytes
  std::uint64_t maxTotal = 100ULL * 1024 * 1024;     // all entries' bytes
  std::uint64_t maxEntries = 10000;                  // entries handed over (and declared)
};

struct UnpackResult {
  enum class Status {
    NotArchive,      // neither compressed nor an archive libarchive reads (nothing handed over)
    Ok,              // every entry that is not encrypted was handed over
    EntryTooLarge,   // an entry longer than maxEntrySize (not handed over)
    TooLarge,        // the entries together longer than maxTotal
    TooManyEntries,  // more than maxEntries entries, read or declared
    Unreadable,      // an entry (or the archive) could not be read; the others were handed over
    Stopped,         // onEntry returned false
  };
  Status status = Status::NotArchive;
  bool encrypted = false;       // entries (or a 7-Zip header) that could not be read for encryption
  std::uint64_t entries = 0;    // handed to onEntry
  std::uint64_t totalSize = 0;  // their bytes
};

using EntryHandler = std::function<bool(std::string_view name, std::string_view data)>;

UnpackResult unpackEntries(std::string_view bytes, const UnpackLimits& limits, const EntryHandler& onEntry);

// "ok", "entry-too-large", ... for log lines.
const char* toString(UnpackResult::Status s);

}  // namespace sekimori::mime
