// milters/antivirus/av_policy.cpp — see av_policy.h.
#include "milters/antivirus/av_policy.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <optional>

#include "common/mime/message.h"
#include "common/util/strings.h"

namespace sekimori::antivirus {

namespace {

using Status = ScanResult::Status;

void addName(std::string& names, const std::string& n) {
  if (n.empty() || names.find(n) != std::string::npos) return;
  if (!names.empty()) names += ", ";
  names += n;
}

policy::Reply withName(policy::Reply r, const std::string& name) {
  // Reply text must stay printable ASCII (signature names are); bounded.
  std::string n;
  for (const char c : name.substr(0, 200)) n += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (!n.empty()) r.text += " " + n;
  return r;
}

Decision threat(const ActionConfig& a, const Replies& replies, policy::Direction dir, const Findings& f,
                std::string names) {
  Decision d;
  d.infected = true;
  d.virus = names;
  const auto reject = [&](InfectedAction act) {
    refuseInfected(d, replies, act);
    return d;
  };
  if (dir != policy::Direction::Inbound) return reject(a.outboundInfected);

  // Inbound: removable only when every finding is in something that can go
  // (an attachment, an attached message holding it) and no part failed to
  // scan.
  bool confined = !f.parts.empty();
  std::vector<PartFinding> remove;
  for (const auto& p : f.parts) {
    if (p.result.status == Status::Error) confined = false;
    if (!isThreat(p.result, a.limitsExceeded)) continue;
    if (!p.attachment || p.path.empty()) confined = false;
    // Two found in one attached message: it is removed once, for both.
    const auto same =
        std::find_if(remove.begin(), remove.end(), [&](const PartFinding& r) { return r.path == p.path; });
    if (same == remove.end()) {
      remove.push_back(p);
      continue;
    }
    addName(same->result.name, p.result.name);
    same->inside.insert(same->inside.end(), p.inside.begin(), p.inside.end());
    same->text = same->text || p.text;
  }
  // One to go inside another (an attachment of an attached message that
  // goes whole for its text): the outermost holding it names it instead.
  std::vector<bool> folded(remove.size(), false);
  for (std::size_t i = 0; i < remove.size(); ++i) {
    PartFinding* outer = nullptr;
    for (auto& o : remove) {
      if (mime::isInside(o.path, remove[i].path) && (outer == nullptr || o.path.size() < outer->path.size())) {
        outer = &o;
      }
    }
    if (outer == nullptr) continue;
    folded[i] = true;
    addName(outer->result.name, remove[i].result.name);
    outer->inside.push_back(listedName(remove[i]));
  }
  std::vector<PartFinding> kept;
  for (std::size_t i = 0; i < remove.size(); ++i) {
    if (!folded[i]) kept.push_back(std::move(remove[i]));
  }
  remove = std::move(kept);
  if (remove.empty()) confined = false;  // the whole message is infected, no part alone is
  if (!confined) return reject(a.inboundBody);
  if (a.inboundAttachment == AttachmentAction::Reject) return reject(InfectedAction::Reject);
  d.kind = Decision::Kind::RemoveParts;
  d.remove = std::move(remove);
  d.status = "removed: " + names;
  return d;
}

// Active HTML on top of what `d` already says: named, marked in the status,
// and stripped or refused as html_script_action says.
void applyHtmlAction(Decision& d, const ActionConfig& a, const Replies& replies) {
  addName(d.virus, "Heuristics.HTML.Script");
  const bool strip = a.htmlScript == HtmlScriptAction::Strip;
  d.status += strip ? "; stripped: Heuristics.HTML.Script" : "; suspicious: Heuristics.HTML.Script";
  d.stripHtml = strip;
  if (a.htmlScript == HtmlScriptAction::Reject) {
    d.kind = Decision::Kind::Reject;
    d.reply = replies.htmlScript;
  }
}

// What could not be scanned in `r` (a limit under limits_exceeded_action
// deliver or reject, encryption, a container not unpacked, a failed scan
// under scan_failure_action = accept): the status it gives, and the refusal
// its action asks for, if any. nullopt: none of these.
struct Unscannable {
  std::string status;
  bool refuse = false;
  policy::Reply reply;
};

std::optional<Unscannable> unscannable(const ActionConfig& a, const Replies& replies, const ScanResult& r) {
  switch (r.status) {
    case Status::LimitsExceeded:
      if (a.limitsExceeded == LimitsAction::Infected) return std::nullopt;  // a threat, not a mark
      return Unscannable{"unscanned: limits exceeded", a.limitsExceeded == LimitsAction::Reject,
                         withName(replies.virus, r.name)};
    case Status::Encrypted:
      return Unscannable{"unscanned: encrypted", a.encrypted == UnscannableAction::Reject, replies.encrypted};
    case Status::Unscanned:
      return Unscannable{"unscanned: " + r.name + " not unpacked", a.unscanned == UnscannableAction::Reject,
                         withName(replies.unscanned, r.name)};
    case Status::Error:  // under scan_failure_action = accept (tempfail never gets this far)
      return Unscannable{"unscanned: scan failed", false, {}};
    default:
      return std::nullopt;
  }
}

}  // namespace

void refuseInfected(Decision& d, const Replies& replies, InfectedAction act) {
  d.infected = true;
  d.remove.clear();
  d.stripHtml = false;
  d.kind = act == InfectedAction::Discard ? Decision::Kind::Discard : Decision::Kind::Reject;
  d.reply = withName(replies.virus, d.virus);
  d.status = "infected: " + d.virus;
}

std::string shownName(const std::string& filename, const std::string& type) {
  if (!filename.empty()) return util::displayText(filename, 200);
  return type.empty() ? "(no name)" : "(no name, " + type + ")";
}

std::string shownName(const PartFinding& p) {
  if (p.message && p.filename.empty() && !p.subject.empty()) return "(no name, subject: " + p.subject + ")";
  return shownName(p.filename, p.type);
}

std::string listedName(const PartFinding& p) {
  return shownName(p) + (p.inside.empty() ? "" : " (" + quoted(p.inside, "", "", ", ") + ")");
}

std::string quoted(const std::vector<std::string>& names, std::string_view open, std::string_view close,
                   std::string_view separator) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += separator;
    out.append(open).append(n).append(close);
  }
  return out;
}

