// milters/antivirus/openpgp.h — binary OpenPGP messages (RFC 9580) that
// a scanner cannot read: encrypted ones (what `gpg --encrypt` and `gpg
// --symmetric` write without --armor, attached as a .gpg or .pgp file, also
// how mail programs send attachments in "inline PGP" mode) and compressed
// ones (`gpg --sign`), which the scanner unpacks itself (openPgpUnpack).
// The armored form ("-----BEGIN PGP MESSAGE-----") is
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

#include "common/mime/archive.h"

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
// `gpg --store` write by default: libclamav does not unpack it, so it
// sees only compressed bytes; the scanner worker unpacks it (below).
bool openPgpCompressed(std::string_view head);

// Whether `head` opens an OpenPGP message that is signed or stored but not
// compressed (`gpg --sign` of a file it deems compressed already, such as a
// zip, or with -z 0; `gpg --store -z 0`): a one-pass signature packet (13
// bytes, version 3, known algorithms) followed by a literal data packet or
// another one-pass signature; or a literal data packet with a printable
// file name (and a first partial chunk of 512 bytes or more). libclamav
// scans such a message as raw bytes: content signatures mostly match, but a
// file's hash signature never does, and partial body lengths cut the data
// every few KB (measured: a file found by its MD5 came back clean signed
// with -z 0). A looser test than openPgpCompressed's: an unpacker must not
// call a false match unscanned (the bytes were scanned as they are).
bool openPgpSigned(std::string_view head);

// The files inside an OpenPGP message that opens with compressed data
// (openPgpCompressed) or with signed or stored data (openPgpSigned), for a
// scanner: each literal data packet is an entry,
// named by the file name it carries; compressed data inside is unpacked in
// turn (up to 8 levels; gpg allows fewer), stored data (algorithm 0) read
// as it is; signatures, one-pass signatures, keys and markers are skipped.
// Partial body lengths (how gpg streams a literal it did not know the size
// of) and the old format's indeterminate length (how it writes compressed
// data) are read. The limits are those of mime::unpackEntries: every byte
// decompressed, at every level, counts against maxTotal (TooLarge, checked
// while inflating: a compression bomb stops there), a literal longer than
// maxEntrySize is EntryTooLarge and not handed over, more literals than
// maxEntries is TooManyEntries; each ends the unpacking. Damage (a cut or
// corrupt stream, a packet header that makes no sense, an unknown
// algorithm) makes the result Unreadable, after what was read before it was
// handed over. Encrypted packets inside are skipped and reported
// (`encrypted`). NotArchive when `bytes` opens with neither.
//
//   auto r = openPgpUnpack(bytes, limits, [&](std::string_view name, std::string_view data) {
//     return scan(data);                  // false: stop here (Stopped)
//   });
mime::UnpackResult openPgpUnpack(std::string_view bytes, const mime::UnpackLimits& limits,
                                 const mime::EntryHandler& onEntry);

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
