// Binary OpenPGP messages a scanner cannot read: see openpgp.h.
#include "milters/antivirus/openpgp.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <optional>

#include <bzlib.h>
#include <zlib.h>

#include "common/util/strings.h"

namespace sekimori::antivirus {
namespace {

constexpr int kPublicKeySessionKey = 1, kSymmetricSessionKey = 3;
// Hash algorithms (RFC 9580 9.5) and signing algorithms (9.1: RSA, DSA,
// ECDSA, EdDSA, Ed25519, Ed448) a packet may name.
constexpr std::initializer_list<unsigned> kHashes = {1, 2, 3, 8, 9, 10, 11, 12, 14};
constexpr std::initializer_list<unsigned> kSigning = {1, 3, 17, 19, 22, 27, 28};

bool known(unsigned v, std::initializer_list<unsigned> set) {
  return std::find(set.begin(), set.end(), v) != set.end();
}

unsigned byteAt(std::string_view s, std::size_t i) { return static_cast<unsigned char>(s[i]); }

// The tag of the packet whose header starts with `c0`, -1 when `c0` starts
// none (RFC 9580 4.2: bit 7 set; bit 6 the format).
int packetTag(unsigned c0) {
  if ((c0 & 0x80) == 0) return -1;
  return (c0 & 0x40) != 0 ? static_cast<int>(c0 & 0x3F) : static_cast<int>((c0 >> 2) & 0x0F);
}

struct PacketHeader {
  int tag;
  std::size_t headerSize;
  std::optional<std::uint64_t> bodySize;  // none: a partial or indeterminate length (streamed data)
};

// The `n` bytes from `s[from]` as a big-endian number.
std::uint64_t bigEndian(std::string_view s, std::size_t from, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = from; i < from + n; ++i) v = v << 8 | byteAt(s, i);
  return v;
}

// A new-format body length (RFC 9580 4.2.1) at `s[at]`: the bytes it takes
// and the length it says; a partial length says 2^n bytes of a body that
// goes on with another length after them. nullopt when `s` ends first.
struct BodyLength {
  std::size_t bytes;
  std::uint64_t length;
  bool partial;
};
std::optional<BodyLength> newFormatLength(std::string_view s, std::size_t at) {
  if (at >= s.size()) return std::nullopt;
  const unsigned l1 = byteAt(s, at);
  BodyLength l{1, l1, false};
  if (l1 >= 192 && l1 < 224) {
    l.bytes = 2;
    if (at + 2 <= s.size()) l.length = ((l1 - 192) << 8) + byteAt(s, at + 1) + 192;
  } else if (l1 == 255) {
    l.bytes = 5;
    if (at + 5 <= s.size()) l.length = bigEndian(s, at + 1, 4);
  } else if (l1 >= 224) {
    l = {1, std::uint64_t{1} << (l1 & 0x1F), true};
  }
  if (at + l.bytes > s.size()) return std::nullopt;
  return l;
}

// The header of the packet starting `s`, whole in `s`; nullopt when `s`
// starts none or is too short for it.
std::optional<PacketHeader> packetHeader(std::string_view s) {
  if (s.empty()) return std::nullopt;
  const unsigned c0 = byteAt(s, 0);
  const int tag = packetTag(c0);
  if (tag < 0) return std::nullopt;
  if ((c0 & 0x40) != 0) {  // new format
    const std::optional<BodyLength> l = newFormatLength(s, 1);
    if (!l) return std::nullopt;
    return PacketHeader{tag, 1 + l->bytes, l->partial ? std::nullopt : std::optional<std::uint64_t>(l->length)};
  }
  // Old format: the length's size by its type; type 3 is indeterminate.
  static constexpr std::size_t kLengthBytes[] = {1, 2, 4, 0};
  const std::size_t n = kLengthBytes[c0 & 3];
  if (s.size() < 1 + n) return std::nullopt;
  return PacketHeader{tag, 1 + n, n > 0 ? std::optional<std::uint64_t>(bigEndian(s, 1, n)) : std::nullopt};
}

// The size of the multiprecision integer at the start of `s` (its 2-byte
// bit count and the bytes it says), 0 when there is none: no bits, cut
// off, or a first byte whose highest bit is not the one the count says.
std::size_t mpiSize(std::string_view s) {
  if (s.size() < 3) return 0;
  const unsigned bits = byteAt(s, 0) << 8 | byteAt(s, 1);
  const std::size_t bytes = (bits + 7) / 8;
  if (bits == 0 || s.size() < 2 + bytes) return 0;
  return (byteAt(s, 2) >> ((bits - 1) % 8)) == 1 ? 2 + bytes : 0;
}

// A version 3 public-key encrypted session key packet's body (RFC 9580
// 5.1): version, key ID, algorithm, then that algorithm's fields, which
// must end where the packet does.
bool publicKeySessionKey(std::string_view body) {
  if (body.size() < 11 || byteAt(body, 0) != 3) return false;
  const std::string_view rest = body.substr(10);
  switch (byteAt(body, 9)) {
    case 1:  // RSA
    case 2: {
      const std::size_t m = mpiSize(rest);
      return m != 0 && m == rest.size();
    }
    case 16: {  // Elgamal: two integers
      const std::size_t a = mpiSize(rest);
      return a != 0 && a + mpiSize(rest.substr(a)) == rest.size() && a < rest.size();
    }
    case 18: {  // ECDH: a point, then a wrapped key with its 1-byte size
      const std::size_t a = mpiSize(rest);
      return a != 0 && a < rest.size() && a + 1 + byteAt(rest, a) == rest.size();
    }
    case 25:  // X25519, X448: a fixed-size key, then a wrapped key with its size
    case 26: {
      const std::size_t k = byteAt(body, 9) == 25 ? 32 : 56;
      return rest.size() > k && k + 1 + byteAt(rest, k) == rest.size();
    }
    default:
      return false;
  }
}

// A version 4 symmetric-key encrypted session key packet's body (RFC 9580
// 5.3): version, cipher, S2K specifier (simple, salted or iterated and
// salted, with a known hash), then maybe an encrypted session key.
bool symmetricSessionKey(std::string_view body) {
  if (body.size() < 4 || byteAt(body, 0) != 4) return false;
  const unsigned cipher = byteAt(body, 1), s2k = byteAt(body, 2), hash = byteAt(body, 3);
  if (cipher < 1 || cipher > 13) return false;
  if (!known(hash, kHashes)) return false;
  const std::size_t s2kSize = s2k == 0 ? 2 : s2k == 1 ? 10 : s2k == 3 ? 11 : 0;
  if (s2kSize == 0 || body.size() < 2 + s2kSize) return false;
  const std::size_t sessionKey = body.size() - 2 - s2kSize;  // a cipher byte and the key, encrypted
  return sessionKey == 0 || (sessionKey >= 17 && sessionKey <= 65);
}

// The first bytes of a one-pass signature packet's body (RFC 9580 5.4):
// version 3, the signature type, a known hash and public-key algorithm.
bool onePassStart(std::string_view body) {
  return body.size() >= 4 && byteAt(body, 0) == 3 && known(byteAt(body, 2), kHashes) &&
         known(byteAt(body, 3), kSigning);
}

// The first byte of a literal data packet's body: its format (binary,
// text, UTF-8, local, and two older ones).
bool literalStart(std::string_view body) {
  return !body.empty() && known(byteAt(body, 0), {'b', 't', 'u', 'l', '1', 'm'});
}

// Whether three bytes can open a session-key packet: its header, and the
// version byte when the length takes one byte.
bool plausibleStart(std::string_view s) {
  const int tag = packetTag(byteAt(s, 0));
  if (tag != kPublicKeySessionKey && tag != kSymmetricSessionKey) return false;
  // An old-format 4-byte length (a header longer than three bytes): under 64 KiB.
  if ((byteAt(s, 0) & 0x43) == 2) return byteAt(s, 1) == 0 && byteAt(s, 2) == 0;
  const std::optional<PacketHeader> h = packetHeader(s);
  if (!h || !h->bodySize || *h->bodySize < 4 || *h->bodySize > kOpenPgpHeadMax) return false;
  return h->headerSize == 3 || (byteAt(s, 2) >= 3 && byteAt(s, 2) <= 6);  // a 1-byte length: the version
}

}  // namespace

