// Fuzzes reading a message's MIME structure and rewriting it the two ways
// sekimori-antivirus does (common/mime: prescan.cpp, message.cpp,
// replace.cpp): cutting attachments out (a notice in their place), and
// giving HTML parts new content (html_script_action = strip). The bytes
// come from the SMTP client as they are.
// Properties: walk() and replaceParts() always return (bounded by small
// limits here, so the limit paths run too); every leaf's content can be
// read; when replaceParts() says ok, the new message parses and has the
// same number of entities as the old one, each removed part's place now
// reads as the notice, and each rewritten HTML part decodes to exactly its
// new content.
#include <strings.h>

#include <string>
#include <vector>

#include "common/mime/message.h"
#include "common/mime/replace.h"
#include "common/mime/spool.h"
#include "tests/fuzz/fuzz.h"

namespace {

using namespace sekimori::mime;

constexpr WalkLimits kLimits{.maxDepth = 12, .maxParts = 200, .maxHeaders = 400, .maxHeaderBytes = 64 * 1024};
const std::string kNotice = "removed by the fuzzer";

struct Seen {
  WalkResult result;
  std::vector<PartInfo> parts;
  std::vector<std::string> content;  // decoded, per part ("" for containers)
};

Seen walkAll(Spool& spool) {
  Seen s;
  s.result = walk(spool, kLimits, [&](const PartInfo& p, Content* c) {
    std::string bytes;
    if (c != nullptr) {
      std::byte buf[4096];
      for (std::size_t n; (n = c->read(buf)) > 0;) bytes.append(reinterpret_cast<const char*>(buf), n);
    }
    s.parts.push_back(p);
    s.content.push_back(std::move(bytes));
    return true;
  });
  return s;
}

// The spool as the milter writes it: the header fields Postfix passed on
// ("Name:value" lines; continuation lines kept; lines that are no field
// dropped, as Postfix ends the header block at them), the empty line, then
// the body as it came. Returns where the body starts.
std::size_t milterSpool(std::string_view in, std::string& out) {
  while (!in.empty()) {
    const std::size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in = nl == std::string_view::npos ? "" : in.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) break;  // the empty line: the body follows
    const bool continuation = line[0] == ' ' || line[0] == '\t';
    const std::size_t colon = line.find(':');
    if (continuation ? out.empty()
                     : colon == std::string_view::npos || colon == 0 ||
                           line.substr(0, colon).find_first_of(" \t") != std::string_view::npos) {
      continue;
    }
    out.append(line).append("\r\n");
  }
  out.append("\r\n");
  const std::size_t bodyStart = out.size();
  out.append(in);
  return bodyStart;
}

// The message the recipient gets from `spool` after `r`: Postfix's header
// block (with the milter's changeHeader(name, 1, value) calls applied:
// the first field of that name changed, else added), then the new body.
std::string delivered(std::string_view input, std::size_t bodyStart, const ReplaceResult& r) {
  std::string head(input.substr(0, bodyStart - 2));  // without the empty line
  for (const auto& [name, value] : r.topLevelHeaders) {
    std::size_t at = std::string::npos;
    for (std::size_t p = 0; p < head.size();) {
      const std::size_t e = head.find("\r\n", p);
      const std::size_t colon = head.find(':', p);
      if (colon < e && colon - p == name.size() && strncasecmp(head.data() + p, name.data(), name.size()) == 0) {
        at = p;
        break;
      }
      p = e + 2;
    }
    const std::string field = name + ": " + value + "\r\n";
    if (at == std::string::npos) {
      head += field;
      continue;
    }
    // The field with its continuation lines.
    std::size_t end = head.find("\r\n", at) + 2;
    while (end < head.size() && (head[end] == ' ' || head[end] == '\t')) end = head.find("\r\n", end) + 2;
    head.replace(at, end - at, field);
  }
  return head + "\r\n" + r.body;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string input;
  const std::size_t bodyStart = milterSpool(sekimori::fuzz::view(data, size), input);
  // Small memory limit: inputs over 2 KB go through the temp-file spool.
  Spool spool(2048, "/tmp");
  spool.append(input);
  const Seen before = walkAll(spool);
  FUZZ_CHECK(before.parts.size() <= kLimits.maxParts + 1);

  // 1. Every attachment that is a leaf directly inside a multipart, cut out.
  std::vector<Replacement> cut;
  // 2. Every HTML leaf, given new content.
  std::vector<Replacement> html;
  const NewContent kHtml{"text/html", "UTF-8", "<p>stripped \xE2\x91\xA0</p>\n"};
  for (const PartInfo& p : before.parts) {
    if (p.isAttachment && !p.path.empty()) cut.push_back({p.path, kNotice, "notice.txt"});
    if (p.contentType == "text/html") {
      Replacement r;
      r.path = p.path;
      r.content = kHtml;
      html.push_back(std::move(r));
    }
  }
  for (const auto* repl : {&cut, &html}) {
    if (repl->empty()) continue;
    const ReplaceResult r = replaceParts(spool, *repl, kLimits);
    if (!r.ok) continue;
    FUZZ_CHECK(repl == &html || !r.topLevelChanged);
    FUZZ_CHECK(r.topLevelChanged == !r.topLevelHeaders.empty());
    Spool after(1 << 20, "/tmp");
    after.append(delivered(input, bodyStart, r));
    const Seen now = walkAll(after);
    FUZZ_CHECK(now.result.parsed);
    FUZZ_CHECK(now.parts.size() == before.parts.size());
    for (const Replacement& c : *repl) {
      bool found = false;
      for (std::size_t i = 0; i < now.parts.size(); ++i) {
        if (now.parts[i].path != c.path) continue;
        found = true;
        if (c.content) {
          FUZZ_CHECK(now.parts[i].contentType == "text/html");
          FUZZ_CHECK(now.content[i] == c.content->bytes);
        } else {
          FUZZ_CHECK(now.content[i].find(kNotice) != std::string::npos);
        }
      }
      FUZZ_CHECK(found);
    }
  }
  return 0;
}
