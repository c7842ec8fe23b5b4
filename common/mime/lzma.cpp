// common/mime/lzma.cpp — see lzma.h.
#include "common/mime/lzma.h"

#include <lzma.h>

#include <algorithm>
#include <cstdlib>
#include <new>

#include "common/util/bytes.h"

namespace sekimori::mime {
namespace {

constexpr std::size_t kChunk = 64 * 1024;

}  // namespace

// lzma_end whatever leaves the decoder (std::bad_alloc included).
struct LzmaDecoder::Stream {
  lzma_stream s = LZMA_STREAM_INIT;
  ~Stream() { lzma_end(&s); }
};

LzmaDecoder::LzmaDecoder(bool lzma2, std::span<const unsigned char> props, std::uint64_t dictionaryCap) {
  if (props.size() != (lzma2 ? 1u : 5u)) return;
  lzma_filter filters[2] = {{lzma2 ? LZMA_FILTER_LZMA2 : LZMA_FILTER_LZMA1, nullptr}, {LZMA_VLI_UNKNOWN, nullptr}};
  if (lzma_properties_decode(&filters[0], nullptr, props.data(), props.size()) != LZMA_OK) return;
  auto* opt = static_cast<lzma_options_lzma*>(filters[0].options);
  opt->dict_size = static_cast<std::uint32_t>(std::clamp<std::uint64_t>(
      dictionaryCap, LZMA_DICT_SIZE_MIN, std::max<std::uint64_t>(opt->dict_size, LZMA_DICT_SIZE_MIN)));
  auto stream = std::make_unique<Stream>();
  const lzma_ret init = lzma_raw_decoder(&stream->s, filters);
  std::free(filters[0].options);
  if (init == LZMA_MEM_ERROR) throw std::bad_alloc();
  if (init == LZMA_OK) stream_ = std::move(stream);
}

LzmaDecoder::~LzmaDecoder() = default;

LzmaDecoder::Step LzmaDecoder::decode(std::span<const unsigned char>& in, std::span<unsigned char>& out) {
  if (!stream_) return Step::Damaged;
  lzma_stream& s = stream_->s;
  s.next_in = in.data();
  s.avail_in = in.size();
  s.next_out = out.data();
  s.avail_out = out.size();
  const lzma_ret ret = lzma_code(&s, LZMA_RUN);
  in = in.last(s.avail_in);
  out = out.last(s.avail_out);
  if (ret == LZMA_STREAM_END) return Step::End;
  if (ret == LZMA_MEM_ERROR) throw std::bad_alloc();
  return ret == LZMA_OK ? Step::More : Step::Damaged;
}

LzmaDecoded decodeLzma(std::span<const unsigned char> packed, bool lzma2, std::span<const unsigned char> props,
                       std::uint64_t maxOut, std::string& out) {
  LzmaDecoded r;
  LzmaDecoder decoder(lzma2, props, maxOut);
  if (!decoder.ok()) return r;
  for (std::uint64_t written = 0;;) {
    if (written >= maxOut) {
      r.status = LzmaDecoded::Status::Full;
      break;
    }
    const std::size_t room = static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, maxOut - written));
    const std::size_t at = out.size();
    out.resize(at + room);
    std::span<unsigned char> free(reinterpret_cast<unsigned char*>(out.data() + at), room);
    const LzmaDecoder::Step step = decoder.decode(packed, free);
    const std::size_t got = room - free.size();
    out.resize(at + got);
    written += got;
    if (step == LzmaDecoder::Step::End) {
      r.status = LzmaDecoded::Status::End;
      break;
    }
    if (step == LzmaDecoder::Step::Damaged) break;
    // Room left over with no input left: everything there was is out.
    if (!free.empty() && packed.empty()) {
      r.status = LzmaDecoded::Status::Truncated;
      break;
    }
  }
  return r;
}

std::size_t zipLzmaDictionaryField(std::span<const unsigned char> bytes) {
  if (bytes.size() < 30) return kZipLzmaNeedsMore;
  const unsigned char* h = bytes.data();
  if ((util::le16(h + 8) & 0xFF) != 14) return kNoZipLzma;  // libarchive keeps the low byte of the method
  const std::size_t data = 30 + util::le16(h + 26) + util::le16(h + 28);
  if (bytes.size() < data + 9) return kZipLzmaNeedsMore;
  return util::le16(h + data + 2) == 5 ? data + 5 : kNoZipLzma;
}

bool lzmaAloneHeader(std::string_view bytes) {
  if (bytes.size() < kLzmaAloneHeaderSize || static_cast<unsigned char>(bytes[0]) != 0x5D) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::uint32_t dict = util::le32(p + 1);
  const std::uint64_t size = util::le64(p + 5);
  // xz's rule: 2^n or 2^n + 2^(n-1), or UINT32_MAX. Below 4 KiB no encoder
  // writes one (and there the pattern matches too many small numbers).
  bool dictOk = dict == ~std::uint32_t{0};
  for (int n = 12; n <= 31 && !dictOk; ++n) {
    dictOk = dict == (std::uint32_t{1} << n) || dict == (std::uint32_t{1} << n) + (std::uint32_t{1} << (n - 1));
  }
  return dictOk && (size == kLzmaAloneSizeUnknown || size < (std::uint64_t{1} << 38));
}

UnpackResult unpackLzmaAlone(std::string_view bytes, const UnpackLimits& limits, const EntryHandler& onEntry) {
  using Status = UnpackResult::Status;
  UnpackResult result;
  if (!lzmaAloneHeader(bytes)) return result;  // NotArchive
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::uint64_t declared = util::le64(p + 5);
  // One byte past the limits, to tell "too large" from "just fits".
  const std::uint64_t cap = std::min(limits.maxEntrySize, limits.maxTotal) + 1;
  std::string data;
  const LzmaDecoded d = decodeLzma(std::span(p + kLzmaAloneHeaderSize, bytes.size() - kLzmaAloneHeaderSize), false,
                                   std::span(p, 5), std::min(declared, cap), data);
  if (data.size() > limits.maxEntrySize) {
    result.status = Status::EntryTooLarge;
    return result;
  }
  if (data.size() > limits.maxTotal) {
    result.status = Status::TooLarge;
    return result;
  }
  // Whole: up to the end marker, or exactly the declared size (which an
  // encoder may write without an end marker).
  const bool whole = declared == kLzmaAloneSizeUnknown ? d.status == LzmaDecoded::Status::End : data.size() == declared;
  if (!whole && data.empty()) {
    result.status = Status::Unreadable;
    return result;
  }
  result.entries = 1;
  result.totalSize = data.size();
  result.status = !onEntry("", data) ? Status::Stopped : whole ? Status::Ok : Status::Unreadable;
  return result;
}

}  // namespace sekimori::mime
