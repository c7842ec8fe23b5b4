// Fuzzes reading a spool file of the warning-mail outbox
// (common/notify/spoolfile.cpp): a file left by a crash, a full disk or an
// older or newer version must be refused with a reason, never crash, hang
// or take unbounded memory. Properties: what decodes encodes to a file
// that decodes to the same batch (its encoding is then a fixed point), and
// every mail it holds has a recipient.
#include <string>

#include "common/notify/spoolfile.h"
#include "tests/fuzz/fuzz.h"

namespace {

using sekimori::notify::SpooledBatch;

bool same(const SpooledBatch& a, const SpooledBatch& b) {
  const auto& x = a.batch;
  const auto& y = b.batch;
  if (a.tries != b.tries || a.first != b.first || a.due != b.due || x.origin != y.origin ||
      x.retry.after != y.retry.after || x.retry.within != y.retry.within || x.settings.method != y.settings.method ||
      x.settings.smtpUrl != y.settings.smtpUrl || x.settings.sendmailPath != y.settings.sendmailPath ||
      x.settings.timeout != y.settings.timeout || x.settings.envelopeFrom != y.settings.envelopeFrom ||
      x.items.size() != y.items.size()) {
    return false;
  }
  for (std::size_t i = 0; i < x.items.size(); ++i) {
    if (x.items[i].to != y.items[i].to || x.items[i].data != y.items[i].data ||
        x.items[i].messageId != y.items[i].messageId) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  SpooledBatch got;
  std::string why;
  if (!sekimori::notify::decodeSpooled(sekimori::fuzz::view(data, size), &got, &why)) {
    FUZZ_CHECK(!why.empty());
    return 0;
  }
  FUZZ_CHECK(!got.batch.items.empty());
  for (const auto& i : got.batch.items) FUZZ_CHECK(!i.to.empty());
  const std::string text = sekimori::notify::encodeSpooled(got);
  SpooledBatch again;
  FUZZ_CHECK(sekimori::notify::decodeSpooled(text, &again, &why));
  FUZZ_CHECK(same(got, again));
  FUZZ_CHECK(sekimori::notify::encodeSpooled(again) == text);
  return 0;
}
