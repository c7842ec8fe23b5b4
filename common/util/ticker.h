// common/util/ticker.h — a thread that calls a function at once and then
// every `interval`, until stop(). For housekeeping a daemon does on its
// own clock (expiring old quarantine entries), not per message.
//
//   util::Ticker t;
//   t.start(std::chrono::hours(1), [&] { quarantine.expire(...); });
//   ...
//   t.kick();  // once more now (after a reload, say)
//   t.stop();  // waits for a call under way; also on destruction
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace sekimori::util {

class Ticker {
 public:
  Ticker() = default;
  Ticker(const Ticker&) = delete;
  Ticker& operator=(const Ticker&) = delete;
  ~Ticker() { stop(); }

  // A second start() without stop() in between does nothing.
  void start(std::chrono::milliseconds interval, std::function<void()> f);
  // The next call now instead of at the end of the interval; nothing when
  // not started.
  void kick();
  void stop();

 private:
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool kicked_ = false;
  std::thread thread_;
};

}  // namespace sekimori::util
