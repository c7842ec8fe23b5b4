// Fuzzes sekimori-antivirus's promise, end to end through the milter
// (milters/antivirus/antivirus_milter.cpp via milter::Driver, as the
// libmilter glue drives it), with a stand-in scanner: nothing infected is
// ever delivered, and with html_script_action = strip no active HTML is.
//
// The stand-in finds a marker the way libclamav finds a signature in mail:
// in the raw bytes, or in any decoded MIME leaf (mime::walk, the reader the
// milter removes parts with). The first input byte picks the direction
// (inbound: infected attachments are cut out; outbound: refused), the HTML
// action (mark or strip) and the body chunk size; the rest is the message.
// Properties: the milter answers (no fault); when it lets the message
// through, the message the recipient gets — Postfix's header block, the
// new body if it replaced it — holds no marker for the stand-in to find,
// and with strip no HTML leaf with active content.
#include <strings.h>
#include <unistd.h>

#include <array>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/config/values.h"
#include "common/milter/daemon.h"
#include "common/milter/driver.h"
#include "common/mime/message.h"
#include "common/mime/spool.h"
#include "milters/antivirus/antivirus_milter.h"
#include "tests/fuzz/fuzz.h"

namespace {

using namespace sekimori;
using antivirus::ScanResult;

// Bytes no UTF-8 file name in a notice can hold, so only a real leftover matches.
const std::string kMarker = "\xFF" "FUZZ-VIRUS" "\xFF";

bool holdsMarker(std::string_view raw) {
  if (raw.find(kMarker) != std::string_view::npos) return true;
  mime::Spool spool(1 << 20, "/tmp");
  spool.append(raw);
  bool found = false;
  mime::walk(spool, {}, [&](const mime::PartInfo&, mime::Content* c) {
    if (c == nullptr) return true;
    std::string text;
    std::array<std::byte, 4096> buf{};
    for (std::size_t n; (n = c->read(buf)) > 0;) text.append(reinterpret_cast<const char*>(buf.data()), n);
    found = text.find(kMarker) != std::string::npos;
    return !found;
  });
  return found;
}

class MarkerScanner final : public antivirus::Scanner {
 public:
  ScanResult scan(int fd) override {
    std::string data;
    std::array<char, 65536> buf{};
    for (off_t off = 0;;) {
      const ssize_t n = pread(fd, buf.data(), buf.size(), off);
      if (n <= 0) break;
      data.append(buf.data(), static_cast<std::size_t>(n));
      off += n;
    }
    ScanResult r;
    r.versions = "fuzz/1";
    r.status = holdsMarker(data) ? ScanResult::Status::Infected : ScanResult::Status::Clean;
    if (r.status == ScanResult::Status::Infected) r.name = "Fuzz.Marker";
    return r;
  }
  std::string versions() const override { return "fuzz/1"; }
};

class Macros final : public milter::MacroSource {
 public:
  std::optional<std::string_view> get(const char* name) const override {
    if (std::string_view(name) == "i") return std::string_view("FUZZ1");
    return std::nullopt;
  }
};

class Mta final : public milter::MtaActions {
 public:
  std::string body;
  bool replaced = false;
  std::vector<std::pair<std::string, std::string>> changed;  // name, value (index 1 only matters here)
  bool addHeader(std::string_view, std::string_view) override { return true; }
  bool insertHeader(int, std::string_view, std::string_view) override { return true; }
  bool changeHeader(std::string_view n, int index, std::string_view v) override {
    if (index == 1 && !v.empty()) changed.emplace_back(n, v);
    return true;
  }
  bool replaceBody(std::span<const std::byte> chunk) override {
    if (!replaced) body.clear();
    replaced = true;
    body.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
    return true;
  }
  bool addRecipient(std::string_view) override { return true; }
  bool deleteRecipient(std::string_view) override { return true; }
  bool quarantine(std::string_view) override { return true; }
  bool progress() override { return true; }
};

struct Configured {
  antivirus::AntivirusMilter milter;
  std::shared_ptr<const milter::CommonConfig> common;
  explicit Configured(const char* htmlAction) {
    const std::string conf = std::string(
                                 "[milter]\nlog_level = error\n"
                                 "[policy]\nlocal_domains = example.net\ninternal_networks = 10.0.0.0/8\n"
                                 "[notify]\nenabled = no\ntemplate_dir = " SEKIMORI_SOURCE_DIR "/conf\n"
                                 "[quarantine]\ndir =\n"
                                 "[actions]\nhtml_script_action = ") +
                             htmlAction + "\n";
    const auto schema = milter::buildSchema(milter);
    config::Errors errors;
    const auto values = config::Values::parse(schema, conf, "fuzz.conf", errors);
    common = milter::buildCommon(milter, values, errors);
    FUZZ_CHECK(milter.configure(values, errors, true));
    FUZZ_CHECK(errors.empty());
    milter.useScanner(std::make_shared<MarkerScanner>());
  }
};

// Header fields ("Name", "value" as Postfix passes them) and the body.
void split(std::string_view in, std::vector<std::pair<std::string, std::string>>& fields, std::string_view& body) {
  while (!in.empty()) {
    const std::size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in = nl == std::string_view::npos ? "" : in.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;
    if (line[0] == ' ' || line[0] == '\t') {
      if (!fields.empty()) fields.back().second.append("\r\n").append(line);
      continue;
    }
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        line.substr(0, colon).find_first_of(" \t") != std::string_view::npos) {
      continue;
    }
    fields.emplace_back(line.substr(0, colon), line.substr(colon + 1));
  }
  body = in;
}

