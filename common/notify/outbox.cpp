// common/notify/outbox.cpp — see outbox.h.
#include "common/notify/outbox.h"

#include <algorithm>

namespace sekimori::notify {

namespace {
constexpr const char* kNotSent = "not sent: still queued when the milter stopped";
}  // namespace

std::chrono::milliseconds Outbox::Retry::delay(int tries) const {
  using std::chrono::milliseconds;
  const milliseconds first = std::max(after, milliseconds(10));  // never a busy loop on a dead relay
  const milliseconds cap = std::max<milliseconds>(first, std::chrono::minutes(15));
  milliseconds d = first;
  for (int i = 1; i < tries && d < cap; ++i) d *= 2;
  return std::min(d, cap);
}

void Outbox::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  running_ = true;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

std::size_t Outbox::bytesOf(const Batch& b) {
  std::size_t n = 0;
  for (const auto& i : b.items) n += i.data.size();
  return n;
}

void Outbox::post(Batch b) {
  const char* reason = nullptr;
  bool relayFailing = false;
  {
    std::lock_guard lock(mutex_);
    const std::size_t bytes = bytesOf(b);
    if (running_ && queuedBytes_ + bytes <= maxBytes_) {
      queuedBytes_ += bytes;
      queue_.push_back(Pending{std::move(b), 0, {}, {}});
      wake_.notify_one();
      return;
    }
    reason = running_ ? "the outbox is full" : "the outbox is not running";
    relayFailing = running_ && !retries_.empty();
  }
  if (relayFailing) {
    // Full, and mails wait for a retry: the relay is failing, and a try
    // here would most likely fail too, after up to its timeout per mail,
    // in the caller's thread (a milter's end of message). Not tried.
    for (const auto& item : b.items) {
      if (b.report) b.report(item, Result{Outcome::Failed, "not sent: the outbox is full of mails waiting for a retry", 0, {}});
    }
    return;
  }
  attempt(Pending{std::move(b), 0, {}, {}}, [] { return false; }, [reason] { return reason; });
}

std::size_t Outbox::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

std::size_t Outbox::deferred() const {
  std::lock_guard lock(mutex_);
  return retries_.size();
}

Outbox::Pending Outbox::attempt(Pending p, const std::function<bool()>& giveUp,
                                const std::function<const char*()>& noRetry) {
  const Batch& b = p.batch;
  if (p.tries++ == 0) p.first = Clock::now();
  const Clock::time_point last = p.first + b.retry.within;  // no try after it
  Pending rest{Batch{b.settings, b.retry, {}, b.report}, p.tries, p.first, {}};
  Submitter out(b.settings);  // one SMTP session for the batch
  for (auto& item : p.batch.items) {
    Result r;
    r.tries = p.tries;
    if (giveUp()) {
      r.outcome = Outcome::Failed;
      r.error = kNotSent;
    } else if (bool temporary = false; out.submit(item.to, item.data, &r.error, &temporary)) {
      r.error.clear();
    } else {
      r.outcome = Outcome::Failed;
      const auto now = Clock::now();
      if (temporary && now < last) {
        if (const char* why = noRetry()) {
          r.error += std::string(" (not retried: ") + why + ")";
        } else {
          r.outcome = Outcome::Deferred;
          r.retryIn = std::min(b.retry.delay(p.tries),
                               std::chrono::duration_cast<std::chrono::milliseconds>(last - now));
        }
      }
    }
    if (b.report) b.report(item, r);
    if (r.outcome == Outcome::Deferred) rest.batch.items.push_back(std::move(item));
  }
  rest.due = std::min(Clock::now() + b.retry.delay(p.tries), last);
  return rest;
}

bool Outbox::pastDeadline() const {
  std::lock_guard lock(mutex_);
  return stopping_ && Clock::now() >= deadline_;
}

const char* Outbox::noRetryReason() const {
  std::lock_guard lock(mutex_);
  return stopping_ ? "the milter is stopping" : nullptr;
}

void Outbox::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    // The next batch: the oldest posted, else a retry that is due — every
    // retry is, once stop() has begun.
    const auto soonest = std::min_element(retries_.begin(), retries_.end(),
                                          [](const Pending& a, const Pending& b) { return a.due < b.due; });
    Pending next;
    if (!queue_.empty()) {
      next = std::move(queue_.front());
      queue_.pop_front();
    } else if (soonest != retries_.end() && (stopping_ || soonest->due <= Clock::now())) {
      next = std::move(*soonest);
      retries_.erase(soonest);
    } else if (stopping_) {
      return;  // nothing left
    } else {
      if (soonest == retries_.end()) {
        wake_.wait(lock);
      } else {
        const Clock::time_point due = soonest->due;
        wake_.wait_until(lock, due);
      }
      continue;
    }
    const std::size_t bytes = bytesOf(next.batch);
    lock.unlock();
    // Past stop()'s deadline the rest is reported, not tried: a dead relay
    // would otherwise cost a timeout per mail.
    Pending rest = attempt(std::move(next), [this] { return pastDeadline(); }, [this] { return noRetryReason(); });
    lock.lock();
    queuedBytes_ -= bytes;
    if (!rest.batch.items.empty()) {
      queuedBytes_ += bytesOf(rest.batch);
      retries_.push_back(std::move(rest));
    }
  }
}

void Outbox::stop(std::chrono::milliseconds deadline) {
  std::thread t;
  {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) return;
    running_ = false;  // posts from now on are sent by their callers
    stopping_ = true;
    deadline_ = Clock::now() + deadline;
    t = std::move(thread_);
  }
  wake_.notify_all();
  t.join();
}

}  // namespace sekimori::notify
