// common/policy/reply.h — an SMTP reply a milter may give, validated once.
//
// A milter can only refuse with a 4xx or 5xx code, and Postfix passes the text
// to the client as is, so the reply is checked when the config is loaded, not
// when the first message is refused:
//   - code: three digits, 4xx or 5xx;
//   - enhanced code (RFC 3463): class.subject.detail, class equal to the
//     code's first digit (a 4xx reply cannot carry 5.x.x);
//   - text: printable ASCII (UTF-8 is not allowed in SMTP replies without
//     SMTPUTF8), no CR/LF, at most 400 bytes.
//
//   auto r = policy::Reply::parse("552 5.3.4 Message size exceeds fixed maximum message size");
//   if (r) use(r->code, r->xcode, r->text);
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace sekimori::policy {

struct Reply {
  std::string code;   // "552"
  std::string xcode;  // "5.3.4"
  std::string text;   // "Message size exceeds fixed maximum message size"

  // "552 5.3.4 text". Returns nullopt and sets *error on an invalid reply.
  static std::optional<Reply> parse(std::string_view line, std::string* error = nullptr);
  bool temporary() const { return !code.empty() && code[0] == '4'; }
  std::string str() const;
  friend bool operator==(const Reply&, const Reply&) = default;
};

}  // namespace sekimori::policy
