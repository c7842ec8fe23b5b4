// common/mime/prescan.cpp — see prescan.h. The state machine mirrors
// GMime 3.2's parser (gmime-parser.c): a line is a boundary when it is "--"
// plus the boundary of an active multipart, innermost first, followed only
// by white space ("--" plus boundary plus "--": the end); header blocks end
// at an empty line or a boundary (lines that are no header are skipped,
// white-space-only lines are folding); a multipart without
// boundary is all preface; message/rfc822 with a transfer encoding is a
// leaf; inside multipart/digest a part without Content-Type is a message.
#include "common/mime/prescan.h"

#include <algorithm>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/mime/message.h"  // mediaType
#include "common/mime/text.h"
#include "common/util/strings.h"

namespace sekimori::mime {
namespace {

constexpr std::size_t kPrefix = 4096;         // bytes of a line looked at
constexpr std::size_t kMaxFieldValue = 16384;  // Content-Type kept for parsing

bool isLwsp(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

class Scanner {
 public:
  explicit Scanner(const PrescanLimits& limits) : limits_(limits) { result_.parts = 1; }

  // One line: its offset, full length (with the newline), the first
  // kPrefix bytes, and whether everything past them is white space.
  // False once a limit is passed (result().cutoff is then set).
  bool line(std::uint64_t offset, std::uint64_t length, std::string_view prefix, bool tailIsLwsp) {
    if (paranoid_) {
      // A structure we cannot be sure of: every byte may be kept, every
      // "--" line may start a part and every Content-Type open a message.
      result_.headerBytes += length;
      if (prefix.starts_with("--") || util::istartsWith(prefix, "content-type")) ++result_.parts;
      return check(offset);
    }
    const bool whole = length <= prefix.size() || tailIsLwsp;
    if (whole && prefix.starts_with("--") && !levels_.empty()) {
      const std::string_view rest = trimRight(prefix.substr(2));
      if (match(rest).any()) {
        if (mode_ == Mode::Headers) {
          // A boundary ends a header block too; GMime then builds the part
          // from what it has (a multipart pushes its boundary first) and
          // looks at the same line again.
          endOfHeaders();
          if (paranoid_) return line(offset, length, prefix, tailIsLwsp);
        }
        delimiter(rest);
        return check(offset);
      }
    }
    if (mode_ == Mode::Headers) {
      header(prefix, length);
    } else if (mode_ != Mode::Leaf) {
      result_.headerBytes += length;  // preface, epilogue, boundary-less body
    }
    return check(offset);
  }

  const Prescan& result() const { return result_; }

 private:
  enum class Mode { Headers, Leaf, Preface, Epilogue, NoBoundary };
  enum class Field { None, ContentType, LaterContentType, Encoding, Other };
  struct Level {
    std::string boundary;
    bool digest;
  };

  static std::string_view trimRight(std::string_view s) {
    while (!s.empty() && isLwsp(s.back())) s.remove_suffix(1);
    return s;
  }

  bool check(std::uint64_t offset) {
    if (result_.parts > limits_.maxParts) {
      result_.partsExceeded = true;
    } else if (result_.headers > limits_.maxHeaders || result_.headerBytes > limits_.maxHeaderBytes) {
      result_.headersExceeded = true;
    } else {
      return true;
    }
    result_.cutoff = offset;
    return false;
  }

  struct Match {
    int plain = -1, end = -1;  // innermost level whose delimiter / end delimiter it is
    bool any() const { return plain >= 0 || end >= 0; }
  };

  Match match(std::string_view rest) const {
    Match m;
    if (auto it = active_.find(std::string(rest)); it != active_.end()) m.plain = it->second.back();
    if (rest.ends_with("--")) {
      if (auto it = active_.find(std::string(rest.substr(0, rest.size() - 2))); it != active_.end()) {
        m.end = it->second.back();
      }
    }
    return m;
  }

  // A delimiter line of an active multipart. GMime tests the innermost
  // level first, and at each level the end delimiter before the plain one.
  void delimiter(std::string_view rest) {
    const Match m = match(rest);
    if (!m.any()) return;
    if (m.end >= m.plain) {
      popTo(m.end);  // the multipart at `end` is over; its epilogue follows
      mode_ = Mode::Epilogue;
    } else {
      popTo(m.plain + 1);
      ++result_.parts;
      mode_ = Mode::Headers;
      defaultMessage_ = levels_.back().digest;
    }
  }

  void popTo(int size) {
    while (static_cast<int>(levels_.size()) > size) {
      auto it = active_.find(levels_.back().boundary);
      if (it != active_.end()) {
        it->second.pop_back();
        if (it->second.empty()) active_.erase(it);
      }
      levels_.pop_back();
    }
  }

  void resetFields() {
    field_ = Field::None;
    contentType_.clear();
    laterContentTypes_.clear();
    encoding_.clear();
    contentTypes_ = 0;
    contentTypeCut_ = false;
  }

  void header(std::string_view prefix, std::uint64_t length) {
    if (prefix == "\n" || prefix == "\r\n") {  // the empty line: the block is over
      endOfHeaders();
      return;
    }
    if (prefix.front() == ' ' || prefix.front() == '\t') {  // folded
      result_.headerBytes += length;
      append(prefix, length);
      return;
    }
    const std::size_t colon = prefix.find(':');
    if (colon == std::string_view::npos) {
      // Not a header. GMime drops it and goes on reading headers: only an
      // empty line or a boundary ends a header block.
      result_.headerBytes += length;
      field_ = Field::Other;
      return;
    }
    ++result_.headers;
    result_.headerBytes += length;
    const std::string name = util::toLowerAscii(util::trim(prefix.substr(0, colon)));
    if (name == "content-type") {
      // Which of several Content-Types GMime goes by is not obvious: later
      // ones feed the "multipart" and message tests, and make a boundary
      // uncertain.
      field_ = ++contentTypes_ == 1 ? Field::ContentType : Field::LaterContentType;
      if (field_ == Field::LaterContentType) laterContentTypes_ += '\n';  // one value a line
    } else if (name == "content-transfer-encoding") {
      field_ = Field::Encoding;
    } else {
      field_ = Field::Other;
      return;
    }
    append(prefix.substr(colon + 1), length - colon - 1);
  }

  void append(std::string_view text, std::uint64_t length) {
    std::string* value = field_ == Field::ContentType        ? &contentType_
                         : field_ == Field::LaterContentType ? &laterContentTypes_
                         : field_ == Field::Encoding         ? &encoding_
                                                             : nullptr;
    if (value == nullptr) return;
    if (length > text.size() || value->size() + text.size() > kMaxFieldValue) {
      if (field_ != Field::Encoding) contentTypeCut_ = true;
      return;
    }
    *value += text;
  }

  // What the finished header block makes of what follows.
  void endOfHeaders() {
    const std::string ct = util::toLowerAscii(contentType_);
    const bool declared = contentTypes_ > 0;
    // A multipart missed here would be counted as a leaf: any of the
    // Content-Types GMime may go by that may read as one counts.
    const auto multipart = [this](std::string_view v) { return mayBeMultipart(v); };
    if (declared && (multipart(contentType_) || anyLine(laterContentTypes_, multipart))) {
      const auto boundary = headerParameter(contentType_, "boundary");
      const bool plainBoundary = boundary && !boundary->empty() && !isLwsp(boundary->front()) &&
                                 !isLwsp(boundary->back()) && contentTypes_ == 1 && !contentTypeCut_ &&
                                 oneBoundaryParameter(ct, *boundary) &&
                                 ct.find("boundary*") == std::string::npos && ct.find("=?") == std::string::npos &&
                                 boundary->find_first_not_of(
                                     " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`"
                                     "abcdefghijklmnopqrstuvwxyz{|}~") == std::string::npos;
      if (ct.find("boundary") == std::string::npos && contentTypes_ == 1 && !contentTypeCut_) {
        mode_ = Mode::NoBoundary;  // all of it goes into the preface
      } else if (!plainBoundary) {
        // Decoded differently by GMime and by us, or ambiguous: assume the
        // worst from here on (this entity may even be a message).
        paranoid_ = true;
        ++result_.parts;
        mode_ = Mode::Preface;
      } else {
        active_[*boundary].push_back(static_cast<int>(levels_.size()));
        levels_.push_back(Level{*boundary, ct.find("digest") != std::string::npos});
        mode_ = Mode::Preface;
      }
    } else if (anyMessage(declared) && !encoded()) {
      // (with several Content-Types, any of them may be the one GMime uses)
      mode_ = Mode::Headers;  // the message inside begins with its own headers
      ++result_.parts;
    } else {
      mode_ = Mode::Leaf;
    }
    defaultMessage_ = false;
    resetFields();
  }

  // Whether GMime may read a multipart in a Content-Type value: "multipart"
  // before its first ';', or after it where GMime's own parser says so
  // (a comment can hold a ';'), or anywhere in a value too long to be kept
  // whole. Not for "multipart" only in a parameter: an attachment named
  // "multipart_guide.pdf" was read as a multipart without a boundary, its
  // content counted as preface, and a walk past 1 MiB of it stopped there.
  bool mayBeMultipart(std::string_view value) const {
    const std::string v = util::toLowerAscii(value);
    const std::size_t at = v.find("multipart");
    if (at == std::string::npos) return false;
    return contentTypeCut_ || at < v.find(';') || mediaType(value).starts_with("multipart/");
  }

  // Whether `test` holds for one of the values in `lines` (one a line).
  template <class Test>
  static bool anyLine(std::string_view lines, Test test) {
    while (!lines.empty()) {
      const std::size_t nl = lines.find('\n');
      if (test(lines.substr(0, nl))) return true;
      lines.remove_prefix(nl == std::string_view::npos ? lines.size() : nl + 1);
    }
    return false;
  }

  // Whether `ct` (a Content-Type value, lowercased) names the boundary
  // parameter once and nowhere else: "boundary" appears in it once, or
  // also inside the boundary itself when that is one plain word (.NET
  // writes boundary="--boundary_0_GUID", a browser's saved page
  // "----MultipartBoundary--ID----": read as ambiguous before, such a
  // message was parsed only up to its first MiB of body).
  static bool oneBoundaryParameter(std::string_view ct, std::string_view boundary) {
    const auto count = [](std::string_view s) {
      std::size_t n = 0;
      for (std::size_t at = s.find("boundary"); at != std::string_view::npos; at = s.find("boundary", at + 1)) ++n;
      return n;
    };
    const std::size_t inValue = count(util::toLowerAscii(boundary));
    const bool word = std::all_of(boundary.begin(), boundary.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             std::string_view("_.=+-").find(c) != std::string_view::npos;
    });
    return count(ct) == 1 + inValue && (inValue == 0 || word);
  }

  // "type/subtype" as GMime reads it: comments and white space allowed
  // around the parts, anything after the subtype token ignored.
  static bool isMessageType(std::string_view v) {
    const auto skipCfws = [&] {
      for (int nest = 0; !v.empty();) {
        const char c = v.front();
        if (c == '(') {
          ++nest;
        } else if (c == ')' && nest > 0) {
          --nest;
        } else if (nest == 0 && !isLwsp(c)) {
          return;
        }
        v.remove_prefix(1);
      }
    };
    const auto token = [&] {
      std::size_t n = 0;
      while (n < v.size() && static_cast<unsigned char>(v[n]) > 0x20 && static_cast<unsigned char>(v[n]) < 0x7F &&
             std::string_view("()<>@,;:\\\"/[]?=").find(v[n]) == std::string_view::npos) {
        ++n;
      }
      const std::string t = util::toLowerAscii(v.substr(0, n));
      v.remove_prefix(n);
      return t;
    };
    skipCfws();
    if (token() != "message") return false;
    skipCfws();
    if (v.empty() || v.front() != '/') return false;
    v.remove_prefix(1);
    skipCfws();
    const std::string sub = token();
    return sub == "rfc822" || sub == "global" || sub == "news";
  }

  bool anyMessage(bool declared) const {
    if (!declared) return defaultMessage_;
    return isMessageType(contentType_) || anyLine(laterContentTypes_, isMessageType);
  }

  // GMime reads the first word of Content-Transfer-Encoding.
  bool encoded() const {
    std::string_view e = util::trim(encoding_);
    e = e.substr(0, e.find_first_of(" \t\r\n"));
    for (std::string_view name : {"base64", "quoted-printable", "uuencode", "x-uuencode", "x-uue"}) {
      if (util::iequals(e, name)) return true;
    }
    return false;
  }

  const PrescanLimits& limits_;
  Prescan result_;
  Mode mode_ = Mode::Headers;
  bool paranoid_ = false;
  bool defaultMessage_ = false;
  std::vector<Level> levels_;
  std::unordered_map<std::string, std::vector<int>> active_;  // boundary → its levels
  Field field_ = Field::None;
  std::string contentType_, laterContentTypes_, encoding_;
  int contentTypes_ = 0;
  bool contentTypeCut_ = false;
};

}  // namespace

Prescan prescan(const Spool& spool, const PrescanLimits& limits) {
  Scanner scanner(limits);
  std::vector<std::byte> buf(64 * 1024);
  std::string prefix;
  std::uint64_t lineStart = 0, lineLength = 0, offset = 0;
  bool tailIsLwsp = true;
  // A line's bytes arrive in pieces (a read ends mid-line): the first
  // kPrefix of them are kept, the rest only tested for white space.
  auto take = [&](std::string_view piece) {
    lineLength += piece.size();
    const std::size_t kept = std::min(piece.size(), kPrefix - prefix.size());
    prefix.append(piece.substr(0, kept));
    if (tailIsLwsp) tailIsLwsp = std::all_of(piece.begin() + kept, piece.end(), isLwsp);
  };
  for (std::size_t n; (n = spool.read(offset, buf)) > 0;) {
    std::string_view rest(reinterpret_cast<const char*>(buf.data()), n);
    while (!rest.empty()) {
      const std::size_t nl = rest.find('\n');
      if (nl == std::string_view::npos) {
        take(rest);
        break;
      }
      take(rest.substr(0, nl + 1));
      rest.remove_prefix(nl + 1);
      if (!scanner.line(lineStart, lineLength, prefix, tailIsLwsp)) return scanner.result();
      lineStart += lineLength;
      lineLength = 0;
      prefix.clear();
      tailIsLwsp = true;
    }
    offset += n;
  }
  if (lineLength > 0) scanner.line(lineStart, lineLength, prefix, tailIsLwsp);
  return scanner.result();
}

}  // namespace sekimori::mime
