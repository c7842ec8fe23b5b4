// common/config/units.cpp — see units.h.
#include "common/config/units.h"

#include <array>
#include <charconv>
#include <limits>

#include "common/util/strings.h"

namespace sekimori::config {
namespace {

struct Unit {
  std::string_view name;
  std::uint64_t factor;
};

// Longest names first is not needed: we compare the whole suffix.
constexpr std::uint64_t kKi = 1024, kMi = kKi * 1024, kGi = kMi * 1024, kTi = kGi * 1024;
constexpr std::array<Unit, 15> kSizeUnits{{
    {"", 1}, {"b", 1},
    {"k", kKi}, {"kib", kKi}, {"m", kMi}, {"mib", kMi}, {"g", kGi}, {"gib", kGi}, {"t", kTi}, {"tib", kTi},
    {"kb", 1000}, {"mb", 1000 * 1000}, {"gb", 1000ULL * 1000 * 1000}, {"tb", 1000ULL * 1000 * 1000 * 1000},
    {"bytes", 1},
}};

// In milliseconds; a bare number is seconds.
constexpr std::array<Unit, 14> kTimeUnits{{
    {"", 1000}, {"ms", 1}, {"s", 1000}, {"sec", 1000}, {"m", 60000}, {"min", 60000}, {"h", 3600000},
    {"hour", 3600000}, {"hours", 3600000}, {"d", 86400000}, {"day", 86400000}, {"days", 86400000},
    {"w", 604800000}, {"week", 604800000},
}};

template <std::size_t N>
std::optional<std::uint64_t> parseWithUnits(std::string_view text, const std::array<Unit, N>& units,
                                            std::string_view what, std::string* error) {
  const auto fail = [&](std::string reason) -> std::optional<std::uint64_t> {
    if (error) *error = std::move(reason);
    return std::nullopt;
  };
  text = util::trim(text);
  if (text.empty()) return fail("empty " + std::string(what));
  std::uint64_t number = 0;
  const auto* begin = text.data();
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(begin, end, number);
  if (ec == std::errc::result_out_of_range) return fail(std::string(what) + " too large");
  if (ec != std::errc() || ptr == begin) return fail("not a " + std::string(what) + ": '" + std::string(text) + "'");
  const std::string suffix = util::toLowerAscii(util::trim(std::string_view(ptr, end - ptr)));
  for (const auto& unit : units) {
    if (unit.name == suffix) {
      if (number > std::numeric_limits<std::uint64_t>::max() / unit.factor) {
        return fail(std::string(what) + " too large");
      }
      return number * unit.factor;
    }
  }
  return fail("unknown unit '" + std::string(ptr, end - ptr) + "' in '" + std::string(text) + "'");
}

}  // namespace

std::optional<Bytes> parseBytes(std::string_view text, std::string* error) {
  const auto n = parseWithUnits(text, kSizeUnits, "size (e.g. 20971520, 20M, 20MiB, 30MB)", error);
  if (!n) return std::nullopt;
  return Bytes{*n};
}

std::optional<Duration> parseDuration(std::string_view text, std::string* error) {
  const auto n = parseWithUnits(text, kTimeUnits, "duration (e.g. 300, 30s, 5m, 2h, 1d, 500ms)", error);
  if (!n) return std::nullopt;
  if (*n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    if (error) *error = "duration too large";
    return std::nullopt;
  }
  return Duration{std::chrono::milliseconds(static_cast<std::int64_t>(*n))};
}

std::string formatBytes(Bytes b) {
  const std::uint64_t v = b.value;
  if (v == 0) return "0";
  if (v % kGi == 0) return std::to_string(v / kGi) + "G";
  if (v % kMi == 0) return std::to_string(v / kMi) + "M";
  if (v % (1000 * 1000) == 0) return std::to_string(v / (1000 * 1000)) + "MB";
  if (v % kKi == 0) return std::to_string(v / kKi) + "k";
  return std::to_string(v);
}

std::string formatDuration(Duration d) {
  const auto ms = d.value.count();
  if (ms % 1000 != 0) return std::to_string(ms) + "ms";
  const auto s = ms / 1000;
  if (s != 0 && s % 86400 == 0) return std::to_string(s / 86400) + "d";
  if (s != 0 && s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s != 0 && s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

}  // namespace sekimori::config
