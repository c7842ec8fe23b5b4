// common/config/snapshot.h — the current immutable config, swapped atomically.
//
// Readers take a shared_ptr once per message and keep judging that message
// by it; a reload builds a complete new object and publishes it with set().
// The old one is freed when the last message holding it ends.
//
//   config::Snapshot<SizeConfig> current;
//   current.set(std::make_shared<const SizeConfig>(built));
//   std::shared_ptr<const SizeConfig> cfg = current.get();   // once per message
#pragma once

#include <atomic>
#include <memory>

namespace sekimori::config {

template <class T>
class Snapshot {
 public:
  std::shared_ptr<const T> get() const { return ptr_.load(std::memory_order_acquire); }
  void set(std::shared_ptr<const T> next) { ptr_.store(std::move(next), std::memory_order_release); }

 private:
  std::atomic<std::shared_ptr<const T>> ptr_;
};

}  // namespace sekimori::config
