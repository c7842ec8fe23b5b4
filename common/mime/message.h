// common/mime/message.h — the MIME structure of a spooled message, read
// with GMime with bounded depth, part count and memory.
//
// GMime parses the spool in place (persistent stream): every part is a range
// of the spool, so a 20 MiB message is not copied into memory part by part.
// What GMime does hold in memory (an object per part and per header field,
// header blocks, multipart prefaces and epilogues) is bounded by WalkLimits:
// a prescan (prescan.h) finds where a message would go past them and GMime
// parses only up to there. walk() visits every entity depth-first —
// containers too, and the inside of message/rfc822 parts, also when a
// sender base64-encoded one (GMime leaves those as leaves; they are decoded
// into a spool of their own and walked) — and hands each leaf part's
// content to the visitor as a stream that undoes base64, quoted-printable
// or uuencode while it is read, chunk by chunk. Filenames come out as
// UTF-8 with the Japanese charsets converted (text.h). Broken or hostile
// MIME (no closing boundary, bad base64, NUL bytes, bare LF, 100 000
// headers, a million empty parts, nesting 1000 deep) gives a result with
// flags, never a crash, an exception or unbounded memory. The walk keeps
// its own stack; GMime recurses per nesting level but stops at ~1000
// (GMIME_CRIT_NESTING_OVERFLOW, reported as depthExceeded), which fits an
// 8 MiB thread stack.
//
//   bool partial = false;
//   auto r = mime::walk(spool, {}, [&](const mime::PartInfo& p, mime::Content* c) {
//     if (p.contentType == "message/partial") { partial = true; return false; }  // R-SIZE-3, stop
//     if (c && p.isAttachment) measure(*c);                                      // archive.h
//     return true;
//   });
//   if (r.depthExceeded || r.partsExceeded || r.headersExceeded) refuse();
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/mime/spool.h"
#include "common/mime/text.h"  // decodeHeader, headerParameter, toUtf8

namespace sekimori::mime {

struct PartInfo {
  std::string contentType;       // lowercased "type/subtype"; "text/plain" when absent
                                 // ("message/rfc822" inside multipart/digest)
  std::string filename;          // UTF-8: Content-Disposition filename, else Content-Type name
                                 // (RFC 2231 / RFC 2047 / raw 8-bit decoded, text.h); may be empty
  std::string charset;           // lowercased Content-Type charset; may be empty
  std::string transferEncoding;  // lowercased Content-Transfer-Encoding as written; may be empty
  int depth = 0;                 // 0 = the top-level entity of the message
  bool isAttachment = false;     // disposition attachment or a filename, and not a container
  bool encodedMessage = false;   // a message/* part sent with a transfer encoding (base64...),
                                 // against RFC 2046; walked as decoded, its message as child 0
  std::string subject;           // a message/rfc822 part's (encoded too): the Subject of the
                                 // message it holds, UTF-8 (decodeHeader); empty for others
  std::vector<int> path;         // child indexes from the root ({} for the root, {1, 0}...);
                                 // the body of a message/rfc822 part is its child 0
};

// Whether the part at `path` is inside (below) the part at `outer`, both
// PartInfo::path values; no part is inside itself.
bool isInside(const std::vector<int>& outer, const std::vector<int>& path);

// The decoded content of one leaf part, read in chunks. Valid only during
// the visitor call that received it.
class Content {
 public:
  virtual ~Content() = default;
  // Fills up to buf.size() bytes; 0 at the end (or on a read error).
  virtual std::size_t read(std::span<std::byte> buf) = 0;
};

// Content over bytes the caller holds (tests, or a part already in memory).
class BufferContent final : public Content {
 public:
  explicit BufferContent(std::string_view bytes) : bytes_(bytes) {}
  std::size_t read(std::span<std::byte> buf) override;

 private:
  std::string_view bytes_;
};

// GMime keeps part content in the spool but builds objects for parts and
// header fields and copies header blocks, multipart prefaces and epilogues
// into memory; these limits bound that (about 1.3 KB a part, 0.5 KB a
// header field, 3 bytes a header byte: ~25 MB at the defaults, against
// gigabytes for a hostile 20 MB message without them). A message over them
// is parsed only up to the first excess (prescan.h), and the result says so.
struct WalkLimits {
  int maxDepth = 64;                          // entities deeper than this are not visited
  std::size_t maxParts = 10000;               // entities in all
  std::size_t maxHeaders = 20000;             // header fields over all entities
  std::uint64_t maxHeaderBytes = 1ULL << 20;  // header blocks + prefaces + epilogues
};

struct WalkResult {
  bool parsed = false;           // GMime built a message (false: empty spool, no header block)
  bool depthExceeded = false;    // nested deeper than maxDepth (or than GMime's own ~1000 levels)
  bool partsExceeded = false;    // more than maxParts entities: parsed and walked up to there
  bool headersExceeded = false;  // more than maxHeaders fields or maxHeaderBytes: parsed up to there
  bool stopped = false;          // the visitor returned false
  bool malformed = false;        // GMime reported broken structure (multipart without boundary or
                                 // parts, truncated message, invalid or conflicting headers...):
                                 // other MIME readers may see a different structure
  std::size_t parts = 0;         // entities visited
  std::string error;             // why parsed is false, or what could not be done inside
                                 // (an encoded message/rfc822 that could not be spooled)
};

using Visitor = std::function<bool(const PartInfo&, Content*)>;

// Walks every entity depth-first; containers (multipart/*, message/rfc822)
// get a null Content, leaves a decoding stream. Returning false from the
// visitor stops the walk. Call after the last append to the spool; it reads
// whatever the spool holds (also when it is truncated or failed).
// Thread-safe: walks of different spools may run at the same time.
WalkResult walk(Spool& spool, const WalkLimits& limits, const Visitor& visitor);

// The lowercased "type/subtype" GMime reads from a Content-Type field value,
// as walk() reports it in PartInfo::contentType: white space and comments
// around the '/' skipped ("text / (x) html" is text/html), parameters
// dropped. A value it cannot read gives what GMime makes of it (it falls
// back to application/octet-stream for a bare word).
std::string mediaType(std::string_view value);

}  // namespace sekimori::mime
