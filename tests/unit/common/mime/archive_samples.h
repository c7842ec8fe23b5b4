// tests/unit/common/mime/archive_samples.h — archives made in the test
// itself with libarchive's writer (no binary fixtures), plus hand-built LHA,
// CAB and RAR files, formats libarchive only reads; and a Content read a
// few bytes at a time.
//
//   std::string zip = samples::write(archive_write_set_format_zip, {},
//                                    {{"a.txt", "hello"}, {"big", "", 200 << 20}});
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <lzma.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/mime/message.h"
#include "common/util/bytes.h"

namespace sekimori::mime::samples {

// Content that hands out at most `chunk` bytes per read, to prove nothing
// depends on how the decoded attachment arrives.
class ChunkedContent final : public Content {
 public:
  ChunkedContent(std::string_view bytes, std::size_t chunk) : bytes_(bytes), chunk_(chunk) {}
  std::size_t read(std::span<std::byte> buf) override {
    const std::size_t n = std::min({buf.size(), bytes_.size(), chunk_});
    std::memcpy(buf.data(), bytes_.data(), n);
    bytes_.remove_prefix(n);
    return n;
  }

 private:
  std::string_view bytes_;
  std::size_t chunk_;
};

struct Entry {
  std::string name;
  std::string data;
  std::uint64_t zeros = 0;  // extra zero bytes after data, written in chunks (bombs)
};

using SetFormat = int (*)(struct archive*);
using AddFilter = int (*)(struct archive*);

inline la_ssize_t appendTo(struct archive*, void* out, const void* buf, size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

// An archive of `entries` in the format `setFormat` sets, through the
// filters in order. `options` / `passphrase` as libarchive takes them.
// Empty on failure (e.g. an option this libarchive was built without).
inline std::string write(SetFormat setFormat, const std::vector<AddFilter>& filters, const std::vector<Entry>& entries,
                         const char* options = nullptr, const char* passphrase = nullptr) {
  std::string out;
  struct archive* a = archive_write_new();
  bool ok = setFormat(a) == ARCHIVE_OK;
  for (AddFilter f : filters) ok = ok && f(a) == ARCHIVE_OK;
  if (options) ok = ok && archive_write_set_options(a, options) == ARCHIVE_OK;
  if (passphrase) ok = ok && archive_write_set_passphrase(a, passphrase) == ARCHIVE_OK;
  archive_write_set_bytes_in_last_block(a, 1);
  ok = ok && archive_write_open(a, &out, nullptr, appendTo, nullptr) == ARCHIVE_OK;
  const std::string zeros(1 << 20, '\0');
  for (const Entry& e : entries) {
    if (!ok) break;
    struct archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.name.c_str());
    archive_entry_set_filetype(ae, AE_IFREG);
    archive_entry_set_perm(ae, 0644);
    archive_entry_set_size(ae, static_cast<la_int64_t>(e.data.size() + e.zeros));
    ok = archive_write_header(a, ae) == ARCHIVE_OK;
    if (ok && !e.data.empty()) ok = archive_write_data(a, e.data.data(), e.data.size()) >= 0;
    for (std::uint64_t left = e.zeros; ok && left > 0;) {
      const std::size_t n = left < zeros.size() ? static_cast<std::size_t>(left) : zeros.size();
      ok = archive_write_data(a, zeros.data(), n) == static_cast<la_ssize_t>(n);
      left -= n;
    }
    archive_entry_free(ae);
  }
  ok = archive_write_close(a) == ARCHIVE_OK && ok;
  archive_write_free(a);
  return ok ? out : std::string();
}

inline std::string zip(const std::vector<Entry>& entries) { return write(archive_write_set_format_zip, {}, entries); }

// zip in zip in zip ... `levels` deep, the innermost holding `leaf`.
inline std::string nestedZip(int levels, const std::string& leaf) {
  std::string inner = zip({{"leaf.txt", leaf}});
  for (int i = 1; i < levels; ++i) inner = zip({{"level" + std::to_string(levels - i) + ".zip", inner}});
  return inner;
}

inline void putLe16(std::string& s, std::uint16_t v) {
  s += static_cast<char>(v & 0xFF);
  s += static_cast<char>(v >> 8);
}
inline void putLe32(std::string& s, std::uint32_t v) {
  putLe16(s, static_cast<std::uint16_t>(v & 0xFFFF));
  putLe16(s, static_cast<std::uint16_t>(v >> 16));
}

// CRC-16/ARC, as LHA uses it.
inline std::uint16_t crc16(const std::string& data) {
  std::uint16_t crc = 0;
  for (unsigned char c : data) {
    crc ^= c;
    for (int i = 0; i < 8; ++i) crc = (crc & 1) ? static_cast<std::uint16_t>((crc >> 1) ^ 0xA001) : (crc >> 1);
  }
  return crc;
}

// An LHA archive with level-0 headers and stored (-lh0-) entries.
inline std::string lha(const std::vector<Entry>& entries) {
  std::string out;
  for (const Entry& e : entries) {
    std::string h;  // from the method id on; size and checksum go in front
    h += "-lh0-";
    putLe32(h, static_cast<std::uint32_t>(e.data.size()));  // packed
    putLe32(h, static_cast<std::uint32_t>(e.data.size()));  // original
    putLe32(h, 0x5A210000);                                  // MS-DOS time
    h += '\x20';                                             // attribute
    h += '\x00';                                             // header level 0
    h += static_cast<char>(e.name.size());
    h += e.name;
    putLe16(h, crc16(e.data));
    unsigned sum = 0;
    for (unsigned char c : h) sum += c;
    out += static_cast<char>(h.size());
    out += static_cast<char>(sum & 0xFF);
    out += h;
    out += e.data;
  }
  out += '\0';  // end of archive
  return out;
}

// A Microsoft cabinet with one uncompressed folder: the files' data one
// after the other, cut into CFDATA blocks of at most 32 KiB.
inline std::string cab(const std::vector<Entry>& entries) {
  std::string files, stream;
  for (const Entry& e : entries) {
    putLe32(files, static_cast<std::uint32_t>(e.data.size()));    // cbFile
    putLe32(files, static_cast<std::uint32_t>(stream.size()));    // uoffFolderStart
    putLe16(files, 0);                                             // iFolder
    putLe16(files, 0x5A21);                                        // date
    putLe16(files, 0);                                             // time
    putLe16(files, 0x20);                                          // attribs
    files += e.name;
    files += '\0';
    stream += e.data;
  }
  std::string data;
  std::uint16_t blocks = 0;
  for (std::size_t at = 0; at < stream.size(); at += 32768, ++blocks) {
    const std::string block = stream.substr(at, 32768);
    putLe32(data, 0);                                              // csum: none
    putLe16(data, static_cast<std::uint16_t>(block.size()));       // cbData
    putLe16(data, static_cast<std::uint16_t>(block.size()));       // cbUncomp
    data += block;
  }
  const std::uint32_t filesAt = 36 + 8;  // CFHEADER, one CFFOLDER
  const std::uint32_t dataAt = filesAt + static_cast<std::uint32_t>(files.size());
  std::string out = "MSCF";
  putLe32(out, 0);
  putLe32(out, dataAt + static_cast<std::uint32_t>(data.size()));  // cbCabinet
  putLe32(out, 0);
  putLe32(out, filesAt);                                           // coffFiles
  putLe32(out, 0);
  out += '\x03';
  out += '\x01';                                                   // version 1.3
  putLe16(out, 1);                                                 // cFolders
  putLe16(out, static_cast<std::uint16_t>(entries.size()));        // cFiles
  putLe16(out, 0);                                                 // flags
  putLe16(out, 0);                                                 // setID
  putLe16(out, 0);                                                 // iCabinet
  putLe32(out, dataAt);                                            // CFFOLDER.coffCabStart
  putLe16(out, blocks);                                            // cCFData
  putLe16(out, 0);                                                 // typeCompress: none
  return out + files + data;
}

inline std::uint32_t crc32(const std::string& data) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char ch : data) crc = table[(crc ^ ch) & 0xFF] ^ (crc >> 8);
  return crc ^ 0xFFFFFFFFu;
}