bool hasActiveHtmlLeaf(std::string_view raw) {
  mime::Spool spool(1 << 20, "/tmp");
  spool.append(raw);
  bool found = false;
  mime::walk(spool, {}, [&](const mime::PartInfo& p, mime::Content* c) {
    if (c == nullptr || p.contentType != "text/html") return true;
    std::string text;
    std::array<std::byte, 4096> buf{};
    for (std::size_t n; (n = c->read(buf)) > 0;) text.append(reinterpret_cast<const char*>(buf.data()), n);
    found = antivirus::hasActiveHtml(mime::toUtf8(text, p.charset));
    return !found;
  });
  return found;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  static Configured mark("mark"), strip("strip");
  const std::uint8_t opts = data[0];
  const bool outbound = opts & 1;
  const bool stripping = opts & 2;
  static constexpr std::array<std::size_t, 4> kChunks{1, 7, 4096, 65535};
  const std::size_t chunk = kChunks[(opts >> 2) & 3];
  Configured& c = stripping ? strip : mark;

  std::vector<std::pair<std::string, std::string>> fields;
  std::string_view body;
  split(fuzz::view(data + 1, size - 1), fields, body);

  Macros macros;
  milter::Session s(macros, c.common);
  milter::Driver d(c.milter);
  d.connect(s, "client.example", policy::IpAddress::parse(outbound ? "10.1.2.3" : "203.0.113.5"));
  FUZZ_CHECK(d.mail(s, c.common, {"<sender@example.org>"}).isContinue());
  FUZZ_CHECK(d.rcpt(s, "<user@example.net>").isContinue());
  for (const auto& [n, v] : fields) FUZZ_CHECK(d.header(s, n, v).isContinue());
  FUZZ_CHECK(d.eoh(s).isContinue());
  for (std::size_t i = 0; i < body.size(); i += chunk) {
    FUZZ_CHECK(d.body(s, std::as_bytes(std::span(body.substr(i, chunk)))).isContinue());
  }
  Mta mta;
  const milter::Verdict v = d.eom(s, mta);
  FUZZ_CHECK(v.kind() != milter::Verdict::Kind::Fault);
  if (v.kind() != milter::Verdict::Kind::Continue && v.kind() != milter::Verdict::Kind::Accept) return 0;

  // What the recipient gets.
  // changeHeader(name, 1, value): the first field of that name changed, else one added.
  std::vector<std::pair<std::string, std::string>> out = fields;
  for (const auto& [cn, cv] : mta.changed) {
    bool done = false;
    for (auto& [n, value] : out) {
      if (!done && strcasecmp(cn.c_str(), n.c_str()) == 0) {
        value = " " + cv;
        done = true;
      }
    }
    if (!done) out.emplace_back(cn, " " + cv);
  }
  std::string head;
  for (const auto& [n, value] : out) head += n + ":" + value + "\r\n";
  const std::string delivered = head + "\r\n" + (mta.replaced ? mta.body : std::string(body));
  FUZZ_CHECK(!holdsMarker(delivered));
  if (stripping) FUZZ_CHECK(!hasActiveHtmlLeaf(delivered));
  return 0;
}
