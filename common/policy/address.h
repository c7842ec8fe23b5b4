// common/policy/address.h — envelope addresses as Postfix hands them to a
// milter, parsed and normalised once.
//
// What arrives: argv[0] of xxfi_envfrom / xxfi_envrcpt is the MAIL FROM / RCPT
// TO argument as the client sent it ("<Alice@Example.JP>"); the {mail_addr} /
// {rcpt_addr} macros carry the same address without brackets, local part
// quoted when needed ("\"a b\"@example.jp"). Both forms parse to the same
// Address.
//
// The local part is kept exactly as sent (case matters to some mailbox
// servers; quotes are kept, so str() gives a valid address back); the domain
// is put in its one normal form (normalizeDomain): lowercase, no trailing
// dot, IDN U-labels as A-labels, so that "<a@例え.JP>" (SMTPUTF8) and
// "<a@xn--r8jz45g.jp>" are the same address to every list, counter and
// per-domain setting.
//
//   auto a = policy::parseAddress("<Alice@Example.JP.>");  // local "Alice", domain "example.jp"
//   a->str();                                            // "Alice@example.jp"
//   policy::parseAddress("<>")->isNull();                // true (the null sender)
//   policy::parseAddress("<a@b");                        // nullopt (unbalanced)
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace sekimori::policy {

// Longest envelope address accepted. RFC 5321 allows 256 octets for a path;
// Postfix accepts longer ones, so the cap is generous and only stops abuse.
inline constexpr std::size_t kMaxAddressBytes = 1024;

struct Address {
  std::string local;   // exactly as given: case kept, quotes kept
  std::string domain;  // ASCII-lowercased, no trailing dot; "" when absent

  // The null sender <> (also what an empty {mail_addr} means).
  bool isNull() const { return local.empty() && domain.empty(); }
  // "local@domain"; "" for the null sender; "local" when there is no domain.
  std::string str() const;
  // "<local@domain>", "<>" for the null sender: the envelope form log lines show.
  std::string bracketed() const;
  friend bool operator==(const Address&, const Address&) = default;
};

// Parses "<a@b>", "a@b", "<>" and "" (both the null sender), source routes
// "<@x,@y:a@b>" (the route is dropped, RFC 5321 section 4.1.2 lets us ignore
// it), quoted local parts "\"a b\"@c" (brackets, '@' and escaped quotes inside
// the quotes are part of the local part). The local part ends at the last '@'
// outside quotes; "postmaster" alone is a local part without a domain.
// Whitespace around the whole argument is ignored.
//
// nullopt for garbage: unbalanced or stray '<' '>', an unterminated quote, a
// source route without ':', CR, LF or NUL anywhere, more than
// kMaxAddressBytes bytes inside the brackets.
std::optional<Address> parseAddress(std::string_view text);

// A domain's normal form, the one every comparison uses: whitespace around
// and trailing dots removed, ASCII lowercased ("Example.JP." -> "example.jp").
// A domain with non-ASCII bytes goes through IDNA (libidn2, UTS #46
// non-transitional mapping, NFC) to its A-labels: "例え.jp" ->
// "xn--r8jz45g.jp", and full-width "ＥＸＡＭＰＬＥ．ｊｐ" -> "example.jp". One
// that IDNA refuses (invalid UTF-8, a disallowed character, a label over 63
// bytes) is only trimmed and ASCII-lowercased, and `idnaError`, when given,
// says why; config readers refuse such entries, mail is compared as it came.
// A-labels are not checked (an ASCII domain never goes to libidn2).
std::string normalizeDomain(std::string_view domain, std::string* idnaError = nullptr);

}  // namespace sekimori::policy
