// common/mime/text.h — header text as UTF-8: charsets (the Japanese ones
// the way Japanese mailers really write them), RFC 2047 encoded words and
// RFC 2231 / RFC 2047 / raw 8-bit parameter values such as filenames.
//
// GMime decodes these too, but it hands ISO-2022-JP and Shift_JIS to iconv
// under their strict names, so the NEC and IBM extensions every Windows
// mailer uses (①, ㈱, Ⅲ, 髙 ...) come out as '?' or as undecoded bytes, and a
// raw ISO-2022-JP filename keeps its escape sequences. Here:
//   ISO-2022-JP (any -1/-2/-3 label)  → decoded as CP50220-style JIS, which
//                                       covers NEC row 13 and IBM rows
//   Shift_JIS, SJIS, Windows-31J      → CP932
//   EUC-JP                            → EUC-JP-MS
//   undeclared 8-bit / us-ascii       → UTF-8 if valid, else raw ISO-2022-JP
//                                       if it has JIS escapes, else EUC-JP,
//                                       else CP932, else Windows-1252
// Nothing here fails or throws: what cannot be decoded becomes U+FFFD.
//
//   mime::decodeHeader("=?ISO-2022-JP?B?GyRCMnE1RBsoQg==?=");        // "会議"
//   mime::headerParameter(" attachment; filename*=UTF-8''%E2%91%A0.txt",
//                         "filename");                                 // "①.txt"
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sekimori::mime {

// `bytes` in MIME charset `charset` (any case; empty = unknown, then
// guessed as above) as UTF-8.
std::string toUtf8(std::string_view bytes, std::string_view charset);

// An unstructured header value (Subject, a display name...) as UTF-8:
// unfolded, RFC 2047 encoded words decoded leniently (also inside words, as
// Japanese mailers write them; adjacent words of one charset joined before
// conversion so a character split between words survives), raw 8-bit or
// raw ISO-2022-JP text guessed.
std::string decodeHeader(std::string_view raw);

// Parameter `name` (case-insensitive) of a structured header value such as
// Content-Type or Content-Disposition, decoded to UTF-8: RFC 2231
// (name*=charset'lang'%XX, continuations name*0*= name*1= ..., which win
// over a plain name=), else a quoted or bare value with RFC 2047 words in
// it or raw 8-bit bytes. nullopt when the parameter is absent.
std::optional<std::string> headerParameter(std::string_view rawValue, std::string_view name);

}  // namespace sekimori::mime