void refuseUnstrippable(Decision& d, const Replies& replies) {
  d.kind = Decision::Kind::Reject;
  d.reply = replies.htmlScript;
  d.remove.clear();
  d.stripHtml = false;
  constexpr std::string_view kStripped = "stripped: Heuristics.HTML.Script";
  if (const auto at = d.status.find(kStripped); at != std::string::npos) {
    d.status.replace(at, kStripped.size(), "suspicious: Heuristics.HTML.Script");
  }
}

void refuseWhole(Decision& d, const ActionConfig& a, const Replies& replies, const std::string& leftover) {
  addName(d.virus, leftover);
  refuseInfected(d, replies, a.inboundBody);
}

bool isThreat(const ScanResult& r, LimitsAction limits) {
  return r.status == Status::Infected || (r.status == Status::LimitsExceeded && limits == LimitsAction::Infected);
}

Decision decide(const ActionConfig& a, const Replies& replies, policy::Direction dir, const Findings& f) {
  Decision d;
  if (f.whole.status == Status::Error) {
    if (a.scanFailure == FailureAction::Accept) {
      d.status = "unscanned: scan failed";
      return d;
    }
    d.kind = Decision::Kind::Tempfail;
    d.reply = replies.failure;
    d.status = "unscanned: scan failed";
    return d;
  }

  std::string names;
  bool anyThreat = isThreat(f.whole, a.limitsExceeded);
  for (const auto& p : f.parts) {
    if (isThreat(p.result, a.limitsExceeded)) {
      anyThreat = true;
      addName(names, p.result.name);
    }
  }
  if (anyThreat) {
    if (names.empty()) addName(names, f.whole.name);
    Decision d = threat(a, replies, dir, f, names);
    // Delivered with the infected parts cut out: the HTML action applies
    // to the rest as to any mail.
    if (d.kind == Decision::Kind::RemoveParts && f.htmlScript) {
      applyHtmlAction(d, a, replies);
      if (d.kind == Decision::Kind::Reject) refuseInfected(d, replies, InfectedAction::Reject);
    }
    return d;
  }

  // What could not be scanned refuses, or marks; active HTML comes on top
  // of a mark (a message can be both unscanned and scripted).
  d.status = "clean";
  if (const auto u = unscannable(a, replies, f.whole)) {
    d.status = u->status;
    if (f.whole.status == Status::Encrypted) d.virus = f.whole.name;
    if (u->refuse) {
      d.kind = Decision::Kind::Reject;
      d.reply = u->reply;
      return d;
    }
  }
  if (f.htmlScript) applyHtmlAction(d, a, replies);
  return d;
}

