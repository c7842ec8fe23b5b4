// Fuzzes building a warning mail (common/notify/notify.cpp) from values
// that come from the wire: the virus-carrying message's Subject and
// attachment names end up in the Subject, the body and the From display
// name of a mail we send, and an envelope address (maybe UTF-8) in To.
// Properties: either no mail, or one whose every line ends in CRLF and is
// at most 998 octets (RFC 5322), whose header block is 7-bit printable
// ASCII (but for a UTF-8 address in To, which is valid UTF-8 without
// controls and is the address as cleanAddress gives it) with exactly one
// Subject, From and To field and nothing a value could have added, and
// whose 7bit body really is 7-bit.
#include <string>
#include <vector>

#include "common/notify/notify.h"
#include "common/util/strings.h"
#include "tests/fuzz/fuzz.h"

namespace {

std::vector<std::string_view> fields(std::string_view in, std::size_t n) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < n) {
    const std::size_t z = in.find('\0');
    if (z == std::string_view::npos) break;
    out.push_back(in.substr(0, z));
    in.remove_prefix(z + 1);
  }
  out.push_back(in);
  out.resize(n);
  return out;
}

std::size_t count(std::string_view head, std::string_view name) {
  std::size_t c = 0;
  for (std::size_t p = 0; (p = head.find(name, p)) != std::string_view::npos; p += name.size()) {
    if (p == 0 || head.substr(p - 2, 2) == "\r\n") ++c;
  }
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sekimori::notify;
  const auto f = fields(sekimori::fuzz::view(data, size), 5);
  Mail m;
  m.from = "postmaster@example.jp";
  m.fromName = std::string(f[0]);
  const std::string to = f[4].empty() ? "user@example.jp" : std::string(f[4]);
  m.to = {to};
  m.subject = expand("[virus] ${subject}", {{"subject", std::string(f[1])}});
  m.body = expand("File ${file} was removed.\n", {{"file", std::string(f[2])}});
  m.extraHeaders = {{"X-Sekimori-Notice", std::string(f[3])}};
  m.date = std::chrono::system_clock::time_point{};
  std::string error;
  const auto msg = buildMessage(m, "example.jp", &error);
  if (!msg) {
    FUZZ_CHECK(!error.empty());
    return 0;
  }
  const std::string& d = msg->data;
  // Lines: CRLF only, at most 998 octets before it.
  std::size_t lineStart = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    if (d[i] == '\r') FUZZ_CHECK(i + 1 < d.size() && d[i + 1] == '\n');
    if (d[i] == '\n') {
      FUZZ_CHECK(i > 0 && d[i - 1] == '\r');
      FUZZ_CHECK(i - 1 - lineStart <= 998);
      lineStart = i + 1;
    }
  }
  FUZZ_CHECK(d.size() >= 2 && d.substr(d.size() - 2) == "\r\n");
  const std::size_t end = d.find("\r\n\r\n");
  FUZZ_CHECK(end != std::string::npos);
  const std::string_view head(d.data(), end + 2), body(d.data() + end + 4, d.size() - end - 4);
  // The To field, unfolded, is the address as cleanAddress gives it.
  const auto clean = cleanAddress(to);
  FUZZ_CHECK(clean.has_value());
  const std::size_t toBegin = std::string_view(d).find("\r\nTo:") + 5;
  FUZZ_CHECK(toBegin > 5 && toBegin < end);
  std::size_t toEnd = toBegin;
  while ((toEnd = d.find("\r\n", toEnd)) < end && (d[toEnd + 2] == ' ' || d[toEnd + 2] == '\t')) toEnd += 2;
  std::string unfolded;
  for (std::size_t i = toBegin; i < toEnd; ++i) {
    if (d[i] != '\r' && d[i] != '\n') unfolded += d[i];
  }
  FUZZ_CHECK(unfolded == " " + *clean);
  FUZZ_CHECK(sekimori::util::isValidUtf8(*clean));
  for (char c : *clean) FUZZ_CHECK(!sekimori::util::isControl(c));
  for (std::size_t i = 0; i < head.size(); ++i) {
    if (i >= toBegin && i < toEnd && head[i] != '\r' && head[i] != '\n') continue;
    const auto u = static_cast<unsigned char>(head[i]);
    FUZZ_CHECK(u == '\r' || u == '\n' || u == '\t' || (u >= 0x20 && u < 0x7F));
  }
  for (const char* name : {"Subject:", "From:", "To:", "Date:", "Message-ID:", "MIME-Version:", "Content-Type:",
                           "Content-Transfer-Encoding:", "X-Sekimori-Notice:"}) {
    FUZZ_CHECK(count(head, name) == 1);
  }
  // Every header line is a field or the continuation of one.
  for (std::size_t p = 0; p < head.size();) {
    const std::size_t e = head.find("\r\n", p);
    const std::string_view line = head.substr(p, e - p);
    FUZZ_CHECK(!line.empty());
    if (line[0] != ' ' && line[0] != '\t') {
      const std::size_t colon = line.find(':');
      FUZZ_CHECK(colon != std::string_view::npos && colon > 0);
      FUZZ_CHECK(line.substr(0, colon).find_first_of(" \t") == std::string_view::npos);
    }
    p = e + 2;
  }
  if (head.find("Content-Transfer-Encoding: 7bit") != std::string_view::npos) {
    for (char c : body) FUZZ_CHECK(static_cast<unsigned char>(c) < 0x80);
  }
  return 0;
}
