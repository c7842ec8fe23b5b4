#include "milters/ratelimit/ratelimit_milter.h"

#include <gtest/gtest.h>

#include "milters/ratelimit/memory_store.h"
#include "tests/unit/common/milter/fakes.h"

namespace sekimori::ratelimit {
namespace {

using milter::Verdict;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

// The injected clock: tests move it, nothing sleeps.
TimePoint gNow = TimePoint{} + hours(24 * 365 * 50);
TimePoint testClock() { return gNow; }

struct Harness : milter::testing::DriverHarness<RateLimitMilter> {
  explicit Harness(const std::string& conf, const char* client = "203.0.113.5")
      : DriverHarness(conf, client, &testClock) {}
  // One message from `from` to `rcpts`; the first verdict that is not Continue.
  Verdict send(std::string_view from, std::initializer_list<std::string_view> rcpts, std::string_view msgid = "") {
    if (auto v = mail({from}); !v.isContinue()) return v;
    Verdict last = Verdict::next();
    for (auto r : rcpts) {
      auto v = rcpt(r);
      if (!v.isContinue()) last = v;
    }
    if (!msgid.empty()) header("Message-ID", std::string(" ") + std::string(msgid));
    eoh();
    auto v = eom();
    return v.isContinue() ? last : v;
  }
  void abort() { driver.abort(*session); }
};

std::string code(const Verdict& v) { return v.reply() ? v.reply()->code + " " + v.reply()->xcode : "continue"; }

const std::string kBase =
    "[control]\nsocket =\n"
    "[policy]\nlocal_domains = example.net\ninternal_networks = 10.0.0.0/8\n";

TEST(RateLimitMilter, SenderRecipientsBoundaryAndSlide) {
  Harness h(kBase + "[limits]\nsender_recipients = 3\nrecipient_messages = 0\n", "10.1.2.3");
  EXPECT_EQ(code(h.mail({"<alice@example.net>"})), "continue");
  for (const char* r : {"<a@remote.example>", "<b@remote.example>", "<c@remote.example>"}) {
    EXPECT_EQ(code(h.rcpt(r)), "continue") << r;
  }
  const Verdict fourth = h.rcpt("<d@remote.example>");
  EXPECT_EQ(code(fourth), "451 4.7.1");
  EXPECT_EQ(fourth.reply()->text, "Service unavailable - try again later");
  EXPECT_EQ(code(h.eom()), "continue");  // the three taken are delivered
  // Still refused a whole window later: the 5 s bucket the three were
  // counted in still overlaps the window and is counted whole...
  gNow += minutes(5);
  EXPECT_EQ(code(h.send("<alice@example.net>", {"<e@remote.example>"})), "451 4.7.1");
  // ...and admitted once that bucket has left it.
  gNow += seconds(5);
  EXPECT_EQ(code(h.send("<alice@example.net>", {"<e@remote.example>"})), "continue");
}

TEST(RateLimitMilter, AbortedTransactionGivesItsCountBack) {
  Harness h(kBase + "[limits]\nsender_recipients = 2\nrecipient_messages = 0\n", "10.1.2.3");
  h.mail({"<bob@example.net>"});
  EXPECT_EQ(code(h.rcpt("<a@remote.example>")), "continue");
  EXPECT_EQ(code(h.rcpt("<b@remote.example>")), "continue");
  h.abort();
  EXPECT_EQ(code(h.send("<bob@example.net>", {"<c@remote.example>", "<d@remote.example>"})), "continue");
  EXPECT_EQ(code(h.send("<bob@example.net>", {"<e@remote.example>"})), "451 4.7.1");
}

TEST(RateLimitMilter, SenderLimitAppliesOutboundOnlyByDefault) {
  Harness h(kBase + "[limits]\nsender_recipients = 1\nrecipient_messages = 0\n");  // an outside client
  EXPECT_EQ(code(h.send("<carol@example.org>", {"<u1@example.net>", "<u2@example.net>"})), "continue");
}

TEST(RateLimitMilter, RecipientLimitRefusesOnlyThatRecipient) {
  Harness h(kBase + "[limits]\nrecipient_messages = 2\n");
  EXPECT_EQ(code(h.send("<x@example.org>", {"<hot@example.net>"})), "continue");
  EXPECT_EQ(code(h.send("<x@example.org>", {"<hot@example.net>"})), "continue");
  h.mail({"<x@example.org>"});
  const Verdict v = h.rcpt("<hot@example.net>");
  EXPECT_EQ(code(v), "451 4.0.0");
  EXPECT_EQ(v.reply()->text, "Rate limit exceeded");
  EXPECT_EQ(code(h.rcpt("<cold@example.net>")), "continue");
  EXPECT_EQ(code(h.eom()), "continue");
}

TEST(RateLimitMilter, RefusedRecipientDoesNotCountForTheSender) {
  Harness h(kBase + "[limits]\nsender_recipients = 2\nrecipient_messages = 1\n"
                    "recipient_directions = all\n",
            "10.1.2.3");
  EXPECT_EQ(code(h.send("<s@example.net>", {"<r@remote.example>"})), "continue");  // sender 1, r 1
  h.mail({"<s@example.net>"});
  EXPECT_EQ(code(h.rcpt("<r@remote.example>")), "451 4.0.0");  // r is full: sender not charged
  EXPECT_EQ(code(h.rcpt("<q@remote.example>")), "continue");   // sender 2
  EXPECT_EQ(code(h.eom()), "continue");
  EXPECT_EQ(code(h.send("<s@example.net>", {"<p@remote.example>"})), "451 4.7.1");
}

TEST(RateLimitMilter, SessionRecipientsCountAcrossMessages) {
  Harness h(kBase + "[limits]\nsession_recipients = 3\nrecipient_messages = 0\n");
  EXPECT_EQ(code(h.send("<x@example.org>", {"<a@example.net>", "<b@example.net>"})), "continue");
  h.mail({"<x@example.org>"});
  EXPECT_EQ(code(h.rcpt("<c@example.net>")), "continue");
  const Verdict v = h.rcpt("<d@example.net>");
  EXPECT_EQ(code(v), "452 4.5.3");
  EXPECT_EQ(v.reply()->text, "Too many recipients");
}

TEST(RateLimitMilter, ClientPenaltyOutlastsTheWindow) {
  Harness h(kBase + "[limits]\nclient_messages = 2\nclient_window = 5m\nclient_penalty = 1h\n"
                    "recipient_messages = 0\n");
  EXPECT_EQ(code(h.send("<x@example.org>", {"<a@example.net>"})), "continue");
  EXPECT_EQ(code(h.send("<x@example.org>", {"<a@example.net>"})), "continue");
  const Verdict v = h.mail({"<x@example.org>"});
  EXPECT_EQ(code(v), "450 4.7.1");
  EXPECT_EQ(v.reply()->text, "Too many messages, try again later");
  gNow += minutes(30);  // the window is empty, the penalty is not over
  EXPECT_EQ(code(h.mail({"<y@example.org>"})), "450 4.7.1");
  gNow += minutes(31);
  EXPECT_EQ(code(h.send("<x@example.org>", {"<a@example.net>"})), "continue");
}

TEST(RateLimitMilter, UserAndDomainCounters) {
  Harness h(kBase + "[limits]\nuser_messages = 1\ndomain_messages = 1\nrecipient_messages = 0\n"
                    "sender_recipients = 0\n",
            "198.51.100.7");
  h.macros.values["{auth_authen}"] = "alice";
  EXPECT_EQ(code(h.send("<alice@example.net>", {"<a@remote.example>"})), "continue");
  EXPECT_EQ(code(h.send("<alice2@example.com>", {"<a@remote.example>"})), "450 4.7.1");  // user alice
  h.macros.values.erase("{auth_authen}");
  EXPECT_EQ(code(h.send("<a@flood.example>", {"<a@example.net>"})), "continue");
  EXPECT_EQ(code(h.send("<b@FLOOD.example>", {"<a@example.net>"})), "450 4.7.1");  // domain flood.example
}

TEST(RateLimitMilter, ExemptionsSkipEveryCounter) {
  Harness h(kBase + "[limits]\nrecipient_messages = 1\nclient_messages = 1\n"
                    "[exempt]\nsenders = @trusted.example boss@example.org\nnetworks = 192.0.2.0/24\n");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(code(h.send("<x@trusted.example>", {"<a@example.net>"})), "continue");
    EXPECT_EQ(code(h.send("<Boss@example.org>", {"<a@example.net>"})), "continue");
  }
  Harness net(kBase + "[limits]\nclient_messages = 1\n[exempt]\nnetworks = 192.0.2.0/24\n", "192.0.2.9");
  for (int i = 0; i < 3; ++i) EXPECT_EQ(code(net.send("<x@example.org>", {"<a@example.net>"})), "continue");
}

TEST(RateLimitMilter, PerDomainOverride) {
  Harness h(kBase + "[limits]\nsender_recipients = 1\nrecipient_messages = 0\n"
                    "[domain bulk.example.net]\nsender_recipients = 3\n",
            "10.1.2.3");
  EXPECT_EQ(code(h.send("<n@bulk.example.net>", {"<a@r.example>", "<b@r.example>", "<c@r.example>"})), "continue");
  EXPECT_EQ(code(h.send("<n@bulk.example.net>", {"<d@r.example>"})), "451 4.7.1");
  EXPECT_EQ(code(h.send("<n@example.net>", {"<a@r.example>", "<b@r.example>"})), "451 4.7.1");
}

TEST(RateLimitMilter, ListLoopGuardRemembersOnlyAcceptedMessages) {
  Harness h(kBase + "[limits]\nrecipient_messages = 0\n[loop]\nlist_addresses = list@example.net\n");
  // Aborted before end of message: not remembered.
  h.mail({"<x@example.org>"});
  h.rcpt("<list@example.net>");
  h.header("Message-ID", " <m1@example.org>");
  h.abort();
  EXPECT_EQ(code(h.send("<x@example.org>", {"<list@example.net>"}, "<m1@example.org>")), "continue");
  const Verdict dup = h.send("<y@example.org>", {"<list@example.net>"}, "<m1@example.org>");
  EXPECT_EQ(code(dup), "554 5.4.6");
  EXPECT_EQ(dup.reply()->text, "Duplicate message to mailing list");
  // Same Message-ID to a non-list address is fine; another ID to the list too.
  EXPECT_EQ(code(h.send("<x@example.org>", {"<other@example.net>"}, "<m1@example.org>")), "continue");
  EXPECT_EQ(code(h.send("<x@example.org>", {"<list@example.net>"}, "<m2@example.org>")), "continue");
  gNow += hours(25);
  EXPECT_EQ(code(h.send("<x@example.org>", {"<list@example.net>"}, "<m1@example.org>")), "continue");
}

TEST(RateLimitMilter, ReloadKeepsTheCounters) {
  Harness h(kBase + "[limits]\nrecipient_messages = 1\n");
  EXPECT_EQ(code(h.send("<x@example.org>", {"<a@example.net>"})), "continue");
  const auto before = h.milter.current()->store;
  const auto schema = milter::buildSchema(h.milter);
  config::Errors errors;
  const auto values = config::Values::parse(schema, kBase + "[limits]\nrecipient_messages = 1\nsender_recipients = 7\n",
                                            "test.conf", errors);
  ASSERT_TRUE(h.milter.configure(values, errors, true)) << errors.str();
  EXPECT_EQ(h.milter.current()->store, before);
  EXPECT_EQ(code(h.send("<x@example.org>", {"<a@example.net>"})), "451 4.0.0");
}

TEST(RateLimitMilter, BadConfigIsRefusedWithLines) {
  RateLimitMilter m(&testClock);
  const auto schema = milter::buildSchema(m);
  config::Errors errors;
  const auto values = config::Values::parse(
      schema, "[limits]\nsender_directions = sideways\n[store]\nredis_address = nowhere\n", "bad.conf", errors);
  EXPECT_FALSE(m.configure(values, errors, false));
  const std::string text = errors.str();
  EXPECT_NE(text.find("bad.conf:2: sender_directions: unknown direction 'sideways'"), std::string::npos) << text;
  EXPECT_NE(text.find("bad.conf:4: redis_address"), std::string::npos) << text;
}

TEST(RateLimitMilter, ControlStatusAndReset) {
  Harness h(kBase + "[limits]\nrecipient_messages = 2\n");
  h.send("<x@example.org>", {"<a@example.net>"});
  EXPECT_EQ(h.milter.control("status r:a@example.net").rfind("ok key=r:a@example.net count=1 limit=2 window=5m", 0), 0u)
      << h.milter.control("status r:a@example.net");
  EXPECT_EQ(h.milter.control("reset r:a@example.net"), "ok key=r:a@example.net reset");
  EXPECT_EQ(h.milter.control("status r:a@example.net").rfind("ok key=r:a@example.net count=0", 0), 0u);
  EXPECT_EQ(h.milter.control("frobnicate").rfind("error usage", 0), 0u);
  EXPECT_EQ(h.milter.control("status z:1").rfind("error unknown key kind", 0), 0u);
}

TEST(RateLimitConf, ShippedConfIsTheGeneratedOne) {
  RateLimitMilter m;
  milter::testing::expectShippedConf(m);
}

}  // namespace
}  // namespace sekimori::ratelimit
