// common/notify/outbox.h — notice mails submitted by a thread of their own,
// so that a milter at end of message does not wait for the relay, and tried
// again later when the relay fails for the time being.
//
// A batch is the mails of one event (one infected message: a warning per
// addressee), submitted in order over one SMTP session (Submitter); each
// mail's outcome goes to the batch's report function, in the outbox's
// thread. Batches go out in the order posted.
//
// Retries: a mail whose submission failed temporarily (notify::submit's
// *temporary: a 4xx reply, a relay down or silent, sendmail's EX_TEMPFAIL)
// is reported Deferred and tried again, with the other deferred mails of its
// batch over one session: Retry::after the failure, then each time after
// twice the wait before, at most 15 minutes apart, the last try at
// Retry::within after the first. A temporary failure then, or a permanent
// one at any try, is reported Failed. Every try is reported.
//
// Bounded: post() queues the batch, or — when the queued mails (those
// waiting for a retry included) would take more than `maxBytes`, or the
// outbox is not running — submits it once in the calling thread, as if there
// were no outbox (slower for that caller; a temporary failure is then
// Failed, not retried). Only when it is full *and* holds mails waiting for a
// retry (the relay is failing: a try would most likely cost the caller a
// timeout per mail for nothing) is a batch reported Failed untried, with
// tries = 0.
//
// stop() sends what is queued, the mails waiting for a retry at once, for at
// most its deadline; what is left then is reported as not sent. Queued mails
// live in memory only: a process killed with some queued loses them (each
// deferred one was logged as such, and the event they report is logged too).
//
//   notify::Outbox outbox;
//   outbox.start();
//   outbox.post({settings, {}, {{{"user@example.jp"}, msg.data, msg.messageId}},
//                [qid](const Outbox::Item& i, const Outbox::Result& r) { log(...); }});
//   outbox.stop(std::chrono::seconds(10));
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/notify/notify.h"

namespace sekimori::notify {

class Outbox {
 public:
  using Clock = std::chrono::steady_clock;

  struct Item {
    std::vector<std::string> to;  // envelope recipients
    std::string data;             // the whole message (buildMessage)
    std::string messageId;        // for the report's log line
  };
  enum class Outcome { Sent, Deferred, Failed };
  // One try's outcome, for the report.
  struct Result {
    Outcome outcome = Outcome::Sent;
    std::string error;                     // why it was not sent (empty when sent)
    int tries = 1;                         // of this mail so far, this one included (0: none made)
    std::chrono::milliseconds retryIn{0};  // Deferred: about when the next try is
  };
  // Called once per item and try, from whichever thread made it.
  using Report = std::function<void(const Item&, const Result&)>;
  struct Retry {
    std::chrono::milliseconds after{std::chrono::minutes(1)};  // before the first retry
    std::chrono::milliseconds within{std::chrono::hours(1)};   // of the first try; 0: no retries
    // The wait after the `tries`-th failed try (1, 2, ...): `after`, doubled
    // for each try before, at most max(after, 15 minutes).
    std::chrono::milliseconds delay(int tries) const;
  };
  struct Batch {
    SubmitSettings settings;  // as configured when the event happened
    Retry retry;
    std::vector<Item> items;
    Report report;
  };

  explicit Outbox(std::size_t maxBytes = 16 * 1024 * 1024) : maxBytes_(maxBytes) {}
  ~Outbox() { stop(std::chrono::milliseconds(0)); }
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Starts the sending thread (again, after a stop()).
  void start();
  // Queues `b`, or sends it here and now (full, or not running), or reports
  // it Failed untried (full of mails waiting for a retry).
  void post(Batch b);
  // Sends what is queued or deferred within `deadline` (a submission under
  // way finishes, within its own timeout; nothing is deferred any more),
  // reports the rest as not sent — the rest of a batch under way too — and
  // ends the thread.
  void stop(std::chrono::milliseconds deadline);
  // Batches waiting to be sent (not the one being sent, not the deferred).
  std::size_t queued() const;
  // Batches of mails waiting for a retry.
  std::size_t deferred() const;

 private:
  struct Pending {
    Batch batch;
    int tries = 0;             // made so far
    Clock::time_point first;   // of the first try
    Clock::time_point due;     // of the next try
  };
  // Tries each mail of `p` once; returns the ones deferred, due when their
  // next try is (no items: none). A temporary failure is deferred unless
  // noRetry() gives a reason; once giveUp() says so the rest is not tried.
  static Pending attempt(Pending p, const std::function<bool()>& giveUp,
                         const std::function<const char*()>& noRetry);
  bool pastDeadline() const;
  const char* noRetryReason() const;
  void run();

  static std::size_t bytesOf(const Batch& b);

  const std::size_t maxBytes_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Pending> queue_;    // posted, in order
  std::vector<Pending> retries_; // deferred, each with its due time
  std::size_t queuedBytes_ = 0;  // bytesOf() the batches in queue_, in retries_ and under way
  bool running_ = false;   // start() ran, stop() has not begun
  bool stopping_ = false;
  Clock::time_point deadline_;
  std::thread thread_;
};

}  // namespace sekimori::notify