void markLeftover(Decision& d, const ActionConfig& a, const Replies& replies, const ScanResult& leftover) {
  const auto u = unscannable(a, replies, leftover);
  if (!u) return;
  if (u->refuse) {
    addName(d.virus, leftover.name);
    refuseInfected(d, replies, InfectedAction::Reject);
    return;
  }
  // After "removed: NAMES", before what the HTML action added.
  const std::size_t at = std::min(d.status.find("; "), d.status.size());
  d.status.insert(at, "; " + u->status);
}

namespace {
constexpr std::size_t kSniffTail = 64;  // bytes MediaTypeSniffer keeps between chunks

// White space in a header line.
bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Bytes GMime's parser leaves out of a part's header line: a lone CR, and
// 8-bit bytes it may drop in decoding ("text/ht\x80ml" is text/html to
// it). The sniffer reads past them, so it says yes where GMime would.
bool droppedByParser(char c) { return c == '\r' || static_cast<unsigned char>(c) >= 0x80; }

bool iequalChar(char a, char b) {
  return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
}

}  // namespace

namespace {

// A type and the subtypes of it MediaTypeSniffer looks for (none: any).
struct SniffRule {
  std::string_view type;
  std::array<std::string_view, 3> subtypes;
};
constexpr std::array<SniffRule, 3> kSniffRules{{
    {"message", {}},
    {"multipart", {"encrypted"}},
    {"application", {"pkcs7-mime", "x-pkcs7-mime", "pgp-encrypted"}},
}};

// The ASCII letters and digits no type in kSniffRules ends with.
constexpr std::array<bool, 256> kEndsNoSniffedType = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  for (const SniffRule& r : kSniffRules) {
    const auto last = static_cast<unsigned char>(r.type.back());  // lower case
    t[last] = t[last - 'a' + 'A'] = false;
  }
  return t;
}();
bool endsNoSniffedType(char c) { return kEndsNoSniffedType[static_cast<unsigned char>(c)]; }

}  // namespace

// The bytes after a '/' whose type side matched rule a.rule, from where `a`
// left off: Yes at a whole subtype (or a comment), No at a byte none of the
// rule's subtypes can go on with, Open at the end of `bytes`.
MediaTypeSniffer::Match MediaTypeSniffer::afterSlash(std::string_view bytes, After& a) {
  const auto& subtypes = kSniffRules[static_cast<std::size_t>(a.rule)].subtypes;
  for (const char c : bytes) {
    if (droppedByParser(c)) continue;
    if (a.pos == 0) {
      if (isSpace(c)) continue;
      if (c == '(') return Match::Yes;
    }
    unsigned alive = 0;
    for (std::size_t i = 0; i < subtypes.size(); ++i) {
      const std::string_view w = subtypes[i];
      if ((a.alive >> i & 1u) == 0 || a.pos >= w.size() || !iequalChar(c, w[a.pos])) continue;
      if (a.pos + 1 == w.size()) return Match::Yes;
      alive |= 1u << i;
    }
    if (alive == 0) return Match::No;
    a.alive = alive;
    ++a.pos;
  }
  return Match::Open;
}

