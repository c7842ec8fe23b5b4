// common/mime/replace.cpp — see replace.h.
#include "common/mime/replace.h"

#include <gmime/gmime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "common/mime/detail.h"
#include "common/util/strings.h"

namespace sekimori::mime {
namespace {

using detail::GPtr;

// Where a line that might be a boundary line stops being kept: a boundary
// line is "--" + boundary (at most 70 bytes by RFC 2046) + padding.
constexpr std::size_t kLineHead = 1024;
constexpr std::size_t kChunk = 64 * 1024;

bool isLwsp(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

struct Range {
  std::uint64_t begin = 0, end = 0;
};

// One line of [begin, end) of the spool: `start` is its first byte, `next`
// the first byte of the line after it (past the LF), `eol` the length of
// its line end (2 for CRLF, 1 for a bare LF, 0 for a last line without
// one). `head` keeps the first kLineHead bytes before the LF; `tailLwsp`
// says whether every byte after them was whitespace.
struct Line {
  std::uint64_t start = 0, next = 0;
  int eol = 0;
  std::string head;
  bool tailLwsp = true;
};

class LineReader {
 public:
  LineReader(const Spool& spool, Range r) : spool_(spool), pos_(r.begin), end_(r.end), buf_(kChunk) {}

  bool next(Line& line) {
    if (pos_ >= end_) return false;
    line.start = pos_;
    line.head.clear();
    line.tailLwsp = true;
    line.eol = 0;
    std::uint64_t length = 0;
    char last = 0;
    while (pos_ < end_) {
      if (at_ == len_ && !fill()) {
        pos_ = end_;  // a read error: the rest cannot be seen, so treat it as absent
        break;
      }
      const char c = buf_[at_++];
      ++pos_;
      if (c == '\n') {
        line.eol = last == '\r' ? 2 : 1;
        if (line.eol == 2 && length <= kLineHead) line.head.pop_back();
        break;
      }
      ++length;
      last = c;
      if (line.head.size() < kLineHead) {
        line.head.push_back(c);
      } else if (!isLwsp(c)) {
        line.tailLwsp = false;
      }
    }
    line.next = pos_;
    return true;
  }

 private:
  bool fill() {
    const std::uint64_t want = std::min<std::uint64_t>(buf_.size(), end_ - pos_);
    len_ = spool_.read(pos_, std::span(reinterpret_cast<std::byte*>(buf_.data()), static_cast<std::size_t>(want)));
    at_ = 0;
    return len_ > 0;
  }

  const Spool& spool_;
  std::uint64_t pos_, end_;
  std::vector<char> buf_;
  std::size_t at_ = 0, len_ = 0;
};

enum class Delimiter { None, Part, Close };

// As GMime matches a boundary line: "--boundary", optionally "--", then
// nothing but whitespace (transport padding).
Delimiter classify(const Line& line, std::string_view dashBoundary) {
  std::string_view s = line.head;
  if (!line.tailLwsp || !s.starts_with(dashBoundary)) return Delimiter::None;
  s.remove_prefix(dashBoundary.size());
  Delimiter kind = Delimiter::Part;
  if (s.starts_with("--")) {
    kind = Delimiter::Close;
    s.remove_prefix(2);
  }
  return std::all_of(s.begin(), s.end(), isLwsp) ? kind : Delimiter::None;
}

// One child of a multipart: `begin` just after its boundary line, `stop`
// where the next boundary line starts (or the multipart's end), `end` =
// `stop` without the line end that belongs to that boundary line.
struct Child {
  std::uint64_t begin = 0, end = 0, stop = 0;
};

struct Children {
  std::vector<Child> list;
  std::string error;
};

// The children of a multipart whose body (preface, parts, epilogue) is
// `body`. A missing closing delimiter is tolerated: the last part then
// runs to the end of `body`, as GMime reads it. Boundary lines after a
// closing delimiter are not: readers disagree on them.
Children scanMultipart(const Spool& spool, Range body, const std::string& boundary) {
  Children out;
  const std::string dash = "--" + boundary;
  LineReader reader(spool, body);
  Line line;
  bool closed = false;
  // The begin of the child being read, if one is (a plain pair: GCC 12
  // misreads an optional here as maybe uninitialized).
  bool open = false;
  std::uint64_t openAt = 0;
  const auto finish = [&](std::uint64_t stop, int eolBefore) {
    if (!open) return;
    const std::uint64_t end = std::max(openAt, stop - std::min<std::uint64_t>(stop - body.begin, eolBefore));
    out.list.push_back({openAt, end, stop});
    open = false;
  };
  int prevEol = 0;
  while (reader.next(line)) {
    const Delimiter d = classify(line, dash);
    if (d != Delimiter::None) {
      if (closed) {
        out.error = "boundary line after the closing delimiter of \"" + boundary + "\"";
        return out;
      }
      finish(line.start, prevEol);
      if (d == Delimiter::Close) {
        closed = true;
      } else {
        open = true;
        openAt = line.next;
      }
    }
    prevEol = line.eol;
  }
  finish(body.end, 0);
  return out;
}

// The offset just past the empty line that ends the header block at the
// start of `r`, or nothing when `r` holds no empty line.
std::optional<std::uint64_t> afterHeaderBlock(const Spool& spool, Range r) {
  LineReader reader(spool, r);
  Line line;
  while (reader.next(line)) {
    if (line.eol > 0 && line.head.empty() && line.tailLwsp) return line.next;
  }
  return std::nullopt;
}

// Boundaries a reader could confuse with one another: the same, or one the
// closing form of the other ("b" and "b--"). Boundaries ending in
// whitespace are ambiguous on their own (transport padding).
bool confusable(const std::string& a, const std::string& b) { return a == b || a == b + "--" || b == a + "--"; }

struct ParsedMessage {
  GPtr<GMimeStream> stream;
  GPtr<GMimeParser> parser;
  GPtr<GMimeMessage> message;
  std::string critical;  // the first GMIME_CRIT_* complaint
};

// GMime's critical complaints: "parts of the input may be skipped", so
// another reader may see another structure. The warnings (a missing
// closing delimiter, duplicated headers, 8-bit headers...) are left to the
// scanner and the checks.
const char* criticalIssue(GMimeParserWarning code) {
  switch (code) {
    case GMIME_CRIT_INVALID_HEADER_NAME: return "invalid header name";
    case GMIME_CRIT_CONFLICTING_HEADER: return "conflicting header";
    case GMIME_CRIT_CONFLICTING_PARAMETER: return "conflicting parameter";
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY: return "multipart without boundary";
    case GMIME_CRIT_NESTING_OVERFLOW: return "nesting overflow";
    case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT: return "part without headers or content";
    default: return nullptr;
  }
}

void onParserWarning(gint64 offset, GMimeParserWarning code, const gchar* item, gpointer data) {
  auto* parsed = static_cast<ParsedMessage*>(data);
  const char* issue = criticalIssue(code);
  if (issue == nullptr || !parsed->critical.empty()) return;
  parsed->critical = std::string("malformed MIME: ") + issue + " at offset " + std::to_string(offset) +
                     (item ? std::string(" (") + item + ")" : std::string());
}

struct Located {
  Range range;                     // the bytes to replace
  std::uint64_t contentStart = 0;  // where the part's content starts (after its header block)
  std::string error;               // set when the part cannot be replaced
  bool message = false;            // an attached message (only a notice can take its place)
};

// Finds the byte range of the entity at `path` by following GMime's tree
// down from the message's top-level part, whose body is `body`.
class Locator {
 public:
  Locator(const Spool& spool, GMimeObject* root, Range body) : spool_(spool), root_(root), body_(body) {}

  Located locate(const std::vector<int>& path) {
    if (path.empty()) return fail("the top-level part is not inside a multipart");
    GMimeObject* obj = root_;
    Range range = body_;  // the body of `obj` (after its header block)
    std::vector<std::string> boundaries;
    for (std::size_t k = 0; k < path.size(); ++k) {
      const int index = path[k];
      const bool last = k + 1 == path.size();
      if (GMIME_IS_MESSAGE_PART(obj)) {
        // Child 0 is the body of the attached message, behind two header
        // blocks: the part's and the message's own.
        GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        if (index != 0 || inner == nullptr || g_mime_message_get_mime_part(inner) == nullptr) {
          return fail("no such part");
        }
        if (last) return fail("the body of an attached message is not inside a multipart");
        const auto innerBody = afterHeaderBlock(spool_, range);
        if (!innerBody) return fail("attached message without a header block");
        obj = g_mime_message_get_mime_part(inner);
        range = {*innerBody, range.end};
        continue;
      }
      if (!GMIME_IS_MULTIPART(obj)) {
        return fail(GMIME_IS_PART(obj) ? "inside an encoded attached message or a leaf part (cannot be edited "
                                         "without re-encoding)"
                                       : "no such part");
      }
      auto* mp = GMIME_MULTIPART(obj);
      const char* b = g_mime_multipart_get_boundary(mp);
      const std::string boundary = b ? b : "";
      if (boundary.empty() || isLwsp(boundary.back())) return fail("multipart with an unusable boundary");
      for (const auto& outer : boundaries) {
        if (confusable(outer, boundary)) return fail("nested multiparts with confusable boundaries");
      }
      boundaries.push_back(boundary);
      const Children& children = scan(range, boundary);
      if (!children.error.empty()) return fail(children.error);
      const int count = g_mime_multipart_get_count(mp);
      if (static_cast<std::size_t>(count) != children.list.size()) {
        return fail("GMime sees " + std::to_string(count) + " parts in \"" + boundary + "\", the scanner " +
                    std::to_string(children.list.size()));
      }
      if (index < 0 || index >= count) return fail("no such part");
      const Child& child = children.list[static_cast<std::size_t>(index)];
      GMimeObject* next = g_mime_multipart_get_part(mp, index);
      if (last) return GMIME_IS_MESSAGE_PART(next) ? attachedMessage(next, child) : leaf(next, child);
      if (GMIME_IS_MULTIPART(next) || GMIME_IS_MESSAGE_PART(next)) {
        const auto content = afterHeaderBlock(spool_, {child.begin, child.end});
        if (!content) return fail("container part without a header block");
        range = {*content, child.end};
      }
      obj = next;
    }
    return fail("no such part");
  }

 private:
  static Located fail(std::string why) { return {{}, 0, std::move(why), false}; }

  // The range of a leaf part, checked against the content offsets GMime
  // recorded while parsing: the content must start inside the range and
  // end where the range does.
  Located leaf(GMimeObject* obj, const Child& child) {
    if (!GMIME_IS_PART(obj)) return fail("not a leaf part (a multipart)");
    GMimeDataWrapper* wrapper = g_mime_part_get_content(GMIME_PART(obj));
    GMimeStream* s = wrapper ? g_mime_data_wrapper_get_stream(wrapper) : nullptr;
    if (s == nullptr || s->bound_start < 0 || s->bound_end < 0) return fail("GMime recorded no content offsets");
    const auto start = static_cast<std::uint64_t>(s->bound_start);
    const auto end = static_cast<std::uint64_t>(s->bound_end);
    if (start < child.begin || start > child.stop || end != std::max(child.end, start)) {
      return fail("GMime's content offsets " + std::to_string(start) + ".." + std::to_string(end) +
                  " disagree with the scanner's part " + std::to_string(child.begin) + ".." +
                  std::to_string(child.end));
    }
    return {{child.begin, child.end}, start, {}, false};
  }

  // The range of an attached message (message/rfc822 sent as it is),
  // which goes whole: its header block, then a message, up to where the
  // enclosing multipart's scan ends it. A boundary inside it that GMime
  // and the scanner would read differently (one confusable with the
  // enclosing boundary) shows as a different part count, checked by the
  // caller, or in the check after the rewrite.
  Located attachedMessage(GMimeObject* obj, const Child& child) {
    GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
    if (inner == nullptr || g_mime_message_get_mime_part(inner) == nullptr) return fail("an empty attached message");
    const auto content = afterHeaderBlock(spool_, {child.begin, child.end});
    if (!content) return fail("attached message without a header block");
    return {{child.begin, child.end}, *content, {}, true};
  }

  // Each multipart is scanned once, however many parts are replaced in it.
  const Children& scan(Range body, const std::string& boundary) {
    auto it = scanned_.find(body.begin);
    if (it == scanned_.end()) it = scanned_.emplace(body.begin, scanMultipart(spool_, body, boundary)).first;
    return it->second;
  }

  const Spool& spool_;
  GMimeObject* root_;
  Range body_;
  std::map<std::uint64_t, Children> scanned_;
};

std::string crlfLines(std::string_view text) {
  std::string out;
  out.reserve(text.size() + text.size() / 32);
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\n' && (i == 0 || text[i - 1] != '\r')) out += '\r';
    out += text[i];
  }
  return out;
}

std::string base64Lines(std::string_view data) {
  gchar* enc = g_base64_encode(reinterpret_cast<const guchar*>(data.data()), data.size());
  const std::string_view all(enc);
  std::string out;
  for (std::size_t i = 0; i < all.size(); i += 76) {
    if (i > 0) out += "\r\n";
    out.append(all.substr(i, 76));
  }
  g_free(enc);
  return out;
}

// RFC 2231 extended value: attr-chars as they are, every other byte %XX.
std::string rfc2231(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out = "UTF-8''";
  for (const unsigned char c : s) {
    if ((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c != 0 && std::strchr("!#$&+-.^_`|~", c))) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

bool appendRange(std::string& out, const Spool& spool, Range r) {
  std::vector<std::byte> buf(kChunk);
  for (std::uint64_t at = r.begin; at < r.end;) {
    const auto want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), r.end - at));
    const std::size_t n = spool.read(at, std::span(buf).first(want));
    if (n == 0) return false;
    out.append(reinterpret_cast<const char*>(buf.data()), n);
    at += n;
  }
  return true;
}

// The header block [r) (its fields and the empty line that ends it)
// without its Content-Type and Content-Transfer-Encoding fields and their
// continuation lines: the other fields as they were written, without the
// empty line. nullopt when `r` is not exactly a header block, or, with
// `once`, when it holds either field more than once: for the top-level
// block, whose fields the caller changes in place (the first of each,
// smfi_chgheader index 1), a second one left behind would tell another
// reader a different type or encoding.
std::optional<std::string> fieldsWithoutContentType(const Spool& spool, Range r, bool once) {
  LineReader reader(spool, r);
  Line line;
  std::string out;
  bool drop = false, ended = false;
  int types = 0, encodings = 0;
  while (reader.next(line)) {
    if (ended) return std::nullopt;  // bytes after the empty line
    if (line.eol > 0 && line.head.empty() && line.tailLwsp) {
      ended = true;
      continue;
    }
    if (line.head.empty() || (line.head[0] != ' ' && line.head[0] != '\t')) {
      std::string_view name(line.head);
      name = name.substr(0, name.find(':'));
      while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.remove_suffix(1);
      const bool type = util::iequals(name, "Content-Type"), encoding = util::iequals(name, "Content-Transfer-Encoding");
      types += type;
      encodings += encoding;
      drop = type || encoding;
    }
    if (!drop && !appendRange(out, spool, {line.start, line.next})) return std::nullopt;
  }
  if (!ended || (once && (types > 1 || encodings > 1))) return std::nullopt;
  return out;
}

// What the checks compare between the message before and after.
struct Entry {
  PartInfo info;
  std::string content;  // decoded, for the notices only
};

struct Walked {
  WalkResult result;
  std::vector<Entry> entries;
};

Walked walkEntries(Spool& spool, const WalkLimits& limits, const std::vector<std::vector<int>>& readContentOf) {
  Walked w;
  w.result = walk(spool, limits, [&](const PartInfo& p, Content* c) {
    Entry e{p, {}};
    if (c && std::find(readContentOf.begin(), readContentOf.end(), p.path) != readContentOf.end()) {
      std::vector<std::byte> buf(4096);
      for (std::size_t n; (n = c->read(buf)) > 0;) e.content.append(reinterpret_cast<const char*>(buf.data()), n);
    }
    w.entries.push_back(std::move(e));
    return true;
  });
  return w;
}

bool sameEntity(const PartInfo& a, const PartInfo& b) {
  return a.path == b.path && a.contentType == b.contentType && a.filename == b.filename && a.charset == b.charset &&
         a.transferEncoding == b.transferEncoding && a.isAttachment == b.isAttachment && a.depth == b.depth;
}

const char* limitExceeded(const WalkResult& r) {
  if (r.depthExceeded) return "nested deeper than the walk limit";
  if (r.partsExceeded) return "more parts than the walk limit";
  if (r.headersExceeded) return "more headers than the walk limit";
  return nullptr;
}

// A MIME token (RFC 2045), as a type/subtype or a charset must be to be
// written without quotes.
bool isToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return c > 0x20 && c < 0x7f && std::strchr("()<>@,;:\\\"[]?=", c) == nullptr;
  });
}

