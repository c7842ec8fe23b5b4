// common/config/units.h — sizes and durations as administrators write them.
//
// Sizes: a plain byte count, or a number with a unit. Binary units (k, K, KiB,
// M, MiB, G, GiB) are powers of 1024, as Postfix and the seed services count
// ("20M" = 20971520); decimal units with a B (kB, KB, MB, GB) are powers of
// 1000 ("30MB" = 30000000). Durations: seconds, or ms, s, m, h, d, w suffixes.
//
//   auto n = config::parseBytes("20MiB");      // 20971520
//   auto d = config::parseDuration("5m");      // 300 s
//   config::formatBytes(20971520);             // "20M"
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sekimori::config {

// A byte count in the config. A distinct type so the parser knows to accept units.
struct Bytes {
  std::uint64_t value = 0;
  friend bool operator==(Bytes, Bytes) = default;
};
// A length of time in the config, to the second.
struct Duration {
  std::chrono::milliseconds value{0};
  friend bool operator==(Duration, Duration) = default;
};

constexpr Bytes operator""_KiB(unsigned long long n) { return Bytes{n * 1024ULL}; }
constexpr Bytes operator""_MiB(unsigned long long n) { return Bytes{n * 1024ULL * 1024ULL}; }
constexpr Bytes operator""_MB(unsigned long long n) { return Bytes{n * 1000ULL * 1000ULL}; }

// Both return nullopt and set *error (when given) to a short reason.
std::optional<Bytes> parseBytes(std::string_view text, std::string* error = nullptr);
std::optional<Duration> parseDuration(std::string_view text, std::string* error = nullptr);

// The shortest exact spelling: 20971520 -> "20M", 30000000 -> "30MB", 1000 -> "1000".
std::string formatBytes(Bytes b);
// 300 -> "5m", 7200 -> "2h", 90 -> "90s".
std::string formatDuration(Duration d);

}  // namespace sekimori::config