void MediaTypeSniffer::feed(std::string_view chunk) {
  if (seen_) return;
  // The '/' at the end of the last chunk, its subtype cut off.
  if (pending_.rule >= 0) {
    const Match m = afterSlash(chunk, pending_);
    if (m == Match::Yes) seen_ = true;
    if (m != Match::Open) pending_ = {};
  }
  // Byte i of the window: the kept tail, then this chunk (i < 0: tail).
  const auto tailSize = static_cast<std::ptrdiff_t>(tail_.size());
  const auto at = [&](std::ptrdiff_t i) {
    return i < 0 ? tail_[static_cast<std::size_t>(tailSize + i)] : chunk[static_cast<std::size_t>(i)];
  };
  // `word` (any case, a whole MIME token) before the '/' at j, past white
  // space: Is; or Unsure: a comment there, or running off what is kept
  // before the word is complete (a very long run of white space; at the
  // start of the stream that is No).
  enum class Before { No, Is, Unsure };
  const auto before = [&](std::ptrdiff_t j, std::string_view word) {
    std::ptrdiff_t k = j - 1;
    while (k >= -tailSize && (isSpace(at(k)) || droppedByParser(at(k)))) --k;
    const auto n = static_cast<std::ptrdiff_t>(word.size());
    for (std::ptrdiff_t i = 0; i < n; ++i, --k) {
      while (k >= -tailSize && droppedByParser(at(k))) --k;
      if (k < -tailSize) return atStart_ ? Before::No : Before::Unsure;
      if (i == 0 && at(k) == ')') return Before::Unsure;
      if (!iequalChar(at(k), word[static_cast<std::size_t>(n - 1 - i)])) return Before::No;
    }
    while (k >= -tailSize && droppedByParser(at(k))) --k;
    if (k < -tailSize) return Before::Is;  // the word starts the stream, or what came before is not kept
    const auto c = static_cast<unsigned char>(at(k));
    const bool token = std::isalnum(c) || (c != 0 && std::strchr("!#$%&'*+-.^_`{|}~", c) != nullptr);
    return token ? Before::No : Before::Is;  // not "xmessage/"
  };
  // '/' is rare in what most bodies are made of (base64 has one in 64);
  // memchr finds it fast.
  for (const char* p = chunk.data();
       !seen_ && (p = static_cast<const char*>(std::memchr(p, '/', chunk.data() + chunk.size() - p))); ++p) {
    const std::ptrdiff_t j = p - chunk.data();
    // Most are base64 letters: a letter or digit before the '/' that no
    // type looked for ends with rules them all out (before() says No).
    if (j - 1 >= -tailSize && endsNoSniffedType(at(j - 1))) continue;
    for (std::size_t r = 0; !seen_ && r < kSniffRules.size(); ++r) {
      const SniffRule& rule = kSniffRules[r];
      const Before b = before(j, rule.type);
      if (b == Before::No) continue;
      // A type of any subtype (an attached message of any kind: it may
      // hold encrypted mail, also base64-encoded, where no type shows).
      if (b == Before::Unsure || rule.subtypes[0].empty()) {
        seen_ = true;
        continue;
      }
      // The token before the '/' is this rule's type and no other's.
      After a{static_cast<int>(r), (1u << rule.subtypes.size()) - 1, 0};
      const Match m = afterSlash(chunk.substr(static_cast<std::size_t>(j) + 1), a);
      if (m == Match::Yes) seen_ = true;
      if (m == Match::Open) pending_ = a;  // cut off by the end of the chunk: no later '/' in it
    }
  }
  if (chunk.size() >= kSniffTail) {
    tail_.assign(chunk.substr(chunk.size() - kSniffTail));
    atStart_ = false;
  } else {
    tail_.append(chunk);
    if (tail_.size() > kSniffTail) {
      tail_.erase(0, tail_.size() - kSniffTail);
      atStart_ = false;
    }
  }
}

namespace {

// glibc's memmem (two-way, with a shift table for short needles) runs
// several times faster over a body than string_view::find, which restarts
// at every occurrence of the needle's first byte.
bool contains(std::string_view hay, std::string_view needle) {
  return memmem(hay.data(), hay.size(), needle.data(), needle.size()) != nullptr;
}

// The letters `needle` becomes in base64 when it starts `shift` bytes (0-2)
// into a group of three: those no byte before or after it changes.
std::string base64Core(std::string_view needle, std::size_t shift) {
  const std::string encoded = util::encodeBase64(std::string(shift, '\0') + std::string(needle) + "\0\0");
  const std::size_t first = (8 * shift + 5) / 6;       // the first letter of only needle bits
  const std::size_t end = 8 * (shift + needle.size()) / 6;  // past the last one
  return encoded.substr(first, end - first);
}

// What GMime's base64 decoder does with a byte: skips it (0), or reads it
// (a letter, or the '=' that ends the data).
constexpr std::array<unsigned char, 256> kBase64Read = [] {
  std::array<unsigned char, 256> t{};
  for (const char c : std::string_view("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")) {
    t[static_cast<unsigned char>(c)] = 1;
  }
  return t;
}();

// Whether the 16 bytes at `p` are all read by that decoder: most of a
// base64 body is, 16 at a time (GCC's vector extension: SSE2 or NEON
// compares where the target has them, plain code elsewhere).
bool allBase64Read(const char* p) {
  using Bytes16 = unsigned char __attribute__((vector_size(16)));
  Bytes16 v;
  std::memcpy(&v, p, sizeof v);
  const auto read = ((v >= 'A') & (v <= 'Z')) | ((v >= 'a') & (v <= 'z')) | ((v >= '0') & (v <= '9')) |
                  (v == '+') | (v == '/') | (v == '=');
  std::uint64_t half[2];
  std::memcpy(half, &read, sizeof half);
  return (half[0] & half[1]) == ~std::uint64_t{0};
}

}  // namespace

