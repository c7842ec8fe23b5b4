// milters/antivirus/active_html.cpp — see active_html.h.
#include "milters/antivirus/active_html.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "common/mime/message.h"
#include "common/mime/spool.h"
#include "common/util/strings.h"

namespace sekimori::antivirus {

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

}  // namespace

bool hasActiveHtml(std::string_view html) {
  // A bounded prefix: active content sits in the first megabytes of any
  // real page; a hostile 20 MB page is still bounded (the milter counts a
  // longer part as holding active content).
  const std::string_view head = html.substr(0, std::min(html.size(), kHtmlCheckMax));
  return !activeSpans(head, true, 0).empty();
}

namespace {

// Whether `filename` ends in one of `extensions` (after a dot, any case),
// as Windows opens it: trailing dots and spaces dropped.
bool hasExtension(std::string_view filename, std::initializer_list<std::string_view> extensions) {
  while (!filename.empty() && (filename.back() == '.' || filename.back() == ' ')) filename.remove_suffix(1);
  const std::size_t dot = filename.rfind('.');
  if (dot == std::string_view::npos) return false;
  const std::string_view ext = filename.substr(dot + 1);
  return std::any_of(extensions.begin(), extensions.end(), [&](std::string_view e) { return util::iequals(ext, e); });
}

}  // namespace

bool htmlLeaf(std::string_view contentType, std::string_view filename) {
  if (contentType == "text/html" || contentType == "application/xhtml+xml" || contentType == "image/svg+xml") {
    return true;
  }
  return hasExtension(filename, {"htm", "html", "shtml", "xht", "xhtml", "svg", "hta"});
}

bool keepHtmlText(std::string& text, std::span<const std::byte> chunk) {
  const std::size_t room = kHtmlCheckMax - std::min(kHtmlCheckMax, text.size());
  text.append(reinterpret_cast<const char*>(chunk.data()), std::min(room, chunk.size()));
  return chunk.size() <= room;
}

bool readHtmlText(mime::Content& content, std::string& text) {
  std::array<std::byte, 64 * 1024> buf{};
  for (std::size_t n; (n = content.read(buf)) > 0;) {
    if (!keepHtmlText(text, std::span(buf).first(n))) return false;
  }
  return true;
}

HtmlCheck checkHtmlText(const std::string& text, std::string_view charset, bool complete) {
  HtmlCheck c;
  c.utf8 = mime::toUtf8(text, charset);
  c.whole = complete && c.utf8.size() <= kHtmlCheckMax;
  c.active = !c.whole || hasActiveHtml(c.utf8) || (c.utf8 != text && hasActiveHtml(text));
  return c;
}

bool webArchiveLeaf(std::string_view contentType, std::string_view filename) {
  return contentType == "application/x-mimearchive" || hasExtension(filename, {"mht", "mhtml"});
}

bool webArchiveHasActiveHtml(mime::Spool& archive) {
  if (archive.failed() || archive.truncated()) return true;
  bool sawHtml = false;
  bool active = false;
  const mime::WalkResult walked = mime::walk(archive, {}, [&](const mime::PartInfo& p, mime::Content* c) {
    if (c == nullptr || !htmlLeaf(p.contentType, p.filename)) return true;
    sawHtml = true;
    std::string text;
    const bool complete = readHtmlText(*c, text);
    active = checkHtmlText(text, p.charset, complete).active;
    return !active;
  });
  if (active || walked.depthExceeded || walked.partsExceeded || walked.headersExceeded) return true;
  if (sawHtml) return false;
  if (archive.size() > kHtmlCheckMax) return true;
  std::string head(std::min<std::uint64_t>(archive.size(), kHtmlCheckMax), '\0');
  head.resize(archive.read(0, std::as_writable_bytes(std::span<char>(head))));
  return hasActiveHtml(head);
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
