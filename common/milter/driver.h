// common/milter/driver.h — drives a Milter through one SMTP session the way
// the MTA does, with all the bookkeeping the framework promises (transaction
// created at MAIL and destroyed at every way a message can end, recipients
// and header/body sizes counted, exceptions and faults turned into the
// configured on_error verdict and logged).
//
// The libmilter glue calls it for real traffic; unit tests call it with a
// fake MacroSource and MtaActions, so they exercise the same code path:
//
//   FakeMacros macros;                      // tests/unit/common/milter/fakes.h
//   Session s(macros, common);
//   Driver d(milter);
//   d.connect(s, "mx.example", IpAddress::parse("192.0.2.7"));
//   d.mail(s, common, {"<a@example.jp>", "SIZE=1000"});
//   EXPECT_EQ(d.rcpt(s, "<b@example.net>").kind(), Verdict::Kind::Continue);
#pragma once

#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/milter/milter.h"

namespace sekimori::milter {

class Driver {
 public:
  explicit Driver(Milter& m) : milter_(m) {}

  Verdict connect(Session& s, std::string_view hostname, std::optional<policy::IpAddress> addr);
  Verdict helo(Session& s, std::string_view helo);
  // argv[0] is the sender as sent ("<a@b>"), the rest ESMTP parameters.
  Verdict mail(Session& s, std::shared_ptr<const CommonConfig> common, std::span<const std::string_view> argv);
  Verdict mail(Session& s, std::shared_ptr<const CommonConfig> common, std::initializer_list<std::string_view> argv) {
    return mail(s, std::move(common), std::span<const std::string_view>(argv.begin(), argv.size()));
  }
  Verdict rcpt(Session& s, std::string_view rcpt);
  Verdict data(Session& s);
  Verdict header(Session& s, std::string_view name, std::string_view value);
  Verdict eoh(Session& s);
  Verdict body(Session& s, std::span<const std::byte> chunk);
  Verdict eom(Session& s, MtaActions& mta);
  void abort(Session& s);

  // A Fault verdict (or an exception) becomes what on_error says: the
  // error reply (tempfail), Accept, or a permanent refusal.
  static Verdict resolveFault(Session& s, Stage stage, const Verdict& v);

 private:
  template <class F>
  Verdict run(Session& s, Stage stage, F&& f);
  Milter& milter_;
};

std::string_view stageName(Stage s);

}  // namespace sekimori::milter
