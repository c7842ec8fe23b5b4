// Fuzzes the parsers of what the SMTP client and Postfix send
// (common/policy): envelope addresses, client IP addresses, networks,
// replies.
// Properties: normalising is idempotent — what str() prints parses back to
// the same value — an address never holds CR, LF or NUL, and a domain list
// holding an address's domain (in any spelling: IDNA maps U-labels) finds it.
#include <string>

#include "common/policy/address.h"
#include "common/policy/cidr.h"
#include "common/policy/lists.h"
#include "common/policy/reply.h"
#include "common/util/strings.h"
#include "tests/fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sekimori::policy;
  const std::string_view in = sekimori::fuzz::view(data, size);
  if (const auto a = parseAddress(in)) {
    const std::string s = a->str();
    FUZZ_CHECK(s.find_first_of(std::string_view("\r\n\0", 3)) == std::string::npos);
    const auto again = parseAddress("<" + s + ">");
    FUZZ_CHECK(again && again->str() == s);
    FUZZ_CHECK(normalizeDomain(a->domain) == a->domain);
    // The domain as the input spelled it (when the text after the last '@'
    // is it, and does not start with '.', which makes a list entry mean the
    // subdomains): a list entry spelled so finds the address.
    std::string_view spelled = sekimori::util::trim(in.substr(in.rfind('@') + 1));
    if (!spelled.empty() && spelled.back() == '>') spelled.remove_suffix(1);
    DomainList list;
    if (!a->domain.empty() && a->domain.front() != '.' && normalizeDomain(spelled) == a->domain &&
        list.add(spelled, nullptr)) {
      FUZZ_CHECK(list.contains(a->domain));
      FUZZ_CHECK(list.contains(spelled));
    }
  }
  if (const auto ip = IpAddress::parse(in)) {
    const auto again = IpAddress::parse(ip->str());
    FUZZ_CHECK(again && *again == *ip);
  }
  if (const auto net = Network::parse(in)) {
    const auto again = Network::parse(net->str());
    FUZZ_CHECK(again && *again == *net);
    FUZZ_CHECK(net->contains(net->base()));
  }
  if (const auto r = Reply::parse(in)) {
    const auto again = Reply::parse(r->str());
    FUZZ_CHECK(again && *again == *r);
  }
  return 0;
}
