// common/notify/spoolfile.cpp — see spoolfile.h.
#include "common/notify/spoolfile.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <map>

#include "common/util/files.h"
#include "common/util/strings.h"

namespace sekimori::notify {

namespace {

constexpr std::string_view kMagic = "sekimori-outbox 1\n";

void field(std::string& out, std::string_view key, std::string_view value) {
  out.append(key).append(" ").append(std::to_string(value.size())).append("\n").append(value).append("\n");
}

bool toNumber(std::string_view s, std::int64_t* n) {
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *n);
  return ec == std::errc() && end == s.data() + s.size() && *n >= 0;
}

}  // namespace

std::string encodeSpooled(const SpooledBatch& s) {
  const Outbox::Batch& b = s.batch;
  std::string out(kMagic);
  const auto number = [](std::int64_t n) { return std::to_string(n); };
  field(out, "origin", b.origin);
  field(out, "tries", number(s.tries));
  field(out, "first", number(s.first));
  field(out, "due", number(s.due));
  field(out, "retry_after", number(b.retry.after.count()));
  field(out, "retry_within", number(b.retry.within.count()));
  field(out, "method", b.settings.method);
  field(out, "smtp_url", b.settings.smtpUrl);
  field(out, "sendmail_path", b.settings.sendmailPath);
  field(out, "timeout", number(b.settings.timeout.count()));
  field(out, "envelope_from", b.settings.envelopeFrom);
  for (const auto& i : b.items) {
    field(out, "item", i.messageId);
    for (const auto& to : i.to) field(out, "to", to);
    field(out, "data", i.data);
  }
  return out;
}

bool decodeSpooled(std::string_view text, SpooledBatch* out, std::string* why) {
  if (!text.starts_with(kMagic)) {
    *why = "not a spooled batch (no \"sekimori-outbox 1\" first line)";
    return false;
  }
  text.remove_prefix(kMagic.size());
  Outbox::Batch& b = out->batch;
  std::map<std::string, std::int64_t, std::less<>> numbers;
  bool dataSeen = true;  // of the last item
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    const std::size_t sp = text.find(' ');
    std::int64_t len = 0;
    if (nl == std::string_view::npos || sp > nl || !toNumber(text.substr(sp + 1, nl - sp - 1), &len) ||
        static_cast<std::uint64_t>(len) + 1 > text.size() - nl - 1 || text[nl + 1 + len] != '\n') {
      *why = "damaged or cut short";
      return false;
    }
    const std::string_view key = text.substr(0, sp);
    const std::string_view value = text.substr(nl + 1, static_cast<std::size_t>(len));
    text.remove_prefix(nl + 1 + static_cast<std::size_t>(len) + 1);
    if (key == "origin") {
      b.origin = value;
    } else if (key == "method") {
      b.settings.method = value;
    } else if (key == "smtp_url") {
      b.settings.smtpUrl = value;
    } else if (key == "sendmail_path") {
      b.settings.sendmailPath = value;
    } else if (key == "envelope_from") {
      b.settings.envelopeFrom = value;
    } else if (key == "item") {
      if (!dataSeen) {
        *why = "a mail without content";
        return false;
      }
      b.items.push_back({{}, {}, std::string(value)});
      dataSeen = false;
    } else if (key == "to" && !b.items.empty() && !dataSeen) {
      b.items.back().to.emplace_back(value);
    } else if (key == "data" && !b.items.empty() && !dataSeen) {
      b.items.back().data = value;
      dataSeen = true;
    } else if (key == "tries" || key == "first" || key == "due" || key == "retry_after" || key == "retry_within" ||
               key == "timeout") {
      // Times up to the year 2286, durations up to a year: a clock or a
      // wait computed from them cannot overflow.
      const bool time = key == "first" || key == "due";
      std::int64_t n = 0;
      if (!toNumber(value, &n) || n > (time ? 9999999999999LL : 366LL * 24 * 3600 * 1000) ||
          (key == "tries" && n > 1000000)) {
        *why = "bad number in " + std::string(key);
        return false;
      }
      numbers[std::string(key)] = n;
    } else {
      *why = "unexpected field '" + util::sanitize(key, 40) + "'";
      return false;
    }
  }
  for (const char* k : {"tries", "first", "due", "retry_after", "retry_within", "timeout"}) {
    if (!numbers.contains(k)) {
      *why = std::string("no ") + k;
      return false;
    }
  }
  if (b.items.empty() || !dataSeen || std::any_of(b.items.begin(), b.items.end(), [](const auto& i) { return i.to.empty(); })) {
    *why = "a mail without recipients or content";
    return false;
  }
  out->tries = static_cast<int>(numbers["tries"]);
  out->first = numbers["first"];
  out->due = numbers["due"];
  b.retry.after = std::chrono::milliseconds(numbers["retry_after"]);
  b.retry.within = std::chrono::milliseconds(numbers["retry_within"]);
  b.settings.timeout = std::chrono::milliseconds(numbers["timeout"]);
  return true;
}

bool readSpooled(const std::string& path, std::uint64_t maxBytes, SpooledBatch* out, std::string* why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat info {};
  const bool sized = fd >= 0 && fstat(fd, &info) == 0;
  const bool fits = sized && static_cast<std::uint64_t>(info.st_size) <= maxBytes;
  std::string text;
  const bool read = fits && util::readWhole(fd, &text);
  if (!read) *why = sized && !fits ? "larger than the outbox can hold" : util::errnoText("cannot read it");
  if (fd >= 0) close(fd);
  return read && decodeSpooled(text, out, why);
}

}  // namespace sekimori::notify
