#include "milters/antivirus/openpgp.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cstdint>
#include <random>
#include <string>
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
    } else {
      h += static_cast<char>(((n - 192) >> 8) + 192);
      h += static_cast<char>((n - 192) & 0xFF);
    }
  } else if (n < 256) {
    h += static_cast<char>(0x80 | tag << 2);
    h += static_cast<char>(n);
  } else {
    h += static_cast<char>(0x80 | tag << 2 | 1);
    h += static_cast<char>(n >> 8);
    h += static_cast<char>(n & 0xFF);
  }
  return h + body;
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
