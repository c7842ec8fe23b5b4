// milters/ratelimit/ratelimit_milter.h — sekimori-ratelimit: sliding-window
// rate limits per sender, recipient, client, authenticated user and sender
// domain, recipients per SMTP session, and the mailing-list loop guard
// (R-RATE-1 … R-RATE-7).
//
// Message counters (client, user, domain) are hit at MAIL FROM, so a
// penalised client is refused before it sends anything; recipient counters
// (sender, recipient, session) at RCPT, refusing just that recipient. Every
// hit of a transaction keeps a Ticket; a transaction that ends without our
// end-of-message accept (abort, RSET, disconnect, a later refusal) gives its
// hits back, so only mail that was actually taken counts. The loop guard
// reads Message-ID and decides at end of message.
//
// The counters live in a Store (memory by default, or Redis shared by MX
// hosts) that survives a reload; it is replaced only when the [store]
// settings change.
#pragma once

#include <memory>
#include <mutex>

#include "common/config/snapshot.h"
#include "common/control/control.h"
#include "common/milter/milter.h"
#include "milters/ratelimit/rate_policy.h"
#include "milters/ratelimit/store.h"

namespace sekimori::ratelimit {

struct StoreSettings {
  std::string backend = "memory";  // memory | redis
  std::size_t memoryMaxKeys = 500000;
  std::string redisAddress = "127.0.0.1:6379";
  std::string redisUsername;
  std::string redisPassword;
  int redisDatabase = 0;
  std::chrono::milliseconds redisConnectTimeout{500};
  std::chrono::milliseconds redisTimeout{500};
  std::string redisPrefix = "sekimori:rl:";
  bool failTempfail = false;  // redis_failure = tempfail
  friend bool operator==(const StoreSettings&, const StoreSettings&) = default;
};

// Everything one message is judged by.
struct RateRuntime {
  std::shared_ptr<const RateConfig> cfg;
  StoreSettings storeSettings;
  std::shared_ptr<Store> store;
  policy::Reply storeFailure{"451", "4.3.0", "Rate limit service unavailable, try again later"};
};

class RateLimitMilter final : public milter::Milter {
 public:
  // `clock` is injectable for tests; the daemon uses the system clock.
  using ClockFn = TimePoint (*)();
  explicit RateLimitMilter(ClockFn clock = [] { return Clock::now(); }) : clock_(clock) {}

  std::string_view name() const override { return "ratelimit"; }
  milter::Stages stages() const override {
    using milter::Stage;
    return Stage::Mail | Stage::Rcpt | Stage::Header | Stage::Eom;
  }
  // Headers are only read (Message-ID for the loop guard): no round trip each.
  milter::Stages replyStages() const override {
    using milter::Stage;
    return Stage::Mail | Stage::Rcpt | Stage::Eom;
  }

  void declareOptions(config::Schema& schema) const override;
  bool configure(const config::Values& values, config::Errors& errors, bool apply) override;
  bool open(std::string* error) override;
  void start() override;
  void stop() override;

  milter::Verdict onMail(milter::Session& s) override;
  milter::Verdict onRcpt(milter::Session& s, const policy::Address& rcpt) override;
  milter::Verdict onHeader(milter::Session& s, std::string_view name, std::string_view value) override;
  milter::Verdict onEom(milter::Session& s, milter::MtaActions& mta) override;
  void onAbort(milter::Session& s) override;

  std::shared_ptr<const RateRuntime> current() const { return runtime_.get(); }

  // The admin command's request ("status KEY", "reset KEY"), answered with
  // one line; what the control socket serves.
  std::string control(std::string_view request);

 private:
  ClockFn clock_;
  config::Snapshot<RateRuntime> runtime_;
  std::mutex configureMutex_;  // configure() from the start and reload threads
  std::string controlPath_;
  mode_t controlMode_ = 0600;
  std::unique_ptr<control::ControlServer> controlServer_;
};

}  // namespace sekimori::ratelimit