ReplaceResult failure(std::string why) {
  ReplaceResult r;
  r.error = std::move(why);
  return r;
}

}  // namespace

std::string noticeHeaders(const std::string& filename) {
  std::string h =
      "Content-Type: text/plain; charset=UTF-8\r\n"
      "Content-Transfer-Encoding: base64\r\n"
      "Content-Disposition: inline";
  if (!filename.empty()) h += ";\r\n filename*=" + rfc2231(filename);
  h += "\r\n\r\n";
  return h;
}

ReplaceResult replaceParts(Spool& spool, const std::vector<Replacement>& parts, const WalkLimits& limits) {
  detail::initGMime();
  if (spool.truncated() || spool.failed()) return failure("the spool does not hold the whole message");
  if (parts.empty()) return failure("no parts to replace");
  std::vector<std::vector<int>> paths;
  for (const auto& p : parts) {
    if (std::find(paths.begin(), paths.end(), p.path) != paths.end()) return failure("a part is named twice");
    if (!g_utf8_validate(p.noticeText.data(), static_cast<gssize>(p.noticeText.size()), nullptr) ||
        !g_utf8_validate(p.noticeFilename.data(), static_cast<gssize>(p.noticeFilename.size()), nullptr)) {
      return failure("notice text or filename is not UTF-8");
    }
    if (p.content && (!isToken(p.content->type) || p.content->type.find('/') == std::string::npos ||
                      !isToken(p.content->charset))) {
      return failure("new content type or charset is not a MIME token");
    }
    if (p.path.empty() && (!p.content || parts.size() > 1)) {
      return failure("the whole message can only be replaced by new content, on its own");
    }
    paths.push_back(p.path);
  }

  // The walk callers chose the paths from, within the limits: past them
  // GMime's memory is not bounded, and the check after could not compare.
  const Walked before = walkEntries(spool, limits, {});
  if (!before.result.parsed) return failure("not a message: " + before.result.error);
  if (const char* why = limitExceeded(before.result)) return failure(why);
  for (const auto& p : paths) {
    const bool found = std::any_of(before.entries.begin(), before.entries.end(),
                                   [&](const Entry& e) { return e.info.path == p; });
    if (!found) return failure("no such part");
  }

  ParsedMessage parsed;
  GMimeParserOptions* options = g_mime_parser_options_new();
  g_mime_parser_options_set_warning_callback(options, onParserWarning, &parsed);
  parsed.stream.reset(spool.openStream());
  if (!parsed.stream) {
    g_mime_parser_options_free(options);
    return failure(std::string("cannot read the spool: ") + std::strerror(errno));
  }
  parsed.parser.reset(g_mime_parser_new_with_stream(parsed.stream.get()));
  g_mime_parser_set_persist_stream(parsed.parser.get(), TRUE);
  g_mime_parser_set_format(parsed.parser.get(), GMIME_FORMAT_MESSAGE);
  parsed.message.reset(g_mime_parser_construct_message(parsed.parser.get(), options));
  g_mime_parser_options_free(options);
  if (!parsed.message) return failure("GMime built no message");
  if (!parsed.critical.empty()) return failure(parsed.critical);

  // The body starts after the empty line that ends the top-level header
  // block; GMime gives where that line starts.
  const gint64 headersEnd = g_mime_parser_get_headers_end(parsed.parser.get());
  if (headersEnd < 0) return failure("no end of the header block");
  const auto bodyStart = afterHeaderBlock(spool, {static_cast<std::uint64_t>(headersEnd), spool.size()});
  if (!bodyStart) return failure("no empty line after the header block");
  if (*bodyStart - static_cast<std::uint64_t>(headersEnd) > 2) return failure("header block end is unclear");
  GMimeObject* root = g_mime_message_get_mime_part(parsed.message.get());

  ReplaceResult result;
  std::string head;  // the top-level header block of the new message, for the check after
  if (paths.front().empty()) {
    // The whole message is one leaf part: a new body, and new content
    // fields in the top-level header block.
    if (!GMIME_IS_PART(root)) return failure("the message is not a single part");
    const NewContent& c = *parts.front().content;
    const auto fields = fieldsWithoutContentType(spool, {0, *bodyStart}, true);
    if (!fields) return failure("cannot read the top-level header block, or it has more than one content field");
    result.topLevelChanged = true;
    result.topLevelHeaders = {{"Content-Type", c.type + "; charset=" + c.charset},
                              {"Content-Transfer-Encoding", "base64"}};
    head = *fields;
    for (const auto& [name, value] : result.topLevelHeaders) head += name + ": " + value + "\r\n";
    head += "\r\n";
    result.body = base64Lines(c.bytes) + "\r\n";
  } else {
    Locator locator(spool, root, {*bodyStart, spool.size()});
    struct Cut {
      Located where;
      const Replacement* part;
    };
    std::vector<Cut> cuts;
    for (const auto& p : parts) {
      Located l = locator.locate(p.path);
      if (l.error.empty() && l.message && p.content) l.error = "an attached message can only be replaced by a notice";
      if (!l.error.empty()) {
        std::string where;
        for (const int i : p.path) where += (where.empty() ? "" : ".") + std::to_string(i);
        return failure("part " + where + ": " + l.error);
      }
      cuts.push_back({l, &p});
    }
    std::sort(cuts.begin(), cuts.end(),
              [](const Cut& a, const Cut& b) { return a.where.range.begin < b.where.range.begin; });
    for (std::size_t i = 1; i < cuts.size(); ++i) {
      if (cuts[i].where.range.begin < cuts[i - 1].where.range.end) return failure("parts overlap");
    }

    result.body.reserve(static_cast<std::size_t>(spool.size() - *bodyStart));
    std::uint64_t at = *bodyStart;
    for (const Cut& c : cuts) {
      const Range r = c.where.range;
      if (!appendRange(result.body, spool, {at, r.begin})) return failure("cannot read the spool");
      if (const auto& content = c.part->content) {
        const auto fields = fieldsWithoutContentType(spool, {r.begin, c.where.contentStart}, false);
        if (!fields) return failure("cannot read the header block of a part");
        result.body += *fields;
        result.body += "Content-Type: " + content->type + "; charset=" + content->charset +
                       "\r\nContent-Transfer-Encoding: base64\r\n\r\n";
        result.body += base64Lines(content->bytes);
      } else {
        result.body += noticeHeaders(c.part->noticeFilename);
        result.body += base64Lines(crlfLines(c.part->noticeText));
      }
      // The line end before the next boundary line stays where it was; a
      // part that ran to the end of the message gets one of its own.
      if (r.end == spool.size()) result.body += "\r\n";
      at = r.end;
    }
    if (!appendRange(result.body, spool, {at, spool.size()})) return failure("cannot read the spool");
    if (!appendRange(head, spool, {0, *bodyStart})) return failure("cannot read the spool");
  }

  // The check after: the new message, walked as callers walk it, must have
  // the old structure entity by entity, with the notices or the new content
  // where the parts were. Spooled like the original (to a file past the
  // same memory limit).
  Spool after(spool.memoryLimit(), spool.tmpDir());
  if (!after.append(head) || !after.append(result.body)) return failure("cannot spool the new message");
  const Walked now = walkEntries(after, limits, paths);
  if (!now.result.parsed || limitExceeded(now.result)) return failure("the new message does not parse");
  // What walk() reported inside a replaced part (an attached message sent
  // encoded is a leaf here, walked into there) went with it.
  std::vector<const PartInfo*> kept;
  for (const auto& e : before.entries) {
    const auto inReplaced = [&](const std::vector<int>& r) { return isInside(r, e.info.path); };
    if (std::none_of(paths.begin(), paths.end(), inReplaced)) kept.push_back(&e.info);
  }
  if (now.entries.size() != kept.size()) return failure("the new message has a different structure");
  for (std::size_t i = 0; i < now.entries.size(); ++i) {
    const PartInfo& was = *kept[i];
    const Entry& is = now.entries[i];
    const auto replaced = std::find(paths.begin(), paths.end(), was.path);
    if (replaced == paths.end()) {
      if (!sameEntity(was, is.info)) return failure("the new message has a different structure");
      continue;
    }
    const Replacement& p = parts[static_cast<std::size_t>(replaced - paths.begin())];
    if (const auto& content = p.content) {
      if (is.info.path != was.path || is.info.contentType != util::toLowerAscii(content->type) ||
          is.info.charset != util::toLowerAscii(content->charset) || is.info.transferEncoding != "base64" ||
          is.info.filename != was.filename || is.info.isAttachment != was.isAttachment ||
          is.content != content->bytes) {
        return failure("the new content did not come out as written");
      }
    } else if (is.info.path != was.path || is.info.contentType != "text/plain" || is.info.charset != "utf-8" ||
               is.info.filename != p.noticeFilename || is.content != crlfLines(p.noticeText)) {
      return failure("a notice did not come out as written");
    }
  }
  result.ok = true;
  return result;
}

}  // namespace sekimori::mime
