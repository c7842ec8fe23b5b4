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
// stop() sends what is queued, for at most its deadline. Without a spool,
// the mails waiting for a retry are tried once more at once, and what is
// left then is reported as not sent: a process killed with mails queued
// loses them (each deferred one was logged as such, and the event they
// report is logged too).
//
// With a spool (start(Spool)): every batch queued by post() is also a file
// in the spool directory, written before post() returns, rewritten after
// each try and removed when none of its mails is left to try; stop()
// leaves the mails waiting for a retry to the next start (no extra try),
// and what it could not send within its deadline — or could not send for
// the time being — stays there too, reported Deferred. A
// start loads the spool's batches (up to the outbox's bound, oldest first)
// and tries them when they are due (one the stop left untried at once),
// each with the report the Spool's `recovered` makes for it; their first
// try's time still bounds their retries (one more try is made after a long
// stop). A file that cannot be read is renamed NAME.bad and left to the
// admin. A spool another outbox holds (flock on its .lock) is not used:
// the outbox runs in memory only and says so to `problem`. A batch whose
// file cannot be written waits in memory (said to `problem`, as is its
// loss if a stop cannot write it either). A crash, a kill or a power cut
// loses no queued or deferred mail; a mail being sent at that moment may
// be sent twice (its file is rewritten after the try).
//
//   notify::Outbox outbox;
//   outbox.start();                    // or start({"/var/lib/sekimori/outbox", recoveredReport, logProblem})
//   outbox.post({settings, {}, {{{"user@example.jp"}, msg.data, msg.messageId}},
//                [qid](const Outbox::Item& i, const Outbox::Result& r) { log(...); }});
//   outbox.stop(std::chrono::seconds(10));
#pragma once

#include <atomic>
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
    SubmitSettings settings;  // as configured when the event happened (see Refresh)
    Retry retry;
    std::vector<Item> items;
    Report report;
    std::string origin;       // what the batch is about (a queue id), kept with it in the spool
  };
  struct Spool {
    std::string dir;  // an existing private directory (util::preparePrivateDir)
    // The report of a batch found in `dir` at start, as it was posted but
    // for its report.
    std::function<Report(const Batch&)> recovered;
    // What went wrong with the spool (a file that cannot be written or
    // read), for the log; the outbox goes on, in memory.
    std::function<void(const std::string&)> problem;
  };

  explicit Outbox(std::size_t maxBytes = 16 * 1024 * 1024) : maxBytes_(maxBytes) {}
  ~Outbox() { stop(std::chrono::milliseconds(0)); }
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Brings a batch's submit settings and retry policy up to date before
  // each of its tries (from the outbox's thread; at a start also for each
  // batch loaded from the spool, before its next try is timed): a batch
  // follows the configuration as it is now, so that a relay fixed in the
  // conf file (reload or restart) takes the mails waiting for a retry too.
  using Refresh = std::function<void(SubmitSettings&, Retry&)>;

  // Starts the sending thread (again, after a stop()), in memory only.
  void start();
  // As start(), with the mails not yet sent kept in `spool.dir` (when not
  // empty); the batches found there are loaded first (see above).
  void start(Spool spool, Refresh refresh = {});
  // Queues `b` (and with a spool writes its file first: an fsync in the
  // caller's thread), or sends it here and now (full, or not running), or
  // reports it Failed untried (full of mails waiting for a retry).
  void post(Batch b);
  // Sends what is queued or deferred within `deadline` (a submission under
  // way finishes, within its own timeout; nothing is deferred any more),
  // reports the rest as not sent — the rest of a batch under way too — and
  // ends the thread.
  void stop(std::chrono::milliseconds deadline);
  // Makes every batch waiting for a retry due now — and the one being
  // tried, if that try fails for now (it began with the old settings): an
  // admin who fixed the relay does not want to wait out the back-off. The
  // waits after the next failure go on doubling.
  void retryNow();
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
    std::string file;          // its spool file; empty: none (yet)
  };
  // Tries each mail of `p` once; returns the ones deferred, due when their
  // next try is (no items: none). A temporary failure is deferred unless
  // noRetry() gives a reason; once giveUp() says so the rest is not tried:
  // reported Failed, or Deferred to the next start when `keepUntried`.
  static Pending attempt(Pending p, const std::function<bool()>& giveUp,
                         const std::function<const char*()>& noRetry, bool keepUntried = false);
  bool pastDeadline() const;
  const char* noRetryReason() const;
  void run();
  // The spool (from post(), and outside the lock from the outbox's thread):
  // writes `p` to its file (a new one when it has none) or, when nothing is
  // left in it, removes the file. A failure goes to spool_.problem.
  void keep(Pending& p);
  void load();

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
  Spool spool_;                  // dir empty: memory only
  Refresh refresh_;              // set by start(), read by its thread
  unsigned retryNows_ = 0;       // retryNow() calls so far
  int spoolLock_ = -1;           // flock()ed spool_.dir/.lock while running
  std::atomic<unsigned> spoolSerial_{0};  // for unique file names
  std::thread thread_;
};

}  // namespace sekimori::notify
