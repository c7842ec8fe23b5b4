// milters/antivirus/zisofs.h — a file of an ISO 9660 image compressed with
// zisofs (the Rock Ridge "ZF" extension: mkzftree, mkisofs -z, xorriso
// --zisofs, libarchive's iso9660 writer with "zisofs"), which Linux
// inflates when it mounts the image. libclamav 1.4 hands such a file over
// as it is stored and scans only its compressed bytes (EICAR in one came
// back clean); the scanner worker inflates it (scanner.cpp).
//
// The layout (as Linux reads it, fs/isofs/compress.c): a 16-byte header —
// the magic number, the uncompressed size (LE32), the header size in
// 32-bit words (4), the block size as a power of two (15 to 17) — then one
// LE32 offset per block and one more, from the start of the file; block i
// is the zlib stream between offsets i and i + 1, inflating to one block
// (the last one shorter), or all zeros when the two offsets are equal.
//
//   if (zisofsHeader(layer)) unpack later with zisofsUnpack
#pragma once

#include <string_view>

#include "common/mime/archive.h"

namespace sekimori::antivirus {

// Whether `head` opens with a zisofs header.
bool zisofsHeader(std::string_view head);

// The one file inside, inflated, handed to `onEntry` with no name. Limits
// as mime::unpackEntries: a declared size over maxEntrySize is
// EntryTooLarge, over maxTotal TooLarge (nothing inflated). Damage (a
// block offset out of order or past the end, a block that does not
// inflate to its size) is Unreadable, after handing over the blocks before
// it. Not a zisofs file: NotArchive.
mime::UnpackResult zisofsUnpack(std::string_view bytes, const mime::UnpackLimits& limits,
                                const mime::EntryHandler& onEntry);

}  // namespace sekimori::antivirus
