// common/mime/message.cpp — see message.h.
#include "common/mime/message.h"

#include <gmime/gmime.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

#include "common/mime/detail.h"
#include "common/mime/prescan.h"
#include "common/util/strings.h"

namespace sekimori::mime {

namespace detail {
namespace {
// Makes every GMime class under `parent`. GLib makes a class at its first
// use, under a lock, and hands it to later threads through atomics of its
// own, which ThreadSanitizer (SEKIMORI_TSAN) does not see: every first walk
// of two threads at once would be reported. Made here, the classes are
// published to every thread by initGMime's call_once. They are never freed.
void makeGMimeClasses(GType parent) {
  guint n = 0;
  GType* children = g_type_children(parent, &n);
  for (guint i = 0; i < n; ++i) {
    const char* name = g_type_name(children[i]);
    if (g_str_has_prefix(name, "GMime") || g_str_has_prefix(name, "Internet")) g_type_class_ref(children[i]);
    makeGMimeClasses(children[i]);
  }
  g_free(children);
}
}  // namespace

void initGMime() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_mime_init();
    makeGMimeClasses(G_TYPE_OBJECT);
  });
}
}  // namespace detail

namespace {

using detail::GPtr;

struct OptionsFree {
  void operator()(GMimeParserOptions* o) const {
    if (o) g_mime_parser_options_free(o);
  }
};
using OptionsPtr = std::unique_ptr<GMimeParserOptions, OptionsFree>;

// A decoding stream over one part: a private substream of the spool (its
// own position, nothing copied) behind GMime's basic decoder filter.
class StreamContent final : public Content {
 public:
  explicit StreamContent(GMimeStream* s) : stream_(s) {}
  std::size_t read(std::span<std::byte> buf) override {
    if (!stream_ || buf.empty()) return 0;
    const ssize_t n = g_mime_stream_read(stream_.get(), reinterpret_cast<char*>(buf.data()), buf.size());
    return n > 0 ? static_cast<std::size_t>(n) : 0;
  }

 private:
  GPtr<GMimeStream> stream_;
};

GMimeStream* decodingStream(GMimePart* part) {
  GMimeDataWrapper* wrapper = g_mime_part_get_content(part);
  if (wrapper == nullptr) return nullptr;
  GMimeStream* raw = g_mime_data_wrapper_get_stream(wrapper);
  if (raw == nullptr) return nullptr;
  GPtr<GMimeStream> own(g_mime_stream_substream(raw, raw->bound_start, raw->bound_end));
  if (!own) return nullptr;
  GMimeStream* filtered = g_mime_stream_filter_new(own.get());  // takes its own reference
  switch (const GMimeContentEncoding enc = g_mime_data_wrapper_get_encoding(wrapper)) {
    case GMIME_CONTENT_ENCODING_BASE64:
    case GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE:
    case GMIME_CONTENT_ENCODING_UUENCODE: {
      GMimeFilter* dec = g_mime_filter_basic_new(enc, FALSE);
      g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), dec);
      g_object_unref(dec);
      break;
    }
    default:
      break;
  }
  return filtered;
}

std::string lowered(const char* s) { return s ? util::toLowerAscii(util::trim(s)) : std::string(); }

// The header as it was written (folded, undecoded), or null.
const char* rawHeader(GMimeObject* obj, const char* name) {
  GMimeHeaderList* list = g_mime_object_get_header_list(obj);
  if (list == nullptr) return nullptr;
  GMimeHeader* h = g_mime_header_list_get_header(list, name);
  return h ? g_mime_header_get_raw_value(h) : nullptr;
}

// The parser's complaints: the ones that mean "another reader may see a
// different structure" mark the result malformed.
void onParserWarning(gint64, GMimeParserWarning code, const gchar*, gpointer data) {
  auto* result = static_cast<WalkResult*>(data);
  switch (code) {
    case GMIME_CRIT_NESTING_OVERFLOW:
      result->depthExceeded = true;
      result->malformed = true;
      break;
    case GMIME_CRIT_INVALID_HEADER_NAME:
    case GMIME_CRIT_CONFLICTING_HEADER:
    case GMIME_CRIT_CONFLICTING_PARAMETER:
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
    case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
    case GMIME_WARN_MALFORMED_MULTIPART:
    case GMIME_WARN_TRUNCATED_MESSAGE:
    case GMIME_WARN_MALFORMED_MESSAGE:
      result->malformed = true;
      break;
    default:
      break;
  }
}

