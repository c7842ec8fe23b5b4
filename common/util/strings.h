// common/util/strings.h — small string helpers that know nothing about mail.
//
// ASCII-only case folding on purpose: SMTP keywords, domain labels and
// option names are ASCII; anything else (UTF-8 local parts, IDN U-labels) is
// left byte-for-byte as it came.
//
//   auto parts = util::split("a, b ,c", ',');   // {"a", "b", "c"} (trimmed)
//   util::iequals("Received", "RECEIVED");      // true
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace sekimori::util {

std::string_view trim(std::string_view s);
// ASCII control characters: 0x00-0x1f and DEL.
constexpr bool isControl(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }
// No byte >= 0x80.
bool isAscii(std::string_view s);
std::string toLowerAscii(std::string_view s);
bool iequals(std::string_view a, std::string_view b);
bool istartsWith(std::string_view s, std::string_view prefix);

// Splits on `sep`, trims each piece and drops empty pieces.
std::vector<std::string> split(std::string_view s, char sep);
// Splits on `sep` as it is: empty fields kept, nothing trimmed ("a\t\tb" ->
// {"a", "", "b"}): for lines of our own tab-separated formats.
std::vector<std::string> splitFields(std::string_view s, char sep);
// Splits on commas and/or whitespace (Postfix list syntax: "a, b c").
std::vector<std::string> splitList(std::string_view s);

// Length of the valid UTF-8 sequence at s[i] (1 for ASCII), 0 when it is
// invalid: a stray continuation byte, a cut sequence, an overlong form, a
// surrogate or a code point above U+10FFFF.
std::size_t utf8Length(std::string_view s, std::size_t i);
bool isValidUtf8(std::string_view s);
// Valid UTF-8 kept; each byte of an invalid sequence becomes U+FFFD.
std::string repairUtf8(std::string_view s);

// Makes untrusted wire data safe for one log field: printable ASCII kept,
// everything else (CR, LF, NUL, bytes >= 0x7f, '"' and '\\') written as \xNN,
// cut to `max` bytes with "..." appended when longer.
std::string sanitize(std::string_view s, std::size_t max = 256);
// sanitize() for text meant to be read, such as log lines: valid UTF-8 is
// kept too (山田@example.jp, a Japanese subject), except the characters that
// could make a line look other than it is — C1 controls, bidirectional
// controls (U+200E/F, U+202A-E, U+2066-9), U+2028/9 and U+FEFF — which are
// written as \xNN like invalid bytes. Never cuts a character in two.
std::string sanitizeText(std::string_view s, std::size_t max = 256);
// sanitizeText() for the sender's text shown to people in a mail we write
// (a notice in place of an attachment, a warning): '"' and '\\' kept as they
// are, since no parser reads it; line breaks and what could disguise it
// (bidirectional controls) still written as \xNN.
//   util::displayText("a.exe\r\nscanned: clean")  // one line: a.exe\x0d\x0ascanned: clean
std::string displayText(std::string_view s, std::size_t max = 256);
// Only control characters written as \xNN, everything else (UTF-8 too) kept:
// text that stays one line, for messages meant to be read as written.
std::string escapeControls(std::string_view s);

// The value of a hexadecimal digit (either case), -1 for anything else.
int hexValue(char c);
// "%XX" sequences decoded; a '%' not followed by two hex digits kept as is.
std::string percentDecode(std::string_view s);
// Base64 (RFC 4648, with padding, on one line).
std::string encodeBase64(std::string_view in);
// Base64 as mailers and browsers get it wrong: characters outside the
// alphabet are skipped, padding is optional, decoding stops at the first
// '=', a trailing partial group gives what bits it has.
std::string decodeBase64Lenient(std::string_view s);

}  // namespace sekimori::util
