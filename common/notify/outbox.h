// common/notify/outbox.h — notice mails submitted by a thread of their own,
// so that a milter at end of message does not wait for the relay.
//
// A batch is the mails of one event (one infected message: a warning per
// addressee), submitted in order over one SMTP session (Submitter); each
// mail's outcome goes to the batch's report function, in the outbox's
// thread. Batches go out in the order posted.
//
// Bounded, and nothing dropped for want of room: post() queues the batch,
// or — when the queued messages would take more than `maxBytes`, or the
// outbox is not running — submits it in the calling thread, as if there
// were no outbox (slower for that caller, never lost). stop() sends what is queued, for at most its
// deadline; what is left then is reported as not sent. Queued mails live in
// memory only: a process killed with some queued loses them (each was
// logged as queued by its caller, and the event they report is logged too).
//
//   notify::Outbox outbox;
//   outbox.start();
//   outbox.post({settings, {{{"user@example.jp"}, msg.data, msg.messageId}},
//                [qid](const Outbox::Item& i, bool sent, const std::string& why) { log(...); }});
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
  struct Item {
    std::vector<std::string> to;  // envelope recipients
    std::string data;             // the whole message (buildMessage)
    std::string messageId;        // for the report's log line
  };
  // Called once per item with its outcome; `error` is empty when sent.
  using Report = std::function<void(const Item&, bool sent, const std::string& error)>;
  struct Batch {
    SubmitSettings settings;  // as configured when the event happened
    std::vector<Item> items;
    Report report;
  };

  explicit Outbox(std::size_t maxBytes = 16 * 1024 * 1024) : maxBytes_(maxBytes) {}
  ~Outbox() { stop(std::chrono::milliseconds(0)); }
  Outbox(const Outbox&) = delete;
  Outbox& operator=(const Outbox&) = delete;

  // Starts the sending thread (again, after a stop()).
  void start();
  // Queues `b`, or sends it here and now (full, or not running).
  void post(Batch b);
  // Sends what is queued within `deadline` (a submission under way finishes,
  // within its own timeout), reports the rest as not sent — the rest of a
  // batch under way too — and ends the thread.
  void stop(std::chrono::milliseconds deadline);
  // Batches waiting (not the one being sent).
  std::size_t queued() const;

  // One batch in the calling thread: what the sending thread does with each.
  static void send(const Batch& b);

 private:
  // As send(), but the items left once giveUp() says so are reported as not sent.
  static void send(const Batch& b, const std::function<bool()>& giveUp);
  bool pastDeadline() const;
  void run();

  static std::size_t bytesOf(const Batch& b);

  const std::size_t maxBytes_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Batch> queue_;
  std::size_t queuedBytes_ = 0;  // bytesOf() the batches in queue_
  bool running_ = false;   // start() ran, stop() has not begun
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::thread thread_;
};

}  // namespace sekimori::notify
