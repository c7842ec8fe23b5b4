// common/notify/spoolfile.h — one batch of an Outbox's spool as its file
// holds it (outbox.h, start(Spool)).
//
// The format: a first line "sekimori-outbox 1", then fields, each a line
// "KEY LENGTH" followed by LENGTH bytes and a newline, so that any bytes (a
// mail's) can be a value: origin, tries, first, due (unix time in ms),
// retry_after, retry_within, timeout (ms), method, smtp_url, sendmail_path,
// envelope_from; then per mail "item" (its Message-ID), one or more "to",
// and "data". A field the version does not know makes the file unreadable
// rather than half read.
//
//   std::string text = notify::encodeSpooled({batch, tries, firstMs, dueMs});
//   notify::SpooledBatch back;
//   if (!notify::decodeSpooled(text, &back, &why)) ...
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/notify/outbox.h"

namespace sekimori::notify {

// A spool file's name ends so ("1795000000000-4242-1.batch"); one the
// outbox could not read is renamed NAME.batch.bad.
constexpr std::string_view kSpooledSuffix = ".batch";

struct SpooledBatch {
  Outbox::Batch batch;     // its report is not kept
  int tries = 0;           // made so far
  std::int64_t first = 0;  // of the first try, unix time in ms
  std::int64_t due = 0;    // of the next try
};

std::string encodeSpooled(const SpooledBatch& b);

// What encodeSpooled() wrote; false with *why ("damaged or cut short",
// "unexpected field 'x'", ...) for anything else, *out then unspecified.
// Every mail has at least one recipient; numbers are not negative.
bool decodeSpooled(std::string_view text, SpooledBatch* out, std::string* why);

// decodeSpooled() of the file at `path`, read only when it has at most
// `maxBytes` (else *why = "larger than the outbox can hold"); a file that
// cannot be read: *why = "cannot read it: REASON".
bool readSpooled(const std::string& path, std::uint64_t maxBytes, SpooledBatch* out, std::string* why);

}  // namespace sekimori::notify
