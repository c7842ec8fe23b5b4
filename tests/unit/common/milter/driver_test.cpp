#include "common/milter/driver.h"

#include <gtest/gtest.h>

#include "tests/unit/common/milter/fakes.h"

namespace sekimori::milter {
namespace {

using testing::bytes;
using testing::FakeMacros;
using testing::RecordingActions;

struct Counts {
  static inline int live = 0;
  Counts() { ++live; }
  ~Counts() { --live; }
  int headers = 0;
};

// A milter that records what it saw and can be told to misbehave.
class Probe final : public Milter {
 public:
  bool throwAtEoh = false;
  bool faultAtRcpt = false;
  std::string_view name() const override { return "probe"; }
  Stages stages() const override { return Stage::Mail | Stage::Rcpt | Stage::Header | Stage::Eoh | Stage::Eom; }
  void declareOptions(config::Schema&) const override {}
  bool configure(const config::Values&, config::Errors&, bool) override { return true; }
  Verdict onRcpt(Session& s, const policy::Address& r) override {
    s.message<Counts>();
    if (faultAtRcpt) return Verdict::fault("backend down");
    if (r.local == "nobody") return Verdict::refuse(*policy::Reply::parse("550 5.1.1 User unknown"));
    return Verdict::next();
  }
  Verdict onHeader(Session& s, std::string_view, std::string_view) override {
    ++s.message<Counts>().headers;
    return Verdict::next();
  }
  Verdict onEoh(Session&) override {
    if (throwAtEoh) throw std::runtime_error("boom");
    return Verdict::next();
  }
  Verdict onEom(Session&, MtaActions& mta) override {
    mta.addHeader("X-Probe", "seen");
    return Verdict::next();
  }
};

std::shared_ptr<const CommonConfig> common(CommonConfig::OnError onError = CommonConfig::OnError::Tempfail) {
  auto c = std::make_shared<CommonConfig>();
  c->milterName = "probe";
  c->onError = onError;
  return c;
}

TEST(Driver, TransactionLivesFromMailToEndOfMessage) {
  Probe p;
  Driver d(p);
  FakeMacros macros;
  macros.values["{auth_authen}"] = "alice";
  Session s(macros, common());
  d.connect(s, "mx.example", policy::IpAddress::parse("192.0.2.7"));
  EXPECT_TRUE(d.mail(s, common(), {"<a@example.jp>", "SIZE=1234", "BODY=8BITMIME"}).isContinue());
  EXPECT_EQ(s.txn().sender.str(), "a@example.jp");
  EXPECT_EQ(s.txn().declaredSize(), 1234u);
  EXPECT_EQ(s.txn().authUser, "alice");
  EXPECT_TRUE(d.rcpt(s, "<b@example.net>").isContinue());
  EXPECT_EQ(d.rcpt(s, "<nobody@example.net>").kind(), Verdict::Kind::Reply);
  ASSERT_TRUE(s.hasTxn()) << "a refused recipient ends only that recipient";
  EXPECT_EQ(s.txn().recipients.size(), 1u);
  EXPECT_EQ(Counts::live, 1);
  d.header(s, "Subject", " hi");
  d.eoh(s);
  d.body(s, bytes("hello\r\n"));
  EXPECT_EQ(s.txn().messageBytes(), std::string("Subject: hi\r\n\r\nhello\r\n").size());
  RecordingActions mta;
  EXPECT_TRUE(d.eom(s, mta).isContinue());
  EXPECT_FALSE(s.hasTxn());
  EXPECT_EQ(Counts::live, 0) << "per-message state is destroyed at end of message";
  ASSERT_EQ(mta.added.size(), 1u);
  EXPECT_EQ(mta.added[0].first, "X-Probe");
}

TEST(Driver, AbortAndDisconnectDestroyMessageState) {
  Probe p;
  Driver d(p);
  FakeMacros macros;
  {
    Session s(macros, common());
    d.mail(s, common(), {"<a@example.jp>"});
    d.rcpt(s, "<b@example.net>");
    EXPECT_EQ(Counts::live, 1);
    d.abort(s);
    EXPECT_EQ(Counts::live, 0);
    d.mail(s, common(), {"<a@example.jp>"});
    d.rcpt(s, "<b@example.net>");
    d.header(s, "Subject", " half a message");
    EXPECT_EQ(Counts::live, 1);
  }  // client vanished mid-message: the session goes, and its state with it
  EXPECT_EQ(Counts::live, 0);
  EXPECT_EQ(Session::live(), 0u);
}

TEST(Driver, NewMailFromStartsAFreshTransaction) {
  Probe p;
  Driver d(p);
  FakeMacros macros;
  Session s(macros, common());
  d.mail(s, common(), {"<a@example.jp>"});
  d.rcpt(s, "<b@example.net>");
  d.mail(s, common(), {"<>"});
  EXPECT_TRUE(s.txn().sender.isNull());
  EXPECT_TRUE(s.txn().recipients.empty());
  EXPECT_EQ(Counts::live, 0);
}

TEST(Driver, FaultsAndExceptionsBecomeOnErrorVerdicts) {
  struct Case {
    const char* label;
    CommonConfig::OnError onError;
    Verdict::Kind kind;
    const char* code;
  };
  const Case cases[] = {
      {"tempfail", CommonConfig::OnError::Tempfail, Verdict::Kind::Reply, "451"},
      {"reject", CommonConfig::OnError::Reject, Verdict::Kind::Reply, "554"},
      {"accept", CommonConfig::OnError::Accept, Verdict::Kind::Accept, ""},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    Probe p;
    Driver d(p);
    FakeMacros macros;
    Session s(macros, common(c.onError));
    p.throwAtEoh = true;
    d.mail(s, common(c.onError), {"<a@example.jp>"});
    d.rcpt(s, "<b@example.net>");
    const Verdict v = d.eoh(s);
    EXPECT_EQ(v.kind(), c.kind);
    if (v.reply()) {
      EXPECT_EQ(v.reply()->code, c.code);
    }
    EXPECT_FALSE(s.hasTxn()) << "a fault ends the message";
    EXPECT_EQ(Counts::live, 0);

    p.throwAtEoh = false;
    p.faultAtRcpt = true;
    d.mail(s, common(c.onError), {"<a@example.jp>"});
    EXPECT_EQ(d.rcpt(s, "<b@example.net>").kind(), c.kind);
  }
}

TEST(Transaction, DeclaredSize) {
  Transaction t;
  EXPECT_FALSE(t.declaredSize());
  t.mailArgs = {"BODY=8BITMIME", "size=42"};
  EXPECT_EQ(t.declaredSize(), 42u);
  t.mailArgs = {"SIZE=12x"};
  EXPECT_FALSE(t.declaredSize());
  t.mailArgs = {"SIZE=99999999999999999999999"};
  EXPECT_EQ(t.declaredSize(), UINT64_MAX);
}

}  // namespace
}  // namespace sekimori::milter
