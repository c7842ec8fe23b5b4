// milters/antivirus/zisofs.cpp — see zisofs.h.
#include "milters/antivirus/zisofs.h"

#include <zlib.h>

#include <algorithm>
#include <cstdint>
#include <span>
#include <string>

#include "common/util/bytes.h"

namespace sekimori::antivirus {
namespace {

using UStatus = mime::UnpackResult::Status;

constexpr std::string_view kMagic("\x37\xE4\x53\x96\xC9\xDB\xD6\x07", 8);
constexpr std::size_t kHeaderSize = 16;

const unsigned char* bytesAt(std::string_view s, std::size_t at) {
  return reinterpret_cast<const unsigned char*>(s.data()) + at;
}

// Inflates one zlib stream into exactly `out.size()` bytes.
bool inflateBlock(std::string_view in, std::span<char> out) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) return false;
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_FINISH);
  const bool whole = rc == Z_STREAM_END && z.avail_out == 0;
  inflateEnd(&z);
  return whole;
}

}  // namespace

bool zisofsHeader(std::string_view head) {
  if (head.size() < kHeaderSize || !head.starts_with(kMagic)) return false;
  const int blockLog2 = static_cast<unsigned char>(head[13]);
  return head[12] == kHeaderSize / 4 && blockLog2 >= 15 && blockLog2 <= 17;
}

mime::UnpackResult zisofsUnpack(std::string_view bytes, const mime::UnpackLimits& limits,
                                const mime::EntryHandler& onEntry) {
  mime::UnpackResult result;
  if (!zisofsHeader(bytes)) return result;  // NotArchive
  const std::uint64_t size = util::le32(bytesAt(bytes, 8));
  if (size > limits.maxEntrySize) {
    result.status = UStatus::EntryTooLarge;
    return result;
  }
  if (size > limits.maxTotal) {
    result.status = UStatus::TooLarge;
    return result;
  }
  const std::uint64_t block = std::uint64_t{1} << static_cast<unsigned char>(bytes[13]);
  const std::uint64_t blocks = (size + block - 1) / block;
  const std::uint64_t tableEnd = kHeaderSize + (blocks + 1) * 4;
  // Zeros to begin with: a block of zero length is all zeros, and what
  // damage leaves undone is cut off below.
  std::string out(size, '\0');
  std::uint64_t done = 0;  // bytes inflated, in order
  bool damaged = tableEnd > bytes.size();
  for (std::uint64_t i = 0; i < blocks && !damaged; ++i) {
    const std::uint64_t from = util::le32(bytesAt(bytes, kHeaderSize + i * 4));
    const std::uint64_t to = util::le32(bytesAt(bytes, kHeaderSize + i * 4 + 4));
    const std::uint64_t want = std::min(block, size - i * block);
    if (from < tableEnd || to < from || to > bytes.size()) {
      damaged = true;
    } else if (from == to || inflateBlock(bytes.substr(from, to - from), std::span(out).subspan(i * block, want))) {
      done += want;
    } else {
      damaged = true;
    }
  }
  out.resize(done);
  if (out.empty()) {
    result.status = damaged ? UStatus::Unreadable : UStatus::Ok;
    return result;
  }
  result.entries = 1;
  result.totalSize = out.size();
  if (!onEntry("", out)) {
    result.status = UStatus::Stopped;
  } else {
    result.status = damaged ? UStatus::Unreadable : UStatus::Ok;
  }
  return result;
}

}  // namespace sekimori::antivirus
