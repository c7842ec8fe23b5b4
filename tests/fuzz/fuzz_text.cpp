// Fuzzes the header-text decoders (common/mime/text.cpp): RFC 2047 words,
// RFC 2231 parameters and charset conversion of Subject lines and file
// names, which come from the wire and end up in logs, notices and
// warning mails.
// Property: whatever the bytes, the result is well-formed UTF-8.
#include <array>
#include <string>

#include "common/mime/message.h"
#include "common/mime/text.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sekimori::mime;
  using sekimori::fuzz::validUtf8;
  static constexpr std::array<const char*, 14> kCharsets{
      "utf-8",  "iso-2022-jp", "shift_jis",  "euc-jp", "cp932",  "iso-8859-1", "windows-1252",
      "us-ascii", "gb2312",    "big5",       "utf-16", "utf-7",  "x-no-such",  ""};
  if (size == 0) return 0;
  const std::string_view in = sekimori::fuzz::view(data + 1, size - 1);
  FUZZ_CHECK(validUtf8(toUtf8(in, kCharsets[data[0] % kCharsets.size()])));
  FUZZ_CHECK(validUtf8(decodeHeader(in)));
  for (const char* name : {"filename", "name"}) {
    if (const auto v = headerParameter(in, name)) FUZZ_CHECK(validUtf8(*v));
  }
  return 0;
}
