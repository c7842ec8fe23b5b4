#include "milters/sizelimit/sizelimit_milter.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/config/values.h"
#include "common/milter/daemon.h"
#include "common/milter/driver.h"
#include "tests/unit/common/milter/fakes.h"

namespace sekimori::sizelimit {
namespace {

using milter::Driver;
using milter::Session;
using milter::Verdict;
using milter::testing::bytes;
using milter::testing::FakeMacros;
using milter::testing::RecordingActions;

using Harness = milter::testing::DriverHarness<SizeLimitMilter>;

const char* kConf =
    "[policy]\nlocal_domains = example.net big.example\ninternal_networks = 10.0.0.0/8\n"
    "[limits]\nmax_message_size = 1000\nmax_recipients = 2\n"
    "[outbound]\nmax_message_size = 2000\n"
    "[domain big.example]\nmax_message_size = 5000\n";

std::string code(const Verdict& v) { return v.reply() ? v.reply()->code + " " + v.reply()->xcode : "continue"; }

TEST(SizeLimitMilter, DeclaredSizeAtMailUsesTheLargestPossibleLimit) {
  Harness h(kConf);
  // From outside, big.example's 5000 is the largest any recipient could have.
  EXPECT_EQ(code(h.mail({"<s@example.org>", "SIZE=5000"})), "continue");
  EXPECT_EQ(code(h.mail({"<s@example.org>", "SIZE=5001"})), "552 5.3.4");
}

TEST(SizeLimitMilter, DeclaredSizePerRecipientAtRcpt) {
  Harness h(kConf);
  h.mail({"<s@example.org>", "SIZE=3000"});
  EXPECT_EQ(code(h.rcpt("<u@example.net>")), "552 5.3.4");
  EXPECT_EQ(code(h.rcpt("<u@big.example>")), "continue");
}

TEST(SizeLimitMilter, RecipientLimitRefusesTheExcessWithA452) {
  Harness h(kConf);
  h.mail({"<s@example.org>"});
  EXPECT_EQ(code(h.rcpt("<a@example.net>")), "continue");
  EXPECT_EQ(code(h.rcpt("<b@example.net>")), "continue");
  EXPECT_EQ(code(h.rcpt("<c@example.net>")), "452 4.5.3");
  EXPECT_EQ(h.session->txn().recipients.size(), 2u);
}

TEST(SizeLimitMilter, ReceivedBytesBoundaryAtEndOfMessage) {
  Harness h(kConf);
  // "Subject: x\r\n" (12) + "\r\n" (2) = 14 bytes of header.
  EXPECT_EQ(code(h.message({{"Subject", "x"}}, std::string(986, 'a'))), "continue");
  EXPECT_EQ(code(h.message({{"Subject", "x"}}, std::string(987, 'a'))), "552 5.3.4");
}

TEST(SizeLimitMilter, OutboundOverrideFromInternalNetworkAndAuth) {
  Harness inside(kConf, "10.1.2.3");
  EXPECT_EQ(code(inside.message({{"Subject", "x"}}, std::string(1500, 'a'), {"<r@remote.example>"})), "continue");
  Harness authed(kConf);
  authed.macros.values["{auth_authen}"] = "alice";
  EXPECT_EQ(code(authed.message({{"Subject", "x"}}, std::string(1500, 'a'), {"<r@remote.example>"})), "continue");
  Harness outside(kConf);
  EXPECT_EQ(code(outside.message({{"Subject", "x"}}, std::string(1500, 'a'), {"<r@remote.example>"})), "552 5.3.4");
}

TEST(SizeLimitMilter, MessageMustFitEveryRecipient) {
  Harness h(kConf);
  EXPECT_EQ(code(h.message({{"Subject", "x"}}, std::string(3000, 'a'), {"<u@big.example>"})), "continue");
  EXPECT_EQ(code(h.message({{"Subject", "x"}}, std::string(3000, 'a'), {"<u@big.example>", "<u@example.net>"})),
            "552 5.3.4");
}

TEST(SizeLimitMilter, HopsAtEndOfHeaders) {
  Harness h("[limits]\nmax_received_headers = 3\n");
  std::vector<std::pair<std::string, std::string>> hops(3, {"Received", "from a by b"});
  EXPECT_EQ(code(h.message(hops, "x\r\n")), "continue");
  hops.push_back({"Received", "from c by d"});
  EXPECT_EQ(code(h.message(hops, "x\r\n")), "554 5.4.6");
}

TEST(SizeLimitMilter, TopLevelPartialRefusedAtEndOfHeaders) {
  Harness h("");
  EXPECT_EQ(code(h.message({{"Content-Type", "Message/Partial; id=x; number=1"}}, "")), "554 5.6.1");
  Harness off("[limits]\nreject_partial = no\n");
  EXPECT_EQ(code(off.message({{"Content-Type", "message/partial; id=x; number=1"}}, "")), "continue");
}

TEST(SizeLimitMilter, NestedPartialFoundByTheMimeWalk) {
  Harness h("");
  const std::string body =
      "--o\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
      "--o\r\nContent-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n"
      "--i\r\nContent-Type: message/partial; id=\"a\"; number=1\r\n\r\nhalf\r\n--i--\r\n--o--\r\n";
  EXPECT_EQ(code(h.message({{"MIME-Version", "1.0"}, {"Content-Type", "multipart/mixed; boundary=o"}}, body)),
            "554 5.6.1");
}

TEST(SizeLimitMilter, StructureLimitsGiveADeterministicVerdict) {
  Harness h("[limits]\nmax_mime_depth = 10\n");
  std::string body;
  for (int i = 0; i < 1000; ++i) body += "--b" + std::to_string(i) + "\r\nContent-Type: multipart/mixed; boundary=b" + std::to_string(i + 1) + "\r\n\r\n";
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(code(h.message({{"MIME-Version", "1.0"}, {"Content-Type", "multipart/mixed; boundary=b0"}}, body)),
              "554 5.6.0");
  }
}

// MIME the walk cannot read whole (over 1 MiB of part headers, prefaces
// and epilogues) hides the attachments after that point: they were neither
// counted nor measured, and the message was delivered.
TEST(SizeLimitMilter, MimeThatCannotBeReadWholeIsRefused) {
  Harness h("[limits]\nmax_attachments = 2\n");
  const std::string big(1100 * 1024, 'x');
  std::string attachments;
  for (int i = 0; i < 3; ++i) {
    attachments += "--b\r\nContent-Type: application/octet-stream; name=a" + std::to_string(i) + ".bin\r\n\r\nx\r\n";
  }
  // Two boundary parameters: which one counts is a guess.
  EXPECT_EQ(code(h.message({{"MIME-Version", "1.0"}, {"Content-Type", "multipart/mixed; boundary=b; boundary=c"}},
                           "--b\r\nContent-Type: text/plain\r\n\r\n" + big + "\r\n" + attachments + "--b--\r\n")),
            "554 5.6.0");
  // 1.1 MB of preface before the first boundary.
  EXPECT_EQ(code(h.message({{"MIME-Version", "1.0"}, {"Content-Type", "multipart/mixed; boundary=b"}},
                           big + "\r\n" + attachments + "--b--\r\n")),
            "554 5.6.0");
  // The same attachments after a long text part: read, and over max_attachments.
  EXPECT_EQ(code(h.message({{"MIME-Version", "1.0"}, {"Content-Type", "multipart/mixed; boundary=b"}},
                           "--b\r\nContent-Type: text/plain\r\n\r\n" + big + "\r\n" + attachments + "--b--\r\n")),
            "552 5.3.4");
  // Two of them: delivered.
  EXPECT_EQ(code(h.message({{"MIME-Version", "1.0"}, {"Content-Type", "multipart/mixed; boundary=b"}},
                           "--b\r\nContent-Type: text/plain\r\n\r\n" + big + "\r\n" +
                               attachments.substr(0, attachments.rfind("--b\r\n")) + "--b--\r\n")),
            "continue");
}

TEST(SizeLimitMilter, PlainTextIsNeverBuffered) {
  Harness h("");
  h.mail({"<s@example.org>"});
  h.rcpt("<u@example.net>");
  h.header("Subject", " plain");
  h.eoh();
  h.body("hello\r\n");
  // Nothing but counters: the per-message state holds no spool.
  EXPECT_EQ(code(h.eom()), "continue");
}

// Every key the schema declares is documented in the shipped conf file,
// which is exactly what --defaults prints (so docs cannot drift).
TEST(SizeLimitConf, ShippedConfIsTheGeneratedOne) {
  SizeLimitMilter m;
  milter::testing::expectShippedConf(m);
}

}  // namespace
}  // namespace sekimori::sizelimit
