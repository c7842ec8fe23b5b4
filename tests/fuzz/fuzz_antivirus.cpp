// Fuzzes sekimori-antivirus's promise, end to end through the milter
// (milters/antivirus/antivirus_milter.cpp via milter::Driver, as the
// libmilter glue drives it), with a stand-in scanner: nothing infected is
// ever delivered, and with html_script_action = strip no active HTML is.
//
// The stand-in finds a marker the way libclamav finds a signature in mail:
// in the raw bytes, or in any decoded MIME leaf (mime::walk, the reader the
// milter removes parts with) but those inside an attached message sent
// base64 or quoted-printable encoded, which libclamav does not decode at
// the top of a message. A second marker, found the same way, stands for an
// archive holding an HTML file with active content (the scanner workers'
// ScanResult::activeHtml). The first input byte picks the direction
// (inbound: infected attachments are cut out; outbound: refused), the HTML
// action (mark or strip) and the body chunk size; the rest is the message.
// Properties: the milter answers (no fault); when it lets the message
// through, the message the recipient gets — Postfix's header block, the
// new body if it replaced it — holds no marker in its bytes or in any
// decoded leaf, with strip no HTML leaf (nor web archive, .mht) with
// active content and no archive marker (else the status names
// Heuristics.HTML.Script), and when it holds encrypted mail (a part's
// type, or an OpenPGP message in a part's decoded text) it is marked so;
// and each notice put in a removed part's place is two lines (English,
// Japanese) whatever the sender named it.
#include <unistd.h>

#include <algorithm>
#include <array>
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
#include "tests/fuzz/milter_input.h"
#include "tests/unit/common/milter/fake_mta.h"

