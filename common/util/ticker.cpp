// common/util/ticker.cpp — see ticker.h.
#include "common/util/ticker.h"

namespace sekimori::util {

void Ticker::start(std::chrono::milliseconds interval, std::function<void()> f) {
  std::lock_guard lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  kicked_ = false;
  thread_ = std::thread([this, interval, f = std::move(f)] {
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      f();
      lock.lock();
      wake_.wait_for(lock, interval, [this] { return stopping_ || kicked_; });
      kicked_ = false;
    }
  });
}

void Ticker::kick() {
  {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) return;
    kicked_ = true;
  }
  wake_.notify_all();
}

void Ticker::stop() {
  std::thread t;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    t = std::move(thread_);
  }
  wake_.notify_all();
  if (t.joinable()) t.join();
}

}  // namespace sekimori::util
