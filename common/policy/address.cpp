// common/policy/address.cpp — see address.h.
#include "common/policy/address.h"

#include <idn2.h>

#include <algorithm>

#include "common/util/strings.h"

namespace sekimori::policy {
namespace {

constexpr std::size_t kNotFound = std::string_view::npos;

// Scans `s` honouring RFC 5321 quoted strings ("..." with \-escapes) and
// reports the position of the last '@' outside quotes. Returns false when a
// quote is left open or '<' / '>' appears outside quotes (stray brackets mean
// the client sent something we cannot interpret safely).
bool scanMailbox(std::string_view s, std::size_t* lastAt) {
  bool quoted = false;
  *lastAt = kNotFound;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (quoted) {
      if (c == '\\') {
        ++i;  // the escaped character, whatever it is, belongs to the string
      } else if (c == '"') {
        quoted = false;
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
    } else if (c == '\\') {
      ++i;  // outside quotes too: "a\@b"@c is legal in a local part
    } else if (c == '<' || c == '>') {
      return false;
    } else if (c == '@') {
      *lastAt = i;
    }
  }
  return !quoted;
}

}  // namespace

std::string Address::bracketed() const {
  // Appended piece by piece: GCC 12's -Wrestrict misfires on "<" + string (bug 105651).
  std::string out(1, '<');
  out.append(str()).append(1, '>');
  return out;
}

std::string Address::str() const {
  if (domain.empty()) return local;
  std::string out;
  out.reserve(local.size() + 1 + domain.size());
  out.append(local).append(1, '@').append(domain);
  return out;
}

namespace {

// White space and trailing dots in any mix ("c\v."), so that the result
// is its own normal form.
std::string_view trimDomain(std::string_view domain) {
  for (std::size_t before = domain.size() + 1; domain.size() != before;) {
    before = domain.size();
    domain = util::trim(domain);
    while (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
  }
  return domain;
}

// The A-label form of a domain with U-labels, or nullopt (and why).
std::optional<std::string> toALabels(std::string_view domain, std::string* error) {
  if (domain.find('\0') != std::string_view::npos) {
    if (error) *error = "NUL byte in domain";
    return std::nullopt;
  }
  const std::string in(domain);
  char* out = nullptr;
  const int rc = idn2_to_ascii_8z(in.c_str(), &out, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
  if (rc != IDN2_OK) {
    idn2_free(out);
    if (error) *error = std::string("not a valid internationalized domain name: ") + idn2_strerror(rc);
    return std::nullopt;
  }
  // The mapping may give white space or dots at the end of its own (U+3000
  // and U+3002, the ideographic space and full stop, map to ' ' and '.').
  std::string a(trimDomain(out));
  idn2_free(out);
  // UTS #46 also maps full-width punctuation to ASCII ("＠" to '@', "＜" to
  // '<') and leaves ASCII labels unchecked: a result that is more than
  // letters, digits, '-', '_' and dots would not read back as the same address.
  const auto ldh = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
           c == '.';
  };
  if (!std::all_of(a.begin(), a.end(), ldh)) {
    if (error) *error = "not a valid internationalized domain name: maps to characters not allowed in a domain";
    return std::nullopt;
  }
  return a;
}

}  // namespace

std::string normalizeDomain(std::string_view domain, std::string* idnaError) {
  domain = trimDomain(domain);
  if (!util::isAscii(domain)) {
    if (auto a = toALabels(domain, idnaError)) return std::move(*a);  // lowercase already
  }
  return util::toLowerAscii(domain);
}

std::optional<Address> parseAddress(std::string_view text) {
  if (text.size() > kMaxAddressBytes + 64) return std::nullopt;  // before looking at it at all
  // CR/LF could forge log lines or headers downstream; NUL would cut the
  // address short in any C API it reaches. No legitimate address has them.
  if (text.find_first_of(std::string_view("\r\n\0", 3)) != kNotFound) return std::nullopt;

  text = util::trim(text);
  if (!text.empty() && text.front() == '<') {
    if (text.size() < 2 || text.back() != '>') return std::nullopt;
    text = util::trim(text.substr(1, text.size() - 2));
  }
  // The limit counts the address, not the brackets or white space around
  // it: what str() prints is accepted back with or without them.
  if (text.size() > kMaxAddressBytes) return std::nullopt;

  // A source route "@a,@b:user@c": only the mailbox after the colon counts.
  // Route domains cannot contain ':' or quotes, so the first ':' ends it.
  if (!text.empty() && text.front() == '@') {
    const auto colon = text.find(':');
    if (colon == kNotFound) return std::nullopt;
    text = util::trim(text.substr(colon + 1));
    // "<@x:>" routes to nobody; a mailbox cannot start with '@' (it would
    // read as a route again: "<@x:@y@z>").
    if (text.empty() || text.front() == '@') return std::nullopt;
  }

  std::size_t at = kNotFound;
  if (!scanMailbox(text, &at)) return std::nullopt;

  Address a;
  if (at == kNotFound) {
    a.local = std::string(text);
    return a;
  }
  a.local = std::string(text.substr(0, at));
  a.domain = normalizeDomain(text.substr(at + 1));
  // No domain after the '@' ("x @", "x@y@."): the address is its local
  // part, which str() prints alone, so it must read back as itself: white
  // space around it dropped, and no '@' left in it ("x@y@").
  if (a.domain.empty()) {
    a.local = std::string(util::trim(a.local));
    std::size_t localAt = kNotFound;
    if (a.local.empty() || !scanMailbox(a.local, &localAt) || localAt != kNotFound) return std::nullopt;
  }
  return a;
}

}  // namespace sekimori::policy
