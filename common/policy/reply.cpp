// common/policy/reply.cpp — see reply.h.
#include "common/policy/reply.h"

#include "common/util/strings.h"

namespace sekimori::policy {
namespace {

constexpr std::size_t kMaxText = 400;

bool allDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// RFC 3463: class "." subject "." detail; subject and detail 1-3 digits.
bool validEnhanced(std::string_view x) {
  const auto d1 = x.find('.');
  if (d1 != 1) return false;
  const auto d2 = x.find('.', d1 + 1);
  if (d2 == std::string_view::npos) return false;
  const auto subject = x.substr(d1 + 1, d2 - d1 - 1);
  const auto detail = x.substr(d2 + 1);
  return allDigits(subject) && subject.size() <= 3 && allDigits(detail) && detail.size() <= 3;
}

}  // namespace

std::optional<Reply> Reply::parse(std::string_view line, std::string* error) {
  const auto fail = [&](std::string reason) -> std::optional<Reply> {
    if (error) *error = std::move(reason);
    return std::nullopt;
  };
  line = util::trim(line);
  const auto sp1 = line.find(' ');
  const auto code = line.substr(0, sp1);
  if (code.size() != 3 || !allDigits(code) || (code[0] != '4' && code[0] != '5')) {
    return fail("reply must start with a 4xx or 5xx code: '" + util::sanitize(line, 80) + "'");
  }
  if (sp1 == std::string_view::npos) return fail("reply needs an enhanced status code and a text after " + std::string(code));
  auto rest = util::trim(line.substr(sp1 + 1));
  const auto sp2 = rest.find(' ');
  const auto xcode = rest.substr(0, sp2);
  if (!validEnhanced(xcode)) {
    return fail("reply needs an enhanced status code like " + std::string(1, code[0]) + ".7.1 after " +
                std::string(code) + ", got '" + util::sanitize(xcode, 40) + "'");
  }
  if (xcode[0] != code[0]) {
    return fail("enhanced code " + std::string(xcode) + " does not match the class of " + std::string(code));
  }
  const auto text = sp2 == std::string_view::npos ? std::string_view{} : util::trim(rest.substr(sp2 + 1));
  if (text.empty()) return fail("reply text is empty");
  if (text.size() > kMaxText) return fail("reply text longer than 400 bytes");
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) return fail("reply text must be printable ASCII (no CR, LF, tabs or UTF-8)");
  }
  return Reply{std::string(code), std::string(xcode), std::string(text)};
}

std::string Reply::str() const { return code + " " + xcode + " " + text; }

}  // namespace sekimori::policy
