// milters/antivirus/av_policy.cpp — see av_policy.h.
#include "milters/antivirus/av_policy.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <optional>

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

// `d` made a refusal (or a discard) of the whole message for what it names.
void refuseInfected(Decision& d, const Replies& replies, InfectedAction act) {
  d.infected = true;
  d.remove.clear();
  d.stripHtml = false;
  d.kind = act == InfectedAction::Discard ? Decision::Kind::Discard : Decision::Kind::Reject;
  d.reply = withName(replies.virus, d.virus);
  d.status = "infected: " + d.virus;
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

  // Inbound: removable only when every finding is an attachment inside a
  // multipart and no part failed to scan.
  bool confined = !f.parts.empty();
  std::vector<PartFinding> remove;
  for (const auto& p : f.parts) {
    if (p.result.status == Status::Error) confined = false;
    if (!isThreat(p.result, a.limitsExceeded)) continue;
    if (!p.attachment || p.path.empty()) confined = false;
    remove.push_back(p);
  }
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

struct Span {
  std::size_t begin, end;
};

// The end of the element that starts at `p` and closes with `close`
// ("</script"): past the '>' of the closing tag, or the end of `s`.
std::size_t elementEnd(const std::string& s, std::size_t p, std::string_view close) {
  const std::size_t c = s.find(close, p);
  if (c == std::string::npos) return s.size();
  const std::size_t gt = s.find('>', c);
  return gt == std::string::npos ? s.size() : gt + 1;
}

std::size_t tagEnd(const std::string& s, std::size_t p) {
  const std::size_t gt = s.find('>', p);
  return gt == std::string::npos ? s.size() : gt + 1;
}

bool isSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
// White space between HTML attributes: FORM FEED too.
bool htmlSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'; }

// An on*= event handler whose "on" is at `p`, `inTag` saying whether the
// nearest '<' before it comes after the nearest '>': its span (the name,
// '=' and the value), or nullopt.
std::optional<Span> handlerAt(const std::string& s, std::size_t p, bool inTag) {
  if (p == 0 || !inTag) return std::nullopt;
  const char before = s[p - 1];
  if (!(htmlSpace(before) || before == '/' || before == '"' || before == '\'')) return std::nullopt;
  std::size_t q = p + 2;
  const std::size_t letters = q;
  while (q < s.size() && std::isalpha(static_cast<unsigned char>(s[q]))) ++q;
  if (q - letters < 3) return std::nullopt;  // onload, onclick, onerror ...; not "on=" or "one="
  while (q < s.size() && htmlSpace(s[q])) ++q;
  if (q >= s.size() || s[q] != '=') return std::nullopt;
  // The value: quoted (to the closing quote, else to the end of the tag), or bare.
  std::size_t v = q + 1;
  while (v < s.size() && isSpace(s[v])) ++v;
  std::size_t end = v;
  if (v < s.size() && (s[v] == '"' || s[v] == '\'')) {
    const std::size_t close = s.find(s[v], v + 1);
    end = close != std::string::npos ? close + 1 : std::min(s.find('>', v), s.size());
  } else {
    // Unquoted values hold none of these (HTML), so a quote that closes
    // an enclosing attribute value stays.
    while (end < s.size() && !isSpace(s[end]) && std::strchr("\"'<>=`", s[end]) == nullptr) ++end;
  }
  return Span{p, end};
}

// The character of the reference at the start of `v` ("&#106;", "&#x6A",
// "&colon;", any case), its length in *used; nullopt when it is none of
// those. Code points past ASCII come back as 0x80, which matches nothing.
// "&#74;" is 'J': a caller comparing lowercased text lowercases it too.
std::optional<char> charRef(std::string_view v, std::size_t* used) {
  if (v.size() >= 3 && v[1] == '#') {
    const bool hex = v[2] == 'x' || v[2] == 'X';
    std::size_t i = hex ? 3 : 2;
    const std::size_t digits = i;
    unsigned long code = 0;
    for (; i < v.size(); ++i) {
      const int d = hex ? util::hexValue(v[i]) : (v[i] >= '0' && v[i] <= '9' ? v[i] - '0' : -1);
      if (d < 0) break;
      code = std::min<unsigned long>(code * (hex ? 16 : 10) + static_cast<unsigned long>(d), 0x110000);
    }
    if (i == digits) return std::nullopt;
    if (i < v.size() && v[i] == ';') ++i;  // optional for numeric references
    *used = i;
    if (code >= 0x80) return static_cast<char>(0x80);
    return static_cast<char>(code);
  }
  using Named = std::pair<std::string_view, char>;
  for (const auto& [name, c] : {Named{"&tab;", '\t'}, Named{"&newline;", '\n'}, Named{"&colon;", ':'},
                                Named{"&lt;", '<'}, Named{"&gt;", '>'}, Named{"&quot;", '"'}, Named{"&apos;", '\''},
                                Named{"&amp;", '&'}}) {
    if (util::istartsWith(v, name)) {
      *used = name.size();
      return c;
    }
  }
  return std::nullopt;
}

// The character at v[*i], a reference decoded (charRef); *i moves past it.
char decodedAt(std::string_view v, std::size_t* i) {
  std::size_t used = 1;
  char c = v[*i];
  if (c == '&') {
    if (const auto r = charRef(v.substr(*i), &used)) c = *r;
  }
  *i += used;
  return c;
}

// The first `max` characters of URL attribute value `v` as a browser reads
// it: character references decoded, TAB, LF and CR dropped, leading blanks
// and controls skipped.
std::string urlAsRead(std::string_view v, std::size_t max) {
  std::string url;
  for (std::size_t i = 0; i < v.size() && url.size() < max;) {
    const char c = decodedAt(v, &i);
    if (c == '\t' || c == '\n' || c == '\r') continue;
    if (url.empty() && static_cast<unsigned char>(c) <= 0x20) continue;
    url += c;
  }
  return url;
}

// Whether an attribute value is a javascript: or vbscript: URL.
bool scriptUrl(std::string_view v) {
  const std::string head = util::toLowerAscii(urlAsRead(v, 11));
  return head.starts_with("javascript:") || head.starts_with("vbscript:");
}

bool urlAttribute(std::string_view name) {
  // The last four: SVG <animate>/<set> give an href its value from them.
  for (const std::string_view u : {"href", "src", "action", "formaction", "data", "background", "lowsrc", "dynsrc",
                                   "poster", "codebase", "xlink:href", "values", "to", "from", "by"}) {
    if (name == u) return true;
  }
  return false;
}

// Where a URL is only ever shown as an image or played as media: a
// document there (an SVG image, say) runs no script.
bool mediaOnly(std::string_view tag, std::string_view attr) {
  if (attr == "poster" || attr == "background" || attr == "lowsrc" || attr == "dynsrc") return true;
  if (attr != "src" && attr != "href" && attr != "xlink:href") return false;
  for (const std::string_view t : {"img", "image", "input", "video", "audio", "source", "track"}) {
    if (tag == t) return true;
  }
  return false;
}

// Where the URL of a <meta http-equiv=refresh> content value starts
// ("0;url=javascript:...", "5, URL = 'vbscript:...'", "0; javascript:...":
// a delay, ';' or ',', then the URL with or without "url="); nullopt when
// there is none.
std::optional<std::size_t> refreshUrl(std::string_view content) {
  std::size_t i = 0;
  while (i < content.size() && htmlSpace(content[i])) ++i;
  const std::size_t digits = i;
  while (i < content.size() && ((content[i] >= '0' && content[i] <= '9') || content[i] == '.')) ++i;
  if (i == digits) return std::nullopt;
  i = content.find_first_of(";,", i);
  if (i == std::string_view::npos) return std::nullopt;
  const auto skipSpace = [&](std::size_t k) {
    while (k < content.size() && htmlSpace(content[k])) ++k;
    return k;
  };
  i = skipSpace(i + 1);
  if (util::istartsWith(content.substr(i), "url")) {
    const std::size_t eq = skipSpace(i + 3);
    if (eq < content.size() && content[eq] == '=') i = skipSpace(eq + 1);
  }
  if (i < content.size() && (content[i] == '\'' || content[i] == '"')) ++i;
  return i;
}

// `v` with its character references decoded as charRef() reads them (the
// HTML of an <iframe srcdoc> value).
std::string decodeCharRefs(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (std::size_t i = 0; i < v.size();) out += decodedAt(v, &i);
  return out;
}

// Elements whose content a browser reads as text up to their end tag.
bool textElement(std::string_view name) {
  for (const std::string_view t : {"style", "textarea", "title", "xmp", "iframe", "noembed", "noframes", "script"}) {
    if (name == t) return true;
  }
  return false;
}

struct Attribute {
  std::string_view tag;  // the element's name
  std::string_view name, value;
  bool hasValue;
  Span span;  // name to the end of the value
};

// Every attribute of every tag in lowercased `s`, read as an HTML5
// tokenizer reads them: a tag is '<' (or "</") and a letter; attributes are
// split by white space (FORM FEED included) or '/'; a quoted value may hold
// '>'; comments end at "-->" or "--!>"; "<!", "<?" and "</" without a letter
// open a bogus comment up to '>'; the content of <style>, <textarea> and
// the like is text. f(attribute) returns true to stop. Linear in `s`.
template <typename F>
void forEachAttribute(const std::string& s, F f) {
  const std::size_t n = s.size();
  std::size_t i = 0;
  while ((i = s.find('<', i)) != std::string::npos && i + 1 < n) {
    if (s.compare(i, 4, "<!--") == 0) {
      const std::size_t a = s.find("-->", i + 2), b = s.find("--!>", i + 2);
      if (a == std::string::npos && b == std::string::npos) return;
      i = a < b ? a + 3 : b + 4;
      continue;
    }
    const bool endTag = s[i + 1] == '/';
    std::size_t j = i + (endTag ? 2 : 1);
    if (j >= n || !std::isalpha(static_cast<unsigned char>(s[j]))) {
      if (s[i + 1] == '!' || s[i + 1] == '?' || endTag) {
        i = s.find('>', i + 1);
        if (i == std::string::npos) return;
      }
      ++i;
      continue;
    }
    const std::size_t nameBegin = j;
    while (j < n && !htmlSpace(s[j]) && s[j] != '/' && s[j] != '>') ++j;
    const std::string_view tag(s.data() + nameBegin, j - nameBegin);
    for (;;) {
      while (j < n && (htmlSpace(s[j]) || s[j] == '/')) ++j;
      if (j >= n) return;
      if (s[j] == '>') {
        ++j;
        break;
      }
      Attribute a{};
      a.tag = tag;
      const std::size_t begin = j++;
      while (j < n && !htmlSpace(s[j]) && s[j] != '/' && s[j] != '>' && s[j] != '=') ++j;
      a.name = std::string_view(s.data() + begin, j - begin);
      std::size_t k = j;
      while (k < n && htmlSpace(s[k])) ++k;
      if (k < n && s[k] == '=') {
        a.hasValue = true;
        ++k;
        while (k < n && htmlSpace(s[k])) ++k;
        if (k < n && (s[k] == '"' || s[k] == '\'')) {
          const std::size_t close = s.find(s[k], k + 1);
          const std::size_t end = close == std::string::npos ? n : close;
          a.value = std::string_view(s.data() + k + 1, end - k - 1);
          j = close == std::string::npos ? n : close + 1;
        } else {
          const std::size_t vb = k;
          while (k < n && !htmlSpace(s[k]) && s[k] != '>') ++k;
          a.value = std::string_view(s.data() + vb, k - vb);
          j = k;
        }
      }
      a.span = Span{begin, j};
      if (f(a)) return;
    }
    if (!endTag && tag == "plaintext") return;
    if (!endTag && textElement(tag)) {
      // Its end tag: "</style" and then white space, '/' or '>' ("</styles>" is text).
      const std::string close = "</" + std::string(tag);
      std::size_t c = s.find(close, j);
      for (; c != std::string::npos; c = s.find(close, c + close.size())) {
        const std::size_t after = c + close.size();
        if (after >= n || htmlSpace(s[after]) || s[after] == '/' || s[after] == '>') break;
      }
      if (c == std::string::npos) return;
      j = c;
    }
    i = j;
  }
}

// How deep documents inside documents are read: <iframe srcdoc> values
// (each level needs its own layer of escaping, "&amp;lt;script") and
// data: URLs.
constexpr int kMaxInnerDepth = 4;

std::vector<Span> activeSpans(std::string_view html, bool firstOnly, int depth);

// Whether URL `v` (an attribute value in its original case, references
// not decoded) is a data: URL of a document that runs script — HTML,
// XHTML, SVG or XML — holding active content. Read as a browser reads it:
// references decoded, TAB, LF and CR dropped, the data percent-decoded,
// then base64-decoded when the media type ends in ";base64".
bool activeDataDocument(std::string_view v, int depth) {
  if (depth >= kMaxInnerDepth || !util::iequals(urlAsRead(v, 5), "data:")) return false;
  std::string url = urlAsRead(v, std::string::npos);
  const std::size_t comma = url.find(',');
  if (comma == std::string::npos) return false;
  const std::string meta = util::toLowerAscii(std::string_view(url).substr(5, comma - 5));
  std::string_view type = util::trim(meta);
  bool base64 = false;
  if (type.ends_with("base64")) {
    std::string_view before = type.substr(0, type.size() - 6);
    while (before.ends_with(' ')) before.remove_suffix(1);
    if (before.ends_with(';')) {
      base64 = true;
      type = before.substr(0, before.size() - 1);
    }
  }
  type = util::trim(type.substr(0, type.find(';')));
  if (type != "text/html" && type != "application/xhtml+xml" && type != "image/svg+xml" && type != "text/xml" &&
      type != "application/xml") {
    return false;
  }
  std::string doc = util::percentDecode(std::string_view(url).substr(comma + 1));
  url = std::string();  // one copy of a large value at a time, at each depth
  if (base64) doc = util::decodeBase64Lenient(doc);
  return !activeSpans(doc, true, depth + 1).empty();
}

// Whether attribute `a` (`orig`: its value in the original case) is a URL
// that runs script: a script URL, or a data: document holding active
// content where one is shown as a document. "values" is a ';'-separated
// list.
bool activeUrlAttribute(const Attribute& a, std::string_view orig, int depth) {
  if (!urlAttribute(a.name)) return false;
  const bool document = !mediaOnly(a.tag, a.name);
  const auto active = [&](std::size_t from, std::size_t len) {
    return scriptUrl(a.value.substr(from, len)) || (document && activeDataDocument(orig.substr(from, len), depth));
  };
  if (a.name != "values") return active(0, std::string_view::npos);
  for (std::size_t from = 0;;) {
    const std::size_t semi = a.value.find(';', from);
    if (active(from, semi == std::string_view::npos ? semi : semi - from)) return true;
    if (semi == std::string_view::npos) return false;
    from = semi + 1;
  }
}

// The active content of `html`: every span, or the first one. It is read
// lowercased; base64 data: documents are decoded from the text as it is.
// `depth`: how many srcdoc values and data: URLs `html` is inside.
std::vector<Span> activeSpans(std::string_view html, bool firstOnly, int depth) {
  const std::string s = util::toLowerAscii(html);
  std::vector<Span> out;
  const auto add = [&](Span sp) {
    out.push_back(sp);
    return firstOnly;
  };
  // Each search goes on after the span found: an unclosed element spans
  // to the end of the text, and hostile input (a million "<script") stays
  // linear.
  for (const auto& [open, close] : {std::pair<std::string_view, std::string_view>{"<script", "</script"},
                                    {"<applet", "</applet"}}) {
    for (std::size_t p = s.find(open); p != std::string::npos;) {
      const Span sp{p, elementEnd(s, p + open.size(), close)};
      if (add(sp)) return out;
      p = s.find(open, sp.end);
    }
  }
  for (std::size_t p = s.find("<embed"); p != std::string::npos;) {
    const Span sp{p, tagEnd(s, p)};
    if (add(sp)) return out;
    p = s.find("<embed", sp.end);
  }
  for (std::size_t p = s.find("<object"); p != std::string::npos;) {
    const std::size_t end = tagEnd(s, p);
    if (s.substr(p, end - p).find("classid") == std::string::npos) {
      p = s.find("<object", end);
      continue;
    }
    // The whole element when it is closed, else the tag that names the control.
    const std::size_t close = s.find("</object", end);
    const Span sp{p, close == std::string::npos ? end : elementEnd(s, close, "</object")};
    if (add(sp)) return out;
    p = s.find("<object", sp.end);
  }
  // Handlers: where the last '<' and '>' were is carried forward, not
  // searched backwards from each "on".
  std::size_t seen = 0;
  bool inTag = false;
  for (std::size_t p = s.find("on"); p != std::string::npos;) {
    for (; seen < p; ++seen) {
      if (s[seen] == '<') inTag = true;
      if (s[seen] == '>') inTag = false;
    }
    const auto h = handlerAt(s, p, inTag);
    if (h && add(*h)) return out;
    p = s.find("on", h ? std::max(h->end, p + 2) : p + 2);
  }
  // The same handlers, and script URLs, with tags read as a browser reads
  // them (the pass above misses a handler after a quoted '>').
  bool stop = false;
  forEachAttribute(s, [&](const Attribute& a) {
    if (!a.hasValue) return false;
    const std::string_view origValue = html.substr(static_cast<std::size_t>(a.value.data() - s.data()), a.value.size());
    // onload, onclick, onmouseover ...: letters only ("one-time=" is none).
    const bool handler = a.name.size() >= 5 && a.name.starts_with("on") &&
                         std::all_of(a.name.begin() + 2, a.name.end(), [](char c) { return c >= 'a' && c <= 'z'; });
    const auto refresh = [&] {
      const auto at = refreshUrl(a.value);
      return at && (scriptUrl(a.value.substr(*at)) || activeDataDocument(origValue.substr(*at), depth));
    };
    const bool active = handler || activeUrlAttribute(a, origValue, depth) || (a.name == "content" && refresh()) ||
                        // The value is a document of its own (HTML-escaped) that the frame shows.
                        (a.name == "srcdoc" && depth < kMaxInnerDepth &&
                         !activeSpans(decodeCharRefs(origValue), true, depth + 1).empty());
    if (active) stop = add(a.span);
    return stop;
  });
  return out;
}

constexpr std::size_t kSniffTail = 64;  // bytes MediaTypeSniffer keeps between chunks

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

bool hasActiveHtml(std::string_view html) {
  // A bounded prefix: active content sits in the first megabytes of any
  // real page; a hostile 20 MB page is still bounded (the milter counts a
  // longer part as holding active content).
  const std::string_view head = html.substr(0, std::min(html.size(), kHtmlCheckMax));
  return !activeSpans(head, true, 0).empty();
}

bool htmlLeaf(std::string_view contentType, std::string_view filename) {
  if (contentType == "text/html" || contentType == "application/xhtml+xml" || contentType == "image/svg+xml") {
    return true;
  }
  // Windows drops trailing dots and spaces from a name it opens.
  while (!filename.empty() && (filename.back() == '.' || filename.back() == ' ')) filename.remove_suffix(1);
  const std::size_t dot = filename.rfind('.');
  if (dot == std::string_view::npos) return false;
  const std::string_view ext = filename.substr(dot + 1);
  for (const std::string_view e : {"htm", "html", "shtml", "xht", "xhtml", "svg", "hta"}) {
    if (util::iequals(ext, e)) return true;
  }
  return false;
}

std::optional<std::string> stripActiveHtml(std::string_view html) {
  std::string s(html);
  for (int pass = 0; pass < 16; ++pass) {
    std::vector<Span> spans = activeSpans(s, false, 0);
    if (spans.empty()) return s;
    std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
    std::string out;
    out.reserve(s.size());
    std::size_t at = 0;
    for (const Span& sp : spans) {
      if (sp.begin > at) out.append(s, at, sp.begin - at);
      at = std::max(at, sp.end);
    }
    if (at < s.size()) out.append(s, at, std::string::npos);
    s = std::move(out);
  }
  return std::nullopt;
}

}  // namespace sekimori::antivirus
