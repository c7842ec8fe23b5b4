// common/mime/lzma.cpp — see lzma.h.
#include "common/mime/lzma.h"

#include <lzma.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <new>
#include <vector>

#include "common/util/bytes.h"

namespace sekimori::mime {
namespace {

constexpr std::size_t kChunk = 64 * 1024;

// An LZMA or LZMA2 filter's dictionary, no larger than `cap` (nor than
// declared, nor under liblzma's minimum).
void lowerDictionary(lzma_options_lzma& opt, std::uint64_t cap) {
  opt.dict_size = static_cast<std::uint32_t>(
      std::clamp<std::uint64_t>(cap, LZMA_DICT_SIZE_MIN, std::max<std::uint64_t>(opt.dict_size, LZMA_DICT_SIZE_MIN)));
}

// One lzma_code step from the front of `in` into the front of `out`,
// dropping from both what was read and written.
lzma_ret codeStep(lzma_stream& s, std::span<const unsigned char>& in, std::span<unsigned char>& out) {
  s.next_in = in.data();
  s.avail_in = in.size();
  s.next_out = out.data();
  s.avail_out = out.size();
  const lzma_ret ret = lzma_code(&s, LZMA_RUN);
  in = in.last(s.avail_in);
  out = out.last(s.avail_out);
  return ret;
}

// One step of a decoder that ends with LZMA_STREAM_END (an .xz block, an
// .lz member's data): End; Damaged; More when `in` is used up or `out`
// full (the caller's turn); Again otherwise.
enum class Progress { End, Again, More, Damaged };
Progress stepToEnd(lzma_stream& s, std::span<const unsigned char>& in, std::span<unsigned char>& out) {
  const lzma_ret ret = codeStep(s, in, out);
  if (ret == LZMA_MEM_ERROR) throw std::bad_alloc();
  if (ret == LZMA_STREAM_END) return Progress::End;
  // LZMA_BUF_ERROR: no progress, as there is no input yet.
  if (ret != LZMA_OK && ret != LZMA_BUF_ERROR) return Progress::Damaged;
  if (in.empty() || out.empty()) return Progress::More;
  return ret == LZMA_BUF_ERROR ? Progress::Damaged : Progress::Again;
}

constexpr unsigned char kLzipMagic[] = {'L', 'Z', 'I', 'P'};

// The dictionary size an .lz member header (6 bytes) declares, or 0 for
// none lzip takes: 2^(low 5 bits of the last byte), less (its high 3 bits)
// sixteenths of that; 4 KiB to 512 MiB. Versions 0 and 1.
std::uint32_t lzipDictionary(const unsigned char* header) {
  const std::uint64_t base = std::uint64_t{1} << (header[5] & 0x1F);
  const std::uint64_t dict = base - base / 16 * (header[5] >> 5);
  if (header[4] > 1 || dict < LZMA_DICT_SIZE_MIN || dict > (std::uint64_t{1} << 29)) return 0;
  return static_cast<std::uint32_t>(dict);
}

// A header or trailer coming in pieces: moves bytes from `in` into
// `gathered` until it holds `need`.
bool gather(std::vector<unsigned char>& gathered, std::size_t need, std::span<const unsigned char>& in) {
  const std::size_t n = std::min(in.size(), need - gathered.size());
  gathered.insert(gathered.end(), in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n));
  in = in.subspan(n);
  return gathered.size() == need;
}

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
  lowerDictionary(*static_cast<lzma_options_lzma*>(filters[0].options), dictionaryCap);
  auto stream = std::make_unique<Stream>();
  const lzma_ret init = lzma_raw_decoder(&stream->s, filters);
  std::free(filters[0].options);
  if (init == LZMA_MEM_ERROR) throw std::bad_alloc();
  if (init == LZMA_OK) stream_ = std::move(stream);
}

LzmaDecoder::~LzmaDecoder() = default;

