#include "common/util/ticker.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace sekimori::util {
namespace {

using namespace std::chrono_literals;

TEST(Ticker, CallsAtOnceThenEveryIntervalUntilStopped) {
  std::atomic<int> calls{0};
  Ticker t;
  t.start(20ms, [&] { ++calls; });
  for (int i = 0; i < 500 && calls.load() < 3; ++i) std::this_thread::sleep_for(2ms);
  EXPECT_GE(calls.load(), 3);
  t.stop();
  const int after = calls.load();
  std::this_thread::sleep_for(60ms);
  EXPECT_EQ(calls.load(), after) << "called after stop()";
}

TEST(Ticker, StopDoesNotWaitForTheInterval) {
  std::atomic<int> calls{0};
  Ticker t;
  t.start(std::chrono::hours(1), [&] { ++calls; });
  for (int i = 0; i < 500 && calls.load() < 1; ++i) std::this_thread::sleep_for(2ms);
  const auto t0 = std::chrono::steady_clock::now();
  t.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s);
  EXPECT_EQ(calls.load(), 1);
  t.stop();  // twice is harmless
}

TEST(Ticker, KickCallsAgainWithoutWaitingForTheInterval) {
  std::atomic<int> calls{0};
  Ticker t;
  t.kick();  // not started: nothing
  t.start(std::chrono::hours(1), [&] { ++calls; });
  for (int i = 0; i < 500 && calls.load() < 1; ++i) std::this_thread::sleep_for(2ms);
  t.kick();
  for (int i = 0; i < 500 && calls.load() < 2; ++i) std::this_thread::sleep_for(2ms);
  EXPECT_EQ(calls.load(), 2);
}

}  // namespace
}  // namespace sekimori::util
