// common/policy/lists.cpp — see lists.h.
#include "common/policy/lists.h"

#include "common/util/strings.h"

namespace sekimori::policy {
namespace {

constexpr std::size_t kMaxDomainBytes = 253;  // RFC 1035, without the root dot

// Why `d` (already lowercased, without the leading '.' of a parent entry or
// the trailing root dot) cannot be a list domain, or "" when it can. Checks
// only what would make an entry silently never match; IDN U-labels are
// A-labels by now (normalizeDomain).
std::string domainProblem(std::string_view d) {
  if (d.empty()) return "empty domain";
  if (d.size() > kMaxDomainBytes) return "domain longer than 253 bytes";
  if (d.front() == '.' || d.find("..") != std::string_view::npos) return "empty label in domain";
  for (char c : d) {
    if (c == '*') return "wildcards are not supported (write .example.jp for the subdomains of example.jp)";
    if (c == ' ' || c == '\t' || util::isControl(c)) return "space or control character in domain";
    if (c == '@' || c == ',' || c == '<' || c == '>' || c == '[' || c == ']' || c == '"' || c == '\\' || c == '/') {
      return std::string("character '") + c + "' not allowed in a domain";
    }
  }
  return {};
}

bool fail(std::string* error, std::string_view what, std::string_view entry, std::string_view why) {
  if (error) *error = std::string(what) + " '" + util::sanitize(entry, 80) + "': " + std::string(why);
  return false;
}

}  // namespace

bool DomainList::add(std::string_view entry, std::string* error) {
  const auto trimmed = util::trim(entry);
  std::string_view e = trimmed;
  const bool parent = !e.empty() && e.front() == '.';
  if (parent) e.remove_prefix(1);
  std::string idna;
  std::string d = normalizeDomain(e, &idna);
  if (!idna.empty()) return fail(error, "bad domain", trimmed, idna);
  if (const auto why = domainProblem(d); !why.empty()) return fail(error, "bad domain", trimmed, why);
  (parent ? parents_ : exact_).insert(std::move(d));
  return true;
}

std::string DomainList::find(std::string_view domain) const {
  const std::string d = normalizeDomain(domain);
  if (d.empty()) return {};
  if (exact_.find(std::string_view(d)) != exact_.end()) return d;
  if (parents_.empty()) return {};
  // Walk up the labels, nearest parent first:
  // a.b.example.jp -> b.example.jp -> example.jp -> jp.
  std::string_view rest = d;
  for (auto dot = rest.find('.'); dot != std::string_view::npos; dot = rest.find('.')) {
    rest.remove_prefix(dot + 1);
    if (parents_.find(rest) != parents_.end()) return std::string(1, '.').append(rest);  // not "." + string: GCC 12 -Wrestrict
  }
  return {};
}

bool AddressList::add(std::string_view entry, std::string* error) {
  const auto e = util::trim(entry);
  if (e.empty()) return fail(error, "bad address", e, "empty entry");
  for (char c : e) {
    if (util::isControl(c)) return fail(error, "bad address", e, "control character in entry");
  }
  const auto at = e.rfind('@');
  if (at == std::string_view::npos) return domains_.add(e, error);  // "example.jp", ".example.jp"
  const auto local = e.substr(0, at);
  const auto domainPart = e.substr(at + 1);
  if (local.empty()) {  // "@example.jp", "@.example.jp"
    if (domainPart.empty()) return fail(error, "bad address", e, "neither local part nor domain");
    return domains_.add(domainPart, error);
  }
  if (local.find_first_of("<>") != std::string_view::npos) {
    return fail(error, "bad address", e, "write the address without <>");
  }
  if (domainPart.empty()) {  // "user@"
    localParts_.insert(util::toLowerAscii(local));
    return true;
  }
  if (domainPart.front() == '.') {
    return fail(error, "bad address", e, "an address takes an exact domain (for a whole subdomain tree, list .example.jp alone)");
  }
  std::string idna;
  const std::string domain = normalizeDomain(domainPart, &idna);
  if (!idna.empty()) return fail(error, "bad address", e, idna);
  if (const auto why = domainProblem(domain); !why.empty()) return fail(error, "bad address", e, why);
  addresses_.insert(util::toLowerAscii(local) + "@" + domain);
  return true;
}

AddressList::Match AddressList::find(const Address& a) const {
  if (a.isNull()) return {};
  const std::string local = util::toLowerAscii(a.local);
  if (!a.domain.empty() && !addresses_.empty()) {
    std::string full = local + "@" + normalizeDomain(a.domain);
    if (addresses_.find(std::string_view(full)) != addresses_.end()) return {Match::Kind::Address, std::move(full)};
  }
  if (!local.empty() && localParts_.find(std::string_view(local)) != localParts_.end()) {
    return {Match::Kind::LocalPart, local + "@"};
  }
  if (auto d = domains_.find(a.domain); !d.empty()) return {Match::Kind::Domain, std::move(d)};
  return {};
}

std::string_view toString(ListVerdict v) {
  switch (v) {
    case ListVerdict::None: return "none";
    case ListVerdict::Allow: return "allow";
    case ListVerdict::Deny: return "deny";
  }
  return "none";
}

ListVerdict decide(const AddressList& allow, const AddressList& deny, const Address& a, AddressList::Priority p) {
  const auto al = allow.find(a);
  const auto de = deny.find(a);
  if (!al.found() && !de.found()) return ListVerdict::None;
  if (!de.found()) return ListVerdict::Allow;
  if (!al.found()) return ListVerdict::Deny;
  // Both match. Address and LocalPart count as one level here: R-SPAM-4 only
  // knows "address filter" and "domain filter".
  if (al.addressLevel() != de.addressLevel()) {
    const bool preferAddress = p == AddressList::Priority::AddressFirst;
    return al.addressLevel() == preferAddress ? ListVerdict::Allow : ListVerdict::Deny;
  }
  return ListVerdict::Allow;  // same level: see lists.h for why Allow
}

}  // namespace sekimori::policy
