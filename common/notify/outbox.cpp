// common/notify/outbox.cpp — see outbox.h.
#include "common/notify/outbox.h"

namespace sekimori::notify {

namespace {
constexpr const char* kNotSent = "not sent: still queued when the milter stopped";
}  // namespace

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
  {
    std::lock_guard lock(mutex_);
    const std::size_t bytes = bytesOf(b);
    if (running_ && queuedBytes_ + bytes <= maxBytes_) {
      queuedBytes_ += bytes;
      queue_.push_back(std::move(b));
      wake_.notify_one();
      return;
    }
  }
  send(b);
}

std::size_t Outbox::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void Outbox::send(const Batch& b) { send(b, [] { return false; }); }

void Outbox::send(const Batch& b, const std::function<bool()>& giveUp) {
  Submitter out(b.settings);  // one SMTP session for the batch
  for (const auto& item : b.items) {
    if (giveUp()) {
      if (b.report) b.report(item, false, kNotSent);
      continue;
    }
    std::string why;
    const bool sent = out.submit(item.to, item.data, &why);
    if (b.report) b.report(item, sent, sent ? std::string() : why);
  }
}

bool Outbox::pastDeadline() const {
  std::lock_guard lock(mutex_);
  return stopping_ && std::chrono::steady_clock::now() >= deadline_;
}

void Outbox::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    queuedBytes_ -= bytesOf(b);
    lock.unlock();
    // Past stop()'s deadline the rest is reported, not tried: a dead relay
    // would otherwise cost a timeout per mail.
    send(b, [this] { return pastDeadline(); });
    lock.lock();
  }
}

void Outbox::stop(std::chrono::milliseconds deadline) {
  std::thread t;
  {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) return;
    running_ = false;  // posts from now on are sent by their callers
    stopping_ = true;
    deadline_ = std::chrono::steady_clock::now() + deadline;
    t = std::move(thread_);
  }
  wake_.notify_all();
  t.join();
}

}  // namespace sekimori::notify