// A ZIP whose members are compressed with LZMA (method 14, APPNOTE 5.8.8:
// a version, the size of the properties, the properties, then raw LZMA
// data ending with an end marker, flag bit 1), as `7z a -tzip -mm=LZMA`
// writes one; libarchive writes no LZMA members. Encoded with xz's preset
// 6 (an 8 MiB dictionary); `declaredDictionary`, when set, is what every
// member's properties then say.
inline std::string lzmaZip(const std::vector<Entry>& entries, std::uint32_t declaredDictionary = 0) {
  std::string out, directory;
  for (const Entry& e : entries) {
    const std::string body = e.data + std::string(e.zeros, '\0');
    lzma_options_lzma opt{};
    if (lzma_lzma_preset(&opt, 6)) return {};
    lzma_filter filters[2] = {{LZMA_FILTER_LZMA1, &opt}, {LZMA_VLI_UNKNOWN, nullptr}};
    std::string packed(body.size() + body.size() / 2 + 65536, '\0');
    std::size_t size = 0;
    if (lzma_raw_buffer_encode(filters, nullptr, reinterpret_cast<const std::uint8_t*>(body.data()), body.size(),
                               reinterpret_cast<std::uint8_t*>(packed.data()), &size, packed.size()) != LZMA_OK) {
      return {};
    }
    packed.resize(size);
    std::uint8_t props[5];
    if (lzma_properties_encode(&filters[0], props) != LZMA_OK) return {};
    std::string data("\x10\x02", 2);  // the LZMA SDK version that wrote it (any)
    putLe16(data, 5);
    data.append(reinterpret_cast<const char*>(props), 5);
    if (declaredDictionary != 0) {
      for (int i = 0; i < 4; ++i) data[5 + i] = static_cast<char>(declaredDictionary >> (8 * i));
    }
    data += packed;
    // The fields local header and directory entry share: version needed
    // (6.3), flags (end marker), method, time, date, CRC, sizes, name length.
    std::string common;
    putLe16(common, 63);
    putLe16(common, 0x0002);
    putLe16(common, 14);
    putLe16(common, 0);
    putLe16(common, 0x21);
    putLe32(common, crc32(body));
    putLe32(common, static_cast<std::uint32_t>(data.size()));
    putLe32(common, static_cast<std::uint32_t>(body.size()));
    putLe16(common, static_cast<std::uint16_t>(e.name.size()));
    putLe16(common, 0);  // extra field
    const auto offset = static_cast<std::uint32_t>(out.size());
    out += "PK\x03\x04" + common + e.name + data;
    directory += "PK\x01\x02";
    putLe16(directory, 63);  // made by
    directory += common;
    putLe16(directory, 0);  // comment
    putLe16(directory, 0);  // disk
    putLe16(directory, 0);  // internal attributes
    putLe32(directory, 0);  // external attributes
    putLe32(directory, offset);
    directory += e.name;
  }
  const auto directoryAt = static_cast<std::uint32_t>(out.size());
  out += directory + "PK\x05\x06";
  putLe32(out, 0);  // disks
  putLe16(out, static_cast<std::uint16_t>(entries.size()));
  putLe16(out, static_cast<std::uint16_t>(entries.size()));
  putLe32(out, static_cast<std::uint32_t>(directory.size()));
  putLe32(out, directoryAt);
  putLe16(out, 0);  // comment
  return out;
}

