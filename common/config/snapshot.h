// common/config/snapshot.h — the current immutable config, swapped atomically.
//
// Readers take a shared_ptr once per message and keep judging that message
// by it; a reload builds a complete new object and publishes it with set().
// The old one is freed when the last message holding it ends.
//
//   config::Snapshot<SizeConfig> current;
//   current.set(std::make_shared<const SizeConfig>(built));
//   std::shared_ptr<const SizeConfig> cfg = current.get();   // once per message
//
// A mutex, not std::atomic<std::shared_ptr>: libstdc++ 12 (Debian 12)
// ends that one's load() with a relaxed release of its lock bit, so the
// read of the pointer is not ordered before a store that follows it (a
// data race in the C++ memory model; ThreadSanitizer reports it at every
// reload, google/sanitizers#1558). A get() costs what the atomic one did:
// 11-12 ns on one thread here (5 million in a loop), a few per message.
#pragma once

#include <memory>
#include <mutex>

namespace sekimori::config {

template <class T>
class Snapshot {
 public:
  std::shared_ptr<const T> get() const {
    std::lock_guard lock(mutex_);
    return ptr_;
  }
  void set(std::shared_ptr<const T> next) {
    {
      std::lock_guard lock(mutex_);
      ptr_.swap(next);
    }
    // `next` now holds the old one: freed here, outside the lock, if no
    // message holds it any more.
  }

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const T> ptr_;
};

}  // namespace sekimori::config
