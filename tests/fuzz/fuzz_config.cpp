// Fuzzes the conf-file reader (common/config) with each milter's schema,
// then the milter's own checks (configure, a dry run: nothing applied).
// A conf file is the administrator's, but a typo must get a clear error,
// never a crash or a hang.
// Properties: every error names the file and a line that exists (or no
// line), and its text is one line without control characters, so that it
// prints as one log line and one line of `--check` output.
//
// The first byte picks the milter. Inputs holding '/' are skipped: a path
// in the file (template_dir, quarantine dir) must not send the fuzzer
// reading /dev or /proc.
#include <algorithm>
#include <memory>
#include <string>

#include "common/config/values.h"
#include "common/milter/daemon.h"
#include "common/util/strings.h"
#include "milters/antivirus/antivirus_milter.h"
#include "milters/ratelimit/ratelimit_milter.h"
#include "milters/sizelimit/sizelimit_milter.h"
#include "tests/fuzz/fuzz.h"

namespace {

using namespace sekimori;

void checkErrors(const config::Errors& errors, int lines) {
  for (const auto& e : errors.list()) {
    FUZZ_CHECK(e.file == "fuzz.conf");
    FUZZ_CHECK(e.line >= 0 && e.line <= lines);
    FUZZ_CHECK(!e.message.empty() && std::none_of(e.message.begin(), e.message.end(), util::isControl));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view text = fuzz::view(data + 1, size - 1);
  if (text.find('/') != std::string_view::npos) return 0;
  std::unique_ptr<milter::Milter> m;
  switch (data[0] % 3) {
    case 0: m = std::make_unique<sizelimit::SizeLimitMilter>(); break;
    case 1: m = std::make_unique<ratelimit::RateLimitMilter>(); break;
    default: m = std::make_unique<antivirus::AntivirusMilter>(); break;
  }
  int lines = 1;
  for (char c : text) lines += c == '\n';

  const auto schema = milter::buildSchema(*m);
  config::Errors errors;
  const auto values = config::Values::parse(schema, text, "fuzz.conf", errors);
  checkErrors(errors, lines);
  if (!errors.empty()) return 0;
  milter::buildCommon(*m, values, errors);
  m->configure(values, errors, false);
  checkErrors(errors, lines);
  return 0;
}