// `body` through the liblzma encoder `s` was set up as (ended after), or
// empty when it fails.
inline std::string encoded(lzma_stream& s, const std::string& body) {
  std::string out(body.size() + body.size() / 2 + 65536, '\0');
  s.next_in = reinterpret_cast<const std::uint8_t*>(body.data());
  s.avail_in = body.size();
  s.next_out = reinterpret_cast<std::uint8_t*>(out.data());
  s.avail_out = out.size();
  lzma_ret ret = LZMA_OK;
  while (ret == LZMA_OK) ret = lzma_code(&s, LZMA_FINISH);
  out.resize(out.size() - s.avail_out);
  lzma_end(&s);
  return ret == LZMA_STREAM_END ? out : std::string();
}

// `body` as a .lzma file with `lc` literal context bits (xz's encoder,
// preset 6: an 8 MiB dictionary, an end marker, the size not given).
inline std::string lzmaAlone(const std::string& body, std::uint32_t lc) {
  lzma_options_lzma opt{};
  if (lzma_lzma_preset(&opt, 6)) return {};
  opt.lc = lc;
  lzma_stream s = LZMA_STREAM_INIT;
  if (lzma_alone_encoder(&s, &opt) != LZMA_OK) return {};
  return encoded(s, body);
}

// An .xz file of `body` (liblzma's encoder, preset 6: an 8 MiB
// dictionary) with the given check, x86 BCJ in front of LZMA2 or not, in
// blocks of `blockSize` bytes (0: one block, as xz writes by default).
struct XzOptions {
  lzma_check check = LZMA_CHECK_CRC64;
  bool bcj = false;
  std::uint64_t blockSize = 0;
};
inline std::string xz(const std::string& body, const XzOptions& o = {}) {
  lzma_options_lzma opt{};
  if (lzma_lzma_preset(&opt, 6)) return {};
  lzma_filter filters[3] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, nullptr}, {LZMA_VLI_UNKNOWN, nullptr}};
  if (o.bcj) {
    filters[1] = filters[0];
    filters[0] = {LZMA_FILTER_X86, nullptr};
  }
  lzma_stream s = LZMA_STREAM_INIT;
  lzma_mt mt{};
  mt.threads = 1;
  mt.block_size = o.blockSize;
  mt.filters = filters;
  mt.check = o.check;
  if ((o.blockSize != 0 ? lzma_stream_encoder_mt(&s, &mt) : lzma_stream_encoder(&s, filters, o.check)) != LZMA_OK) {
    return {};
  }
  return encoded(s, body);
}

