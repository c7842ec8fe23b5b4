// milters/antivirus/openpgp.h — binary OpenPGP messages (RFC 9580) that
// a scanner cannot read: encrypted ones (what `gpg --encrypt` and `gpg
// --symmetric` write without --armor, attached as a .gpg or .pgp file, also
// how mail programs send attachments in "inline PGP" mode) and compressed
// ones (`gpg --sign`). The armored form ("-----BEGIN PGP MESSAGE-----") is
// found as text (EncodedFind, av_policy.h). The scanner checks every layer
// libclamav unpacks (scanner.cpp); the milter checks each MIME part as
// GMime reads it, also for the clamd backend:
//
//   OpenPgpStartSniffer start;            // as the body comes
//   start.feed(chunk); ...
//   if (start.found()) walk the parts: openPgpEncrypted(first bytes of each)
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sekimori::antivirus {

// Whether `head`, the first bytes of a part's decoded content (up to
// kOpenPgpHeadMax of them), is an encrypted OpenPGP message: one or more
// session-key packets, then the encrypted data packet (tag 9, 18 or 20).
// A session-key packet must be whole and exact: public-key (tag 1,
// version 3, a known algorithm whose fields fill the packet to its last
// byte) or symmetric (tag 3, version 4, a known cipher and S2K, an
// encrypted session key of a plausible size). Random data passes with a
// chance far below one in a billion. Session-key packets that fill the
// whole head (hundreds of recipients) count as such a message.
constexpr std::size_t kOpenPgpHeadMax = 16 * 1024;
bool openPgpEncrypted(std::string_view head);

// Whether `head` opens with an OpenPGP compressed data packet (tag 8) whose
// data is what its algorithm says and unpacks to OpenPGP packets: ZIP (raw
// deflate) and ZLIB inflated far enough to read the first inner packet's
// tag (a signature, one-pass signature, literal or compressed packet),
// BZip2 by its stream and block magic numbers. What `gpg --sign` and
// `gpg --store` write by default: libclamav does not unpack it, so a
// scanner sees only compressed bytes (unscanned, not clean).
bool openPgpCompressed(std::string_view head);

// Whether a message body, fed in the chunks the MTA sends, may hold a part
// whose content opens with an OpenPGP session-key packet: the first bytes
// after a blank line (or at the body's start), as they came or the first
// four base64 letters decoded, make a plausible packet header. A quick look
// (a memchr per line) that decides whether the message is walked for
// openPgpEncrypted(); a yes costs only that walk. Not looked for:
// quoted-printable content, content that starts with white space.
class OpenPgpStartSniffer {
 public:
  void feed(std::string_view chunk);
  bool found() const { return found_; }

 private:
  void startAt(std::string_view chunk, std::size_t at);
  void check(std::string_view start);

  bool found_ = false;
  bool fed_ = false;                  // the body's first chunk came
  char last_ = '\n', before_ = '\n';  // the stream's last two bytes before this chunk
  std::vector<std::string> pending_;  // content starts cut off by a chunk's end (< 4 bytes)
};

}  // namespace sekimori::antivirus