bool openPgpEncrypted(std::string_view head) {
  head = head.substr(0, kOpenPgpHeadMax);
  int sessionKeys = 0;
  for (std::size_t at = 0; at < head.size();) {
    const std::string_view rest = head.substr(at);
    const int tag = packetTag(byteAt(rest, 0));
    if (tag == 9 || tag == 18 || tag == 20) return sessionKeys > 0;  // the encrypted data
    if (tag != kPublicKeySessionKey && tag != kSymmetricSessionKey) return false;
    const std::optional<PacketHeader> h = packetHeader(rest);
    if (!h || !h->bodySize || *h->bodySize > kOpenPgpHeadMax) return false;  // a session key has a definite length
    const auto size = static_cast<std::size_t>(*h->bodySize);
    if (h->headerSize + size > rest.size()) {
      return sessionKeys > 0 && head.size() == kOpenPgpHeadMax;  // cut off by the head's end
    }
    const std::string_view body = rest.substr(h->headerSize, size);
    if (tag == kPublicKeySessionKey ? !publicKeySessionKey(body) : !symmetricSessionKey(body)) return false;
    ++sessionKeys;
    at += h->headerSize + size;
  }
  return false;  // session keys and nothing they open
}

bool openPgpCompressed(std::string_view head) {
  head = head.substr(0, kOpenPgpHeadMax);
  const std::optional<PacketHeader> outer = packetHeader(head);
  if (!outer || outer->tag != 8 || head.size() < outer->headerSize + 3) return false;
  const unsigned algorithm = byteAt(head, outer->headerSize);
  const std::string_view data = head.substr(outer->headerSize + 1);
  if (algorithm == 3) {  // BZip2: "BZh", the block size, the first block's magic number
    return data.size() >= 10 && data.starts_with("BZh") && data[3] >= '1' && data[3] <= '9' &&
           data.substr(4, 6) == std::string_view("\x31\x41\x59\x26\x53\x59", 6);
  }
  if (algorithm != 1 && algorithm != 2) return false;
  // ZIP is raw deflate, ZLIB deflate with its header: inflate the start
  // (random data mostly breaks the format within 32 bytes), then read the
  // first inner packet's header and first body bytes.
  z_stream z{};
  if (inflateInit2(&z, algorithm == 1 ? -MAX_WBITS : MAX_WBITS) != Z_OK) return false;
  std::array<unsigned char, 32> out{};
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = out.data();
  z.avail_out = static_cast<uInt>(out.size());
  const int rc = inflate(&z, Z_SYNC_FLUSH);
  const std::size_t got = out.size() - z.avail_out;
  inflateEnd(&z);
  if (rc != Z_STREAM_END && !(rc == Z_OK && got == out.size())) return false;
  const std::string_view inner(reinterpret_cast<const char*>(out.data()), got);
  const std::optional<PacketHeader> h = packetHeader(inner);
  if (!h || h->headerSize + 4 > inner.size()) return false;
  const std::string_view body = inner.substr(h->headerSize);
  switch (h->tag) {
    case 2:  // a signature: version 4, its type, public-key and hash algorithms
      return byteAt(body, 0) == 4 && known(byteAt(body, 2), kSigning) && known(byteAt(body, 3), kHashes);
    case 4: return onePassStart(body);
    case 8: return byteAt(body, 0) <= 3;  // compressed again
    case 11: return literalStart(body);
    default: return false;
  }
}

