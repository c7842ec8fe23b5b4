// milters/antivirus/member_sizes.h — what a ZIP, CAB or 7-Zip archive's
// directory records say that libclamav 1.4.6 does not act on, read without
// unpacking anything: the largest size declared for a member, (ZIP)
// members the central directory does not list, (ZIP, 7-Zip) members
// compressed in a way it does not unpack, and (ZIP) what its LZMA members
// would have a decoder allocate.
//
// Why (scanner.cpp): libclamav 1.4.6 scans a zip member longer than its
// file size limit cut short (empty under 8 KiB), and a longer cab member
// cut short, and answers clean for both. The directory says how long the
// member is.
//
//   if (largestDeclaredMember(ArchiveKind::Zip, bytes) > maxFileSize) ...
//
// ZIP: the central directory found from the end record (zip64 included; its
// start taken as the end record minus its size, so data prepended to the
// archive, as in a self-extractor, does not matter); without one, the local
// headers front to back. CAB: the CFFILE records. Bounded by the bytes
// given: a damaged or lying directory yields what could be read, never a
// read outside them.
#pragma once

#include <cstdint>
#include <string_view>

namespace sekimori::antivirus {

enum class ArchiveKind { Zip, Cab };

// 0 when nothing declares a size (or nothing could be read).
std::uint64_t largestDeclaredMember(ArchiveKind kind, std::string_view bytes);

// ZIP: how many members its local headers hold that no central directory
// entry covers, in the gaps between the members the directory lists (and
// at the very start, in front of an archive whose directory says data was
// prepended). libclamav 1.4.6 goes by the directory when there is one and
// scans none of them (measured: EICAR in such a member came back clean);
// an unzipper that goes by the local headers, as streaming readers do,
// extracts them. 0 when there is no central directory (libclamav then
// reads the local headers itself).
std::uint64_t zipMembersOutsideDirectory(std::string_view bytes);

// ZIP: what the first member libclamav 1.4.6 cannot unpack is compressed
// with ("ZIP members compressed with LZMA"), or nullptr. Its unzip knows
// stored, shrunk, reduced, imploded, deflate, deflate64 and bzip2, and
// skips a member compressed any other way without a word (measured: EICAR
// in an LZMA or PPMd member, as Python's zipfile and 7-Zip write them,
// came back clean), while 7-Zip, WinRAR and libarchive-based unzippers
// (Windows 11's, macOS's) extract it. The members the central directory
// lists, and every plausible local header in the bytes (a directory its
// end record misplaces hides nothing from 7-Zip); an encrypted one is left
// to libclamav (it reports those), an empty one holds nothing.
const char* zipMethodNotUnpacked(std::string_view bytes);

// ZIP: the largest dictionary size its LZMA members declare (0: none).
// libarchive, which unpacks them (scanner.cpp), has liblzma allocate the
// whole dictionary before it writes a byte, up to 4 GiB for a member of a
// few bytes; 7-Zip writes 64 KiB to 64 MiB. Read at every local header
// signature in the bytes (mime::zipLzmaDictionaryField), not only where the
// central directory points: libarchive finds members in a damaged
// directory's archive too.
std::uint64_t zipLargestLzmaDictionary(std::string_view bytes);

// 7-Zip: the first coder of the archive's folders libclamav 1.4.6 cannot
// decode ("7-Zip data compressed with BZip2"), or nullptr. It decodes Copy,
// LZMA, LZMA2, PPMd and the x86 (BCJ, BCJ2) and ARM filters; an archive
// using BZip2, Deflate or another filter (ARM64, ARM Thumb, PowerPC,
// SPARC, IA-64, Delta...), as 7-Zip writes it on request, came back clean
// with EICAR inside (measured). Read with mime::probeSevenZip (the header
// up to kSevenZipHeaderMax, LZMA- or LZMA2-decoded when packed); an
// archive whose header is encrypted (libclamav says encrypted) or not
// understood: nullptr.
const char* sevenZipMethodNotUnpacked(std::string_view bytes);
inline constexpr std::uint64_t kSevenZipHeaderMax = 16 << 20;

}  // namespace sekimori::antivirus
