#include "milters/antivirus/openpgp.h"

#include <bzlib.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/util/strings.h"

namespace sekimori::antivirus {
namespace {

// Packets as RFC 9580 writes them (section 4.2), in the old format or the new.
std::string packet(int tag, const std::string& body, bool newFormat) {
  std::string h;
  const std::size_t n = body.size();
  if (newFormat) {
    h += static_cast<char>(0xC0 | tag);
    if (n < 192) {
      h += static_cast<char>(n);
    } else if (n < 8384) {
      h += static_cast<char>(((n - 192) >> 8) + 192);
      h += static_cast<char>((n - 192) & 0xFF);
    } else {
      h += '\xFF';
      for (const int shift : {24, 16, 8, 0}) h += static_cast<char>(n >> shift & 0xFF);
    }
  } else if (n < 256) {
    h += static_cast<char>(0x80 | tag << 2);
    h += static_cast<char>(n);
  } else if (n < 65536) {
    h += static_cast<char>(0x80 | tag << 2 | 1);
    h += static_cast<char>(n >> 8);
    h += static_cast<char>(n & 0xFF);
  } else {
    h += static_cast<char>(0x80 | tag << 2 | 2);
    for (const int shift : {24, 16, 8, 0}) h += static_cast<char>(n >> shift & 0xFF);
  }
  return h + body;
}

// A new-format packet in partial body lengths (how gpg streams data it
// does not know the size of): chunks of 2^`power` bytes, the rest last.
std::string partialPacket(int tag, const std::string& body, int power) {
  const std::size_t chunk = std::size_t{1} << power;
  std::string out(1, static_cast<char>(0xC0 | tag));
  std::size_t at = 0;
  for (; body.size() - at > chunk; at += chunk) out += static_cast<char>(224 + power) + body.substr(at, chunk);
  const std::string last = packet(tag, body.substr(at), true);
  return out + last.substr(1);  // its length and bytes, without the tag
}

std::string bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// A multiprecision integer of `bits` bits: its bit count, then its bytes,
// the first with exactly the highest bit the count says.
std::string mpi(unsigned bits, std::uint32_t seed) {
  std::string v = bytes((bits + 7) / 8, seed);
  const unsigned top = (bits - 1) % 8;
  v[0] = static_cast<char>((static_cast<unsigned char>(v[0]) & ((1u << top) - 1)) | 1u << top);
  return std::string{static_cast<char>(bits >> 8), static_cast<char>(bits & 0xFF)} + v;
}

const std::string kKeyId = bytes(8, 1);
std::string pkesk(int algo, const std::string& fields) {
  return std::string("\x03") + kKeyId + static_cast<char>(algo) + fields;
}
const std::string kRsa = pkesk(1, mpi(2047, 2));
const std::string kElgamal = pkesk(16, mpi(2048, 3) + mpi(2045, 4));
const std::string kEcdh = pkesk(18, mpi(263, 5) + "\x30" + bytes(48, 6));
const std::string kX25519 = pkesk(25, bytes(32, 7) + "\x29" + bytes(41, 8));
// Version 4, AES-256, iterated and salted S2K with SHA-256: what gpg --symmetric writes.
const std::string kSymmetric = std::string("\x04\x09\x03\x08", 4) + bytes(8, 9) + "\x60";
// The encrypted data: a partial length, as gpg streams it.
const std::string kData = "\xD2\xE9" + bytes(200, 10);

TEST(OpenPgp, EncryptedMessagesAreKnownByTheirSessionKeyPackets) {
  for (const bool newFormat : {false, true}) {
    for (const std::string& pk : {kRsa, kElgamal, kEcdh, kX25519}) {
      EXPECT_TRUE(openPgpEncrypted(packet(1, pk, newFormat) + kData)) << newFormat;
    }
    EXPECT_TRUE(openPgpEncrypted(packet(3, kSymmetric, newFormat) + kData));
    // With an encrypted session key; to several recipients; old-style
    // encrypted data (tag 9) and AEAD data (tag 20).
    EXPECT_TRUE(openPgpEncrypted(packet(3, kSymmetric + "\x09" + bytes(32, 11), newFormat) + kData));
    EXPECT_TRUE(openPgpEncrypted(packet(1, kRsa, newFormat) + packet(1, kEcdh, !newFormat) +
                                 packet(3, kSymmetric, newFormat) + kData));
    EXPECT_TRUE(openPgpEncrypted(packet(1, kRsa, newFormat) + "\xA4" + bytes(40, 12)));
    EXPECT_TRUE(openPgpEncrypted(packet(1, kRsa, newFormat) + "\xD4\x40" + bytes(64, 13)));
  }
  // So many recipients that their packets fill the head: counted.
  std::string many;
  while (many.size() < kOpenPgpHeadMax) many += packet(1, pkesk(1, mpi(4096, 14)), false);
  EXPECT_TRUE(openPgpEncrypted(many.substr(0, kOpenPgpHeadMax)));
}

TEST(OpenPgp, AnythingElseIsNot) {
  const std::string rsa = packet(1, kRsa, false);
  std::string wrongVersion = kRsa, wrongBits = kRsa, wrongTop = kRsa;
  wrongVersion[0] = 4;
  wrongBits[11] = static_cast<char>(wrongBits[11] + 1);  // 2048 bits said, 2047 there
  wrongTop[12] = static_cast<char>(wrongTop[12] | 0x80);  // a 2048th bit
  std::string badHash = kSymmetric, badS2k = kSymmetric;
  badHash[3] = 5;
  badS2k[2] = 2;
  const std::string notEncrypted[] = {
      "",
      kData,                                     // encrypted data with no key for it
      rsa,                                       // a key for nothing
      rsa + "\xCB\x10" + bytes(16, 20),          // then literal data, not encrypted
      packet(1, kRsa + "x", false) + kData,      // a byte more than RSA's fields
      packet(1, kRsa.substr(0, kRsa.size() - 1), false) + kData,
      packet(1, wrongVersion, false) + kData,
      packet(1, wrongBits, false) + kData,
      packet(1, wrongTop, false) + kData,
      packet(1, pkesk(99, mpi(2048, 21)), false) + kData,  // no such algorithm
      packet(3, badHash, true) + kData,
      packet(3, badS2k, true) + kData,
      packet(3, kSymmetric + "\x09" + bytes(8, 22), true) + kData,  // too short a key
      rsa.substr(0, 100),
      "\x90\x0D" + bytes(13, 23) + kData,  // a one-pass signature
      "hQEMA0xyz",                         // base64, not decoded
  };
  for (const std::string& s : notEncrypted) EXPECT_FALSE(openPgpEncrypted(s)) << util::escapeControls(s.substr(0, 20));
  // Random data, also after the three bytes a real packet starts with.
  int passed = 0;
  for (std::uint32_t seed = 0; seed < 20000; ++seed) {
    passed += openPgpEncrypted(bytes(600, seed));
    passed += openPgpEncrypted(rsa.substr(0, 3) + bytes(600, seed));
    passed += openPgpEncrypted(packet(3, kSymmetric, false).substr(0, 4) + bytes(600, seed));
  }
  EXPECT_EQ(passed, 0);
}

// `data` deflated: raw (OpenPGP's ZIP) or with the zlib header (ZLIB).
std::string deflated(const std::string& data, bool raw) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, raw ? -MAX_WBITS : MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, data.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

TEST(OpenPgp, CompressedDataIsKnownByWhatItUnpacksTo) {
  // What gpg --sign writes: a compressed packet of indeterminate length
  // (old format) holding a one-pass signature, the literal data, the
  // signature. Also a literal packet alone, and the new format's header.
  const std::string onePass = packet(4, std::string("\x03\x00\x08\x16", 4) + kKeyId + "\x01", false);
  const std::string literal = packet(11, "b\x08file.txt" + std::string(4, '\0') + "payload", true);
  const std::string inner = onePass + literal + packet(2, "\x04" + bytes(60, 40), false);
  const auto compressed = [](char algorithm, const std::string& data) {
    return std::string("\xA3") + algorithm + data;
  };
  const std::string found[] = {
      compressed('\x01', deflated(inner, true)),
      compressed('\x02', deflated(inner, false)),
      compressed('\x01', deflated(literal, true)),
      packet(8, '\x02' + deflated(inner, false), true),
      compressed('\x03', "BZh91AY&SY" + bytes(100, 41)),
  };
  for (const std::string& s : found) EXPECT_TRUE(openPgpCompressed(s)) << util::escapeControls(s.substr(0, 12));
  const std::string notCompressed[] = {
      "",
      compressed('\x01', deflated("hello, plain text", true)),  // unpacks to no packet
      compressed('\x02', deflated(inner, true)),                 // no zlib header
      compressed('\x00', inner),                                 // stored as it is: scannable
      compressed('\x03', "BZh0" + bytes(100, 42)),
      compressed('\x04', deflated(inner, true)),
      literal,
      deflated(inner, true),
  };
  for (const std::string& s : notCompressed) {
    EXPECT_FALSE(openPgpCompressed(s)) << util::escapeControls(s.substr(0, 12));
  }
  // Random data behind a compressed packet's header.
  int passed = 0;
  for (std::uint32_t seed = 0; seed < 20000; ++seed) {
    for (const char algorithm : {'\x01', '\x02', '\x03'}) {
      passed += openPgpCompressed(compressed(algorithm, bytes(300, seed)));
    }
  }
  EXPECT_EQ(passed, 0);
}

// A literal data packet holding `data` named `name`, as gpg writes it.
std::string literalPacket(const std::string& name, const std::string& data) {
  return packet(11, "b" + std::string(1, static_cast<char>(name.size())) + name + std::string(4, '\0') + data, true);
}

// A compressed data packet (old format, indeterminate length, as gpg
// writes it) holding `inner` compressed with `algorithm`.
std::string compressedPacket(char algorithm, const std::string& inner) {
  std::string data;
  switch (algorithm) {
    case 0: data = inner; break;
    case 1: data = deflated(inner, true); break;
    case 2: data = deflated(inner, false); break;
    case 3: {
      unsigned size = static_cast<unsigned>(inner.size() + inner.size() / 100 + 600);
      data.resize(size);
      EXPECT_EQ(BZ2_bzBuffToBuffCompress(data.data(), &size, const_cast<char*>(inner.data()),
                                         static_cast<unsigned>(inner.size()), 9, 0, 0),
                BZ_OK);
      data.resize(size);
      break;
    }
    default: data = inner;
  }
  return std::string("\xA3") + algorithm + data;
}

// What a gpg --sign message holds around the literal data.
const std::string kOnePass = packet(4, std::string("\x03\x00\x08\x16", 4) + kKeyId + "\x01", false);
const std::string kSignature = packet(2, "\x04" + bytes(60, 40), false);

struct Unpacked {
  mime::UnpackResult result;
  std::vector<std::pair<std::string, std::string>> entries;  // name, data
};
Unpacked unpack(const std::string& bytes, const mime::UnpackLimits& limits = {}, std::size_t stopAfter = 1000) {
  Unpacked u;
  u.result = openPgpUnpack(bytes, limits, [&](std::string_view name, std::string_view data) {
    u.entries.emplace_back(name, data);
    return u.entries.size() < stopAfter;
  });
  return u;
}
using Status = mime::UnpackResult::Status;
using Entries = std::vector<std::pair<std::string, std::string>>;

TEST(OpenPgpUnpack, HandsOverTheSignedFiles) {
  const std::string text = "the signed file's text\n";
  for (const char algorithm : {'\x01', '\x02', '\x03'}) {
    const Unpacked u = unpack(compressedPacket(algorithm, kOnePass + literalPacket("notes.txt", text) + kSignature));
    EXPECT_EQ(u.result.status, Status::Ok) << int(algorithm);
    EXPECT_EQ(u.entries, (Entries{{"notes.txt", text}})) << int(algorithm);
    EXPECT_FALSE(u.result.encrypted);
  }
  // From a pipe: partial body lengths, chunks of 512 bytes and of 8 KiB.
  std::string big;
  for (int i = 0; big.size() < 50000; ++i) big += "line " + std::to_string(i) + "\n";
  for (const int power : {9, 13}) {
    const Unpacked u = unpack(compressedPacket('\x02', kOnePass + partialPacket(11, std::string("b\0\0\0\0\0", 6) + big, power) +
                                                          kSignature));
    EXPECT_EQ(u.result.status, Status::Ok) << power;
    EXPECT_TRUE(u.entries == (Entries{{"", big}})) << power;  // (not printed: 50 KB)
  }
  // Compressed inside compressed (in any algorithm, stored too), two
  // files, the new format's definite length, a 4-byte old-format length.
  const std::string two = literalPacket("a", "first") + literalPacket("b", "second");
  const std::string nested = compressedPacket('\x01', compressedPacket('\x03', compressedPacket('\x00', two)));
  const Unpacked n = unpack(nested);
  EXPECT_EQ(n.result.status, Status::Ok);
  EXPECT_EQ(n.entries, (Entries{{"a", "first"}, {"b", "second"}}));
  EXPECT_EQ(n.result.entries, 2u);
  EXPECT_EQ(n.result.totalSize, 11u);
  const std::string definite = packet(8, "\x02" + deflated(kOnePass + two + kSignature, false), true);
  EXPECT_EQ(unpack(definite).entries, (Entries{{"a", "first"}, {"b", "second"}}));
  const std::string wide = packet(8, "\x01" + deflated(literalPacket("w", big + big), true) + bytes(70000, 41), false);
  EXPECT_TRUE(unpack(wide).entries == (Entries{{"w", big + big}}));
  // Encrypted packets inside are skipped and reported.
  const Unpacked e = unpack(compressedPacket('\x02', kOnePass + packet(1, kRsa, false) + packet(18, "\x01" + bytes(200, 44), true)));
  EXPECT_EQ(e.result.status, Status::Ok);
  EXPECT_TRUE(e.result.encrypted);
  EXPECT_TRUE(e.entries.empty());
  // Signed or stored without compression, from a file or a pipe.
  EXPECT_EQ(unpack(kOnePass + literalPacket("s", text) + kSignature).entries, (Entries{{"s", text}}));
  EXPECT_EQ(unpack(literalPacket("s", text)).entries, (Entries{{"s", text}}));
  const Unpacked p = unpack(kOnePass + partialPacket(11, std::string("b\0\0\0\0\0", 6) + big, 9) + kSignature);
  EXPECT_EQ(p.result.status, Status::Ok);
  EXPECT_TRUE(p.entries == (Entries{{"", big}}));
  // Neither: nothing read.
  for (const std::string& s : {kOnePass + bytes(100, 45), bytes(500, 42), packet(1, kRsa, false) + kData, std::string()}) {
    EXPECT_EQ(unpack(s).result.status, Status::NotArchive);
  }
}

TEST(OpenPgpUnpack, LimitsEndIt) {
  // 64 MB of zeros in a literal: a few dozen KB compressed, stopped at
  // 1 MB of output.
  const std::string bomb = compressedPacket('\x01', literalPacket("z", std::string(64 << 20, '\0')));
  ASSERT_LT(bomb.size(), 200000u);
  mime::UnpackLimits l;
  l.maxTotal = 1 << 20;
  const auto t0 = std::chrono::steady_clock::now();
  const Unpacked b = unpack(bomb, l);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(b.result.status, Status::TooLarge);
  EXPECT_TRUE(b.entries.empty());
  // Nested, every level's output counts: 600 KB inside 600 KB.
  const std::string nested = compressedPacket('\x02', compressedPacket('\x01', literalPacket("n", bytes(600000, 43))));
  ASSERT_EQ(unpack(nested).result.status, Status::Ok);
  EXPECT_EQ(unpack(nested, l).result.status, Status::TooLarge);
  l = {};
  l.maxEntrySize = 5;
  const std::string two = compressedPacket('\x02', literalPacket("a", "12345") + literalPacket("b", "123456"));
  const Unpacked big = unpack(two, l);
  EXPECT_EQ(big.result.status, Status::EntryTooLarge);
  EXPECT_EQ(big.entries, (Entries{{"a", "12345"}}));
  l = {};
  l.maxEntries = 1;
  const Unpacked many = unpack(two, l);
  EXPECT_EQ(many.result.status, Status::TooManyEntries);
  EXPECT_EQ(many.entries.size(), 1u);
  const Unpacked stopped = unpack(two, {}, 1);
  EXPECT_EQ(stopped.result.status, Status::Stopped);
  EXPECT_EQ(stopped.entries.size(), 1u);
}

TEST(OpenPgpUnpack, DamageIsUnreadableAfterWhatCameBefore) {
  std::string text;
  for (int i = 0; text.size() < 300000; ++i) text += "record " + std::to_string(i * 7919 % 100003) + "\n";
  const std::string whole = compressedPacket('\x01', kOnePass + literalPacket("t", text) + kSignature);
  // Cut in the middle of the deflate stream: the literal's first part.
  const Unpacked cut = unpack(whole.substr(0, whole.size() / 2));
  EXPECT_EQ(cut.result.status, Status::Unreadable);
  ASSERT_EQ(cut.entries.size(), 1u);
  EXPECT_GT(cut.entries[0].second.size(), 1000u);
  EXPECT_LT(cut.entries[0].second.size(), text.size());
  EXPECT_TRUE(text.starts_with(cut.entries[0].second));
  // Corrupt deflate data after the first bytes; a BZip2 stream cut short.
  std::string corrupt = whole;
  for (std::size_t i = whole.size() / 2; i < whole.size() / 2 + 64; ++i) corrupt[i] = static_cast<char>(corrupt[i] ^ 0x5A);
  EXPECT_EQ(unpack(corrupt).result.status, Status::Unreadable);
  const std::string bz = compressedPacket('\x03', literalPacket("t", text));
  EXPECT_EQ(unpack(bz.substr(0, bz.size() - 100)).result.status, Status::Unreadable);
  // An algorithm nobody knows inside; nesting past 8 levels; a packet
  // header that is no header; a partial body cut off; trailing garbage.
  std::string deep = literalPacket("d", "deep");
  for (int i = 0; i < 9; ++i) deep = compressedPacket('\x00', deep);
  const std::string damaged[] = {
      compressedPacket('\x02', kOnePass + std::string("\xA3\x07", 2) + deflated(literalPacket("x", "y"), true)),
      compressedPacket('\x02', deep),
      compressedPacket('\x02', literalPacket("x", "first") + std::string("\x00\x01\x02", 3) + literalPacket("y", "lost")),
      compressedPacket('\x02', "\xCB\xE9" + std::string("b\0\0\0\0\0", 6) + std::string(300, 'p')),
  };
  for (const std::string& s : damaged) {
    const Unpacked u = unpack(s);
    EXPECT_EQ(u.result.status, Status::Unreadable) << util::escapeControls(s.substr(0, 12));
    EXPECT_LE(u.entries.size(), 1u);
  }
  EXPECT_EQ(unpack(damaged[2]).entries, (Entries{{"x", "first"}}));
  // Eight levels are read.
  std::string eight = literalPacket("d", "deep");
  for (int i = 0; i < 8; ++i) eight = compressedPacket(i == 7 ? '\x02' : '\x00', eight);  // zlib outermost
  EXPECT_EQ(unpack(eight).entries, (Entries{{"d", "deep"}}));
}

TEST(OpenPgp, SignedDataIsKnownByItsFirstPackets) {
  // What gpg --sign writes when it does not compress (-z 0, or a file it
  // takes for compressed already), from a file or a pipe; what gpg --store
  // -z 0 writes.
  const std::string literal = literalPacket("file.txt", "payload");
  const std::string onePassBody = std::string("\x03\x00\x08\x16", 4) + kKeyId + "\x01";
  const std::string piped = partialPacket(11, std::string("b\0\0\0\0\0", 6) + std::string(3000, 'x'), 9);
  const std::string found[] = {
      kOnePass + literal + kSignature,
      packet(4, onePassBody, true) + literal + kSignature,
      kOnePass + kOnePass + literal + kSignature + kSignature,  // two signers
      kOnePass + piped + kSignature,
      literal,
      piped,
  };
  for (const std::string& s : found) EXPECT_TRUE(openPgpSigned(s)) << util::escapeControls(s.substr(0, 20));
  std::string version4 = kOnePass, flag2 = kOnePass, badHash = kOnePass;
  version4[2] = 4;
  flag2[14] = 2;
  badHash[4] = 5;
  const std::string notSigned[] = {
      "",
      compressedPacket('\x01', kOnePass + literal + kSignature),  // compressed: openPgpCompressed's
      packet(1, kRsa, false) + kData,
      kOnePass,                       // nothing signed after it
      kOnePass + kSignature,
      kOnePass + bytes(100, 50),
      version4 + literal,
      flag2 + literal,
      badHash + literal,
      packet(4, onePassBody + "x", false) + literal,  // 14 bytes
      literalPacket("bad\x01name", "payload"),
      packet(11, "x\x01" "a" + std::string(4, '\0') + "payload", true),       // no such format
      partialPacket(11, std::string("b\0\0\0\0\0", 6) + std::string(3000, 'x'), 8),  // a first chunk of 256
  };
  for (const std::string& s : notSigned) EXPECT_FALSE(openPgpSigned(s)) << util::escapeControls(s.substr(0, 20));
  // Random data: a literal packet's header, format and printable name by
  // chance, about once in 10^5 (a false match costs an unpacking attempt,
  // never a verdict).
  int passed = 0;
  for (std::uint32_t seed = 0; seed < 100000; ++seed) passed += openPgpSigned(bytes(300, seed));
  EXPECT_LE(passed, 5);
}

// What OpenPgpStartSniffer says of `body` fed in chunks of `chunk` bytes.
bool sniffed(std::string_view body, std::size_t chunk) {
  OpenPgpStartSniffer s;
  for (std::size_t i = 0; i < body.size(); i += chunk) s.feed(body.substr(i, chunk));
  return s.found();
}

std::string base64Lines(const std::string& data) {
  const std::string e = util::encodeBase64(data);
  std::string out;
  for (std::size_t i = 0; i < e.size(); i += 76) out += e.substr(i, 76) + "\r\n";
  return out;
}

TEST(OpenPgpStartSniffer, SeesAPartOpenWithASessionKeyPacket) {
  const std::string gpg = packet(1, kRsa, false) + kData, symmetric = packet(3, kSymmetric, false) + kData,
                    ecdh = packet(1, kEcdh, true) + kData;
  const std::string part = "--b\r\nContent-Type: application/octet-stream; name=x.gpg\r\n";
  const std::string text = "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n";
  const std::string found[] = {
      text + part + "Content-Transfer-Encoding: base64\r\n\r\n" + base64Lines(gpg) + "--b--\r\n",
      text + part + "Content-Transfer-Encoding: base64\r\n\r\n" + base64Lines(symmetric) + "--b--\r\n",
      text + part + "Content-Transfer-Encoding: base64\n\n" + base64Lines(ecdh) + "--b--\r\n",
      text + part + "Content-Transfer-Encoding: binary\r\n\r\n" + gpg + "\r\n--b--\r\n",
      base64Lines(gpg),  // the whole body, its type in the top-level header
      "\r\n" + base64Lines(gpg),
  };
  for (const std::string& body : found) {
    for (std::size_t chunk = 1; chunk <= 12; ++chunk) EXPECT_TRUE(sniffed(body, chunk)) << chunk << body;
    EXPECT_TRUE(sniffed(body, body.size())) << body;
    for (std::size_t cut = 0; cut <= body.size(); ++cut) {
      OpenPgpStartSniffer s;
      s.feed(std::string_view(body).substr(0, cut));
      s.feed(std::string_view(body).substr(cut));
      EXPECT_TRUE(s.found()) << cut;
    }
  }
  // Text (also "hello", "jA" or "wV" at a line start, base64 or not),
  // Japanese in UTF-8 or ISO-2022-JP, a zip or a PDF in base64.
  const std::string none[] = {
      text + "--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\r\nhQ, then a comma\r\n--b--\r\n",
      "hello,\r\n\r\njA0 wV4 here\r\n\r\nwho\r\n",
      "--b\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64Lines("hello, this is text") + "--b--\r\n",
      "\xE3\x81\x93\xE3\x82\x93\xE3\x81\xAB\xE3\x81\xA1\xE3\x81\xAF\r\n",
      "\x1B$B$3$s$K$A$O\x1B(B\r\n",
      "--b\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64Lines("PK\x03\x04" + bytes(300, 30)) + "--b--\r\n",
      "--b\r\nContent-Transfer-Encoding: base64\r\n\r\n" + base64Lines("%PDF-1.7\n" + bytes(300, 31)) + "--b--\r\n",
  };
  for (const std::string& body : none) {
    for (std::size_t chunk = 1; chunk <= 12; ++chunk) EXPECT_FALSE(sniffed(body, chunk)) << chunk << body;
  }
}

}  // namespace
}  // namespace sekimori::antivirus