bool openPgpSigned(std::string_view head) {
  head = head.substr(0, kOpenPgpHeadMax);
  const std::optional<PacketHeader> h = packetHeader(head);
  if (!h) return false;
  const std::string_view body = head.substr(h->headerSize);
  if (h->tag == 4) {  // a one-pass signature, whole (13 bytes: its key ID, a last-one flag), then what it signs
    if (h->bodySize != 13 || body.size() < 13 || !onePassStart(body) || byteAt(body, 12) > 1) return false;
    const std::string_view rest = body.substr(13);
    const std::optional<PacketHeader> next = packetHeader(rest);
    if (!next) return false;
    const std::string_view nextBody = rest.substr(next->headerSize);
    return (next->tag == 11 && literalStart(nextBody)) || (next->tag == 4 && onePassStart(nextBody));
  }
  if (h->tag != 11 || !literalStart(body) || body.size() < 2) return false;
  // Stored alone (gpg --store): a name of printable bytes, and the
  // packet's first partial chunk at least 512 bytes long (RFC 9580 4.2.1.4).
  const std::size_t nameSize = byteAt(body, 1);
  if (body.size() < 2 + nameSize) return false;
  for (const char c : body.substr(2, nameSize)) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return false;
  }
  const bool partial = !h->bodySize && (byteAt(head, 0) & 0x40) != 0;
  return !partial || (byteAt(head, 1) & 0x1F) >= 9;
}