// A message/rfc822 (message/global, message/news) part that GMime left as
// a leaf: it does so when the part has a transfer encoding (base64...),
// which is against RFC 2046 and a known way to hide attachments from
// scanners that do not decode it.
bool isEncodedMessage(GMimeObject* obj, const std::string& contentType) {
  return GMIME_IS_PART(obj) && !GMIME_IS_MESSAGE_PARTIAL(obj) &&
         (contentType == "message/rfc822" || contentType == "message/global" || contentType == "message/news");
}

// One parsed spool: the GMime objects that must outlive the walk of its
// tree. Members are released in reverse order: message, parser, stream
// (which closes the dup'd descriptor the parts' substreams share), spool.
struct Parsed {
  std::unique_ptr<Spool> spool;  // owned only for an encoded message/rfc822
  GPtr<GMimeStream> stream;
  GPtr<GMimeParser> parser;
  GPtr<GMimeMessage> message;
};

class Walker {
 public:
  Walker(const WalkLimits& limits, const Visitor& visitor, WalkResult& result)
      : limits_(limits), visitor_(visitor), result_(result), options_(g_mime_parser_options_new()) {
    // Options of our own for each walk: the warning callback points at this
    // walk's result, and GMime's default options are shared by every thread.
    g_mime_parser_options_set_warning_callback(options_.get(), onParserWarning, &result_);
  }

  // Visits every entity of the message in `spool`, depth-first. The walk
  // keeps its own stack instead of recursing: GMime trees can be ~1000
  // levels deep and a thread's stack is not ours to spend.
  void run(const Spool& spool) {
    std::unique_ptr<Parsed> top = parse(spool, nullptr, 0);
    if (!top) return;
    result_.parsed = true;
    if (!enter(g_mime_message_get_mime_part(top->message.get()), 0, spool)) return;
    while (!frames_.empty()) {
      Frame& f = frames_.back();
      if (f.next >= f.count) {
        frames_.pop_back();
        path_.pop_back();
        continue;
      }
      const int i = f.next++;
      path_.back() = i;
      GMimeObject* child = f.multipart ? g_mime_multipart_get_part(f.multipart, i) : f.only;
      const Spool& owner = *f.spool;
      const int depth = f.depth + 1;
      if (!enter(child, depth, owner)) return;  // (may push frames: `f` is stale now)
    }
  }

 private:
  // A container whose children are being visited.
  struct Frame {
    GMimeMultipart* multipart = nullptr;  // its children, or
    GMimeObject* only = nullptr;          // the one body of a message
    int count = 0, next = 0, depth = 0;
    const Spool* spool = nullptr;         // the spool the objects live in
    std::unique_ptr<Parsed> parsed;       // set when this frame owns them
  };

  void push(Frame f) {
    frames_.push_back(std::move(f));
    path_.push_back(0);
  }

  // GMime's tree of `spool`, or null (then the error or malformed flag says
  // why). Only as much of the message as keeps GMime's memory within the
  // limits is parsed (prescan.h); what it holds of outer messages counts.
  std::unique_ptr<Parsed> parse(const Spool& spool, std::unique_ptr<Spool> owned, int depth) {
    const auto left = [](std::uint64_t limit, std::uint64_t used) { return used < limit ? limit - used : 0; };
    const Prescan scan = prescan(spool, {left(limits_.maxParts, parts_), left(limits_.maxHeaders, headers_),
                                         left(limits_.maxHeaderBytes, headerBytes_)});
    parts_ += scan.parts;
    headers_ += scan.headers;
    headerBytes_ += scan.headerBytes;
    if (scan.partsExceeded) result_.partsExceeded = true;
    if (scan.headersExceeded) result_.headersExceeded = true;

    auto p = std::make_unique<Parsed>();
    p->spool = std::move(owned);
    p->stream.reset(spool.openStream(scan.cutoff));
    if (!p->stream) {
      result_.error = std::string("cannot read the spool: ") + std::strerror(errno);
      if (depth > 0) result_.malformed = true;
      return nullptr;
    }
    p->parser.reset(g_mime_parser_new_with_stream(p->stream.get()));
    // Persistent: parts keep offsets into the spool instead of copies.
    g_mime_parser_set_persist_stream(p->parser.get(), TRUE);
    g_mime_parser_set_format(p->parser.get(), GMIME_FORMAT_MESSAGE);
    // Every header GMime parses is counted again here, in case the prescan
    // ever misjudges a header block: past the limit, the stream ends.
    parsing_ = p->stream.get();
    g_mime_parser_set_header_regex(p->parser.get(), "^", onHeader, this);
    p->message.reset(g_mime_parser_construct_message(p->parser.get(), options_.get()));
    parsing_ = nullptr;
    if (!p->message) {
      if (depth == 0) {
        result_.error = spool.size() == 0 ? "empty message" : "not a message (no header block)";
      } else {
        result_.malformed = true;  // an encoded message/rfc822 holding no message
      }
      return nullptr;
    }
    return p;
  }