LzmaDecoder::Step LzmaDecoder::decode(std::span<const unsigned char>& in, std::span<unsigned char>& out) {
  if (!stream_) return Step::Damaged;
  const lzma_ret ret = codeStep(stream_->s, in, out);
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

// The parts of an .xz file, in the order they come (APPENDIX: the .xz
// file format 1.1.0): a stream header; blocks, each a header and its
// compressed data (with padding and a check, read by liblzma's block
// decoder); the index, which must list the blocks as they came; the stream
// footer; then padding (zeros, a multiple of four) and maybe another stream.
struct XzDecoder::State {
  enum class Part { StreamHeader, BlockOrIndex, BlockHeader, Block, Index, StreamFooter, Padding };

  std::uint64_t dictionaryCap;
  Part part = Part::StreamHeader;
  std::vector<unsigned char> gathered;  // a header coming in pieces
  std::size_t need = LZMA_STREAM_HEADER_SIZE;
  lzma_stream_flags flags{};
  lzma_index_hash* index = nullptr;
  lzma_block block{};
  std::array<lzma_filter, LZMA_FILTERS_MAX + 1> filters{};
  lzma_stream s = LZMA_STREAM_INIT;
  std::uint64_t padding = 0;
  bool streamSeen = false;

  explicit State(std::uint64_t cap) : dictionaryCap(cap) {
    for (lzma_filter& f : filters) f = {LZMA_VLI_UNKNOWN, nullptr};
  }
  ~State() {
    freeFilters();
    lzma_end(&s);
    lzma_index_hash_end(index, nullptr);
  }
  void freeFilters() {
    for (lzma_filter& f : filters) {
      std::free(f.options);
      f = {LZMA_VLI_UNKNOWN, nullptr};
    }
  }
  void expect(Part p, std::size_t bytes) {
    part = p;
    need = bytes;
    gathered.clear();
  }
  bool gather(std::span<const unsigned char>& in) { return mime::gather(gathered, need, in); }
  // The block whose header is gathered: its decoder, with the dictionary
  // of every LZMA filter lowered to the cap.
  bool startBlock() {
    block = {};
    block.version = 1;
    block.check = flags.check;
    block.header_size = static_cast<std::uint32_t>(need);
    block.filters = filters.data();
    if (lzma_block_header_decode(&block, nullptr, gathered.data()) != LZMA_OK) return false;
    for (lzma_filter& f : filters) {
      if (f.id == LZMA_FILTER_LZMA2 || f.id == LZMA_FILTER_LZMA1) {
        lowerDictionary(*static_cast<lzma_options_lzma*>(f.options), dictionaryCap);
      }
    }
    const lzma_ret init = lzma_block_decoder(&s, &block);
    if (init == LZMA_MEM_ERROR) throw std::bad_alloc();
    return init == LZMA_OK;
  }
};

XzDecoder::XzDecoder(std::uint64_t dictionaryCap) : state_(std::make_unique<State>(dictionaryCap)) {}

XzDecoder::~XzDecoder() = default;

bool XzDecoder::complete() const {
  return state_->streamSeen && state_->part == State::Part::Padding && state_->padding % 4 == 0;
}

XzDecoder::Step XzDecoder::decode(std::span<const unsigned char>& in, std::span<unsigned char>& out) {
  using Part = State::Part;
  State& st = *state_;
  for (;;) {
    switch (st.part) {
      case Part::StreamHeader:
        if (!st.gather(in)) return Step::More;
        if (lzma_stream_header_decode(&st.flags, st.gathered.data()) != LZMA_OK) return Step::Damaged;
        st.index = lzma_index_hash_init(st.index, nullptr);
        if (st.index == nullptr) throw std::bad_alloc();
        st.expect(Part::BlockOrIndex, 0);
        break;
      case Part::BlockOrIndex:
        if (in.empty()) return Step::More;
        // A block header starts with its size in 4-byte units, not 0 (the
        // index indicator: the index decoder reads it).
        if (in[0] == 0) {
          st.part = Part::Index;
        } else {
          st.expect(Part::BlockHeader, lzma_block_header_size_decode(in[0]));
        }
        break;
      case Part::BlockHeader:
        if (!st.gather(in)) return Step::More;
        if (!st.startBlock()) return Step::Damaged;
        st.part = Part::Block;
        break;
      case Part::Block: {
        if (out.empty()) return Step::More;
        const Progress p = stepToEnd(st.s, in, out);
        if (p == Progress::End) {
          if (lzma_index_hash_append(st.index, lzma_block_unpadded_size(&st.block), st.block.uncompressed_size) !=
              LZMA_OK) {
            return Step::Damaged;
          }
          st.freeFilters();
          st.expect(Part::BlockOrIndex, 0);
          break;
        }
        if (p == Progress::Damaged) return Step::Damaged;
        if (p == Progress::More) return Step::More;
        break;
      }
      case Part::Index: {
        std::size_t pos = 0;
        const lzma_ret ret = lzma_index_hash_decode(st.index, in.data(), &pos, in.size());
        in = in.subspan(pos);
        if (ret == LZMA_STREAM_END) {
          st.expect(Part::StreamFooter, LZMA_STREAM_HEADER_SIZE);
          break;
        }
        if (ret == LZMA_OK || ret == LZMA_BUF_ERROR) return Step::More;  // all of `in` was index
        return Step::Damaged;
      }
      case Part::StreamFooter: {
        if (!st.gather(in)) return Step::More;
        lzma_stream_flags footer{};
        if (lzma_stream_footer_decode(&footer, st.gathered.data()) != LZMA_OK ||
            lzma_stream_flags_compare(&st.flags, &footer) != LZMA_OK ||
            footer.backward_size != lzma_index_hash_size(st.index)) {
          return Step::Damaged;
        }
        st.streamSeen = true;
        st.padding = 0;
        st.expect(Part::Padding, 0);
        break;
      }
      case Part::Padding:
        while (!in.empty() && in[0] == 0) {
          in = in.subspan(1);
          ++st.padding;
        }
        if (in.empty()) return Step::More;
        if (st.padding % 4 != 0) return Step::Damaged;
        st.expect(Part::StreamHeader, LZMA_STREAM_HEADER_SIZE);  // the next stream
        break;
    }
  }
}

// The parts of an .lz file (the lzip manual, "File format"): members, each
// a header ("LZIP", the version, the coded dictionary size), LZMA data with
// lc=3 lp=0 pb=2 that ends with an end marker, and a trailer: the data's
// CRC32, its size, and from version 1 on the member's own size, all
// little-endian. After the last member, maybe trailing bytes.
struct LzipDecoder::State {
  enum class Part { Magic, Header, Data, Trailer, Trailing };
  static constexpr std::size_t kMagicSize = 4, kHeaderSize = 6;

  std::uint64_t dictionaryCap;
  Part part = Part::Magic;
  std::vector<unsigned char> gathered;  // a header or trailer coming in pieces
  std::size_t need = kMagicSize;
  lzma_stream s = LZMA_STREAM_INIT;
  std::uint32_t crc = 0;
  std::uint64_t dataSize = 0, packedSize = 0;
  bool memberSeen = false;

  explicit State(std::uint64_t cap) : dictionaryCap(cap) {}
  ~State() { lzma_end(&s); }

  bool gather(std::span<const unsigned char>& in) { return mime::gather(gathered, need, in); }
  // The member whose header is gathered: its decoder (liblzma reuses the
  // last member's memory), with the dictionary lowered to the cap.
  bool startMember() {
    lzma_options_lzma opt{};
    opt.dict_size = lzipDictionary(gathered.data());
    if (opt.dict_size == 0) return false;
    opt.lc = 3;
    opt.lp = 0;
    opt.pb = 2;
    lowerDictionary(opt, dictionaryCap);
    const lzma_filter filters[2] = {{LZMA_FILTER_LZMA1, &opt}, {LZMA_VLI_UNKNOWN, nullptr}};
    const lzma_ret init = lzma_raw_decoder(&s, filters);
    if (init == LZMA_MEM_ERROR) throw std::bad_alloc();
    crc = 0;
    dataSize = 0;
    packedSize = kHeaderSize;
    return init == LZMA_OK;
  }
  bool trailerMatches() const {
    const unsigned char* t = gathered.data();
    return util::le32(t) == crc && util::le64(t + 4) == dataSize &&
           (need == 12 || util::le64(t + 12) == packedSize + need);
  }
};

LzipDecoder::LzipDecoder(std::uint64_t dictionaryCap) : state_(std::make_unique<State>(dictionaryCap)) {}

LzipDecoder::~LzipDecoder() = default;

bool LzipDecoder::complete() const {
  return state_->memberSeen && (state_->part == State::Part::Magic || state_->part == State::Part::Trailing);
}

LzipDecoder::Step LzipDecoder::decode(std::span<const unsigned char>& in, std::span<unsigned char>& out) {
  using Part = State::Part;
  State& st = *state_;
  for (;;) {
    switch (st.part) {
      case Part::Magic:
        if (!st.gather(in)) return Step::More;
        if (!std::equal(std::begin(kLzipMagic), std::end(kLzipMagic), st.gathered.begin())) {
          if (!st.memberSeen) return Step::Damaged;
          st.part = Part::Trailing;
          break;
        }
        st.part = Part::Header;
        st.need = State::kHeaderSize;
        break;
      case Part::Header:
        if (!st.gather(in)) return Step::More;
        if (!st.startMember()) return Step::Damaged;
        st.part = Part::Data;
        break;
      case Part::Data: {
        if (out.empty()) return Step::More;
        const std::size_t had = in.size();
        unsigned char* const written = out.data();
        const std::size_t room = out.size();
        const Progress p = stepToEnd(st.s, in, out);
        const std::size_t got = room - out.size();
        st.crc = lzma_crc32(written, got, st.crc);
        st.dataSize += got;
        st.packedSize += had - in.size();
        if (p == Progress::End) {
          st.part = Part::Trailer;
          st.need = st.gathered[4] == 0 ? 12 : 20;  // version 0 has no member size
          st.gathered.clear();
          break;
        }
        if (p == Progress::Damaged) return Step::Damaged;
        if (p == Progress::More) return Step::More;
        break;
      }
      case Part::Trailer:
        if (!st.gather(in)) return Step::More;
        if (!st.trailerMatches()) return Step::Damaged;
        st.memberSeen = true;
        st.part = Part::Magic;
        st.need = State::kMagicSize;
        st.gathered.clear();
        break;
      case Part::Trailing:
        in = in.last(0);
        return Step::More;
    }
  }
}

bool xzMagic(std::span<const unsigned char> bytes) {
  static constexpr unsigned char kMagic[] = {0xFD, '7', 'z', 'X', 'Z', 0x00};
  return bytes.size() >= sizeof kMagic && std::equal(std::begin(kMagic), std::end(kMagic), bytes.begin());
}

bool lzipHeader(std::span<const unsigned char> bytes) {
  return bytes.size() >= 6 && std::equal(std::begin(kLzipMagic), std::end(kLzipMagic), bytes.begin()) &&
         lzipDictionary(bytes.data()) != 0;
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
  if (bytes.size() < kLzmaAloneHeaderSize) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  // lc/lp/pb in one byte: (pb * 5 + lp) * 9 + lc.
  const unsigned props = p[0];
  if (props > (4 * 5 + 4) * 9 + 8 || props % 9 + props / 9 % 5 > 4) return false;
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

}  // namespace sekimori::mime