// --- unpacking compressed messages -----------------------------------------

namespace {

using UStatus = mime::UnpackResult::Status;

// How deep compressed data may nest inside compressed data (gpg itself
// refuses more than a few levels).
constexpr int kMaxNesting = 8;

// The outcome of one step of a decompressor.
enum class Step { More, End, Broken };

// Runs a decompressor over `in`, appending its output to `out` until the
// stream ends: Ok; more than `room` bytes, TooLarge; a damaged or cut
// stream, Unreadable (with what came before the damage in `out`).
// `step(next, avail_in, out, avail_out)` is one call of the library, with
// the pointers and counts it updates.
template <typename StepFn>
UStatus drain(std::string_view in, std::uint64_t room, std::string& out, StepFn step) {
  constexpr std::size_t kChunk = 64 * 1024;
  constexpr std::size_t kMaxFeed = std::numeric_limits<unsigned>::max();  // the libraries count in unsigned
  const char* next = in.data();
  std::size_t left = in.size();
  unsigned avail = 0;
  for (;;) {
    if (avail == 0 && left > 0) {  // the input in pieces the libraries can count
      avail = static_cast<unsigned>(std::min(left, kMaxFeed));
      left -= avail;
    }
    const unsigned before = avail;
    const std::size_t had = out.size();
    out.resize(had + kChunk);  // written in place, cut back below
    char* outNext = out.data() + had;
    unsigned outAvail = kChunk;
    const Step s = step(next, avail, outNext, outAvail);
    const std::size_t got = kChunk - outAvail;
    out.resize(had + got);
    if (out.size() > room) return UStatus::TooLarge;
    if (s == Step::End) return UStatus::Ok;
    if (s == Step::Broken) return UStatus::Unreadable;
    if (got == 0 && avail == before) return UStatus::Unreadable;  // no progress: the stream was cut
  }
}

// Decompresses the data of a compressed data packet by its algorithm
// (RFC 9580 9.4: 1 ZIP = raw deflate, 2 ZLIB, 3 BZip2) into `out`.
UStatus decompress(unsigned algorithm, std::string_view data, std::uint64_t room, std::string& out) {
  if (algorithm == 1 || algorithm == 2) {
    z_stream z{};
    if (inflateInit2(&z, algorithm == 1 ? -MAX_WBITS : MAX_WBITS) != Z_OK) return UStatus::Unreadable;
    const UStatus s = drain(data, room, out, [&](const char*& in, unsigned& inAvail, char*& o, unsigned& oAvail) {
      z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in));
      z.avail_in = inAvail;
      z.next_out = reinterpret_cast<Bytef*>(o);
      z.avail_out = oAvail;
      const int rc = inflate(&z, Z_NO_FLUSH);
      in = reinterpret_cast<const char*>(z.next_in);
      inAvail = z.avail_in;
      o = reinterpret_cast<char*>(z.next_out);
      oAvail = z.avail_out;
      return rc == Z_STREAM_END ? Step::End : rc == Z_OK || rc == Z_BUF_ERROR ? Step::More : Step::Broken;
    });
    inflateEnd(&z);
    return s;
  }
  if (algorithm == 3) {
    bz_stream b{};
    if (BZ2_bzDecompressInit(&b, 0, 0) != BZ_OK) return UStatus::Unreadable;
    const UStatus s = drain(data, room, out, [&](const char*& in, unsigned& inAvail, char*& o, unsigned& oAvail) {
      b.next_in = const_cast<char*>(in);
      b.avail_in = inAvail;
      b.next_out = o;
      b.avail_out = oAvail;
      const int rc = BZ2_bzDecompress(&b);
      in = b.next_in;
      inAvail = b.avail_in;
      o = b.next_out;
      oAvail = b.avail_out;
      return rc == BZ_STREAM_END ? Step::End : rc == BZ_OK ? Step::More : Step::Broken;
    });
    BZ2_bzDecompressEnd(&b);
    return s;
  }
  return UStatus::Unreadable;  // an algorithm we do not know
}

