// common/mime/text.cpp — see text.h.
#include "common/mime/text.h"

#include <iconv.h>

#include <cerrno>
#include <map>
#include <utility>

#include "common/util/strings.h"

namespace sekimori::mime {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// One iconv descriptor, closed once.
class Iconv {
 public:
  Iconv(const char* to, const char* from) : cd_(::iconv_open(to, from)) {}
  ~Iconv() {
    if (ok()) ::iconv_close(cd_);
  }
  Iconv(const Iconv&) = delete;
  Iconv& operator=(const Iconv&) = delete;
  bool ok() const { return cd_ != reinterpret_cast<iconv_t>(-1); }
  iconv_t get() const { return cd_; }

 private:
  iconv_t cd_;
};

// `in` from iconv charset `from` to UTF-8. Strict: nullopt on the first
// byte that does not convert. Otherwise such a byte becomes U+FFFD and the
// conversion goes on. nullopt as well when iconv does not know `from`.
std::optional<std::string> convert(std::string_view in, const char* from, bool strict) {
  Iconv cd("UTF-8", from);
  if (!cd.ok()) return std::nullopt;
  std::string out;
  out.reserve(in.size() * 3 / 2 + 16);
  char buf[4096];
  char* inp = const_cast<char*>(in.data());  // iconv's prototype; never written
  std::size_t inleft = in.size();
  while (inleft > 0) {
    char* outp = buf;
    std::size_t outleft = sizeof buf;
    const std::size_t rc = ::iconv(cd.get(), &inp, &inleft, &outp, &outleft);
    const int err = errno;
    out.append(buf, static_cast<std::size_t>(outp - buf));
    if (rc != static_cast<std::size_t>(-1) || err == E2BIG) continue;
    if (strict) return std::nullopt;
    out += kReplacement;
    if (err == EINVAL) break;  // incomplete sequence at the end
    ++inp;                     // EILSEQ: skip one byte and resynchronise
    --inleft;
  }
  // A stateful decoder may still hold output.
  char* outp = buf;
  std::size_t outleft = sizeof buf;
  ::iconv(cd.get(), nullptr, nullptr, &outp, &outleft);
  out.append(buf, static_cast<std::size_t>(outp - buf));
  return out;
}

std::string convertReplacing(std::string_view in, const char* from) {
  auto r = convert(in, from, false);
  return r ? std::move(*r) : std::string();
}

bool hasJisEscape(std::string_view s) {
  for (std::string_view esc : {"\x1b$B", "\x1b$@", "\x1b(J", "\x1b(I", "\x1b$(D", "\x1b$(Q", "\x1b$(O"}) {
    if (s.find(esc) != std::string_view::npos) return true;
  }
  return false;
}

// ISO-2022-JP the way mailers write it (CP50220/CP50221 in Microsoft's
// terms): each JIS X 0208 pair is rewritten as its Shift_JIS pair and runs
// of those go through CP932, which knows NEC row 13 and the IBM rows that
// strict ISO-2022-JP converters refuse. Half-width katakana (ESC ( I or
// SO/SI) ride along as single Shift_JIS bytes. JIS X 0212 and the other
// ISO-2022-JP-2 sets have no CP932 mapping: each character is U+FFFD.
std::string decodeIso2022jp(std::string_view in) {
  enum class Set { Ascii, Kana, Kanji, Unsupported };
  std::string out;
  std::string run;  // pending Shift_JIS bytes
  const auto flush = [&] {
    if (!run.empty()) {
      out += convertReplacing(run, "CP932");
      run.clear();
    }
  };
  const auto at = [&](std::size_t k) { return k < in.size() ? static_cast<unsigned char>(in[k]) : 0u; };
  Set set = Set::Ascii;
  bool shiftOut = false;
  for (std::size_t i = 0; i < in.size(); ++i) {
    const unsigned char c = at(i);
    if (c == 0x1B) {
      const std::string_view rest = in.substr(i + 1);
      struct Esc {
        std::string_view seq;
        Set set;
      };
      static constexpr Esc kEscapes[] = {
          {"(B", Set::Ascii},       {"(J", Set::Ascii},       {"(H", Set::Ascii},  {"(I", Set::Kana},
          {"$@", Set::Kanji},       {"$B", Set::Kanji},       {"$(B", Set::Kanji}, {"$(O", Set::Kanji},
          {"$(Q", Set::Kanji},      {"$(D", Set::Unsupported}, {"$(P", Set::Unsupported},
          {"$A", Set::Unsupported}, {"$(C", Set::Unsupported},
      };
      bool known = false;
      for (const Esc& e : kEscapes) {
        if (rest.starts_with(e.seq)) {
          set = e.set;
          i += e.seq.size();
          known = true;
          break;
        }
      }
      if (!known) {
        // G2 designations (ESC . A) carry nothing we can show; skip them.
        if (rest.size() >= 2 && rest[0] == '.') {
          i += 2;
        } else {
          flush();
          out += kReplacement;
        }
      }
      continue;
    }
    if (c == 0x0E || c == 0x0F) {
      shiftOut = c == 0x0E;
      continue;
    }
    if (c >= 0x80) {
      // Not 7-bit at all; 8-bit half-width katakana is a known variant.
      if (c >= 0xA1 && c <= 0xDF) {
        run += static_cast<char>(c);
      } else {
        flush();
        out += kReplacement;
      }
      continue;
    }
    if (c < 0x21 || c == 0x7F) {  // controls and space pass in any set
      flush();
      out += static_cast<char>(c);
      continue;
    }
    if (shiftOut || set == Set::Kana) {
      if (c <= 0x5F) {
        run += static_cast<char>(c + 0x80);
      } else {
        flush();
        out += kReplacement;
      }
      continue;
    }
    if (set == Set::Kanji || set == Set::Unsupported) {
      const unsigned char c2 = at(i + 1);
      if (c2 < 0x21 || c2 > 0x7E) {
        flush();
        out += kReplacement;
        continue;
      }
      ++i;
      if (set == Set::Unsupported) {
        flush();
        out += kReplacement;
        continue;
      }
      unsigned s1 = ((c + 1u) >> 1) + 0x70u;
      if (s1 >= 0xA0) s1 += 0x40;
      unsigned s2;
      if (c & 1u) {
        s2 = c2 + 0x1Fu;
        if (s2 >= 0x7F) ++s2;
      } else {
        s2 = c2 + 0x7Eu;
      }
      run += static_cast<char>(s1);
      run += static_cast<char>(s2);
      continue;
    }
    flush();
    out += static_cast<char>(c);
  }
  flush();
  return out;
}

// Text whose charset nobody declared (or declared as us-ascii).
std::string guessToUtf8(std::string_view in) {
  if (hasJisEscape(in)) return decodeIso2022jp(in);
  if (util::isValidUtf8(in)) return std::string(in);
  // EUC-JP first: its bytes are all >= 0xA1, which Shift_JIS text almost
  // never is, while EUC-JP text often "converts" as CP932 half-width kana.
  if (auto r = convert(in, "EUC-JP-MS", true)) return std::move(*r);
  if (auto r = convert(in, "CP932", true)) return std::move(*r);
  return convertReplacing(in, "WINDOWS-1252");
}

enum class Family { Unknown, Utf8, Jis, Sjis, EucJp, Latin1, Other };

Family classify(std::string_view cs) {
  if (cs.empty() || cs == "us-ascii" || cs == "ascii" || cs == "us_ascii" || cs == "ansi_x3.4-1968" ||
      cs == "unknown-8bit" || cs == "x-unknown" || cs == "unknown") {
    return Family::Unknown;
  }
  if (cs == "utf-8" || cs == "utf8") return Family::Utf8;
  if (cs.starts_with("iso-2022-jp") || cs.starts_with("iso2022jp") || cs == "csiso2022jp" || cs == "jis" ||
      cs == "x-jis" || cs == "cp50220" || cs == "cp50221" || cs == "cp50222") {
    return Family::Jis;
  }
  if (cs == "shift_jis" || cs == "shift-jis" || cs == "sjis" || cs == "x-sjis" || cs == "ms_kanji" ||
      cs == "csshiftjis" || cs == "windows-31j" || cs == "cswindows31j" || cs == "cp932" || cs == "ms932" ||
      cs == "x-ms-cp932" || cs == "ibm-943" || cs == "shift_jisx0213") {
    return Family::Sjis;
  }
  if (cs == "euc-jp" || cs == "eucjp" || cs == "x-euc-jp" || cs == "x-euc" || cs == "ujis" ||
      cs == "cseucpkdfmtjapanese" || cs == "euc-jp-ms" || cs == "eucjp-ms" || cs == "euc-jisx0213") {
    return Family::EucJp;
  }
  if (cs == "iso-8859-1" || cs == "iso8859-1" || cs == "latin1" || cs == "l1" || cs == "windows-1252" ||
      cs == "cp1252") {
    return Family::Latin1;
  }
  return Family::Other;
}

std::string unfold(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c != '\r' && c != '\n') out += c;
  }
  return out;
}

