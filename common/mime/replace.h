// common/mime/replace.h — removing attachments from a spooled message by
// putting a short text/plain notice where each one was, and changing no
// other byte.
//
// Nothing is re-encoded: GMime is used to read the structure (boundaries,
// part kinds, the content offsets of leaf parts in the spool), and the new
// body is the old one with the byte ranges of the chosen parts cut out and a
// notice part put in. Other parts, prefaces, epilogues, boundary lines and
// their transport padding, ISO-2022-JP escape sequences, bare LFs — all are
// copied as they were. The top-level header block is never touched, so the
// milter only calls smfi_replacebody (no header changes, DKIM signatures of
// the headers stay meaningful to whoever re-signs).
//
// A part's range runs from just after its boundary line to just before the
// line end that precedes the next boundary line (RFC 2046: that CRLF
// belongs to the boundary). The ranges come from a boundary scanner of our
// own, driven by the boundaries GMime read, and every one is checked
// against GMime before anything is replaced: the number of parts of each
// multipart on the way down, and the content offsets GMime recorded for the
// part itself. Afterwards the new message is walked (message.h) and must
// show exactly the old structure with notices at the replaced paths.
// Anything that does not agree — or MIME another reader could see
// differently (conflicting Content-Type headers, a boundary equal to an
// enclosing one, boundary lines after a closing delimiter) — gives
// ok=false: the caller must then reject or tempfail, never deliver the
// original as if it had been cleaned.
//
// A part can also keep its place and header fields and get new content
// (Replacement::content: HTML with its script removed): only its
// Content-Type and Content-Transfer-Encoding fields change, the content is
// written in base64, and the check after compares the decoded content. A
// message that is one leaf part is rewritten the same way: the new body in
// the result, the two header fields for the caller to change at the top
// level (ReplaceResult::topLevelHeaders; the caller changes the first field
// of each name, so a header block holding either field twice is refused).
//
//   std::vector<mime::Replacement> parts;
//   mime::walk(spool, {}, [&](const mime::PartInfo& p, mime::Content*) {
//     if (p.isAttachment && p.filename.ends_with(".zip"))
//       parts.push_back({p.path, "添付ファイル " + p.filename + " は削除されました。"});
//     return true;
//   });
//   const mime::ReplaceResult r = mime::replaceParts(spool, parts);
//   if (!r.ok) return tempfail(r.error);
//   actions.replaceBody(std::as_bytes(std::span(r.body)));   // milter.h (MtaActions)
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/mime/message.h"
#include "common/mime/spool.h"

namespace sekimori::mime {

// New content for a part instead of a notice (HTML with its active
// content removed): the part keeps every header field but Content-Type and
// Content-Transfer-Encoding, which become "TYPE; charset=CHARSET" and
// base64.
struct NewContent {
  std::string type;     // "text/html"
  std::string charset;  // "UTF-8"
  std::string bytes;    // in that charset, as they are to be decoded
};

struct Replacement {
  std::vector<int> path;        // PartInfo::path of the part, as walk() reports it; the part
                                // must be directly inside a multipart and a leaf, or an attached
                                // message (message/rfc822), which goes whole with what walk()
                                // reported inside it (sent as it is, only a notice can take its
                                // place; sent encoded, it is a leaf to GMime); or {} for the
                                // whole message when it is one leaf part and `content` is set
  std::string noticeText;       // UTF-8; line ends become CRLF
  std::string noticeFilename;   // empty: none (walk() then reports the notice as no attachment);
                                // else sent as filename*=UTF-8''... (RFC 2231)
  std::optional<NewContent> content = std::nullopt;  // set: the part's content is replaced, no notice
};

struct ReplaceResult {
  bool ok = false;               // false: the parts could not be located safely; reject or tempfail
  std::string error;             // why not ok (for the log: may hold message bytes, sanitise it)
  std::string body;              // the new body: everything after the top-level header block and
                                 // its empty line, line ends as in the input
  bool topLevelChanged = false;  // the top-level headers must change too (the whole message was
                                 // a replaced part): set topLevelHeaders, name by name
  std::vector<std::pair<std::string, std::string>> topLevelHeaders;  // name, value (no leading space)
};

// The notice part's header block, as written in place of the old part's
// (CRLF line ends, up to and including the empty line). The notice content
// follows in base64: always 7-bit, whatever the message was received as,
// and no line of it can ever look like a boundary.
std::string noticeHeaders(const std::string& filename);

// `spool` holds the whole message as received (headers + body). `limits`
// are those of the walks that check the structure before and after: a
// message over them is not edited. Reads the spool only; the new body is
// built in memory (about the size of the message).
ReplaceResult replaceParts(Spool& spool, const std::vector<Replacement>& parts, const WalkLimits& limits = {});

}  // namespace sekimori::mime
