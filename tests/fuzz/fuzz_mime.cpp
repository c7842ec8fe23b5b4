// Fuzzes reading a message's MIME structure and rewriting it the two ways
// sekimori-antivirus does (common/mime: prescan.cpp, message.cpp,
// replace.cpp): cutting attachments out (a notice in their place), and
// giving HTML parts new content (html_script_action = strip). The bytes
// come from the SMTP client as they are.
// Properties: walk() and replaceParts() always return (bounded by small
// limits here, so the limit paths run too); every leaf's content can be
// read; only attached messages have a Subject, in valid UTF-8; when
// replaceParts() says ok, the new message parses and has the entities of
// the old one but those inside a removed part (an attached message,
// removed whole), each removed part's place now reads as the notice, and
// each rewritten HTML part decodes to exactly its new content.
#include <algorithm>
#include <string>
#include <vector>

#include "common/mime/message.h"
#include "common/mime/replace.h"
#include "common/mime/spool.h"
#include "common/util/strings.h"
#include "tests/fuzz/fuzz.h"
#include "tests/fuzz/milter_input.h"

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
    s.parts.push_back(p);
    s.content.push_back(c != nullptr ? sekimori::fuzz::readAll(*c) : std::string());
    return true;
  });
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const sekimori::fuzz::PostfixMessage input = sekimori::fuzz::asPostfixPassesIt(sekimori::fuzz::view(data, size));
  // Small memory limit: inputs over 2 KB go through the temp-file spool.
  Spool spool(2048, "/tmp");
  spool.append(input.spool());
  const Seen before = walkAll(spool);
  FUZZ_CHECK(before.parts.size() <= kLimits.maxParts + 1);
  // A Subject only on an attached message, always valid UTF-8 (what notices quote).
  for (const PartInfo& p : before.parts) {
    FUZZ_CHECK(p.subject.empty() || p.contentType.starts_with("message/"));
    FUZZ_CHECK(sekimori::util::isValidUtf8(p.subject));
  }

  // 1. Every attachment that is a leaf directly inside a multipart, every
  // attached message sent encoded, and every other attached message at an
  // odd place in its multipart (those at even places keep their insides to
  // be cut), cut out; what is inside one goes with it.
  std::vector<Replacement> cut;
  const auto insideCut = [&](const std::vector<int>& path) {
    return std::any_of(cut.begin(), cut.end(), [&](const Replacement& c) { return isInside(c.path, path); });
  };
  // 2. Every HTML leaf, given new content.
  std::vector<Replacement> html;
  const NewContent kHtml{"text/html", "UTF-8", "<p>stripped \xE2\x91\xA0</p>\n"};
  for (const PartInfo& p : before.parts) {
    const bool wholeMessage = p.contentType.starts_with("message/") && !p.path.empty() && p.path.back() % 2 == 1;
    if ((p.isAttachment || p.encodedMessage || wholeMessage) && !p.path.empty() && !insideCut(p.path)) {
      cut.push_back({p.path, kNotice, "notice.txt"});
    }
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
    // What the recipient gets: Postfix's header block with the milter's
    // changes applied, the new body.
    sekimori::fuzz::PostfixMessage delivered = input;
    for (const auto& [name, value] : r.topLevelHeaders) delivered.changeFirst(name, value);
    Spool after(1 << 20, "/tmp");
    after.append(delivered.headerBlock() + "\r\n" + r.body);
    const Seen now = walkAll(after);
    FUZZ_CHECK(now.result.parsed);
    const auto gone = std::count_if(before.parts.begin(), before.parts.end(), [&](const PartInfo& p) {
      return std::any_of(repl->begin(), repl->end(), [&](const Replacement& c) { return isInside(c.path, p.path); });
    });
    FUZZ_CHECK(now.parts.size() == before.parts.size() - static_cast<std::size_t>(gone));
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