namespace {

using namespace sekimori;
using antivirus::ScanResult;

// Bytes no UTF-8 file name in a notice can hold, so only a real leftover matches.
const std::string kMarker = "\xFF" "FUZZ-VIRUS" "\xFF";
const std::string kHtmlMarker = "\xFE" "FUZZ-HTML-IN-ZIP" "\xFE";

// Whether `marker` is in `raw` or in a decoded leaf; with `blind`, not
// counting leaves inside a message/* part sent encoded (libclamav 1.4
// decodes none at the top of a message; the stand-in sees none at all).
bool holdsMarker(std::string_view raw, const std::string& marker, bool blind = false) {
  if (raw.find(marker) != std::string_view::npos) return true;
  mime::Spool spool(1 << 20, "/tmp");
  spool.append(raw);
  bool found = false;
  std::vector<std::vector<int>> encoded;
  mime::walk(spool, {}, [&](const mime::PartInfo& p, mime::Content* c) {
    if (p.encodedMessage) encoded.push_back(p.path);
    if (blind && std::any_of(encoded.begin(), encoded.end(),
                             [&](const std::vector<int>& e) { return mime::isInside(e, p.path); })) {
      return true;
    }
    found = c != nullptr && fuzz::readAll(*c).find(marker) != std::string::npos;
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
    r.status = holdsMarker(data, kMarker, true) ? ScanResult::Status::Infected : ScanResult::Status::Clean;
    if (r.status == ScanResult::Status::Infected) r.name = "Fuzz.Marker";
    r.activeHtml = holdsMarker(data, kHtmlMarker, true);
    return r;
  }
  std::string versions() const override { return "fuzz/1"; }
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

// A part of encrypted mail anywhere, the top-level entity included, as
// GMime reads the types; or a leaf whose content, decoded as GMime decodes
// it, holds an OpenPGP message at a line start (inline PGP, an .asc file),
// whatever its transfer encoding but uuencode (not looked into: a known
// limit, no mail program writes it).
bool hasEncryptedPart(std::string_view raw) {
  mime::Spool spool(1 << 20, "/tmp");
  spool.append(raw);
  bool found = false;
  mime::walk(spool, {}, [&](const mime::PartInfo& p, mime::Content* c) {
    const std::string& t = p.contentType;
    found = t == "multipart/encrypted" || t == "application/pkcs7-mime" || t == "application/x-pkcs7-mime" ||
            t == "application/pgp-encrypted";
    if (!found && c != nullptr && p.transferEncoding.find("uu") == std::string::npos) {
      const std::string text = fuzz::readAll(*c);
      found = text.starts_with("-----BEGIN PGP MESSAGE-----") ||
              text.find("\n-----BEGIN PGP MESSAGE-----") != std::string::npos;
    }
    return !found;
  });
  return found;
}

bool hasActiveHtmlLeaf(std::string_view raw) {
  mime::Spool spool(1 << 20, "/tmp");
  spool.append(raw);
  bool found = false;
  mime::walk(spool, {}, [&](const mime::PartInfo& p, mime::Content* c) {
    if (c == nullptr) return true;
    if (antivirus::htmlLeaf(p.contentType, p.filename)) {
      // As the reader's program shows it and as the bytes came (the milter looks at both).
      const std::string text = fuzz::readAll(*c);
      found = antivirus::hasActiveHtml(mime::toUtf8(text, p.charset)) || antivirus::hasActiveHtml(text);
    } else if (antivirus::webArchiveLeaf(p.contentType, p.filename)) {
      mime::Spool archive(1 << 20, "/tmp");
      archive.append(fuzz::readAll(*c));
      found = antivirus::webArchiveHasActiveHtml(archive);
    }
    return !found;
  });
  return found;
}

// The decoded content of every leaf of `raw`, with whether it is text/plain.
std::vector<std::pair<std::string, bool>> leaves(std::string_view raw) {
  mime::Spool spool(1 << 20, "/tmp");
  spool.append(raw);
  std::vector<std::pair<std::string, bool>> out;
  mime::walk(spool, {}, [&](const mime::PartInfo& p, mime::Content* c) {
    if (c != nullptr) out.emplace_back(fuzz::readAll(*c), p.contentType == "text/plain");
    return true;
  });
  return out;
}

// Each notice the milter put in a removed part's place (a text/plain leaf
// that was not in the message and says it was removed by us) is two lines,
// English and Japanese: no line break and no bidirectional override of the
// sender's (a file name, a Subject) gets into it.
void checkNotices(std::string_view input, std::string_view delivered) {
  std::vector<std::string> before;
  for (auto& [text, plain] : leaves(input)) before.push_back(std::move(text));
  for (const auto& [text, plain] : leaves(delivered)) {
    if (!plain || text.find("by sekimori-antivirus.") == std::string::npos ||
        std::find(before.begin(), before.end(), text) != before.end()) {
      continue;
    }
    FUZZ_CHECK(std::count(text.begin(), text.end(), '\n') == 2 && std::count(text.begin(), text.end(), '\r') == 2);
    FUZZ_CHECK(text.ends_with("\r\n") &&
               std::string_view(text).substr(0, text.find("\r\n")).ends_with("removed by sekimori-antivirus."));
    FUZZ_CHECK(text.find("\xE2\x80\xAE") == std::string::npos);
  }
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

  const fuzz::PostfixMessage input = fuzz::asPostfixPassesIt(fuzz::view(data + 1, size - 1));

  milter::testing::FakeMacros macros;
  macros.values["i"] = "FUZZ1";
  milter::Session s(macros, c.common);
  milter::Driver d(c.milter);
  d.connect(s, "client.example", policy::IpAddress::parse(outbound ? "10.1.2.3" : "203.0.113.5"));
  FUZZ_CHECK(d.mail(s, c.common, {"<sender@example.org>"}).isContinue());
  FUZZ_CHECK(d.rcpt(s, "<user@example.net>").isContinue());
  for (const auto& [n, v] : input.fields) FUZZ_CHECK(d.header(s, n, v).isContinue());
  FUZZ_CHECK(d.eoh(s).isContinue());
  for (std::size_t i = 0; i < input.body.size(); i += chunk) {
    FUZZ_CHECK(d.body(s, std::as_bytes(std::span(input.body.substr(i, chunk)))).isContinue());
  }
  milter::testing::RecordingActions mta;
  const milter::Verdict v = d.eom(s, mta);
  FUZZ_CHECK(v.kind() != milter::Verdict::Kind::Fault);
  if (v.kind() != milter::Verdict::Kind::Continue && v.kind() != milter::Verdict::Kind::Accept) return 0;

  // What the recipient gets: Postfix's header block with the milter's
  // changes applied (deletions, of its own headers' forged copies, aside),
  // the new body if it replaced it.
  fuzz::PostfixMessage out = input;
  for (const auto& change : mta.changed) {
    if (change.index == 1 && !change.value.empty()) out.changeFirst(change.name, change.value);
  }
  const std::string delivered = out.headerBlock() + "\r\n" + (mta.bodyReplaced ? mta.body : std::string(input.body));
  std::string status;
  for (const auto& [name, value] : mta.added) {
    if (name == "X-Virus-Status") status = value;
  }
  FUZZ_CHECK(!holdsMarker(delivered, kMarker));
  if (mta.bodyReplaced) checkNotices(input.spool(), delivered);
  if (stripping) FUZZ_CHECK(!hasActiveHtmlLeaf(delivered) && !holdsMarker(delivered, kHtmlMarker));
  if (holdsMarker(delivered, kHtmlMarker)) FUZZ_CHECK(status.find("Heuristics.HTML.Script") != std::string::npos);
  // Encrypted mail, wherever the part is, is never "clean": nothing in it
  // was scanned; also when an infected attachment beside it was removed.
  if (hasEncryptedPart(delivered)) {
    FUZZ_CHECK(status.starts_with("unscanned: encrypted") ||
               (status.starts_with("removed: ") && status.find("; unscanned: encrypted") != std::string::npos));
  }
  return 0;
}