// The body of a packet with partial body lengths (RFC 9580 4.2.1.4), whose
// first length octet is `s[1]`: chunks of 2^n bytes, each followed by the
// next length, the last one definite. Appends the chunks to `body`; the
// packet's size in `s`, or nullopt when `s` ends first (`body` holds what
// was there).
std::optional<std::size_t> partialBody(std::string_view s, std::string& body) {
  for (std::size_t at = 1;;) {
    const std::optional<BodyLength> l = newFormatLength(s, at);
    if (!l) return std::nullopt;
    at += l->bytes;
    const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(l->length, s.size() - at));
    body.append(s.substr(at, take));
    at += take;
    if (take < l->length) return std::nullopt;
    if (!l->partial) return at;
  }
}

// Reads packet sequences, handing literal data over; stops at a limit or
// when the handler says so (result.status then says which).
class Unpacker {
 public:
  Unpacker(const mime::UnpackLimits& limits, const mime::EntryHandler& onEntry, mime::UnpackResult& result)
      : limits_(limits), onEntry_(onEntry), result_(result) {}

  // false: stopped (result.status set); damage met is remembered.
  bool packets(std::string_view s, int depth) {
    for (std::size_t at = 0; at < s.size();) {
      const std::string_view rest = s.substr(at);
      const std::optional<PacketHeader> h = packetHeader(rest);
      if (!h || h->tag == 0) {  // not a packet, or its header cut off: nothing after it can be trusted
        damaged_ = true;
        return true;
      }
      std::string assembled;  // a body in partial chunks, joined
      std::string_view body;
      std::optional<std::size_t> size;  // the packet's, header included; nullopt: cut off
      if (h->bodySize) {
        body = rest.substr(h->headerSize, static_cast<std::size_t>(std::min<std::uint64_t>(*h->bodySize, rest.size())));
        if (h->headerSize + *h->bodySize <= rest.size()) size = h->headerSize + body.size();
      } else if ((byteAt(rest, 0) & 0x40) == 0) {  // old format, indeterminate: to the end
        body = rest.substr(h->headerSize);
        size = rest.size();
      } else {
        size = partialBody(rest, assembled);
        body = assembled;
      }
      if (!size) damaged_ = true;
      if (!packet(h->tag, body, depth)) return false;
      if (!size) return true;
      at += *size;
    }
    return true;
  }

  bool damaged() const { return damaged_; }

 private:
  bool stop(UStatus s) {
    result_.status = s;
    return false;
  }

