// Fuzzes the parsers of what the SMTP client and Postfix send
// (common/policy): envelope addresses, client IP addresses, networks,
// replies.
// Properties: normalising is idempotent — what str() prints parses back to
// the same value — and an address never holds CR, LF or NUL.
#include <string>

#include "common/policy/address.h"
#include "common/policy/cidr.h"
#include "common/policy/reply.h"
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
