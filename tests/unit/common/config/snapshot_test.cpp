#include "common/config/snapshot.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace sekimori::config {
namespace {

// A config whose two fields always agree, as a reload builds them.
struct Pair {
  explicit Pair(int v) : value(v), text(std::to_string(v)) {}
  int value;
  std::string text;
};

TEST(Snapshot, AMessageKeepsTheConfigItStartedWith) {
  Snapshot<Pair> current;
  EXPECT_EQ(current.get(), nullptr);
  current.set(std::make_shared<const Pair>(1));
  std::shared_ptr<const Pair> held = current.get();  // a message under way
  std::weak_ptr<const Pair> old = held;
  current.set(std::make_shared<const Pair>(2));  // a reload
  EXPECT_EQ(held->value, 1);
  EXPECT_EQ(current.get()->value, 2);
  EXPECT_FALSE(old.expired());
  held.reset();  // the message ends: the old config goes with it
  EXPECT_TRUE(old.expired());
}

// Readers on every milter thread while reloads publish new configs. In a
// ThreadSanitizer build (SEKIMORI_TSAN) this is the check that publishing
// is race-free: std::atomic<std::shared_ptr> as libstdc++ 12 implements it
// was reported here.
TEST(Snapshot, ReadersSeeWholeConfigsWhileReloadsPublishNewOnes) {
  Snapshot<Pair> current;
  current.set(std::make_shared<const Pair>(0));
  std::atomic<bool> done{false};
  std::atomic<int> torn{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      int last = 0;
      while (!done.load()) {
        const auto cfg = current.get();
        if (cfg->text != std::to_string(cfg->value) || cfg->value < last) ++torn;
        last = cfg->value;
      }
    });
  }
  for (int i = 1; i <= 5000; ++i) current.set(std::make_shared<const Pair>(i));
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_EQ(current.get()->value, 5000);
}

}  // namespace
}  // namespace sekimori::config
