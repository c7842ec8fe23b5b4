#include "milters/antivirus/clamd.h"

#include <gtest/gtest.h>

namespace sekimori::antivirus {
namespace {

using Status = ScanResult::Status;

TEST(Clamd, RepliesMapToTheSameVerdictsAsThePool) {
  EXPECT_EQ(parseClamdReply("stream: OK").status, Status::Clean);
  const auto v = parseClamdReply("stream: Eicar-Signature FOUND");
  EXPECT_EQ(v.status, Status::Infected);
  EXPECT_EQ(v.name, "Eicar-Signature");
  EXPECT_EQ(parseClamdReply("stream: Heuristics.Limits.Exceeded.MaxRecursion FOUND").status, Status::LimitsExceeded);
  EXPECT_EQ(parseClamdReply("stream: Heuristics.Encrypted.Zip FOUND").status, Status::Encrypted);
  EXPECT_EQ(parseClamdReply("INSTREAM size limit exceeded. ERROR").status, Status::LimitsExceeded);
  const auto e = parseClamdReply("stream: Can't allocate memory ERROR");
  EXPECT_EQ(e.status, Status::Error);
  EXPECT_NE(e.error.find("allocate"), std::string::npos);
}

TEST(Clamd, NamesCannotCarryLineBreaksOrControls) {
  // The name ends up in headers and SMTP replies: whatever answers on the
  // socket must not be able to add a line to either.
  const auto v = parseClamdReply(std::string("stream: Bad\r\nX-Injected: 1\x01\0 FOUND", 34));
  EXPECT_EQ(v.status, Status::Infected);
  EXPECT_EQ(v.name, "Bad??X-Injected:?1??");
  EXPECT_EQ(parseClamdReply("stream: " + std::string(500, 'A') + " FOUND").name.size(), 200u);
}

TEST(Clamd, AddressSyntax) {
  EXPECT_TRUE(validClamdAddress("/run/clamav/clamd.ctl"));
  EXPECT_TRUE(validClamdAddress("127.0.0.1:3310"));
  EXPECT_TRUE(validClamdAddress("[::1]:3310"));
  EXPECT_FALSE(validClamdAddress("localhost:3310"));  // no blocking name lookups
  EXPECT_FALSE(validClamdAddress("127.0.0.1"));
  EXPECT_FALSE(validClamdAddress(""));
}

TEST(Clamd, UnreachableClamdIsAScanErrorNotAHang) {
  ClamdOptions o;
  o.address = "/nonexistent/clamd.sock";
  o.timeout = std::chrono::milliseconds(500);
  ClamdScanner s(o);
  const auto r = s.scan(0);
  EXPECT_EQ(r.status, Status::Error);
  EXPECT_NE(r.error.find("cannot connect"), std::string::npos) << r.error;
  std::string why;
  EXPECT_FALSE(s.ping(&why));
}

}  // namespace
}  // namespace sekimori::antivirus