// `x` (an .xz file of one stream) with its first block's LZMA2 dictionary
// declared as `dictByte` says (40: 4 GiB - 1) and the block header's CRC
// made good again: what xz would decode, with that dictionary.
inline std::string withXzDictionary(std::string x, std::uint8_t dictByte) {
  const std::size_t at = LZMA_STREAM_HEADER_SIZE;
  const std::size_t size = (static_cast<std::uint8_t>(x[at]) + 1) * 4;
  const std::size_t lzma2 = x.find(std::string("\x21\x01", 2), at + 2);
  if (lzma2 == std::string::npos || lzma2 + 2 >= at + size - 4) return {};
  x[lzma2 + 2] = static_cast<char>(dictByte);
  const std::uint32_t crc = lzma_crc32(reinterpret_cast<const std::uint8_t*>(x.data() + at), size - 4, 0);
  for (int i = 0; i < 4; ++i) x[at + size - 4 + i] = static_cast<char>(crc >> (8 * i));
  return x;
}

// `z` (a zip) with its end record's directory size 1 short: the end record
// now misplaces the central directory. libarchive's seeking reader gives
// up on it, 7-Zip extracts the members by their local headers.
inline std::string misplaceDirectory(std::string z) {
  const std::size_t end = z.rfind("PK\x05\x06");
  if (end == std::string::npos || end + 22 > z.size()) return {};
  const std::uint32_t size = util::le32(reinterpret_cast<const unsigned char*>(z.data()) + end + 12) - 1;
  for (int i = 0; i < 4; ++i) z[end + 12 + i] = static_cast<char>(size >> (8 * i));
  return z;
}