void StreamFind::feed(std::string_view chunk) {
  if (found_ || needle_.empty() || chunk.empty()) return;
  // Across the last chunk's end: its kept tail and this chunk's head.
  const std::size_t keep = needle_.size() - 1;
  if (!tail_.empty()) {
    const std::string seam = tail_ + std::string(chunk.substr(0, keep));
    if (contains(seam, needle_)) return void(found_ = true);
  }
  if (contains(chunk, needle_)) return void(found_ = true);
  if (chunk.size() >= keep) {
    tail_.assign(chunk.substr(chunk.size() - keep));
  } else {
    tail_.append(chunk);
    if (tail_.size() > keep) tail_.erase(0, tail_.size() - keep);
  }
}

EncodedFind::EncodedFind(std::string_view needle)
    : qp_(std::string(needle)),
      base64_{StreamFind(base64Core(needle, 0)), StreamFind(base64Core(needle, 1)),
              StreamFind(base64Core(needle, 2))} {}

bool EncodedFind::found() const {
  return qp_.found() || std::any_of(base64_.begin(), base64_.end(), [](const StreamFind& f) { return f.found(); });
}

void EncodedFind::feed(std::string_view chunk) {
  if (found() || chunk.empty()) return;
  feedQuotedPrintable(chunk);
  feedBase64(chunk);
}

void EncodedFind::feedQuotedPrintable(std::string_view chunk) {
  // '=' is rare outside quoted-printable text: a chunk without one (and no
  // escape cut off before it) is fed as it is.
  const char* eq = static_cast<const char*>(std::memchr(chunk.data(), '=', chunk.size()));
  if (qpHeld_ == 0 && eq == nullptr) return qp_.feed(chunk);
  // '=' then c1, c2: a byte when both are hex digits, a soft line break
  // when they are CR LF, else the three as they are.
  const auto escape = [this](char c1, char c2) {
    if (c1 == '\r' && c2 == '\n') return;
    const int hi = util::hexValue(c1), lo = util::hexValue(c2);
    if (hi >= 0 && lo >= 0) return void(decoded_ += static_cast<char>(hi << 4 | lo));
    decoded_ += '=';
    decoded_ += c1;
    decoded_ += c2;
  };
  decoded_.clear();
  std::size_t i = 0;
  for (; qpHeld_ > 0 && i < chunk.size(); ++i) {  // the escape the last chunk's end cut off
    if (qpHeld_ == 1 && chunk[i] == '\n') {        // "=\n": a soft line break
      qpHeld_ = 0;
    } else if (qpHeld_ == 1) {
      qpFirst_ = chunk[i];
      qpHeld_ = 2;
    } else {
      escape(qpFirst_, chunk[i]);
      qpHeld_ = 0;
    }
  }
  while (i < chunk.size()) {
    eq = static_cast<const char*>(std::memchr(chunk.data() + i, '=', chunk.size() - i));
    const std::size_t at = eq ? static_cast<std::size_t>(eq - chunk.data()) : chunk.size();
    decoded_.append(chunk, i, at - i);
    if (at == chunk.size()) break;
    const std::size_t left = chunk.size() - at - 1;
    if (left >= 1 && chunk[at + 1] == '\n') {
      i = at + 2;
    } else if (left >= 2) {
      escape(chunk[at + 1], chunk[at + 2]);
      i = at + 3;
    } else {  // cut off by the chunk's end
      qpHeld_ = static_cast<int>(left) + 1;
      if (left == 1) qpFirst_ = chunk[at + 1];
      break;
    }
  }
  qp_.feed(decoded_);
}

void EncodedFind::feedBase64(std::string_view chunk) {
  // The letters (and '=') only, as the decoder reads them, 16 bytes at a
  // time where all are; at which of three byte offsets the needle is in
  // the decoded data is not known: each has its letters.
  decoded_.resize(chunk.size());
  std::size_t n = 0, i = 0;
  const auto keepRead = [&](std::size_t from, std::size_t to) {
    for (std::size_t k = from; k < to; ++k) {
      decoded_[n] = chunk[k];
      n += kBase64Read[static_cast<unsigned char>(chunk[k])];
    }
  };
  for (; i + 16 <= chunk.size(); i += 16) {
    if (allBase64Read(chunk.data() + i)) {
      std::memcpy(decoded_.data() + n, chunk.data() + i, 16);
      n += 16;
    } else {
      keepRead(i, i + 16);
    }
  }
  keepRead(i, chunk.size());
  for (StreamFind& f : base64_) f.feed(std::string_view(decoded_.data(), n));
}

}  // namespace sekimori::antivirus
