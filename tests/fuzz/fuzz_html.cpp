// Fuzzes the HTML active-content check and stripper (R-AV-3,
// milters/antivirus/av_policy.cpp): hand-written scanning of hostile text.
// Properties: what stripActiveHtml() delivers has no active content left;
// HTML without active content comes back byte for byte.
#include <string>

#include "milters/antivirus/av_policy.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sekimori::antivirus;
  const std::string_view html = sekimori::fuzz::view(data, size);
  const bool active = hasActiveHtml(html);
  const auto stripped = stripActiveHtml(html);
  if (stripped) {
    FUZZ_CHECK(!hasActiveHtml(*stripped));
    FUZZ_CHECK(stripped->size() <= html.size());
    if (!active) FUZZ_CHECK(*stripped == html);
  } else {
    FUZZ_CHECK(active);  // giving up is only allowed on active content
  }
  return 0;
}