// A RAR 4 archive of stored entries (method 0x30), as `rar a -m0` writes
// one; `encrypted` sets each entry's password flag (its data is then not
// really encrypted: only the flag tells a reader it is). No rar writer is
// packaged (RAR is proprietary); the format is in RAR's technote.txt.
inline std::string rar4Stored(const std::vector<Entry>& entries, bool encrypted = false) {
  const auto block = [](std::uint8_t type, std::uint16_t flags, const std::string& rest) {
    std::string h;  // from the type on; the CRC goes in front
    h += static_cast<char>(type);
    putLe16(h, flags);
    putLe16(h, static_cast<std::uint16_t>(2 + 1 + 2 + 2 + rest.size()));
    h += rest;
    std::string out;
    putLe16(out, static_cast<std::uint16_t>(crc32(h) & 0xFFFF));
    return out + h;
  };
  std::string out("Rar!\x1a\x07\x00", 7);
  out += block(0x73, 0, std::string(6, '\0'));  // archive header: two reserved fields
  for (const Entry& e : entries) {
    std::string rest;
    putLe32(rest, static_cast<std::uint32_t>(e.data.size()));  // packed size
    putLe32(rest, static_cast<std::uint32_t>(e.data.size()));  // unpacked size
    rest += '\x03';                                            // host OS: Unix
    putLe32(rest, crc32(e.data));
    putLe32(rest, 0x5A210000);  // MS-DOS time
    rest += '\x14';             // version needed: 2.0
    rest += '\x30';             // method: store
    putLe16(rest, static_cast<std::uint16_t>(e.name.size()));
    putLe32(rest, 0x81A4);  // attributes: a regular file, 0644
    rest += e.name;
    out += block(0x74, static_cast<std::uint16_t>(0x8000 | (encrypted ? 0x04 : 0)), rest) + e.data;
  }
  return out + block(0x7B, 0x4000, "");  // end of archive
}

// A ZIP of `n` entries whose data overlap (David Fifield's "better zip
// bomb", with a stored kernel for simplicity): entry i's deflate stream
// quotes entry i+1's local header in a stored block and then runs on into
// entry i+1's data, down to one shared kernel of `kernel` bytes. Read by the
// central directory, every entry is more than `kernel` bytes; read front to
// back, there is only the first entry.
inline std::string overlappingZip(int n, std::size_t kernel) {
  const auto name = [](int i) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "f%03d", i);
    return std::string(buf);
  };
  const std::size_t lhLen = 30 + 4;
  std::vector<std::uint32_t> csize(n), usize(n), crc(n);
  const auto localHeader = [&](int i) {
    std::string h = "PK\x03\x04";
    putLe16(h, 20);  // version needed
    putLe16(h, 0);   // flags
    putLe16(h, 8);   // deflate
    putLe16(h, 0);   // time
    putLe16(h, 0x5A21);
    putLe32(h, crc[i]);
    putLe32(h, csize[i]);
    putLe32(h, usize[i]);
    putLe16(h, 4);   // name length
    putLe16(h, 0);   // extra length
    return h + name(i);
  };
  // Entry i inflates to the local headers of entries i+1... and the kernel;
  // sizes and CRCs are worked out from the last entry back.
  std::string plain(kernel, 'k');
  csize[n - 1] = static_cast<std::uint32_t>(5 + kernel);
  usize[n - 1] = static_cast<std::uint32_t>(kernel);
  crc[n - 1] = crc32(plain);
  for (int i = n - 2; i >= 0; --i) {
    csize[i] = static_cast<std::uint32_t>(5 + lhLen) + csize[i + 1];
    usize[i] = static_cast<std::uint32_t>(lhLen) + usize[i + 1];
    plain = localHeader(i + 1) + plain;
    crc[i] = crc32(plain);
  }
  // Deflate stored block header: BFINAL/BTYPE bits in a byte, LEN, NLEN.
  const auto stored = [](bool final, std::size_t len) {
    std::string b(1, final ? '\x01' : '\x00');
    putLe16(b, static_cast<std::uint16_t>(len));
    putLe16(b, static_cast<std::uint16_t>(~len & 0xFFFF));
    return b;
  };
  std::string out, cd;
  for (int i = 0; i < n; ++i) {
    const std::uint32_t offset = static_cast<std::uint32_t>(out.size());
    out += localHeader(i);
    out += i + 1 < n ? stored(false, lhLen) : stored(true, kernel) + std::string(kernel, 'k');
    std::string c = "PK\x01\x02";
    putLe16(c, 20);  // made by
    putLe16(c, 20);  // needed
    putLe16(c, 0);
    putLe16(c, 8);
    putLe16(c, 0);
    putLe16(c, 0x5A21);
    putLe32(c, crc[i]);
    putLe32(c, csize[i]);
    putLe32(c, usize[i]);
    putLe16(c, 4);
    putLe16(c, 0);   // extra
    putLe16(c, 0);   // comment
    putLe16(c, 0);   // disk
    putLe16(c, 0);   // internal attributes
    putLe32(c, 0);   // external attributes
    putLe32(c, offset);
    cd += c + name(i);
  }
  std::string end = "PK\x05\x06";
  putLe16(end, 0);
  putLe16(end, 0);
  putLe16(end, static_cast<std::uint16_t>(n));
  putLe16(end, static_cast<std::uint16_t>(n));
  putLe32(end, static_cast<std::uint32_t>(cd.size()));
  putLe32(end, static_cast<std::uint32_t>(out.size()));
  putLe16(end, 0);
  return out + cd + end;
}

