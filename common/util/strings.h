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
// Splits on commas and/or whitespace (Postfix list syntax: "a, b c").
std::vector<std::string> splitList(std::string_view s);

// Makes untrusted wire data safe for one log field: printable ASCII kept,
// everything else (CR, LF, NUL, bytes >= 0x7f, '"' and '\\') written as \xNN,
// cut to `max` bytes with "..." appended when longer.
std::string sanitize(std::string_view s, std::size_t max = 256);
// Only control characters written as \xNN, everything else (UTF-8 too) kept:
// text that stays one line, for messages meant to be read as written.
std::string escapeControls(std::string_view s);

}  // namespace sekimori::util
