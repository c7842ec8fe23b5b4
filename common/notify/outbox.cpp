// common/notify/outbox.cpp — see outbox.h.
#include "common/notify/outbox.h"

namespace sekimori::notify {

void Outbox::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  running_ = true;
  stopping_ = false;
  thread_ = std::thread([this] { run(); });
}

void Outbox::post(Batch b) {
  {
    std::lock_guard lock(mutex_);
    if (running_ && queue_.size() < capacity_) {
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

void Outbox::send(const Batch& b) {
  Submitter out(b.settings);  // one SMTP session for the batch
  for (const auto& item : b.items) {
    std::string why;
    const bool sent = out.submit(item.to, item.data, &why);
    if (b.report) b.report(item, sent, sent ? std::string() : why);
  }
}

void Outbox::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stopping, nothing left
    if (stopping_ && std::chrono::steady_clock::now() >= deadline_) {
      std::deque<Batch> left;
      left.swap(queue_);
      lock.unlock();
      for (const auto& b : left) {
        for (const auto& item : b.items) {
          if (b.report) b.report(item, false, "not sent: still queued when the milter stopped");
        }
      }
      return;
    }
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    send(b);
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