  // Visits one entity; a container pushes a frame for its children. False
  // when the walk must stop.
  bool enter(GMimeObject* obj, int depth, const Spool& spool) {
    if (obj == nullptr) return true;
    if (depth > limits_.maxDepth) {
      // Not visited, and nothing below it; its siblings still are.
      result_.depthExceeded = true;
      return true;
    }
    if (result_.parts >= limits_.maxParts) {
      result_.partsExceeded = true;
      return false;
    }
    ++result_.parts;

    PartInfo info = describe(obj, depth, path_);
    if (GMIME_IS_MULTIPART(obj)) {
      if (!call(info, nullptr)) return false;
      auto* mp = GMIME_MULTIPART(obj);
      Frame f;
      f.multipart = mp;
      f.count = g_mime_multipart_get_count(mp);
      f.depth = depth;
      f.spool = &spool;
      push(std::move(f));
      return true;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
      GMimeMessage* inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
      info.subject = subjectOf(inner);
      if (!call(info, nullptr)) return false;
      if (inner == nullptr) return true;
      Frame f;
      f.only = g_mime_message_get_mime_part(inner);
      f.count = 1;
      f.depth = depth;
      f.spool = &spool;
      push(std::move(f));
      return true;
    }
    if (!GMIME_IS_PART(obj)) return call(info, nullptr);
    if (isEncodedMessage(obj, info.contentType)) {
      info.isAttachment = false;  // a container like any message/rfc822
      info.encodedMessage = true;
      // Decoded and parsed before the visitor sees the part, which is then
      // described as any message/rfc822 part is (its Subject).
      std::unique_ptr<Parsed> inner = parseEncodedMessage(GMIME_PART(obj), depth, spool);
      if (inner) info.subject = subjectOf(inner->message.get());
      if (!call(info, nullptr)) return false;
      if (!inner) return true;
      Frame f;
      f.only = g_mime_message_get_mime_part(inner->message.get());
      f.count = 1;
      f.depth = depth;
      f.spool = inner->spool.get();
      f.parsed = std::move(inner);
      push(std::move(f));
      return true;
    }

    GMimeStream* stream = decodingStream(GMIME_PART(obj));
    if (stream == nullptr) {
      BufferContent empty("");
      return call(info, &empty);
    }
    StreamContent content(stream);
    return call(info, &content);
  }

  // The part decoded into a spool of its own (same memory limit and
  // directory as the message's) and the message in it parsed, or null (too
  // deep, or no message in it: the result says so).
  std::unique_ptr<Parsed> parseEncodedMessage(GMimePart* part, int depth, const Spool& parent) {
    if (depth + 1 > limits_.maxDepth) {
      result_.depthExceeded = true;
      return nullptr;
    }
    auto inner = std::make_unique<Spool>(parent.memoryLimit(), parent.tmpDir());
    if (GMimeStream* s = decodingStream(part)) {
      StreamContent content(s);
      std::vector<std::byte> buf(64 * 1024);
      for (std::size_t n; (n = content.read(buf)) > 0;) {
        if (!inner->append(std::span<const std::byte>(buf).first(n))) {
          result_.error = std::string("cannot spool an encoded message/rfc822: ") + std::strerror(errno);
          result_.malformed = true;
          return nullptr;
        }
      }
    }
    const Spool& innerRef = *inner;
    return parse(innerRef, std::move(inner), depth + 1);
  }