  bool packet(int tag, std::string_view body, int depth) {
    switch (tag) {
      case 8: {  // compressed data: its algorithm, then the data
        if (body.empty() || depth >= kMaxNesting) {
          damaged_ = true;
          return true;
        }
        const unsigned algorithm = byteAt(body, 0);
        if (algorithm == 0) return packets(body.substr(1), depth + 1);  // stored
        std::string inner;
        const UStatus s = decompress(algorithm, body.substr(1), limits_.maxTotal - decompressed_, inner);
        decompressed_ += inner.size();
        if (s == UStatus::TooLarge) return stop(s);
        if (s != UStatus::Ok) damaged_ = true;
        return packets(inner, depth + 1);  // a damaged stream's start too
      }
      case 11: {  // literal data: format, file name (its size first), date, the data
        if (body.size() < 2 || body.size() < 6 + byteAt(body, 1)) {
          damaged_ = true;
          return true;
        }
        const std::size_t nameSize = byteAt(body, 1);
        const std::string_view data = body.substr(6 + nameSize);
        if (result_.entries >= limits_.maxEntries) return stop(UStatus::TooManyEntries);
        if (data.size() > limits_.maxEntrySize) return stop(UStatus::EntryTooLarge);
        ++result_.entries;
        result_.totalSize += data.size();
        return onEntry_(body.substr(2, nameSize), data) || stop(UStatus::Stopped);
      }
      case 1:  // session keys and encrypted data: not ours to read
      case 3:
      case 9:
      case 18:
      case 20:
        result_.encrypted = true;
        return true;
      default:  // signatures, one-pass signatures, keys, markers, padding
        return true;
    }
  }

  const mime::UnpackLimits& limits_;
  const mime::EntryHandler& onEntry_;
  mime::UnpackResult& result_;
  std::uint64_t decompressed_ = 0;
  bool damaged_ = false;
};

}  // namespace

mime::UnpackResult openPgpUnpack(std::string_view bytes, const mime::UnpackLimits& limits,
                                 const mime::EntryHandler& onEntry) {
  mime::UnpackResult result;
  if (!openPgpCompressed(bytes) && !openPgpSigned(bytes)) return result;  // NotArchive
  Unpacker u(limits, onEntry, result);
  if (u.packets(bytes, 0)) result.status = u.damaged() ? UStatus::Unreadable : UStatus::Ok;
  return result;
}

void OpenPgpStartSniffer::feed(std::string_view chunk) {
  if (found_ || chunk.empty()) return;
  // Content starts the last chunk's end cut off, completed from this
  // chunk's first bytes (which are still read for line ends below).
  for (std::string& s : pending_) {
    s.append(chunk.substr(0, 4 - s.size()));
    if (s.size() == 4) check(s);
  }
  std::erase_if(pending_, [](const std::string& s) { return s.size() == 4; });
  if (!fed_) {
    fed_ = true;
    startAt(chunk, 0);  // the top-level entity's content, when it has no parts
  }
  // A line end that ends a blank line ("\n", or "\r\n" after a line end).
  for (const char* p = chunk.data();
       !found_ && (p = static_cast<const char*>(std::memchr(p, '\n', chunk.data() + chunk.size() - p))); ++p) {
    const auto j = static_cast<std::size_t>(p - chunk.data());
    const char prev = j >= 1 ? chunk[j - 1] : last_;
    const char prev2 = j >= 2 ? chunk[j - 2] : j == 1 ? last_ : before_;
    if (prev == '\n' || (prev == '\r' && prev2 == '\n')) startAt(chunk, j + 1);
  }
  before_ = chunk.size() >= 2 ? chunk[chunk.size() - 2] : last_;
  last_ = chunk.back();
}

void OpenPgpStartSniffer::startAt(std::string_view chunk, std::size_t at) {
  std::string start(chunk.substr(at, 4));
  if (start.size() == 4) {
    check(start);
  } else {
    pending_.push_back(std::move(start));  // at most 4: each is done 4 bytes on
  }
}

void OpenPgpStartSniffer::check(std::string_view start) {
  // As the bytes came, or as four base64 letters decode (three bytes only
  // when all four are letters).
  const std::string decoded = util::decodeBase64Lenient(start);
  if (plausibleStart(start.substr(0, 3)) || (decoded.size() == 3 && plausibleStart(decoded))) found_ = true;
}

}  // namespace sekimori::antivirus