// A 7-Zip archive whose header declares `files` empty files (one bit
// each in kEmptyStream), plain or LZMA-packed as 7-Zip writes it. A few KB
// that libarchive would turn into ~100 bytes of memory per file.
inline std::string sevenZipManyFiles(std::uint64_t files, bool packed) {
  const auto number = [](std::string& s, std::uint64_t v) {  // 7z NUMBER, 9-byte form
    s += '\xFF';
    for (int i = 0; i < 8; ++i) s += static_cast<char>((v >> (8 * i)) & 0xFF);
  };
  std::string header = "\x01\x05";  // kHeader, kFilesInfo
  number(header, files);
  header += '\x0E';                  // kEmptyStream
  number(header, (files + 7) / 8);
  header += std::string(static_cast<std::size_t>((files + 7) / 8), '\xFF');
  header += std::string("\x00\x00", 2);  // end of FilesInfo, end of Header

  std::string body, next = header;
  if (packed) {
    lzma_options_lzma opt;
    lzma_lzma_preset(&opt, 6);
    lzma_filter filters[2] = {{LZMA_FILTER_LZMA1, &opt}, {LZMA_VLI_UNKNOWN, nullptr}};
    unsigned char props[5];
    lzma_properties_encode(&filters[0], props);
    lzma_stream strm = LZMA_STREAM_INIT;
    if (lzma_raw_encoder(&strm, filters) != LZMA_OK) return {};
    std::string out(header.size() + 4096, '\0');
    strm.next_in = reinterpret_cast<const std::uint8_t*>(header.data());
    strm.avail_in = header.size();
    strm.next_out = reinterpret_cast<std::uint8_t*>(out.data());
    strm.avail_out = out.size();
    while (lzma_code(&strm, LZMA_FINISH) == LZMA_OK) {
    }
    out.resize(strm.total_out);
    lzma_end(&strm);
    body = out;
    next = "\x17\x06";  // kEncodedHeader, kPackInfo
    number(next, 0);     // packPos
    number(next, 1);     // one pack stream
    next += '\x09';      // kSize
    number(next, body.size());
    next += '\x00';
    next += std::string("\x07\x0B", 2);  // kUnPackInfo, kFolder
    number(next, 1);
    next += '\x00';      // not external
    number(next, 1);     // one coder
    next += '\x23';      // id size 3, has properties
    next += std::string("\x03\x01\x01", 3);
    number(next, 5);
    next += std::string(reinterpret_cast<const char*>(props), 5);
    next += '\x0C';      // kCodersUnPackSize
    number(next, header.size());
    next += std::string("\x00\x00", 2);
  }
  std::string start;
  putLe32(start, static_cast<std::uint32_t>(body.size()));  // next header offset (low, high)
  putLe32(start, 0);
  putLe32(start, static_cast<std::uint32_t>(next.size()));
  putLe32(start, 0);
  putLe32(start, crc32(next));
  std::string sig("7z\xBC\xAF\x27\x1C\x00\x04", 8);
  putLe32(sig, crc32(start));
  return sig + start + body + next;
}

}  // namespace sekimori::mime::samples