  // A message's Subject as UTF-8 (text.h, not GMime's decoding), or "".
  static std::string subjectOf(GMimeMessage* message) {
    if (message == nullptr) return "";
    const char* raw = rawHeader(GMIME_OBJECT(message), "Subject");
    return raw ? std::string(util::trim(decodeHeader(raw))) : "";
  }

  static void onHeader(GMimeParser*, const char*, const char*, gint64, gpointer data) {
    auto* self = static_cast<Walker*>(data);
    if (++self->parsedHeaders_ <= self->limits_.maxHeaders || self->parsing_ == nullptr) return;
    self->result_.headersExceeded = true;
    GMimeStream* s = self->parsing_;
    g_mime_stream_set_bounds(s, s->bound_start, s->position);
  }

  bool call(const PartInfo& info, Content* content) {
    if (visitor_(info, content)) return true;
    result_.stopped = true;
    return false;
  }

  static PartInfo describe(GMimeObject* obj, int depth, const std::vector<int>& path) {
    PartInfo info;
    info.depth = depth;
    info.path = path;
    if (GMimeContentType* ct = g_mime_object_get_content_type(obj)) {
      char* type = g_mime_content_type_get_mime_type(ct);
      info.contentType = lowered(type);
      g_free(type);
      info.charset = lowered(g_mime_content_type_get_parameter(ct, "charset"));
    }
    if (info.contentType.empty()) info.contentType = "text/plain";
    info.transferEncoding = lowered(g_mime_object_get_header(obj, "Content-Transfer-Encoding"));

    // Our own parameter decoding, not GMime's: see text.h for the Japanese
    // charsets GMime gets wrong.
    if (const char* cd = rawHeader(obj, "Content-Disposition")) {
      if (auto f = headerParameter(cd, "filename")) info.filename = std::move(*f);
    }
    if (info.filename.empty()) {
      if (const char* ctype = rawHeader(obj, "Content-Type")) {
        if (auto f = headerParameter(ctype, "name")) info.filename = std::move(*f);
      }
    }
    const bool container = GMIME_IS_MULTIPART(obj) || GMIME_IS_MESSAGE_PART(obj);
    GMimeContentDisposition* disp = g_mime_object_get_content_disposition(obj);
    const bool attachmentDisposition = disp && g_mime_content_disposition_is_attachment(disp);
    info.isAttachment = !container && (attachmentDisposition || !info.filename.empty());
    return info;
  }

  const WalkLimits& limits_;
  const Visitor& visitor_;
  WalkResult& result_;
  OptionsPtr options_;
  std::vector<Frame> frames_;  // containers whose children are being visited
  std::vector<int> path_;      // child indexes down to the current entity
  // What the GMime trees alive at once may hold (prescan.h).
  std::uint64_t parts_ = 0, headers_ = 0, headerBytes_ = 0;
  std::uint64_t parsedHeaders_ = 0;
  GMimeStream* parsing_ = nullptr;
};

}  // namespace

bool isInside(const std::vector<int>& outer, const std::vector<int>& path) {
  return outer.size() < path.size() && std::equal(outer.begin(), outer.end(), path.begin());
}

std::size_t BufferContent::read(std::span<std::byte> buf) {
  const std::size_t n = std::min(buf.size(), bytes_.size());
  std::memcpy(buf.data(), bytes_.data(), n);
  bytes_.remove_prefix(n);
  return n;
}

WalkResult walk(Spool& spool, const WalkLimits& limits, const Visitor& visitor) {
  detail::initGMime();
  WalkResult result;
  Walker(limits, visitor, result).run(spool);
  return result;
}

std::string mediaType(std::string_view value) {
  detail::initGMime();
  const std::string text(value);
  OptionsPtr options(g_mime_parser_options_new());
  GMimeContentType* ct = g_mime_content_type_parse(options.get(), text.c_str());
  if (ct == nullptr) return "";
  char* type = g_mime_content_type_get_mime_type(ct);
  std::string out = lowered(type);
  g_free(type);
  g_object_unref(ct);
  return out;
}

}  // namespace sekimori::mime