std::string decodeQ(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '_') {
      out += ' ';
    } else if (s[i] == '=' && i + 2 < s.size() && util::hexValue(s[i + 1]) >= 0 && util::hexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(util::hexValue(s[i + 1]) * 16 + util::hexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

struct EncodedWord {
  std::size_t begin = 0, end = 0;  // [begin, end) in the input, "=?" .. "?="
  std::string charset;
  std::string bytes;  // decoded, still in `charset`
};

// An encoded word "=?charset?B|Q?text?=" starting at `pos`, or nullopt.
// The text may not contain white space: a lone "=?" in ordinary text then
// never swallows what follows. Words are looked for within a bounded
// distance (RFC 2047 says 75 characters; mailers write longer ones, not
// this long), so a header full of "=?" costs linear time.
constexpr std::size_t kMaxCharsetName = 80;
constexpr std::size_t kMaxEncodedText = 4096;

std::optional<EncodedWord> encodedWordAt(std::string_view s, std::size_t pos) {
  if (s.substr(pos, 2) != "=?") return std::nullopt;
  const std::size_t q = s.substr(pos + 2, kMaxCharsetName).find('?');
  if (q == std::string_view::npos || q == 0) return std::nullopt;
  const std::size_t q1 = pos + 2 + q;
  const std::string_view charset = s.substr(pos + 2, q1 - pos - 2);
  for (char c : charset) {
    if (c == ' ' || c == '\t' || c == '=') return std::nullopt;
  }
  if (q1 + 2 >= s.size() || s[q1 + 2] != '?') return std::nullopt;
  const char enc = s[q1 + 1];
  if (enc != 'B' && enc != 'b' && enc != 'Q' && enc != 'q') return std::nullopt;
  const std::size_t textBegin = q1 + 3;
  const std::size_t rel = s.substr(textBegin, kMaxEncodedText).find("?=");
  if (rel == std::string_view::npos) return std::nullopt;
  const std::size_t close = textBegin + rel;
  const std::string_view text = s.substr(textBegin, rel);
  if (text.find_first_of(" \t") != std::string_view::npos) return std::nullopt;
  EncodedWord w;
  w.begin = pos;
  w.end = close + 2;
  w.charset = std::string(charset);
  w.bytes = (enc == 'B' || enc == 'b') ? util::decodeBase64Lenient(text) : decodeQ(text);
  return w;
}

bool allWhitespace(std::string_view s) { return s.find_first_not_of(" \t") == std::string_view::npos; }

}  // namespace

std::string toUtf8(std::string_view bytes, std::string_view charset) {
  std::string cs = util::toLowerAscii(util::trim(charset));
  // RFC 2231 section 5: "charset*language" inside an encoded word.
  if (const auto star = cs.find('*'); star != std::string::npos) cs.resize(star);
  switch (classify(cs)) {
    case Family::Unknown:
      return guessToUtf8(bytes);
    case Family::Utf8:
      if (hasJisEscape(bytes)) return decodeIso2022jp(bytes);
      return util::isValidUtf8(bytes) ? std::string(bytes) : util::repairUtf8(bytes);
    case Family::Jis:
      return decodeIso2022jp(bytes);
    case Family::Sjis:
      return convertReplacing(bytes, "CP932");
    case Family::EucJp:
      return convertReplacing(bytes, "EUC-JP-MS");
    case Family::Latin1:
      return convertReplacing(bytes, "WINDOWS-1252");
    case Family::Other:
      break;
  }
  // Anything else goes to iconv by name, if it looks like a charset name
  // at all (no "//TRANSLIT" suffixes or kilobyte-long names from a sender).
  const bool plausible = cs.size() <= 40 && cs.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._:+-") ==
                                                std::string::npos;
  if (plausible) {
    if (auto r = convert(bytes, cs.c_str(), false)) return std::move(*r);
  }
  return guessToUtf8(bytes);  // a charset iconv has never heard of
}

std::string decodeHeader(std::string_view raw) {
  const std::string s = unfold(raw);
  const std::string_view sv(s);
  std::string out;
  std::string pendingCharset;  // adjacent words of one charset are joined
  std::string pendingBytes;
  bool pending = false;
  const auto flushWord = [&] {
    if (pending) out += toUtf8(pendingBytes, pendingCharset);
    pending = false;
    pendingBytes.clear();
  };
  std::size_t i = 0;
  bool lastWasWord = false;
  while (i < sv.size()) {
    std::size_t p = sv.find("=?", i);
    std::optional<EncodedWord> w;
    while (p != std::string_view::npos && !(w = encodedWordAt(sv, p))) p = sv.find("=?", p + 1);
    if (!w) break;
    const std::string_view literal = sv.substr(i, w->begin - i);
    // RFC 2047 6.2: white space between two encoded words is not text.
    if (!(lastWasWord && allWhitespace(literal))) {
      flushWord();
      out += guessToUtf8(literal);
    }
    if (pending && !util::iequals(pendingCharset, w->charset)) flushWord();
    pendingCharset = w->charset;
    pendingBytes += w->bytes;
    pending = true;
    lastWasWord = true;
    i = w->end;
  }
  flushWord();
  if (i < sv.size()) out += guessToUtf8(sv.substr(i));
  return out;
}

std::optional<std::string> headerParameter(std::string_view rawValue, std::string_view name) {
  const std::string s = unfold(rawValue);
  const std::string wanted = util::toLowerAscii(name);
  std::optional<std::string> plain;
  struct Piece {
    std::string value;
    bool encoded;
  };
  std::map<int, Piece> pieces;  // RFC 2231 sections by number

  // The value before the first ';' (type/subtype or disposition) is skipped.
  std::size_t i = s.find(';');
  while (i != std::string::npos && i < s.size()) {
    while (i < s.size() && (s[i] == ';' || s[i] == ' ' || s[i] == '\t')) ++i;
    const std::size_t attrBegin = i;
    while (i < s.size() && s[i] != '=' && s[i] != ';') ++i;
    if (i >= s.size() || s[i] != '=') continue;
    const std::string attr = util::toLowerAscii(util::trim(std::string_view(s).substr(attrBegin, i - attrBegin)));
    ++i;
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
    std::string value;
    if (i < s.size() && s[i] == '"') {
      for (++i; i < s.size() && s[i] != '"'; ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) ++i;
        value += s[i];
      }
      if (i < s.size()) ++i;                       // closing quote
      while (i < s.size() && s[i] != ';') ++i;     // junk after it
    } else {
      const std::size_t vBegin = i;
      while (i < s.size() && s[i] != ';') ++i;
      value = std::string(util::trim(std::string_view(s).substr(vBegin, i - vBegin)));
    }

    if (attr == wanted) {
      if (!plain) plain = std::move(value);
      continue;
    }
    if (attr.size() <= wanted.size() || !attr.starts_with(wanted) || attr[wanted.size()] != '*') continue;
    std::string_view rest = std::string_view(attr).substr(wanted.size() + 1);  // "", "*"... "0", "0*"
    bool encoded = false;
    if (rest.ends_with('*')) {
      encoded = true;
      rest.remove_suffix(1);
    }
    int index = 0;
    if (rest.empty()) {
      encoded = true;  // name*=charset'lang'value
    } else {
      if (rest.size() > 4 || rest.find_first_not_of("0123456789") != std::string_view::npos) continue;
      index = std::stoi(std::string(rest));
    }
    pieces.try_emplace(index, Piece{std::move(value), encoded});
  }

  if (!pieces.empty()) {
    std::string charset;
    std::string bytes;
    bool first = true;
    for (auto& [index, piece] : pieces) {
      std::string_view v = piece.value;
      if (first && piece.encoded) {
        // charset'language'text; both quotes required to have a charset.
        const std::size_t q1 = v.find('\'');
        const std::size_t q2 = q1 == std::string_view::npos ? q1 : v.find('\'', q1 + 1);
        if (q2 != std::string_view::npos) {
          charset = std::string(v.substr(0, q1));
          v.remove_prefix(q2 + 1);
        }
      }
      first = false;
      bytes += piece.encoded ? util::percentDecode(v) : std::string(v);
    }
    return toUtf8(bytes, charset);
  }
  if (plain) return decodeHeader(*plain);
  return std::nullopt;
}

}  // namespace sekimori::mime
